//! Exactly-once recovery: when jobs take checkpoints, and how they restart from one.
//!
//! **Barriers.** A job is one task that reads all its inputs through one queue and runs its
//! whole plan (kappa fuses a job's operators; there is no exchange between them). The point
//! between two batches of that loop is the barrier: every input is then at a known offset,
//! every operator's state covers exactly the rows before those offsets, and no other input
//! can move meanwhile, so the inputs are aligned without buffering. A checkpoint is taken at
//! such a point when [`Cadence::due`] says so: every `checkpoint_interval` (`SET
//! checkpoint_interval`, default 1 s; `'0'` takes them only when asked and when the job
//! stops), or at once when a reader waits for the job (a snapshot query, `kappa -f`), and
//! always when the job stops or finishes.
//!
//! **What is written** ([`crate::checkpoint`]): the operators' state as Arrow IPC files, then
//! one manifest with the input offsets, the end of every output log, the watermarks and the
//! state files. Outputs are durable before the manifest is written. Then the outputs the job
//! owns (a derived stream, its late-data streams) are **committed** up to the recorded ends:
//! they are derived logs ([`kappa_storage::StreamOptions::derived`]), and readers never see
//! rows past the commit, that is past the last checkpoint.
//!
//! **Restart** (engine open, `RESUME JOB`): the job loads its newest whole manifest, truncates
//! the outputs it owns back to the recorded ends (rows written after the checkpoint were never
//! committed, so never read), restores its operators' state and reads its inputs from the
//! recorded offsets. An `INSERT INTO` job writes into a stream that others append to, which
//! cannot be truncated: its output frames carry producer tags, and the restarted job skips
//! what the tags beyond the recorded end show it wrote (an idempotent producer, as Kafka's).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use kappa_storage::Stream;
use tokio::sync::Notify;

use crate::checkpoint::{Checkpoints, Manifest};
use crate::error::{Error, Result};

/// The default `checkpoint_interval`.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The engine's `checkpoint_interval`, shared by its jobs (read at every wait).
#[derive(Debug, Clone)]
pub(crate) struct Interval(Arc<AtomicU64>);

impl Default for Interval {
    fn default() -> Interval {
        Interval(Arc::new(AtomicU64::new(DEFAULT_INTERVAL.as_millis() as u64)))
    }
}

impl Interval {
    /// The interval; `None`: only when asked and at a stop.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Set it (`None`, or zero: only when asked and at a stop).
    pub(crate) fn set(&self, every: Option<Duration>) {
        let ms = every.map_or(0, |d| d.as_millis().clamp(1, u128::from(u64::MAX)) as u64);
        self.0.store(ms, Ordering::Relaxed);
    }
}

/// When a job takes its next checkpoint.
#[derive(Debug)]
pub(crate) struct Cadence {
    interval: Interval,
    last: Instant,
    request: Arc<Notify>,
    /// The least time between two checkpoints on the interval: nine times the last one's
    /// length, so that checkpoints of a large state take at most a tenth of the job's time.
    pause: Duration,
}

impl Cadence {
    /// A cadence on `interval`, also woken by `request`.
    pub(crate) fn new(interval: Interval, request: Arc<Notify>) -> Cadence {
        Cadence { interval, last: Instant::now(), request, pause: Duration::ZERO }
    }

    /// Wait until a checkpoint is due: the interval passed since the last one, or a reader
    /// asked for one.
    ///
    /// # Cancel safety
    /// Cancel safe: a request not returned stays pending (Tokio's `Notify` keeps the permit).
    pub(crate) async fn due(&self) {
        loop {
            let every = self.interval.get().map(|e| e.max(self.pause));
            // (With no interval, the setting is looked at again every second.)
            let wait =
                every.map_or(Duration::from_secs(1), |e| e.saturating_sub(self.last.elapsed()));
            tokio::select! {
                _ = self.request.notified() => return,
                _ = tokio::time::sleep(wait) => {
                    if every.is_some_and(|e| self.last.elapsed() >= e) {
                        return;
                    }
                }
            }
        }
    }

