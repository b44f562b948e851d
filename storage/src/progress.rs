//! What readers may see of a partition, and how they wait for more.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The visible state of a partition, shared by the writer and every reader.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// First retained offset.
    pub start: u64,
    /// Offset after the last readable row (durable rows, or written rows in relaxed mode).
    pub end: u64,
    /// The committed offset of a derived log: readers never pass it.
    pub committed: Option<u64>,
    /// Final end, once sealed.
    pub sealed: Option<u64>,
    /// Bumped by every truncation, so readers re-check their position.
    pub epoch: u64,
    /// The most recent truncations, as (epoch after it, offset).
    pub truncations: std::collections::VecDeque<(u64, u64)>,
    /// Set when the partition stopped after an I/O error.
    pub failed: Option<String>,
    /// Set when the store is closing: waiters wake up and stop.
    pub closed: bool,
}

/// Truncations remembered for readers that have not looked since.
pub(crate) const MAX_TRUNCATIONS: usize = 64;

impl Progress {
    /// The lowest offset the log was truncated to after `epoch`: a reader positioned above it
    /// has read rows that are gone. `Some(0)` when the history no longer reaches back that far.
    pub fn truncated_since(&self, epoch: u64) -> Option<u64> {
        if epoch >= self.epoch {
            return None;
        }
        match self.truncations.front() {
            Some((first, _)) if *first <= epoch + 1 => {
                self.truncations.iter().filter(|(e, _)| *e > epoch).map(|(_, o)| *o).min()
            }
            _ => Some(0),
        }
    }

    /// The offset readers may read up to (exclusive).
    pub fn limit(&self) -> u64 {
        match self.committed {
            Some(c) => c.min(self.end),
            None => self.end,
        }
    }

    /// Whether a reader at `offset` has reached the final end.
    pub fn ended_at(&self, offset: u64) -> bool {
        self.sealed.is_some_and(|s| offset >= s && self.limit() >= s)
    }
}

/// Result of a blocking wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Rows beyond the position are readable.
    Data,
    /// The stream is sealed and the position is at its end: nothing more will come.
    Ended,
    /// The timeout passed.
    TimedOut,
    /// The store is closing, or the log failed.
    Closed,
}

/// [`Progress`] with a condition variable for blocking waiters and a `Notify` for async ones.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    state: Mutex<Progress>,
    cv: Condvar,
    notify: tokio::sync::Notify,
}

impl Watch {
    pub fn new(p: Progress) -> Watch {
        Watch { state: Mutex::new(p), cv: Condvar::new(), notify: tokio::sync::Notify::new() }
    }

    pub fn lock(&self) -> MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self) -> Progress {
        self.lock().clone()
    }

    /// Change the state and wake every waiter.
    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        {
            let mut s = self.lock();
            f(&mut s);
        }
        self.cv.notify_all();
        self.notify.notify_waiters();
    }

    fn classify(p: &Progress, offset: u64, epoch: u64) -> Option<Wait> {
        if p.closed || p.failed.is_some() {
            Some(Wait::Closed)
        } else if p.limit() > offset || p.epoch != epoch {
            // A truncation since the waiter last looked: let it re-check its position.
            Some(Wait::Data)
        } else if p.ended_at(offset) {
            Some(Wait::Ended)
        } else {
            None
        }
    }

    /// Block until rows beyond `offset` are readable, the stream ends, the log is truncated
    /// after `epoch`, or `timeout` passes.
    pub fn wait_blocking(&self, offset: u64, epoch: u64, timeout: Option<Duration>) -> Wait {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.lock();
        loop {
            if let Some(w) = Watch::classify(&s, offset, epoch) {
                return w;
            }
            match deadline {
                None => s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Wait::TimedOut;
                    }
                    s = self.cv.wait_timeout(s, d - now).unwrap_or_else(|p| p.into_inner()).0;
                }
            }
        }
    }

    /// Wait asynchronously until rows beyond `offset` are readable or the stream ends.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future loses nothing.
    pub async fn wait_async(&self, offset: u64, epoch: u64) -> Wait {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(w) = Watch::classify(&self.lock(), offset, epoch) {
                return w;
            }
            notified.await;
        }
    }
}
