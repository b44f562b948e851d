//! Parallel computation of a job's batches, written in the order they were read.
//!
//! A stateless pipeline needs no order to compute, only to emit. The job hands consecutive
//! input batches of one input, as one piece of work, to its workers: threads of its own (at
//! most one per core, started when work is queued and no worker is idle, gone after
//! [`IDLE_EXIT`] without work) that run the pipeline and encode the results for the output log
//! (the copy into the frame layout and its checksum, most of an append's CPU). A worker that
//! finishes a piece does not wait for the earlier ones: it leaves its frames in a reorder
//! buffer and takes the next piece. Whoever leaves the piece that is next in read order writes
//! it, and every piece after it that is ready, in order; so the output is exactly what a
//! sequential job would write, and no worker sleeps while there is work. After a failed piece
//! every later piece is skipped: nothing is written past a batch that could not be.
//!
//! The outcomes come back to the job in order ([`Computation::next`]). The job keeps at most
//! [`Computation::slots`] pieces in flight (queued, computing, waiting in the buffer, being
//! written, or their outcome waiting to be taken), so memory stays bounded and positions
//! advance in order.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use kappa_sql::stream_plan::StatelessPlan;
use kappa_storage::{EncodedBatch, PendingAppend, ReadBatch, Stream, Tag};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// Most workers of one job: one per core (at most 16).
fn max_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16)
}

/// How long a worker without work waits for some before it exits.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(2);

/// The outcome of one piece: consecutive batches of one input.
#[derive(Debug)]
pub(crate) struct Computed {
    /// The input it was read from.
    pub input: usize,
    /// The input offset after the last row.
    pub end: u64,
    /// Rows read.
    pub rows_in: u64,
    /// Rows the pipeline produced (written, or discarded by a blackhole sink).
    pub rows_out: u64,
    /// The last append of the output (`None` when nothing was written).
    pub written: Option<PendingAppend>,
}

/// Consecutive batches of one input, to compute.
struct Work {
    /// Its place in the order of writes.
    ticket: u64,
    input: usize,
    producer: u32,
    batches: Vec<ReadBatch>,
}

/// A computed piece, waiting for its turn to be written.
struct Ready {
    input: usize,
    producer: u32,
    end: u64,
    rows_in: u64,
    /// The encoded output of each batch with the input offset after it, and the rows.
    frames: Result<(Vec<(EncodedBatch, u64)>, u64)>,
}

#[derive(Default)]
struct Queue {
    work: VecDeque<Work>,
    closed: bool,
    /// Worker threads running, and how many of them wait for work.
    workers: usize,
    idle: usize,
}

/// The reorder buffer: items left in any order, handled one at a time in ticket order.
struct Reorder<T> {
    order: Mutex<Order<T>>,
}

struct Order<T> {
    /// The ticket to handle next.
    next: u64,
    ready: BTreeMap<u64, T>,
    /// A thread is handling items (it handles every ready one in order before it lets go).
    handling: bool,
    /// An item failed: every later one is handled as skipped.
    failed: bool,
}

impl<T> Default for Reorder<T> {
    fn default() -> Self {
        Reorder {
            order: Mutex::new(Order {
                next: 0,
                ready: BTreeMap::new(),
                handling: false,
                failed: false,
            }),
        }
    }
}

impl<T> Reorder<T> {
    /// Leave item `ticket`. If no other thread is handling items, handle every item that is
    /// ready, in ticket order, with `handle(item, skip)` (`skip` when an earlier item failed;
    /// it returns whether the item succeeded), outside the lock. Never waits for an item.
    fn deposit(&self, ticket: u64, item: T, mut handle: impl FnMut(T, bool) -> bool) {
        /// Lets go of the handling when `handle` panics: the item counts as failed, so later
        /// items are skipped rather than held forever.
        struct Unwind<'a, T>(&'a Reorder<T>);
        impl<T> Drop for Unwind<'_, T> {
            fn drop(&mut self) {
                let mut order = lock(&self.0.order);
                order.failed = true;
                order.next += 1;
                order.handling = false;
            }
        }
        let mut order = lock(&self.order);
        order.ready.insert(ticket, item);
        if order.handling {
            return;
        }
        order.handling = true;
        loop {
            let t = order.next;
            let Some(item) = order.ready.remove(&t) else { break };
            let skip = order.failed;
            drop(order);
            let unwind = Unwind(self);
            let ok = handle(item, skip);
            std::mem::forget(unwind);
            order = lock(&self.order);
            order.failed |= !ok;
            order.next += 1;
        }
        order.handling = false;
    }
}

