//! Parallel computation of a job's batches, written in the order they were read.
//!
//! A stateless pipeline needs no order to compute, only to emit. Consecutive input batches of
//! one input become a task on tokio's blocking pool that runs the pipeline and encodes the
//! results for the output log (the copy into the frame layout and its checksum, most of an
//! append's CPU), then waits for its turn and writes the frames in one run. Turns follow the
//! order in which the job read the batches, so the output is exactly what a sequential job
//! would write; while one task writes, the others compute. After a failed turn every later
//! turn is skipped: nothing is written past a batch that could not be.
//!
//! The job keeps at most [`slots`] tasks in computation and takes their results in order
//! ([`Computation::join`]), so memory stays bounded and positions advance in order.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use kappa_sql::stream_plan::StatelessPlan;
use kappa_storage::{PendingAppend, ReadBatch, Stream, Tag};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// Tasks of one job computed at once: one per core, plus one to keep the writer busy (more
/// measured no better on 2 cores).
pub(crate) fn slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16) + 1
}

/// The outcome of one task: consecutive batches of one input.
#[derive(Debug)]
pub(crate) struct Computed {
    /// The input it was read from.
    pub input: usize,
    /// The input offset after the last row.
    pub end: u64,
    /// Rows read.
    pub rows_in: u64,
    /// The last append of the output and the rows written (`None` when every row was
    /// filtered out).
    pub written: Option<(PendingAppend, u64)>,
}

/// Turns of writing, in ticket order.
#[derive(Debug, Default)]
struct Sequencer {
    turn: Mutex<Turn>,
    next_turn: Condvar,
}

#[derive(Debug, Default)]
struct Turn {
    next: u64,
    failed: bool,
    /// Tickets dropped without taking their turn (a task the runtime dropped before it ran).
    abandoned: std::collections::BTreeSet<u64>,
}

impl Turn {
    /// Pass the turn on, past abandoned tickets.
    fn advance(&mut self) {
        self.next += 1;
        while self.abandoned.remove(&self.next) {
            self.next += 1;
        }
    }
}

/// A place in the order of writes. Dropped without taking its turn (its task never ran), it
/// passes its turn on as failed, so that later tickets never wait for it forever.
#[derive(Debug)]
struct Ticket {
    seq: Arc<Sequencer>,
    t: u64,
    taken: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut turn = self.seq.lock();
        turn.failed = true;
        if turn.next == self.t {
            turn.advance();
        } else {
            turn.abandoned.insert(self.t);
        }
        self.seq.next_turn.notify_all();
    }
}

impl Sequencer {
    fn lock(&self) -> MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for the ticket's turn; run `write` unless an earlier turn failed; pass the turn on
    /// (as failed if `write` fails or panics).
    fn in_turn<T>(mut ticket: Ticket, write: impl FnOnce() -> Result<T>) -> Result<T> {
        /// Passes the turn on when dropped, even by a panic.
        struct Pass<'a> {
            seq: &'a Sequencer,
            ok: bool,
        }
        impl Drop for Pass<'_> {
            fn drop(&mut self) {
                let mut turn = self.seq.lock();
                turn.failed |= !self.ok;
                turn.advance();
                self.seq.next_turn.notify_all();
            }
        }
        ticket.taken = true;
        let seq = Arc::clone(&ticket.seq);
        let mut turn = seq.lock();
        while turn.next != ticket.t {
            turn = seq.next_turn.wait(turn).unwrap_or_else(|p| p.into_inner());
        }
        let skipped = turn.failed;
        // Only the holder of ticket `t` runs until the turn is passed on: no lock is needed
        // for the write.
        drop(turn);
        let mut pass = Pass { seq: &seq, ok: false };
        if skipped {
            return Err(Error::Job("an earlier batch of the job failed".into()));
        }
        let result = write();
        pass.ok = result.is_ok();
        result
    }

    fn ticket(self: &Arc<Self>, t: u64) -> Ticket {
        Ticket { seq: Arc::clone(self), t, taken: false }
    }
}

/// The batches of one job being computed.
#[derive(Debug)]
pub(crate) struct Computation {
    plan: Arc<StatelessPlan>,
    output: Arc<Stream>,
    sequencer: Arc<Sequencer>,
    next_ticket: u64,
    tasks: std::collections::VecDeque<JoinHandle<Result<Computed>>>,
}

