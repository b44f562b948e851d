//! Continuous jobs: a stateless plan run over every batch of its input streams, its output
//! appended to a log.
//!
//! A job is one tokio task fed by one reader task per input, through a bounded channel. The
//! input batches are computed by the job's worker threads ([`crate::compute`]: the input's
//! pipeline of [`kappa_sql::stream_plan`], then the encoding of the result), several at once,
//! and appended in the order they were read, each with a producer [`kappa_storage::Tag`]:
//! `(job id, input)` and the input offset the output covers. The job's acknowledger
//! ([`crate::acker`]) waits, on a thread of its own, until the output is durable, publishes the
//! input positions, and takes the job's checkpoints ([`crate::recovery`]): the acknowledged
//! positions with the end of the output they cover. A restart truncates a derived stream back
//! to its last checkpoint's end and resumes each input from the recorded position; an `INSERT
//! INTO` job resumes from the larger of the recorded position and the highest tag found in the
//! output beyond the recorded end. Every input row is processed, and no output is written twice.
//!
//! A job publishes its acknowledged positions and its last checkpoint on a watch channel: a
//! snapshot query waits on it to see everything its inputs held when the query started
//! (read-your-writes), asking for a checkpoint when the job has processed the rows but not
//! committed them yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_sql::stream_plan::StatelessPlan;
use kappa_storage::{ReadBatch, ReadFrom, Store, Stream};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::acker::{ACK_QUEUE, AckMsg, Acker};
use crate::catalog::JobKind;
use crate::checkpoint::Checkpoints;
use crate::compute::{self, Computation, Computed};
use crate::error::{Error, Result};
use crate::recovery::{self, Cadence, Taken};

/// Batches buffered between an input's reader task and its job.
const INPUT_QUEUE: usize = 16;
/// Rows of one input that one piece of computation takes at most (when they are queued already).
/// Measured on 2 cores: 32 Ki rows (four batches of 8 Ki) catch up about 30% faster than one
/// batch per piece; more is no better.
const GROUP_ROWS: usize = 32 * 1024;
/// Inputs a job may have (the low 8 bits of a producer id).
pub(crate) const MAX_INPUTS: usize = 255;

/// A job's status as it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Running (or starting).
    Running,
    /// Every input sealed and read.
    Finished,
    /// Stopped by this error.
    Failed(String),
    /// Stopped by the engine (close, drop).
    Stopped,
}

/// What a job publishes.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Per input: the offset below which every row's output is acknowledged.
    pub positions: Vec<u64>,
    /// Rows read and written since the job (re)started.
    pub rows_in: u64,
    pub rows_out: u64,
    /// Rows that came after their window had closed (windowed jobs), left out of it.
    pub late_rows: u64,
    /// The watermark (windowed jobs, once there is one), in milliseconds.
    pub watermark: Option<i64>,
    /// Where each input (each source of a plan of several operators) stands (windowed jobs).
    pub inputs: Vec<kappa_sql::windowed_plan::InputStatus>,
    /// The windows kept open: the end of the next to close, and how many (windowed jobs).
    pub windows: Option<(Option<i64>, usize)>,
    /// The last checkpoint (from this run, or the one it restarted from).
    pub checkpoint: Option<Taken>,
    /// Since when the job is behind its inputs (`None`: it had read all they held when it
    /// last published).
    pub behind_since: Option<Instant>,
    /// Whether it wrote output since its last checkpoint (a window an idle input let close,
    /// an expiry): a reader waiting for it asks for a checkpoint even when the last one
    /// covers its inputs.
    pub uncommitted: bool,
    pub status: Status,
}

impl Progress {
    /// A job starting at `positions`.
    pub(crate) fn start(positions: Vec<u64>) -> Progress {
        Progress {
            positions,
            rows_in: 0,
            rows_out: 0,
            late_rows: 0,
            watermark: None,
            inputs: Vec::new(),
            windows: None,
            checkpoint: None,
            behind_since: None,
            uncommitted: false,
            status: Status::Running,
        }
    }
}

