//! Jobs of windowed aggregations (`CREATE STREAM d AS SELECT ... FROM TUMBLE(...) GROUP BY
//! window_start, window_end, ...`, and `INSERT INTO ... SELECT` of one).
//!
//! One task reads the input streams (several under UNION ALL), advances each input's watermark
//! with its batches (the plan's is the minimum; an input without data for its stream's
//! `idle_timeout` stops holding it back; a sealed input is `+inf`), runs the pipelines and the
//! aggregation ([`kappa_sql::window_agg`]) and appends each window it closes as one frame,
//! tagged with the window's end. Windows close in order of end, so the highest tag in the
//! output says which windows are written. (`EMIT CHANGES`: tagged with the rows read so far.)
//!
//! The rows it leaves out as late are read again whole from the input (by offset; late rows
//! are rare) and appended to the input's late-data stream (`<job>__late`, `<job>__late2`, ...),
//! tagged with the input position after them.
//!
//! Checkpoints ([`crate::recovery`]) are taken between two wakes: the run's state (open
//! windows, frozen panes, watermarks; [`WindowedRun::snapshot`]) as state files, the input
//! positions, the ends of the output and the late-data streams; then the streams the job owns
//! are committed. A restart restores the state, truncates the owned streams to the recorded
//! ends, and reads on from the recorded positions; into a stream it does not own (`INSERT
//! INTO`) it skips the windows its tags show written.
//!
//! A job without a checkpoint (made by a version before checkpoints) replays its inputs from
//! the first retained row, writing only what ends after the highest tag in its output (and the
//! late rows after the highest tag of its late streams); its first checkpoint ends that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_sql::windowed_plan::{EmitMode, RunSnapshot, StatePart, WindowedPlan, WindowedRun};
use kappa_storage::{PendingAppend, Store, Stream, Tag};
use tokio::sync::{Notify, watch};

use crate::catalog::JobKind;
use crate::checkpoint::{Checkpoints, Manifest};
use crate::error::{Error, Result};
use crate::job::{InputMsg, JobHandle, Progress, Status, spawn_inputs};
use crate::recovery::{self, Cadence, Taken};

/// Everything a windowed job needs to run.
pub(crate) struct WindowJobSpec {
    pub name: String,
    pub id: u32,
    pub kind: JobKind,
    pub plan: WindowedPlan,
    /// The input streams, in the order of the plan's inputs.
    pub inputs: Vec<Arc<Stream>>,
    /// Where the inputs start without a checkpoint (`None`: their first retained rows).
    pub start: Option<Vec<u64>>,
    /// Each input stream's `idle_timeout`.
    pub idle: Vec<Option<Duration>>,
    /// The output log; `None` for a blackhole sink.
    pub output: Option<Arc<Stream>>,
    /// Per input, the late-data stream: the input rows the job left out as late.
    pub late: Vec<Arc<Stream>>,
    /// A materialized view's table: its rows are published at every checkpoint.
    pub view: Option<Arc<crate::view::ViewState>>,
    pub store: Arc<Store>,
    /// The engine's `checkpoint_interval`.
    pub interval: recovery::Interval,
    /// `state_ttl`: how long state without rows is kept.
    pub ttl: Option<Duration>,
    /// Called once when the job finishes or fails.
    pub on_end: Box<dyn FnOnce(&Status) + Send + Sync>,
}

impl WindowJobSpec {
    /// Whether the job owns `stream` (its late streams; its output, for a derived stream):
    /// checkpoints commit it, a restart truncates it.
    fn owns(&self, stream: &Arc<Stream>) -> bool {
        let output = self.output.as_ref().is_some_and(|o| Arc::ptr_eq(o, stream));
        (output && self.kind.owns_output()) || self.late.iter().any(|l| Arc::ptr_eq(l, stream))
    }
}

/// A window end as an increasing tag position (order kept for ends before 1970 too).
fn seq_of(end: i64) -> u64 {
    (end as u64) ^ (1 << 63)
}

/// The window end a tag position stands for ([`seq_of`]'s inverse).
fn end_of(seq: u64) -> i64 {
    (seq ^ (1 << 63)) as i64
}