    /// A checkpoint was taken (or found not needed) now.
    pub(crate) fn taken(&mut self) {
        self.last = Instant::now();
    }

    /// A checkpoint just ended that took `length`: the next one on the interval comes at
    /// least nine times that later (a reader's request still gets one at once).
    pub(crate) fn took(&mut self, length: Duration) {
        self.last = Instant::now();
        self.pause = length.saturating_mul(9);
    }
}

/// What a job publishes about its last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Its epoch.
    pub epoch: u64,
    /// When it was taken (milliseconds since 1970).
    pub taken_ms: i64,
    /// The input positions it covers: readers of the job's outputs see every row they give.
    pub positions: Vec<u64>,
}

impl Taken {
    pub(crate) fn of(m: &Manifest) -> Taken {
        Taken {
            epoch: m.epoch,
            taken_ms: m.taken_ms,
            positions: m.inputs.iter().map(|i| i.offset).collect(),
        }
    }
}

/// Milliseconds since 1970, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn damaged(checkpoints: &Checkpoints, job: &str, message: String) -> Error {
    Error::Catalog { path: checkpoints.dir().join(format!("(checkpoint of job {job})")), message }
}

/// The newest whole checkpoint of job `job`, checked against its inputs and outputs.
///
/// # Errors
/// When the checkpoint names other streams than the job now reads and writes (its plan
/// changed), or the metadata cannot be read.
pub(crate) fn last(
    checkpoints: &Checkpoints,
    job: &str,
    inputs: &[Arc<Stream>],
    outputs: &[&Arc<Stream>],
) -> Result<Option<Manifest>> {
    let Some(m) = checkpoints.latest()? else { return Ok(None) };
    let recorded: Vec<&str> = m.inputs.iter().map(|i| i.stream.as_str()).collect();
    let now: Vec<&str> = inputs.iter().map(|s| s.name()).collect();
    if recorded != now {
        return Err(damaged(
            checkpoints,
            job,
            format!("its checkpoint read {recorded:?}, and the job is now planned to read {now:?}"),
        ));
    }
    let recorded: Vec<&str> = m.outputs.iter().map(|o| o.stream.as_str()).collect();
    let now: Vec<&str> = outputs.iter().map(|s| s.name()).collect();
    // (A build that gave the job fewer outputs: late-data streams added since, new and empty,
    // start at their beginning.)
    let added = now.len() > recorded.len()
        && now.starts_with(&recorded)
        && outputs[recorded.len()..].iter().all(|s| s.end_offset() == 0);
    if recorded != now && !added {
        return Err(damaged(
            checkpoints,
            job,
            format!("its checkpoint wrote {recorded:?}, and the job now writes {now:?}"),
        ));
    }
    let mut m = m;
    for s in &outputs[m.outputs.len()..] {
        m.outputs.push(crate::checkpoint::OutputEnd { stream: s.name().to_string(), end: 0 });
    }
    Ok(Some(m))
}

/// Roll a log the job owns back to the end a checkpoint recorded, and commit it there (a
/// crash may have come between the manifest and the commit). Rows past the end were never
/// committed, so never read. (Rows committed past it exist only when the newest checkpoint
/// was damaged and an older one is used: they stay, and the job skips them by their tags.)
///
/// # Errors
/// When the log ends before it (rows a checkpoint covered are gone), or cannot be truncated
/// or committed.
pub(crate) fn roll_back(stream: &Stream, end: u64) -> Result<()> {
    let now = stream.end_offset();
    if now < end {
        return Err(Error::plan(
            format!(
                "stream {} ends at offset {now}, but the job's last checkpoint recorded {end} rows written",
                stream.name()
            ),
            None,
        ));
    }
    let keep = stream.info().committed.map_or(end, |c| c.max(end)).min(now);
    if now > keep {
        stream.truncate(keep)?;
    }
    recommit(stream, keep)
}