/// A running job, as the engine holds it.
#[derive(Debug)]
pub(crate) struct JobHandle {
    pub stop: watch::Sender<bool>,
    /// Wakes the job for a checkpoint now (a reader waits for its output).
    pub request: Arc<Notify>,
    pub progress: watch::Receiver<Progress>,
    pub task: JoinHandle<()>,
}

/// The progress record of a job (`job-<id>.json` in the store's metadata), as versions
/// before checkpoints wrote it: read when a job has no checkpoint yet, removed after its
/// first.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub positions: Vec<u64>,
    pub output_end: u64,
    /// The input streams, in the order of `positions`.
    #[serde(default)]
    pub inputs: Vec<String>,
}

pub(crate) fn record_name(id: u32) -> String {
    format!("job-{id}.json")
}

/// The producer id of input `i` of job `id`.
fn producer(id: u32, i: usize) -> u32 {
    (id << 8) | (i as u32 & 0xff)
}

/// Everything a job needs to run.
pub(crate) struct JobSpec {
    pub name: String,
    pub id: u32,
    pub kind: JobKind,
    pub plan: Arc<StatelessPlan>,
    pub inputs: Vec<Arc<Stream>>,
    /// Where the inputs start without a checkpoint (`None`: their first retained rows).
    pub start: Option<Vec<u64>>,
    /// The output log; `None` for a blackhole sink.
    pub output: Option<Arc<Stream>>,
    pub store: Arc<Store>,
    /// The engine's `checkpoint_interval`.
    pub interval: recovery::Interval,
    /// Called once when the job finishes or fails (to update the catalog).
    pub on_end: Box<dyn FnOnce(&Status) + Send + Sync>,
}

/// Remove a job's checkpoints (and a progress record of an older version).
pub(crate) fn forget(store: &Arc<Store>, id: u32) -> Result<()> {
    store.remove_meta(&record_name(id))?;
    Checkpoints::new(Arc::clone(store), id).forget()
}

/// Where a job resumes: per input, a position.
struct Resume {
    positions: Vec<u64>,
    /// The last epoch used.
    epoch: u64,
    /// The checkpoint it resumes from.
    last: Option<Taken>,
    /// Whether a progress record of an older version is what it resumes from.
    legacy_record: bool,
}

/// Where each input resumes: the last checkpoint (the output rolled back to its end, or for
/// `INSERT INTO` the output's tags beyond its end), or a progress record of an older version.
fn resume(spec: &JobSpec) -> Result<Resume> {
    let checkpoints = Checkpoints::new(Arc::clone(&spec.store), spec.id);
    let epoch = checkpoints.last_epoch()?;
    let outputs: Vec<&Arc<Stream>> = spec.output.iter().collect();
    if let Some(m) = recovery::last(&checkpoints, &spec.name, &spec.inputs, &outputs)? {
        let mut positions: Vec<u64> = m.inputs.iter().map(|i| i.offset).collect();
        if let (Some(output), Some(end)) = (&spec.output, m.outputs.first().map(|o| o.end)) {
            if spec.kind.owns_output() {
                recovery::roll_back(output, end)?;
            }
            // What is left past the recorded end was written by this job after it: an
            // `INSERT INTO` output is never truncated (others write it too), and a derived
            // stream keeps what was committed past an older checkpoint.
            skip_written(spec, output, end, &mut positions)?;
        }
        recovery::check_positions(&spec.name, &spec.inputs, &mut positions)?;
        let last = Taken { positions: positions.clone(), ..Taken::of(&m) };
        return Ok(Resume { positions, epoch, last: Some(last), legacy_record: false });
    }
    let legacy_record = spec.store.read_meta(&record_name(spec.id))?.is_some();
    Ok(Resume { positions: resume_positions(spec)?, epoch, last: None, legacy_record })
}