/// The producer of input `i`'s late rows.
fn late_producer(producer: u32, i: usize) -> u32 {
    producer | (1 + i as u32).min(255)
}

/// Start a windowed job: from its last checkpoint, or by replaying its inputs.
///
/// # Errors
/// When the checkpoint or the outputs' tags cannot be read, the state cannot be restored, or
/// the aggregation cannot be set up.
pub(crate) fn start(spec: WindowJobSpec) -> Result<JobHandle> {
    let checkpoints = Checkpoints::new(Arc::clone(&spec.store), spec.id);
    let epoch = checkpoints.last_epoch()?;
    let mut outputs: Vec<&Arc<Stream>> = spec.output.iter().collect();
    outputs.extend(spec.late.iter());
    let manifest = recovery::last(&checkpoints, &spec.name, &spec.inputs, &outputs)?;
    let (run, positions, written) = match &manifest {
        // (A manifest without state: written by a build that could not save this run's.)
        Some(m) if !m.state.is_empty() => restore(&spec, &checkpoints, m)?,
        _ => replay(&spec)?,
    };
    if let (Some(view), Some(m)) = (&spec.view, &manifest)
        && !m.state.is_empty()
        && let Some(rows) = run.current_rows()?
    {
        // The rows as of the checkpoint restored, until the next.
        view.publish(rows, m.outputs.first().map_or(0, |o| o.end));
    }
    let last = manifest.map(|m| Taken { positions: positions.clone(), ..Taken::of(&m) });
    let mut start = Progress::start(positions.clone());
    start.checkpoint = last.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (progress_tx, progress_rx) = watch::channel(start);
    let request = Arc::new(Notify::new());
    let ckpt = Checkpointer {
        checkpoints,
        epoch,
        cadence: Cadence::new(spec.interval.clone(), Arc::clone(&request)),
        last,
        dirty: false,
    };
    let monitor = progress_tx.clone();
    let task = tokio::spawn(async move {
        use futures::FutureExt;
        let job = run_job(spec, run, positions, written, ckpt, stop_rx, progress_tx);
        if let Err(panic) = std::panic::AssertUnwindSafe(job).catch_unwind().await {
            let what = crate::compute::panic_text(panic.as_ref());
            monitor.send_modify(|p| p.status = Status::Failed(format!("the job panicked: {what}")));
        }
    });
    Ok(JobHandle { stop: stop_tx, request, progress: progress_rx, task })
}

/// A run restored from checkpoint `m`: its state, the input positions, and what was written
/// after it (the owned streams are truncated to the recorded ends; an `INSERT INTO` output's
/// tags beyond its end name the windows written).
fn restore(
    spec: &WindowJobSpec,
    checkpoints: &Checkpoints,
    m: &Manifest,
) -> Result<(WindowedRun, Vec<u64>, Written)> {
    let run = restore_run(spec.plan.clone(), checkpoints, m)?;
    // The owned streams back to the recorded ends; what is left past them was written by this
    // job after the checkpoint (into an `INSERT INTO` output, or committed past an older
    // checkpoint): skipped by its tags.
    let producer = spec.id << 8;
    let mut windows = None;
    let mut late = vec![None; spec.late.len()];
    for_outputs(spec, m, |stream, end| {
        if spec.owns(stream) {
            recovery::roll_back(stream, end)?;
        }
        let tags = stream.producer_positions(end)?;
        match spec.late.iter().position(|l| Arc::ptr_eq(l, stream)) {
            Some(i) => late[i] = tags.get(&late_producer(producer, i)).copied(),
            None => windows = tags.get(&producer).copied(),
        }
        Ok(())
    })?;
    let mut positions: Vec<u64> = m.inputs.iter().map(|i| i.offset).collect();
    recovery::check_positions(&spec.name, &spec.inputs, &mut positions)?;
    Ok((run, positions, Written { windows, late }))
}

/// A run of `plan` with the state checkpoint `m` saved.
///
/// # Errors
/// When a state file cannot be read, or the state is not of this plan.
pub(crate) fn restore_run(
    plan: WindowedPlan,
    checkpoints: &Checkpoints,
    m: &Manifest,
) -> Result<WindowedRun> {
    let mut parts = Vec::with_capacity(m.state.len());
    for (name, file) in &m.state {
        let (schema, batches) = checkpoints.read_state(file)?;
        parts.push(StatePart { name: name.clone(), schema, batches });
    }
    Ok(WindowedRun::restore(plan, &RunSnapshot::from_parts(&parts)?)?)
}