/// What a job's workers share.
struct Shared {
    plan: Arc<StatelessPlan>,
    /// The output log; `None` for a blackhole sink (rows are counted, then dropped).
    output: Option<Arc<Stream>>,
    queue: Mutex<Queue>,
    work_ready: Condvar,
    order: Reorder<Ready>,
    outcomes: mpsc::Sender<Result<Computed>>,
    /// The engine's runtime, entered by the workers (for user functions that need it).
    runtime: tokio::runtime::Handle,
}

/// Lock `m`, ignoring poisoning (no panic can happen while one of these locks is held).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// A worker: take pieces until the queue is closed and empty, or none came for
    /// [`IDLE_EXIT`].
    fn work(&self) {
        /// Should the worker die with a piece in hand, the piece fails (so that later pieces
        /// are skipped, not held), and the worker is no longer counted.
        struct Holding<'a> {
            shared: &'a Shared,
            piece: Option<(u64, Ready)>,
            /// Still counted in `Queue::workers` (a worker that exits uncounts itself, under
            /// the lock under which it decided to).
            counted: bool,
        }
        impl Drop for Holding<'_> {
            fn drop(&mut self) {
                if let Some((ticket, mut ready)) = self.piece.take() {
                    ready.frames = Err(Error::Job("a worker of the job died".into()));
                    self.shared.deposit(ticket, ready);
                }
                if self.counted {
                    lock(&self.shared.queue).workers -= 1;
                }
            }
        }
        let _runtime = self.runtime.enter();
        let mut holding = Holding { shared: self, piece: None, counted: true };
        loop {
            let work = {
                let mut queue = lock(&self.queue);
                loop {
                    if let Some(w) = queue.work.pop_front() {
                        break w;
                    }
                    if queue.closed {
                        queue.workers -= 1;
                        holding.counted = false;
                        return;
                    }
                    queue.idle += 1;
                    let (q, waited) = self
                        .work_ready
                        .wait_timeout(queue, IDLE_EXIT)
                        .unwrap_or_else(|p| p.into_inner());
                    queue = q;
                    queue.idle -= 1;
                    if waited.timed_out() && queue.work.is_empty() {
                        queue.workers -= 1;
                        holding.counted = false;
                        return;
                    }
                }
            };
            let ticket = work.ticket;
            let placeholder = Ready {
                input: work.input,
                producer: work.producer,
                end: 0,
                rows_in: 0,
                frames: Ok((Vec::new(), 0)),
            };
            holding.piece = Some((ticket, placeholder));
            let ready = self.compute(work);
            holding.piece = None;
            self.deposit(ticket, ready);
        }
    }

    /// Run the pipeline over a piece and encode its output.
    fn compute(&self, work: Work) -> Ready {
        let Work { input, producer, batches, .. } = work;
        let rows_in = batches.iter().map(|b| b.batch.num_rows() as u64).sum();
        let end = batches.last().map_or(0, |b| b.offset + b.batch.num_rows() as u64);
        let run = || -> Result<(Vec<(EncodedBatch, u64)>, u64)> {
            let mut frames = Vec::with_capacity(batches.len());
            let mut rows = 0;
            for b in batches {
                let seq = b.offset + b.batch.num_rows() as u64;
                if let Some(out) = self.plan.apply(input, b.batch)? {
                    rows += out.num_rows() as u64;
                    if let Some(output) = &self.output {
                        frames.push((output.encode(&out)?, seq));
                    }
                }
            }
            Ok((frames, rows))
        };
        let frames = std::panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|p| {
            Err(Error::Job(format!("the job's computation panicked: {}", panic_text(p.as_ref()))))
        });
        Ready { input, producer, end, rows_in, frames }
    }

    /// Leave a computed piece in the reorder buffer; if no worker is writing, write every
    /// piece that is ready, in order, and pass on their outcomes.
    fn deposit(&self, ticket: u64, ready: Ready) {
        self.order.deposit(ticket, ready, |ready, skip| {
            let outcome = if skip {
                Err(Error::Job("an earlier batch of the job failed".into()))
            } else {
                std::panic::catch_unwind(AssertUnwindSafe(|| self.write(ready))).unwrap_or_else(
                    |p| {
                        Err(Error::Job(format!(
                            "the job's output write panicked: {}",
                            panic_text(p.as_ref())
                        )))
                    },
                )
            };
            let ok = outcome.is_ok();
            // Never full (the job keeps no more pieces in flight than the channel holds); an
            // error means the job is gone.
            let _ = self.outcomes.blocking_send(outcome);
            ok
        });
    }

    /// Write a piece's frames, tagged, in one run.
    fn write(&self, ready: Ready) -> Result<Computed> {
        let Ready { input, producer, end, rows_in, frames } = ready;
        let (frames, rows_out) = frames?;
        let written = match &self.output {
            Some(output) if !frames.is_empty() => {
                let tagged =
                    frames.into_iter().map(|(f, seq)| (f, Some(Tag { producer, seq }))).collect();
                Some(output.submit_encoded(tagged)?)
            }
            _ => None,
        };
        Ok(Computed { input, end, rows_in, rows_out, written })
    }
}