/// Where each input resumes without a checkpoint: the progress record of an older version
/// (or the inputs' first rows), then the output's tags beyond it.
fn resume_positions(spec: &JobSpec) -> Result<Vec<u64>> {
    let n = spec.inputs.len();
    let (mut positions, from) = match spec.store.read_meta(&record_name(spec.id))? {
        Some(bytes) => {
            let r: Record = serde_json::from_slice(&bytes).map_err(|e| Error::Catalog {
                path: spec.store.dir().join("meta").join(record_name(spec.id)),
                message: e.to_string(),
            })?;
            let names: Vec<&str> = spec.inputs.iter().map(|s| s.name()).collect();
            if !r.inputs.is_empty() && r.inputs != names {
                return Err(Error::Catalog {
                    path: spec.store.dir().join("meta").join(record_name(spec.id)),
                    message: format!(
                        "the job's inputs were {:?} and are now planned as {names:?}",
                        r.inputs
                    ),
                });
            }
            if r.positions.len() != n {
                return Err(Error::Catalog {
                    path: spec.store.dir().join("meta").join(record_name(spec.id)),
                    message: format!("{} positions for {n} inputs", r.positions.len()),
                });
            }
            (r.positions, r.output_end)
        }
        None => match &spec.start {
            Some(start) => (start.clone(), 0),
            None => (spec.inputs.iter().map(|s| s.info().start).collect(), 0),
        },
    };
    if let Some(output) = &spec.output {
        skip_written(spec, output, from, &mut positions)?;
    }
    recovery::check_positions(&spec.name, &spec.inputs, &mut positions)?;
    Ok(positions)
}

/// Move each input's position past what the job's tags in `output` beyond offset `from` show
/// it wrote.
fn skip_written(spec: &JobSpec, output: &Stream, from: u64, positions: &mut [u64]) -> Result<()> {
    let tags = output.producer_positions(from)?;
    for (i, p) in positions.iter_mut().enumerate() {
        if let Some(seq) = tags.get(&producer(spec.id, i)) {
            *p = (*p).max(*seq);
        }
    }
    Ok(())
}

/// An input to read: the stream, the columns to read, the offset to start at.
pub(crate) type InputSpec = (Arc<Stream>, Option<Vec<usize>>, u64);

/// Messages from input reader tasks.
pub(crate) enum InputMsg {
    Batch(usize, ReadBatch),
    End(usize),
    Failed(kappa_storage::Error),
}

/// One reader task per input, from `starts`, reading `projections`, into one bounded channel.
pub(crate) fn spawn_inputs(
    inputs: &[InputSpec],
    stop: &watch::Receiver<bool>,
) -> (mpsc::Receiver<InputMsg>, Vec<JoinHandle<()>>) {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let mut tasks = Vec::new();
    for (i, (stream, projection, start)) in inputs.iter().enumerate() {
        let tx = tx.clone();
        let mut stop = stop.clone();
        let stream = Arc::clone(stream);
        let projection = projection.clone();
        let start = *start;
        tasks.push(tokio::spawn(async move {
            let reader = stream.reader(ReadFrom::Offset(start)).and_then(|r| match projection {
                Some(p) => r.with_projection(p),
                None => Ok(r),
            });
            let mut reader = match reader {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(InputMsg::Failed(e)).await;
                    return;
                }
            };
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    r = reader.next_async() => {
                        let msg = match r {
                            Ok(Some(b)) => InputMsg::Batch(i, b),
                            Ok(None) => InputMsg::End(i),
                            Err(e) => InputMsg::Failed(e),
                        };
                        let last = !matches!(msg, InputMsg::Batch(..));
                        if tx.send(msg).await.is_err() || last {
                            return;
                        }
                    }
                }
            }
        }));
    }
    (rx, tasks)
}