impl Computation {
    pub fn new(plan: Arc<StatelessPlan>, output: Arc<Stream>) -> Computation {
        Computation {
            plan,
            output,
            sequencer: Arc::default(),
            next_ticket: 0,
            tasks: Default::default(),
        }
    }

    /// Tasks in computation.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Start computing `batches`, consecutive batches of input `i`, as one task; the frame of
    /// each is tagged `(producer, the input offset after it)`.
    pub fn start(&mut self, i: usize, batches: Vec<ReadBatch>, producer: u32) {
        let (plan, output) = (Arc::clone(&self.plan), Arc::clone(&self.output));
        let ticket = self.sequencer.ticket(self.next_ticket);
        self.next_ticket += 1;
        let rows_in = batches.iter().map(|b| b.batch.num_rows() as u64).sum();
        let end = batches.last().map_or(0, |b| b.offset + b.batch.num_rows() as u64);
        self.tasks.push_back(tokio::task::spawn_blocking(move || {
            let frames: Result<Vec<_>> = batches
                .into_iter()
                .filter_map(|b| {
                    let seq = b.offset + b.batch.num_rows() as u64;
                    match plan.apply(i, b.batch) {
                        Ok(Some(out)) => {
                            Some(output.encode(&out).map(|f| (f, seq)).map_err(Into::into))
                        }
                        Ok(None) => None,
                        Err(e) => Some(Err(e.into())),
                    }
                })
                .collect();
            let written = Sequencer::in_turn(ticket, || {
                let frames = frames?;
                if frames.is_empty() {
                    return Ok(None);
                }
                let rows = frames.iter().map(|(f, _)| f.num_rows() as u64).sum();
                let tagged =
                    frames.into_iter().map(|(f, seq)| (f, Some(Tag { producer, seq }))).collect();
                // One write for the task's frames.
                Ok(Some((output.submit_encoded(tagged)?, rows)))
            })?;
            Ok(Computed { input: i, end, rows_in, written })
        }));
    }

    /// The oldest task's outcome, once it is written; `None` when none is in computation.
    ///
    /// # Cancel safety
    /// Cancel safe: a task whose wait is cancelled stays first.
    pub async fn join(&mut self) -> Option<Result<Computed>> {
        let task = self.tasks.front_mut()?;
        let outcome = match task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Job(format!("the job's computation {}", panic_message(e)))),
        };
        self.tasks.pop_front();
        Some(outcome)
    }
}

/// What a failed task says.
fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "was cancelled".to_string();
    }
    format!("panicked: {}", panic_text(e.into_panic().as_ref()))
}

/// The message a panic carried, if it is text.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_follow_tickets_and_stop_after_a_failure() {
        let seq = Arc::new(Sequencer::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..6u64)
            .rev()
            .map(|t| {
                let (ticket, order) = (seq.ticket(t), Arc::clone(&order));
                std::thread::spawn(move || {
                    Sequencer::in_turn(ticket, || {
                        order.lock().unwrap().push(t);
                        if t == 3 { Err(Error::Job("boom".into())) } else { Ok(t) }
                    })
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        // Tickets ran in order up to the failure; the later ones were skipped.
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
        let failed: Vec<bool> = results.iter().rev().map(|r| r.is_err()).collect();
        assert_eq!(failed, vec![false, false, false, true, true, true]);
    }

    #[test]
    fn a_panicking_turn_passes_the_turn_on_as_failed() {
        let seq = Arc::new(Sequencer::default());
        let ticket = seq.ticket(0);
        let panicked = std::thread::spawn(move || {
            Sequencer::in_turn(ticket, || -> Result<()> { panic!("oops") })
        })
        .join();
        assert!(panicked.is_err());
        let next = Sequencer::in_turn(seq.ticket(1), || Ok(()));
        assert!(next.unwrap_err().to_string().contains("earlier batch"));
    }

    #[test]
    fn a_ticket_dropped_unused_does_not_hold_later_ones() {
        let seq = Arc::new(Sequencer::default());
        let (t0, t1, t2) = (seq.ticket(0), seq.ticket(1), seq.ticket(2));
        let waiting = std::thread::spawn(move || Sequencer::in_turn(t2, || Ok(2)));
        // Ticket 1 is dropped before ticket 0 has its turn, then 0 is dropped too.
        drop(t1);
        drop(t0);
        assert!(waiting.join().unwrap().is_err(), "skipped: earlier batches never ran");
        assert_eq!(seq.lock().next, 3);
    }
}