/// Call `f` with each output stream of the job (its output, if not a sink, then its late
/// streams) and the end checkpoint `m` recorded for it.
fn for_outputs(
    spec: &WindowJobSpec,
    m: &Manifest,
    mut f: impl FnMut(&Arc<Stream>, u64) -> Result<()>,
) -> Result<()> {
    let mut ends = m.outputs.iter().map(|o| o.end);
    for stream in spec.output.iter().chain(&spec.late) {
        let Some(end) = ends.next() else {
            return Err(Error::plan(
                format!("the checkpoint of job {} records no end for {}", spec.name, stream.name()),
                None,
            ));
        };
        f(stream, end)?;
    }
    Ok(())
}

/// A run from its inputs' first retained rows (a job that never took a checkpoint). A stream
/// it owns that readers see up to a committed offset (a derived log) is truncated there: the
/// rest was never read, and is written again. Otherwise (an `INSERT INTO` output, or a stream
/// made before checkpoints) the run skips what the stream's tags show was written.
fn replay(spec: &WindowJobSpec) -> Result<(WindowedRun, Vec<u64>, Written)> {
    let producer = spec.id << 8;
    let written_by = |s: &Arc<Stream>, tag: u32| -> Result<Option<u64>> {
        if spec.owns(s)
            && let Some(committed) = s.info().committed
        {
            recovery::roll_back(s, committed)?;
            return Ok(None);
        }
        Ok(s.producer_positions(0)?.get(&tag).copied())
    };
    // Windows ending at or before this were written by an earlier run.
    let windows = match &spec.output {
        Some(o) => written_by(o, producer)?,
        None => None,
    };
    // Late rows up to these input positions were written by an earlier run.
    let mut late = Vec::with_capacity(spec.late.len());
    for (i, stream) in spec.late.iter().enumerate() {
        late.push(written_by(stream, late_producer(producer, i))?);
    }
    let mut run = WindowedRun::new(spec.plan.clone())?;
    if let Some(w) = windows
        && spec.plan.emit == EmitMode::Final
    {
        run.skip_through(end_of(w));
    }
    let mut positions = match &spec.start {
        Some(start) => start.clone(),
        None => spec.inputs.iter().map(|s| s.info().start).collect(),
    };
    recovery::check_positions(&spec.name, &spec.inputs, &mut positions)?;
    Ok((run, positions, Written { windows, late }))
}

/// A windowed job's checkpoints.
struct Checkpointer {
    checkpoints: Checkpoints,
    /// The last epoch used.
    epoch: u64,
    cadence: Cadence,
    last: Option<Taken>,
    /// Whether anything happened since the last checkpoint.
    dirty: bool,
}

impl Checkpointer {
    /// Take a checkpoint (unless nothing happened since the last). Blocks.
    ///
    /// # Errors
    /// When the state cannot be taken or written, an output synced or committed, or the
    /// manifest written (the previous checkpoint then stays the last).
    fn take(
        &mut self,
        spec: &WindowJobSpec,
        run: &mut WindowedRun,
        positions: &[u64],
        progress: &watch::Sender<Progress>,
    ) -> Result<()> {
        self.cadence.taken();
        if !self.dirty && self.last.is_some() {
            return Ok(());
        }
        let started = Instant::now();
        let epoch = self.epoch + 1;
        let mut state = Vec::new();
        for part in run.snapshot()?.to_parts()? {
            let file =
                self.checkpoints.write_state(epoch, &part.name, &part.schema, &part.batches)?;
            state.push((part.name, file));
        }
        let mut outputs = Vec::new();
        for o in spec.output.iter().chain(&spec.late) {
            // Every append was waited for; a relaxed stream is synced here.
            o.sync()?;
            outputs.push((o.as_ref(), o.end_offset()));
        }
        recovery::sync_inputs(&spec.inputs)?;
        let watermarks =
            run.input_watermarks().into_iter().map(|w| (w != i64::MIN).then_some(w)).collect();
        let manifest =
            Manifest::new(spec.id, epoch, &spec.inputs, positions, outputs, watermarks, state);
        self.checkpoints.commit(&manifest)?;
        self.epoch = epoch;
        for_outputs(spec, &manifest, |stream, end| {
            if spec.owns(stream) {
                stream.commit(end)?;
            }
            Ok(())
        })?;
        if let Some(view) = &spec.view
            && let Some(rows) = run.current_rows()?
        {
            view.publish(rows, manifest.outputs.first().map_or(0, |o| o.end));
        }
        let taken = Taken::of(&manifest);
        self.last = Some(taken.clone());
        self.dirty = false;
        self.cadence.took(started.elapsed());
        progress.send_modify(|p| {
            p.checkpoint = Some(taken);
            p.uncommitted = false;
        });
        Ok(())
    }
}

