//! Jobs of windowed aggregations (`CREATE STREAM d AS SELECT ... FROM TUMBLE(...) GROUP BY
//! window_start, window_end, ...`, and `INSERT INTO ... SELECT` of one).
//!
//! One task reads the input stream, advances the watermark with every batch, runs the input
//! pipeline and the aggregation ([`kappa_sql::window_agg`]) and appends each window it closes
//! as one frame, tagged with the window's end. Windows close in order of end, so the highest
//! tag in the output says which windows are written.
//!
//! The rows it leaves out as late are read again whole from the input (by offset; late rows
//! are rare) and appended to its late-data stream, `<job>__late`, tagged with the input
//! position after them, so that a restart appends only the late rows of input it had not
//! read.
//!
//! Exactly-once restart, until checkpoints of state exist (issue 7): a restarted job replays
//! its input from the first retained row, rebuilding its windows, and writes only the windows
//! that end after the highest tag found in its output. The replay costs time proportional to
//! the retained input. (Which rows count as late depends on where the watermark stood when
//! each batch was read; a replay reads the same rows in the same order, but a compacted log
//! may hand them over in larger batches, so a row that was late by a hair can count again.)

use std::sync::Arc;

use kappa_sql::windowed_plan::{EmitMode, WindowedPlan, WindowedRun};
use kappa_storage::{PendingAppend, Stream, Tag};
use tokio::sync::watch;

use crate::catalog::JobKind;
use crate::error::{Error, Result};
use crate::job::{InputMsg, JobHandle, Progress, Status, spawn_inputs};

/// Everything a windowed job needs to run.
pub(crate) struct WindowJobSpec {
    pub id: u32,
    pub kind: JobKind,
    pub plan: WindowedPlan,
    pub input: Arc<Stream>,
    /// The output log; `None` for a blackhole sink.
    pub output: Option<Arc<Stream>>,
    /// The late-data stream: the input rows the job left out as late.
    pub late: Arc<Stream>,
    /// Called once when the job finishes or fails.
    pub on_end: Box<dyn FnOnce(&Status) + Send>,
}

/// A window end as an increasing tag position (order kept for ends before 1970 too).
fn seq_of(end: i64) -> u64 {
    (end as u64) ^ (1 << 63)
}