/// Start a job. Returns its handle; the job runs until its inputs end, it fails, or it is
/// stopped.
///
/// # Errors
/// When its progress cannot be read or its inputs cannot be resumed.
pub(crate) fn start(spec: JobSpec) -> Result<JobHandle> {
    if spec.inputs.len() > MAX_INPUTS {
        return Err(Error::not_supported(
            format!("a job with more than {MAX_INPUTS} inputs"),
            None,
        ));
    }
    let resume = resume(&spec)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut start = Progress::start(resume.positions.clone());
    start.checkpoint = resume.last.clone();
    let (progress_tx, progress_rx) = watch::channel(start);
    let request = Arc::new(Notify::new());
    let cadence = Cadence::new(spec.interval.clone(), Arc::clone(&request));
    // A panic in the job must not leave it "running": it is reported as a failure.
    let monitor = progress_tx.clone();
    let task = tokio::spawn(async move {
        use futures::FutureExt;
        let run = std::panic::AssertUnwindSafe(run(spec, resume, cadence, stop_rx, progress_tx));
        if let Err(panic) = run.catch_unwind().await {
            let what = compute::panic_text(panic.as_ref());
            monitor.send_modify(|p| p.status = Status::Failed(format!("the job panicked: {what}")));
        }
    });
    Ok(JobHandle { stop: stop_tx, request, progress: progress_rx, task })
}

/// What the job loop waits for.
enum Event {
    Stop,
    Checkpoint,
    Input(Option<InputMsg>),
    Computed(Result<Computed>),
}