/// Rows `positions` of the `n` rows of `input` from offset `from`, with all their columns.
fn rows_at(
    input: &Stream,
    from: u64,
    n: u64,
    positions: &[u32],
) -> Result<datafusion::arrow::array::RecordBatch> {
    let mut reader = input.reader(kappa_storage::ReadFrom::Offset(from))?;
    let mut batches = Vec::new();
    let mut read = 0;
    while read < n {
        let Some(b) = reader.next_batch()? else {
            return Err(Error::plan(
                format!("rows {from}..{} of stream {} are not readable", from + n, input.name()),
                None,
            ));
        };
        read += b.batch.num_rows() as u64;
        batches.push(b.batch);
    }
    let arrow = |e: datafusion::arrow::error::ArrowError| Error::plan(e.to_string(), None);
    let all =
        datafusion::arrow::compute::concat_batches(input.schema(), &batches).map_err(arrow)?;
    let idx = datafusion::arrow::array::UInt32Array::from(positions.to_vec());
    let columns = all
        .columns()
        .iter()
        .map(|c| datafusion::arrow::compute::take(c, &idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(arrow)?;
    datafusion::arrow::array::RecordBatch::try_new(Arc::clone(input.schema()), columns)
        .map_err(arrow)
}

/// What an earlier run wrote: the highest window tag, per input the position of its last late
/// rows.
struct Written {
    windows: Option<u64>,
    late: Vec<Option<u64>>,
}

/// A timer that fires every `every`, or never.
fn timer(every: Option<Duration>) -> tokio::time::Interval {
    let mut t = tokio::time::interval(every.unwrap_or(Duration::MAX / 4));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t.reset();
    t
}

/// What woke a windowed job or push query.
pub(crate) enum Wake {
    /// A message of the inputs (`None`: they stopped).
    Msg(Option<InputMsg>),
    /// Time for `EMIT CHANGES EVERY`.
    Emit,
    /// Time to look for idle inputs.
    Idle,
    /// Time to forget state past `state_ttl`.
    Expire,
    /// Write the changes the run deferred (before a checkpoint; not a timer's).
    Flush,
}

/// What the loop of a windowed job does after a wake.
enum Then {
    Go,
    Checkpoint,
    Stop,
}

/// The processing-time timers of a windowed run: `EMIT CHANGES EVERY` and idle inputs.
pub(crate) struct Timers {
    every: Option<Duration>,
    emit: tokio::time::Interval,
    idle: IdleInputs,
    check: tokio::time::Interval,
    /// The inputs that ended (sealed and read).
    ended: Vec<bool>,
    /// `state_ttl`.
    ttl: Option<Duration>,
    expire: tokio::time::Interval,
}

impl Timers {
    /// The timers of a plan emitting `emit` over inputs with these idle timeouts, whose state
    /// expires after `ttl` without rows (`state_ttl`).
    pub(crate) fn new(
        emit: EmitMode,
        timeouts: Vec<Option<Duration>>,
        ttl: Option<Duration>,
    ) -> Timers {
        let every = match emit {
            EmitMode::Changes { every_ms: Some(ms) } => {
                Some(Duration::from_millis(ms.max(1) as u64))
            }
            _ => None,
        };
        let ended = vec![false; timeouts.len()];
        let idle = IdleInputs::new(timeouts);
        let check = timer(idle.check);
        // (State is looked at for expiry four times per TTL, at most every 100 ms, at least
        // every minute.)
        let sweep = ttl.map(|t| (t / 4).clamp(Duration::from_millis(100), Duration::from_secs(60)));
        Timers { every, emit: timer(every), idle, check, ended, ttl, expire: timer(sweep) }
    }

    /// Input `i` ended: whether all have now.
    pub(crate) fn end(&mut self, i: usize) -> bool {
        if let Some(e) = self.ended.get_mut(i) {
            *e = true;
        }
        self.ended.iter().all(|e| *e)
    }

    /// The next message of the inputs, or a timer's turn.
    ///
    /// # Cancel safety
    /// Cancel safe: a message or a tick not returned is not lost.
    pub(crate) async fn next(&mut self, rx: &mut tokio::sync::mpsc::Receiver<InputMsg>) -> Wake {
        tokio::select! {
            m = rx.recv() => Wake::Msg(m),
            _ = self.emit.tick(), if self.every.is_some() => Wake::Emit,
            _ = self.check.tick(), if self.idle.check.is_some() => Wake::Idle,
            _ = self.expire.tick(), if self.ttl.is_some() => Wake::Expire,
        }
    }

    /// Input `i` gave data.
    pub(crate) fn data(&mut self, i: usize) {
        self.idle.data(i);
    }

    /// `state_ttl`'s turn: the rows of the state that expired leave the output.
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub(crate) fn expire(
        &self,
        run: &mut WindowedRun,
    ) -> Result<Vec<(i64, datafusion::arrow::array::RecordBatch)>> {
        match self.ttl {
            Some(ttl) => {
                let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                Ok(run.expire(kappa_sql::updating_agg::now_ms(), ms)?)
            }
            None => Ok(Vec::new()),
        }
    }

    /// A timer's turn: the open windows' changes (`EMIT CHANGES EVERY`), or the windows that
    /// inputs idle since (and not ended) let close.
    ///
    /// # Errors
    /// As [`WindowedRun::push`].
    pub(crate) fn fire(
        &mut self,
        emit: bool,
        run: &mut WindowedRun,
    ) -> Result<Vec<(i64, datafusion::arrow::array::RecordBatch)>> {
        if emit {
            return Ok(run.tick()?);
        }
        let mut closed = Vec::new();
        for i in self.idle.newly_idle(&self.ended) {
            closed.extend(run.set_idle(i)?);
        }
        Ok(closed)
    }
}

/// Whether a wake read a batch.
enum WakeKind {
    Batch,
    Other,
}

/// The inputs' idle timeouts: which inputs had no data for theirs.
struct IdleInputs {
    timeouts: Vec<Option<Duration>>,
    last_data: Vec<Instant>,
    idle: Vec<bool>,
    /// How often to look: a quarter of the shortest timeout.
    pub check: Option<Duration>,
}

impl IdleInputs {
    pub(crate) fn new(timeouts: Vec<Option<Duration>>) -> IdleInputs {
        let check = timeouts.iter().flatten().min().map(|d| (*d / 4).max(Duration::from_millis(5)));
        let n = timeouts.len();
        IdleInputs { timeouts, last_data: vec![Instant::now(); n], idle: vec![false; n], check }
    }

    /// Input `i` gave data.
    pub(crate) fn data(&mut self, i: usize) {
        self.last_data[i] = Instant::now();
        self.idle[i] = false;
    }

    /// The inputs (not ended) that became idle since the last call.
    pub(crate) fn newly_idle(&mut self, ended: &[bool]) -> Vec<usize> {
        let mut out = Vec::new();
        for i in 0..self.timeouts.len() {
            if let Some(t) = self.timeouts[i]
                && !self.idle[i]
                && !ended.get(i).copied().unwrap_or(false)
                && self.last_data[i].elapsed() >= t
            {
                self.idle[i] = true;
                out.push(i);
            }
        }
        out
    }
}

/// What the loop of a windowed job does next.
enum Step {
    Stop,
    Checkpoint,
    Wake(Wake),
}

async fn run_job(
    spec: WindowJobSpec,
    mut run: WindowedRun,
    mut positions: Vec<u64>,
    written: Written,
    mut ckpt: Checkpointer,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<Progress>,
) {
    let producer = spec.id << 8;
    let plan = &spec.plan;
    let inputs: Vec<_> = spec
        .inputs
        .iter()
        .zip(&plan.inputs)
        .zip(&positions)
        .map(|((s, i), p)| (Arc::clone(s), i.pipeline.projection.clone(), *p))
        .collect();
    let (mut rx, readers) = spawn_inputs(&inputs, &stop);
    let (mut rows_in, mut rows_out) = (0u64, 0u64);
    // EMIT CHANGES: output tagged with the rows read so far (a restart writes only the
    // changes after the highest); EVERY: the open windows' changes at that interval.
    let changes = plan.emit != EmitMode::Final;
    let mut timers = Timers::new(plan.emit, spec.idle.clone(), spec.ttl);
    // Without windows, a job's changes go out at its checkpoints (readers see its log only
    // then anyway): a group updated by many batches in between gives one -U/+U.
    if plan.windows().is_none() {
        run.defer_changes();
    }
    let mut wakes = 0u64;
    // A first turn emits what the run holds before any input: the one row of an aggregation
    // without GROUP BY.
    let mut first = true;
    let outcome: Result<Status> = async {
        loop {
            // (Not biased: with a backlog always ready, the timers must still get their turn.)
            let step = if std::mem::take(&mut first) {
                Step::Wake(Wake::Emit)
            } else {
                tokio::select! {
                    _ = stop.changed() => Step::Stop,
                    _ = ckpt.cadence.due() => Step::Checkpoint,
                    w = timers.next(&mut rx) => Step::Wake(w),
                }
            };
            // A checkpoint (or a stop) first writes the changes the run deferred.
            let (wake, then) = match step {
                Step::Wake(Wake::Msg(None)) | Step::Stop => (Wake::Flush, Then::Stop),
                Step::Checkpoint => (Wake::Flush, Then::Checkpoint),
                Step::Wake(w) => (w, Then::Go),
            };
            // (A timer's wake that changes nothing leaves the checkpoint as it was.)
            if matches!(wake, Wake::Msg(_)) {
                ckpt.dirty = true;
            }
            let mut done = false;
            let wake_kind = match &wake {
                Wake::Msg(Some(InputMsg::Batch(..))) => WakeKind::Batch,
                _ => WakeKind::Other,
            };
            let mut closed = match wake {
                Wake::Flush => run.flush()?,
                Wake::Emit => timers.fire(true, &mut run)?,
                Wake::Idle => timers.fire(false, &mut run)?,
                Wake::Expire => timers.expire(&mut run)?,
                Wake::Msg(Some(InputMsg::Batch(i, b))) => {
                    let n = b.batch.num_rows() as u64;
                    rows_in += n;
                    timers.data(i);
                    let closed = run.push(i, b.batch)?;
                    // The late rows, whole, tagged with the input position after them.
                    let pos = b.offset + n;
                    positions[i] = pos;
                    // (Only those past what an earlier run wrote, which may end inside the batch.)
                    let from = written
                        .late
                        .get(i)
                        .copied()
                        .flatten()
                        .map_or(0, |w| w.saturating_sub(b.offset));
                    let late: Vec<u32> = run
                        .late_positions()
                        .iter()
                        .copied()
                        .filter(|p| u64::from(*p) >= from)
                        .collect();
                    if !late.is_empty() {
                        let rows = tokio::task::block_in_place(|| {
                            rows_at(&spec.inputs[i], b.offset, n, &late)
                        })?;
                        let tag = Tag { producer: late_producer(producer, i), seq: pos };
                        let Some(late_stream) = spec.late.get(i) else {
                            return Err(Error::Job(format!(
                                "job {}: {} late rows of input {} and no late-data stream to keep them",
                                spec.name,
                                late.len(),
                                i + 1
                            )));
                        };
                        let pending =
                            tokio::task::block_in_place(|| late_stream.submit_tagged(&rows, tag))?;
                        tokio::task::block_in_place(|| pending.wait())?;
                    }
                    closed
                }
                Wake::Msg(Some(InputMsg::End(i))) => {
                    done = timers.end(i);
                    run.end_input(i)?
                }
                Wake::Msg(Some(InputMsg::Failed(e))) => return Err(e.into()),
                Wake::Msg(None) => return Ok(Status::Stopped),
            };
            if done {
                closed.extend(run.flush()?);
            }
            let read: u64 = positions.iter().sum();
            // EMIT CHANGES: one frame per wake (so that it is written whole or not at all),
            // tagged with the rows read and the wakes since the last batch.
            let closed = if changes && closed.len() > 1 {
                let schema = closed[0].1.schema();
                let batches: Vec<_> = closed.iter().map(|(_, b)| b.clone()).collect();
                let all = datafusion::arrow::compute::concat_batches(&schema, &batches)
                    .map_err(|e| Error::plan(e.to_string(), None))?;
                vec![(0, all)]
            } else {
                closed
            };
            if changes {
                wakes = if matches!(wake_kind, WakeKind::Batch) { 0 } else { wakes + 1 };
            }
            ckpt.dirty |= !closed.is_empty();
            let written_before = rows_out;
            let mut last: Option<PendingAppend> = None;
            for (end, out) in closed {
                let seq = match (changes, done) {
                    (false, _) => seq_of(end),
                    (true, false) => (read << 16) | wakes.min(0xFFFF),
                    (true, true) => ((read + 1) << 16) | wakes.min(0xFFFF),
                };
                if written.windows.is_some_and(|w| seq <= w) {
                    // Written by an earlier run.
                    continue;
                }
                rows_out += out.num_rows() as u64;
                if let Some(o) = &spec.output {
                    let o = Arc::clone(o);
                    let pending = tokio::task::block_in_place(|| {
                        o.submit_tagged(&out, Tag { producer, seq })
                    })?;
                    last = Some(pending);
                }
            }
            // Appends are durable in order: waiting for the last waits for all.
            if let Some(p) = last {
                tokio::task::block_in_place(|| p.wait())?;
            }
            let caught_up = recovery::caught_up(&spec.inputs, &positions);
            progress.send_modify(|p| {
                p.positions = positions.clone();
                p.rows_in = rows_in;
                p.rows_out = rows_out;
                p.late_rows = run.late_rows();
                p.watermark = (run.watermark() != i64::MIN).then_some(run.watermark());
                p.inputs = run.input_states();
                p.windows = run.window_status();
                p.behind_since = recovery::behind_since(caught_up, p.behind_since);
                p.uncommitted |= rows_out > written_before;
            });
            match then {
                Then::Stop => {
                    tokio::task::block_in_place(|| {
                        ckpt.take(&spec, &mut run, &positions, &progress)
                    })?;
                    return Ok(Status::Stopped);
                }
                Then::Checkpoint => {
                    tokio::task::block_in_place(|| {
                        ckpt.take(&spec, &mut run, &positions, &progress)
                    })?;
                    continue;
                }
                Then::Go => {}
            }
            if done {
                // Every input ended: the positions are their ends.
                positions = spec.inputs.iter().map(|s| s.end_offset()).collect();
                tokio::task::block_in_place(|| ckpt.take(&spec, &mut run, &positions, &progress))?;
                return Ok(Status::Finished);
            }
        }
    }
    .await;
    for t in readers {
        t.abort();
    }
    let status = match outcome {
        // No late rows can come any more.
        Ok(Status::Finished) => match seal_all(&spec) {
            Err(e) => Status::Failed(e.to_string()),
            Ok(()) => Status::Finished,
        },
        Ok(s) => s,
        Err(e) => Status::Failed(Error::to_string(&e)),
    };
    if status == Status::Finished {
        // Reached the end: the positions are the inputs' ends.
        let ends = spec.inputs.iter().map(|s| s.end_offset()).collect();
        progress.send_modify(|p| p.positions = ends);
    }
    if status != Status::Stopped {
        (spec.on_end)(&status);
    }
    progress.send_modify(|p| p.status = status);
}

/// Seal the late-data streams, and the output of a derived stream.
fn seal_all(spec: &WindowJobSpec) -> kappa_storage::Result<()> {
    tokio::task::block_in_place(|| {
        for late in &spec.late {
            late.seal()?;
        }
        if let Some(o) = &spec.output
            && spec.kind.owns_output()
        {
            o.seal()?;
        }
        Ok(())
    })
}