/// Start a windowed job.
///
/// # Errors
/// When the output's tags cannot be read, or the aggregation cannot be set up.
pub(crate) fn start(spec: WindowJobSpec) -> Result<JobHandle> {
    let producer = spec.id << 8;
    // Windows ending at or before this were written by an earlier run.
    let written = match &spec.output {
        Some(o) => o.producer_positions(0)?.get(&producer).copied(),
        None => None,
    };
    // Late rows up to this input position were written by an earlier run.
    let late_written = spec.late.producer_positions(0)?.get(&(producer | 1)).copied();
    let mut state = WindowedRun::new(spec.plan.clone())?;
    if let Some(w) = written
        && spec.plan.emit == EmitMode::Final
    {
        state.skip_through((w ^ (1 << 63)) as i64);
    }
    let start = spec.input.info().start;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (progress_tx, progress_rx) = watch::channel(Progress {
        positions: vec![start],
        rows_in: 0,
        rows_out: 0,
        late_rows: 0,
        status: Status::Running,
    });
    let monitor = progress_tx.clone();
    let task = tokio::spawn(async move {
        use futures::FutureExt;
        let written = Written { windows: written, late: late_written };
        let run = std::panic::AssertUnwindSafe(run_job(spec, state, written, stop_rx, progress_tx));
        if let Err(panic) = run.catch_unwind().await {
            let what = crate::compute::panic_text(panic.as_ref());
            monitor.send_modify(|p| p.status = Status::Failed(format!("the job panicked: {what}")));
        }
    });
    Ok(JobHandle { stop: stop_tx, progress: progress_rx, task })
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

/// What an earlier run wrote: the highest window tag, the input position of the last late rows.
struct Written {
    windows: Option<u64>,
    late: Option<u64>,
}

async fn run_job(
    spec: WindowJobSpec,
    mut run: WindowedRun,
    written: Written,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<Progress>,
) {
    let producer = spec.id << 8;
    let plan = &spec.plan;
    let inputs =
        vec![(Arc::clone(&spec.input), plan.input.projection.clone(), spec.input.info().start)];
    let (mut rx, readers) = spawn_inputs(&inputs, &stop);
    let (mut rows_in, mut rows_out) = (0u64, 0u64);
    // EMIT CHANGES: output tagged with the input position it follows (a restart writes only
    // the changes after the highest); EVERY: the open windows' changes at that interval.
    let changes = plan.emit != EmitMode::Final;
    let every = match plan.emit {
        EmitMode::Changes { every_ms: Some(ms) } => {
            Some(std::time::Duration::from_millis(ms.max(1) as u64))
        }
        _ => None,
    };
    let mut ticks = tokio::time::interval(every.unwrap_or(std::time::Duration::MAX / 4));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut read_to = spec.input.info().start;
    let outcome: Result<Status> = async {
        loop {
            let msg = tokio::select! {
                biased;
                _ = stop.changed() => return Ok(Status::Stopped),
                m = rx.recv() => Some(m),
                _ = ticks.tick(), if every.is_some() => None,
            };
            let (closed, position, ended) = match msg {
                None => (run.tick()?, None, false),
                Some(Some(InputMsg::Batch(_, b))) => {
                    let n = b.batch.num_rows() as u64;
                    rows_in += n;
                    let closed = run.push(b.batch)?;
                    // The late rows, whole, tagged with the input position after them.
                    let pos = b.offset + n;
                    if !run.late_positions().is_empty() && written.late.is_none_or(|w| pos > w) {
                        let rows = tokio::task::block_in_place(|| {
                            rows_at(&spec.input, b.offset, n, run.late_positions())
                        })?;
                        let tag = Tag { producer: producer | 1, seq: pos };
                        let pending =
                            tokio::task::block_in_place(|| spec.late.submit_tagged(&rows, tag))?;
                        tokio::task::block_in_place(|| pending.wait())?;
                    }
                    (closed, Some(pos), false)
                }
                Some(Some(InputMsg::End(_))) => (run.finish()?, None, true),
                Some(Some(InputMsg::Failed(e))) => return Err(e.into()),
                Some(None) => return Ok(Status::Stopped),
            };
            if let Some(pos) = position {
                read_to = pos;
            }
            let mut last: Option<PendingAppend> = None;
            for (end, out) in closed {
                let seq = match (changes, ended) {
                    (false, _) => seq_of(end),
                    (true, false) => read_to,
                    (true, true) => read_to + 1,
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
            progress.send_modify(|p| {
                if let Some(pos) = position {
                    p.positions = vec![pos];
                }
                p.rows_in = rows_in;
                p.rows_out = rows_out;
                p.late_rows = run.late_rows();
            });
            if ended {
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
        Ok(Status::Finished) => match tokio::task::block_in_place(|| spec.late.seal()) {
            Err(e) => Status::Failed(e.to_string()),
            Ok(_) => match &spec.output {
                Some(o) if spec.kind == JobKind::DerivedStream => {
                    match tokio::task::block_in_place(|| o.seal()) {
                        Ok(_) => Status::Finished,
                        Err(e) => Status::Failed(e.to_string()),
                    }
                }
                _ => Status::Finished,
            },
        },
        Ok(s) => s,
        Err(e) => Status::Failed(Error::to_string(&e)),
    };
    if status == Status::Finished {
        // Reached the end: the positions are the input's end.
        let end = spec.input.end_offset();
        progress.send_modify(|p| p.positions = vec![end]);
    }
    if status != Status::Stopped {
        (spec.on_end)(&status);
    }
    progress.send_modify(|p| p.status = status);
}