/// Commit a log the job owns up to `end` (recorded by a checkpoint) if it is not yet.
///
/// # Errors
/// When the commit cannot be written.
pub(crate) fn recommit(stream: &Stream, end: u64) -> Result<()> {
    let end = end.min(stream.end_offset());
    if stream.info().committed.is_none_or(|c| c < end) {
        stream.commit(end)?;
    }
    Ok(())
}

/// Check that a job can resume its inputs at `positions`: a relaxed input that lost its
/// unsynced tail to a power loss resumes at its end; a position before the retained rows is
/// an error.
///
/// # Errors
/// Naming the stream and what retention removed.
pub(crate) fn check_positions(
    job: &str,
    inputs: &[Arc<Stream>],
    positions: &mut [u64],
) -> Result<()> {
    for (p, s) in positions.iter_mut().zip(inputs) {
        *p = (*p).min(s.end_offset());
        let start = s.info().start;
        if *p < start {
            return Err(Error::plan(
                format!(
                    "job {job} must resume stream {} at offset {p}, but retention removed the rows before {start}",
                    s.name()
                ),
                None,
            ));
        }
    }
    Ok(())
}

/// Make the inputs' rows a checkpoint covers durable: a relaxed input (acknowledged before
/// its sync) could otherwise lose, to a power loss, rows whose output the checkpoint commits.
/// A durable input's readable rows are synced already.
///
/// # Errors
/// When a sync fails.
pub(crate) fn sync_inputs(inputs: &[Arc<Stream>]) -> Result<()> {
    for s in inputs {
        if s.options().durability == kappa_storage::Durability::Relaxed {
            s.sync()?;
        }
    }
    Ok(())
}

/// Whether every input is read to what it lets readers read.
pub(crate) fn caught_up(inputs: &[Arc<Stream>], positions: &[u64]) -> bool {
    inputs.iter().zip(positions).all(|(s, p)| *p >= s.readable_end())
}

/// Since when a job is behind its inputs, given whether it is caught up now and since when it
/// was behind before.
pub(crate) fn behind_since(caught_up: bool, before: Option<Instant>) -> Option<Instant> {
    if caught_up { None } else { Some(before.unwrap_or_else(Instant::now)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{InputPosition, Manifest, OutputEnd};
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use kappa_storage::{Store, StoreOptions, StreamOptions};

    #[test]
    fn a_checkpoint_without_outputs_added_since_is_used_while_they_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let stream = |n: &str| {
            store.create_stream(n, Arc::clone(&schema), StreamOptions::default()).unwrap()
        };
        let (input, out, late) = (stream("in"), stream("out"), stream("j__late"));
        let c = Checkpoints::new(Arc::clone(&store), 3);
        let m = Manifest {
            format: crate::checkpoint::FORMAT,
            job: 3,
            epoch: 1,
            inputs: vec![InputPosition { stream: "in".into(), offset: 0 }],
            outputs: vec![OutputEnd { stream: "out".into(), end: 0 }],
            watermarks: vec![None],
            state: Vec::new(),
            taken_ms: 0,
        };
        c.commit(&m).unwrap();
        let got = last(&c, "j", &[Arc::clone(&input)], &[&out, &late]).unwrap().unwrap();
        let ends: Vec<(&str, u64)> =
            got.outputs.iter().map(|o| (o.stream.as_str(), o.end)).collect();
        assert_eq!(ends, [("out", 0), ("j__late", 0)]);
        // Not once the added one holds rows (they would be written again), nor for others.
        let rows =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![1]))])
                .unwrap();
        late.append(&rows).unwrap();
        assert!(last(&c, "j", &[Arc::clone(&input)], &[&out, &late]).is_err());
        assert!(last(&c, "j", &[input], &[&late]).is_err());
    }
}