/// The batches of one job being computed, and its workers.
pub(crate) struct Computation {
    shared: Arc<Shared>,
    outcomes: mpsc::Receiver<Result<Computed>>,
    /// The job's name, for its workers' thread names.
    name: String,
    max_workers: usize,
    slots: usize,
    next_ticket: u64,
    in_flight: usize,
}

impl std::fmt::Debug for Computation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Computation").field("in_flight", &self.in_flight).finish()
    }
}

impl Computation {
    /// The computation of job `name` into `output` (`None`: rows are counted and dropped);
    /// its workers start with the first piece. Must be called inside the engine's runtime.
    pub fn new(name: &str, plan: Arc<StatelessPlan>, output: Option<Arc<Stream>>) -> Computation {
        let max_workers = max_workers();
        // Two pieces per worker keep every worker busy while one waits for an earlier one to
        // be written.
        let slots = 2 * max_workers;
        let (tx, outcomes) = mpsc::channel(slots);
        let shared = Arc::new(Shared {
            plan,
            output,
            queue: Mutex::default(),
            work_ready: Condvar::new(),
            order: Reorder::default(),
            outcomes: tx,
            runtime: tokio::runtime::Handle::current(),
        });
        Computation {
            shared,
            outcomes,
            name: name.to_string(),
            max_workers,
            slots,
            next_ticket: 0,
            in_flight: 0,
        }
    }

    /// The most pieces the job may keep in flight.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Pieces in flight.
    pub fn len(&self) -> usize {
        self.in_flight
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight == 0
    }

