//! The engine's background task: every second it samples the rates `SHOW DATAFLOW` reports
//! ([`crate::meter`]). Retention: every [`EngineOptions::retention_check`] (default a minute,
//! as often as Kafka's `log.retention.check.interval` is at its shortest in practice), each
//! stream with a `retention` removes its whole closed segments that are too old or beyond its
//! size (the store also does it when a segment rolls, but a stream that no longer receives
//! rows never rolls). The active segment is never removed. A reader positioned in a removed
//! segment gets an error naming what is retained (it never skips rows silently); jobs resume
//! only from retained rows (`recovery`).
//!
//! [`EngineOptions::retention_check`]: crate::EngineOptions::retention_check

use std::sync::{Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::Inner;

/// How often retention runs when the engine's options do not say.
pub(crate) const DEFAULT_CHECK: Duration = Duration::from_secs(60);

/// The background task, stopped when the engine closes.
#[derive(Debug)]
pub(crate) struct RetentionTask {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RetentionTask {
    /// Start enforcing every stream's retention every `every`.
    pub fn spawn(inner: Weak<Inner>, every: Duration) -> RetentionTask {
        let (stop, mut stopped) = watch::channel(false);
        let tick = every.min(crate::meter::TICK);
        let task = tokio::spawn(async move {
            let mut last = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = stopped.changed() => return,
                }
                let Some(inner) = inner.upgrade() else { return };
                crate::meter::sample(&inner);
                if last.elapsed() < every {
                    continue;
                }
                last = tokio::time::Instant::now();
                let store = std::sync::Arc::clone(&inner.store);
                drop(inner);
                // (Errors are the store's: a failed partition reports them to its writers and
                // readers; retention tries again next time.)
                let _ = tokio::task::spawn_blocking(move || enforce(&store)).await;
            }
        });
        RetentionTask { stop, task: Mutex::new(Some(task)) }
    }

    /// Stop the task and wait for it (a pass under way finishes first).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// One pass over the store's streams; returns how many segments went.
pub(crate) fn enforce(store: &kappa_storage::Store) -> usize {
    let now = SystemTime::now();
    let mut removed = 0;
    for name in store.stream_names() {
        let Ok(stream) = store.stream(&name) else { continue };
        let r = stream.options().retention;
        if r.max_age.is_none() && r.max_bytes.is_none() {
            continue;
        }
        removed += stream.enforce_retention(now).unwrap_or(0);
    }
    removed
}
