//! Parallel computation of a job's batches, written in the order they were read.
//!
//! A stateless pipeline needs no order to compute, only to emit. The job hands consecutive
//! input batches of one input, as one piece of work, to its workers: threads of its own, one
//! per core, that run the pipeline and encode the results for the output log (the copy into
//! the frame layout and its checksum, most of an append's CPU). A worker that finishes a piece
//! does not wait for the earlier ones: it leaves its frames in a reorder buffer and takes the
//! next piece. Whoever leaves the piece that is next in read order writes it, and every piece
//! after it that is ready, in order; so the output is exactly what a sequential job would
//! write, and no worker sleeps while there is work. After a failed piece every later piece is
//! skipped: nothing is written past a batch that could not be.
//!
//! The outcomes come back to the job in order ([`Computation::next`]). The job keeps at most
//! [`slots`] pieces in flight (queued, computing, waiting in the buffer or being written), so
//! memory stays bounded and positions advance in order.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use kappa_sql::stream_plan::StatelessPlan;
use kappa_storage::{EncodedBatch, PendingAppend, ReadBatch, Stream, Tag};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// Workers of one job: one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16)
}

/// Pieces of one job in flight at once: two per worker keep every worker busy while one piece
/// waits for an earlier one to be written.
pub(crate) fn slots() -> usize {
    2 * workers()
}

/// The outcome of one piece: consecutive batches of one input.
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
    /// The encoded output of each batch with the input offset after it.
    frames: Result<Vec<(EncodedBatch, u64)>>,
}

#[derive(Default)]
struct Queue {
    work: VecDeque<Work>,
    closed: bool,
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
            let ok = handle(item, skip);
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
    output: Arc<Stream>,
    queue: Mutex<Queue>,
    work_ready: Condvar,
    order: Reorder<Ready>,
    outcomes: mpsc::Sender<Result<Computed>>,
}

/// Lock `m`, ignoring poisoning (no panic can happen while one of these locks is held).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// A worker: take pieces until the queue is closed and empty.
    fn work(&self) {
        loop {
            let work = {
                let mut queue = lock(&self.queue);
                loop {
                    if let Some(w) = queue.work.pop_front() {
                        break w;
                    }
                    if queue.closed {
                        return;
                    }
                    queue = self.work_ready.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
            };
            let ticket = work.ticket;
            let ready = self.compute(work);
            self.deposit(ticket, ready);
        }
    }

    /// Run the pipeline over a piece and encode its output.
    fn compute(&self, work: Work) -> Ready {
        let Work { input, producer, batches, .. } = work;
        let rows_in = batches.iter().map(|b| b.batch.num_rows() as u64).sum();
        let end = batches.last().map_or(0, |b| b.offset + b.batch.num_rows() as u64);
        let run = || -> Result<Vec<(EncodedBatch, u64)>> {
            let mut frames = Vec::with_capacity(batches.len());
            for b in batches {
                let seq = b.offset + b.batch.num_rows() as u64;
                if let Some(out) = self.plan.apply(input, b.batch)? {
                    frames.push((self.output.encode(&out)?, seq));
                }
            }
            Ok(frames)
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
            // Never full: the job keeps no more pieces in flight than the channel holds.
            let _ = self.outcomes.blocking_send(outcome);
            ok
        });
    }

    /// Write a piece's frames, tagged, in one run.
    fn write(&self, ready: Ready) -> Result<Computed> {
        let Ready { input, producer, end, rows_in, frames } = ready;
        let frames = frames?;
        let written = if frames.is_empty() {
            None
        } else {
            let rows = frames.iter().map(|(f, _)| f.num_rows() as u64).sum();
            let tagged =
                frames.into_iter().map(|(f, seq)| (f, Some(Tag { producer, seq }))).collect();
            Some((self.output.submit_encoded(tagged)?, rows))
        };
        Ok(Computed { input, end, rows_in, written })
    }
}

/// The batches of one job being computed, and its workers.
pub(crate) struct Computation {
    shared: Arc<Shared>,
    outcomes: mpsc::Receiver<Result<Computed>>,
    next_ticket: u64,
    in_flight: usize,
}

impl std::fmt::Debug for Computation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Computation").field("in_flight", &self.in_flight).finish()
    }
}

impl Computation {
    /// Start the workers of job `name`.
    ///
    /// # Errors
    /// When a worker thread cannot be started.
    pub fn new(name: &str, plan: Arc<StatelessPlan>, output: Arc<Stream>) -> Result<Computation> {
        let (tx, outcomes) = mpsc::channel(slots());
        let shared = Arc::new(Shared {
            plan,
            output,
            queue: Mutex::default(),
            work_ready: Condvar::new(),
            order: Reorder::default(),
            outcomes: tx,
        });
        for k in 0..workers() {
            let worker = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("kappa-job-{name}-{k}"))
                .spawn(move || worker.work())
                .map_err(|e| Error::Job(format!("cannot start a worker thread: {e}")))?;
        }
        Ok(Computation { shared, outcomes, next_ticket: 0, in_flight: 0 })
    }

    /// Pieces in flight.
    pub fn len(&self) -> usize {
        self.in_flight
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight == 0
    }

    /// Queue `batches`, consecutive batches of input `i`, as one piece; the frame of each is
    /// tagged `(producer, the input offset after it)`. The caller keeps at most [`slots`]
    /// pieces in flight.
    pub fn start(&mut self, i: usize, batches: Vec<ReadBatch>, producer: u32) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.in_flight += 1;
        lock(&self.shared.queue).work.push_back(Work { ticket, input: i, producer, batches });
        self.shared.work_ready.notify_one();
    }

    /// The oldest piece's outcome, once it is written; `None` when none is in flight.
    ///
    /// # Cancel safety
    /// Cancel safe: an outcome is taken only when it is returned.
    pub async fn next(&mut self) -> Option<Result<Computed>> {
        if self.in_flight == 0 {
            return None;
        }
        let outcome = self.outcomes.recv().await;
        self.in_flight -= 1;
        // The workers hold the sender as long as `self` lives.
        Some(outcome.unwrap_or_else(|| Err(Error::Job("the job's workers stopped".into()))))
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
    fn items_left_in_any_order_are_handled_in_ticket_order_one_at_a_time() {
        let reorder = Arc::new(Reorder::default());
        let handled = Arc::new(Mutex::new(Vec::new()));
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..64u64)
            .rev()
            .map(|t| {
                let (reorder, handled, inside) =
                    (Arc::clone(&reorder), Arc::clone(&handled), Arc::clone(&inside));
                std::thread::spawn(move || {
                    reorder.deposit(t, t, |item, skip| {
                        use std::sync::atomic::Ordering::SeqCst;
                        assert_eq!(inside.fetch_add(1, SeqCst), 0, "handled one at a time");
                        assert!(!skip);
                        handled.lock().unwrap().push(item);
                        std::thread::yield_now();
                        inside.fetch_sub(1, SeqCst);
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
        // Ticket 1 fails: 2 and 3, ready since, are skipped.
        reorder.deposit(1, 1, record);
        assert_eq!(*handled.borrow(), vec![(0, false), (1, false), (2, true), (3, true)]);
    }
}