    /// Queue `batches`, consecutive batches of input `i`, as one piece; the frame of each is
    /// tagged `(producer, the input offset after it)`. Starts a worker when no idle one will
    /// take it. The caller keeps at most [`Computation::slots`] pieces in flight.
    ///
    /// # Errors
    /// When no worker runs and none can be started (the piece is not queued then).
    pub fn start(&mut self, i: usize, batches: Vec<ReadBatch>, producer: u32) -> Result<()> {
        let ticket = self.next_ticket;
        let mut queue = lock(&self.shared.queue);
        queue.work.push_back(Work { ticket, input: i, producer, batches });
        if queue.work.len() > queue.idle && queue.workers < self.max_workers {
            let worker = Arc::clone(&self.shared);
            let started = std::thread::Builder::new()
                .name(format!("kappa-job-{}-{}", self.name, queue.workers))
                .spawn(move || worker.work());
            match started {
                Ok(_) => queue.workers += 1,
                Err(e) if queue.workers == 0 => {
                    queue.work.pop_back();
                    return Err(Error::Job(format!("cannot start a worker thread: {e}")));
                }
                // The running workers will take the piece.
                Err(_) => {}
            }
        }
        drop(queue);
        self.shared.work_ready.notify_one();
        self.next_ticket += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// The oldest piece's outcome, once it is written; `None` when none is in flight.
    ///
    /// # Cancel safety
    /// Cancel safe: an outcome is taken only when it is returned.
    pub async fn next(&mut self) -> Option<Result<Computed>> {
        if self.in_flight == 0 {
            return None;
        }
        // Never `None`: `self` holds a sender (in `shared`).
        let outcome = self.outcomes.recv().await?;
        self.in_flight -= 1;
        Some(outcome)
    }
}

impl Drop for Computation {
    /// The workers finish the pieces queued and exit.
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work_ready.notify_all();
    }
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
    fn items_left_in_any_order_are_handled_in_ticket_order() {
        let reorder = Arc::new(Reorder::default());
        let handled = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..64u64)
            .map(|t| {
                let (reorder, handled) = (Arc::clone(&reorder), Arc::clone(&handled));
                std::thread::spawn(move || {
                    reorder.deposit(t, t, |item, skip| {
                        assert!(!skip);
                        handled.lock().unwrap().push(item);
                        true
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*handled.lock().unwrap(), (0..64).collect::<Vec<_>>());
    }

    #[test]
    fn an_item_left_while_another_is_handled_is_handled_by_that_thread_without_waiting() {
        let reorder = Arc::new(Reorder::default());
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (entered, has_entered) = std::sync::mpsc::channel::<u64>();
        let first = {
            let reorder = Arc::clone(&reorder);
            std::thread::spawn(move || {
                let mut by_me = Vec::new();
                reorder.deposit(0, 0u64, |item, _| {
                    entered.send(item).unwrap();
                    if item == 0 {
                        released.recv().unwrap();
                    }
                    by_me.push(item);
                    true
                });
                by_me
            })
        };
        assert_eq!(has_entered.recv().unwrap(), 0);
        // Ticket 1 arrives while ticket 0 is handled: this call returns at once.
        reorder.deposit(1, 1, |_, _| panic!("handled by the thread that handles ticket 0"));
        release.send(()).unwrap();
        assert_eq!(first.join().unwrap(), vec![0, 1]);
    }

    #[test]
    fn items_after_a_failure_are_skipped_and_a_gap_holds_later_items_back() {
        let reorder = Reorder::default();
        let handled = std::cell::RefCell::new(Vec::new());
        let record = |item: u64, skip: bool| {
            handled.borrow_mut().push((item, skip));
            item != 1
        };
        reorder.deposit(2, 2, record);
        reorder.deposit(3, 3, record);
        // Ticket 0 is not here yet: nothing is handled.
        assert!(handled.borrow().is_empty());
        reorder.deposit(0, 0, record);
        assert_eq!(*handled.borrow(), vec![(0, false)]);
        // Ticket 1 fails: 2 and 3, ready since, are skipped, and so is 4, left later.
        reorder.deposit(1, 1, record);
        reorder.deposit(4, 4, record);
        assert_eq!(
            *handled.borrow(),
            vec![(0, false), (1, false), (2, true), (3, true), (4, true)]
        );
    }

    #[test]
    fn a_handler_that_panics_fails_its_item_and_holds_nothing() {
        let reorder = Reorder::default();
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| {
            reorder.deposit(0, 0u64, |_, _| panic!("oops"))
        }));
        assert!(panicked.is_err());
        let mut handled = Vec::new();
        reorder.deposit(1, 1, |item, skip| {
            handled.push((item, skip));
            true
        });
        assert_eq!(handled, vec![(1, true)]);
    }
}