async fn run(
    spec: JobSpec,
    resume: Resume,
    mut cadence: Cadence,
    mut stop: watch::Receiver<bool>,
    progress: watch::Sender<Progress>,
) {
    let inputs: Vec<InputSpec> = spec
        .inputs
        .iter()
        .zip(&spec.plan.inputs)
        .zip(&resume.positions)
        .map(|((s, p), start)| (Arc::clone(s), p.projection.clone(), *start))
        .collect();
    let (mut rx, readers) = spawn_inputs(&inputs, &stop);
    let n = inputs.len();
    let mut computation = Computation::new(&spec.name, Arc::clone(&spec.plan), spec.output.clone());
    let slots = computation.slots();
    let acker = Acker {
        id: spec.id,
        output: spec.output.clone(),
        owned: spec.kind.owns_output(),
        store: Arc::clone(&spec.store),
        checkpoints: Checkpoints::new(Arc::clone(&spec.store), spec.id),
        inputs: spec.inputs.clone(),
        positions: resume.positions,
        progress,
        rows_in: 0,
        rows_out: 0,
        acked_end: spec.output.as_ref().map_or(0, |o| o.end_offset()),
        epoch: resume.epoch,
        last: resume.last,
        legacy_record: resume.legacy_record,
    };
    let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE);
    // A thread of its own: it sleeps in syncs, which must not hold a runtime worker or a
    // blocking-pool thread for the job's whole life.
    let (acked_tx, acking) = tokio::sync::oneshot::channel();
    let thread =
        std::thread::Builder::new().name(format!("kappa-ack-{}", spec.id)).spawn(move || {
            let _ = acked_tx.send(acker.run(ack_rx));
        });
    if let Err(e) = thread {
        // Reported by the monitor of `start` (the progress sender went with the thread).
        std::panic::panic_any(format!("cannot start the job's acknowledger thread: {e}"));
    }
    let mut ended = vec![false; n];
    // A message taken from the queue while grouping batches, to handle next.
    let mut held: Option<InputMsg> = None;
    let outcome: Result<Status> = async {
        loop {
            if ended.iter().all(|e| *e) && computation.is_empty() {
                return Ok(Status::Finished);
            }
            let reading = computation.len() < slots && !ended.iter().all(|e| *e);
            let event = tokio::select! {
                biased;
                _ = stop.changed() => Event::Stop,
                _ = cadence.due() => Event::Checkpoint,
                Some(c) = computation.next() => Event::Computed(c),
                m = async { held.take() }, if reading && held.is_some() => Event::Input(m),
                m = rx.recv(), if reading && held.is_none() => Event::Input(m),
            };
            match event {
                Event::Stop => return Ok(Status::Stopped),
                Event::Checkpoint => {
                    cadence.taken();
                    if ack_tx.send(AckMsg::Checkpoint).await.is_err() {
                        return Ok(Status::Stopped);
                    }
                }
                Event::Input(Some(InputMsg::Batch(i, b))) => {
                    // Batches already queued from the same input go into the same piece: fewer
                    // hand-offs between threads when catching up, no wait when live.
                    let mut rows = b.batch.num_rows();
                    let mut group = vec![b];
                    while rows < GROUP_ROWS && held.is_none() {
                        match rx.try_recv() {
                            Ok(InputMsg::Batch(j, b)) if j == i => {
                                rows += b.batch.num_rows();
                                group.push(b);
                            }
                            Ok(other) => held = Some(other),
                            Err(_) => break,
                        }
                    }
                    computation.start(i, group, producer(spec.id, i))?;
                }
                Event::Input(Some(InputMsg::End(i))) => ended[i] = true,
                Event::Input(Some(InputMsg::Failed(e))) => return Err(e.into()),
                Event::Input(None) => return Ok(Status::Stopped),
                Event::Computed(c) => {
                    if ack_tx.send(AckMsg::Batch(c?)).await.is_err() {
                        // The acknowledger stopped on an error, reported below.
                        return Ok(Status::Stopped);
                    }
                }
            }
        }
    }
    .await;
    for t in readers {
        t.abort();
    }
    // Batches already in computation are written (or skipped after a failure) whatever
    // happened: acknowledge them too, so that the final record covers what was written.
    let mut outcome = outcome;
    while let Some(c) = computation.next().await {
        match c {
            Ok(c) => {
                let _ = ack_tx.send(AckMsg::Batch(c)).await;
            }
            Err(e) => {
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            }
        }
    }
    drop(ack_tx);
    let Ok((mut acker, acked)) = acking.await else {
        // Reported by the monitor of `start`, as a panic of the job.
        std::panic::panic_any("the job's acknowledger panicked".to_string());
    };
    if let Err(e) = acked {
        outcome = Err(e);
    }
    // The last checkpoint covers everything acknowledged (after a failure too: what was
    // written is committed, and a resumed job goes on from there).
    let final_checkpoint = tokio::task::block_in_place(|| {
        acker.publish();
        acker.checkpoint()
    });
    let status = match (outcome, final_checkpoint) {
        (Ok(status), Ok(())) => status,
        (Ok(_), Err(e)) | (Err(e), _) => Status::Failed(e.to_string()),
    };
    let status = if status == Status::Finished
        && spec.kind.owns_output()
        && let Some(output) = &spec.output
    {
        match tokio::task::block_in_place(|| output.seal()) {
            Ok(_) => Status::Finished,
            Err(e) => Status::Failed(e.to_string()),
        }
    } else {
        status
    };
    if status != Status::Stopped {
        (spec.on_end)(&status);
    }
    acker.progress.send_modify(|p| p.status = status);
}

/// Wait until a job's last checkpoint covers input positions `targets` (and, with `to_end`,
/// until it has stopped running: every input sealed and read), or it stops running. Once the
/// job has processed the rows, it is asked for a checkpoint at once.
pub(crate) async fn wait_for(
    progress: &mut watch::Receiver<Progress>,
    request: &Notify,
    targets: &[u64],
    to_end: bool,
) {
    let covers = |positions: &[u64]| positions.iter().zip(targets).all(|(p, t)| p >= t);
    loop {
        {
            let p = progress.borrow_and_update();
            let committed =
                p.checkpoint.as_ref().is_some_and(|c| covers(&c.positions)) && !p.uncommitted;
            if (committed && !to_end) || p.status != Status::Running {
                return;
            }
            if !committed && covers(&p.positions) {
                request.notify_one();
            }
        }
        // (Asked again now and then: a request may meet a checkpoint already under way.)
        let changed = tokio::time::timeout(Duration::from_millis(100), progress.changed()).await;
        if let Ok(Err(_)) = changed {
            return;
        }
    }
}
