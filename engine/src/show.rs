//! `SHOW STREAMS | JOBS | TABLES | VIEWS` and `DESCRIBE`.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, StringArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use kappa_sql::Location;
use kappa_sql::ast::ShowObject;

use crate::catalog::{JobKind, JobState};
use crate::engine::Engine;
use crate::error::Result;
use crate::job::Status;
use crate::output::Output;

fn rows(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Output> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Output::Rows { schema, batches: vec![batch] })
}

fn text(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

pub(crate) fn show(engine: &Engine, what: ShowObject, at: Option<Location>) -> Result<Output> {
    let inner = &engine.inner;
    match what {
        ShowObject::Streams => {
            // (A view's changelog is listed by SHOW VIEWS.)
            let entries: Vec<(String, crate::catalog::StreamEntry)> = {
                let c = inner.catalog();
                c.streams
                    .iter()
                    .filter(|(n, _)| !c.is_view(n))
                    .map(|(n, e)| (n.clone(), e.clone()))
                    .collect()
            };
            let (mut names, mut counts, mut bytes, mut sealed, mut times, mut wms, mut jobs) =
                (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
            for (name, e) in entries {
                let stream = inner.log(&name)?;
                let info = stream.info();
                names.push(Some(name));
                // (A derived stream: the rows its readers see, up to its last checkpoint.)
                counts.push(stream.readable_end().saturating_sub(info.start));
                bytes.push(info.bytes);
                sealed.push(info.sealed.is_some());
                times.push(e.watermark.as_ref().map(|w| w.column.clone()));
                wms.push(e.watermark.as_ref().map(|w| w.expr.clone()));
                jobs.push(e.job.clone());
            }
            rows(
                vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("rows", DataType::UInt64, false),
                    Field::new("bytes", DataType::UInt64, false),
                    Field::new("sealed", DataType::Boolean, false),
                    Field::new("event_time", DataType::Utf8, true),
                    Field::new("watermark", DataType::Utf8, true),
                    Field::new("job", DataType::Utf8, true),
                ],
                vec![
                    text(names),
                    Arc::new(UInt64Array::from(counts)),
                    Arc::new(UInt64Array::from(bytes)),
                    Arc::new(BooleanArray::from(sealed)),
                    text(times),
                    text(wms),
                    text(jobs),
                ],
            )
        }
        ShowObject::Jobs => show_jobs(engine),
        ShowObject::Tables => {
            let sinks: Vec<(String, String)> = inner
                .catalog()
                .sinks
                .iter()
                .map(|(n, e)| (n.clone(), e.connector.clone()))
                .collect();
            let (names, connectors): (Vec<_>, Vec<_>) =
                sinks.into_iter().map(|(n, c)| (Some(n), Some(c))).unzip();
            rows(
                vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("connector", DataType::Utf8, false),
                ],
                vec![text(names), text(connectors)],
            )
        }
        ShowObject::Views => {
            let names: Vec<String> = {
                let c = inner.catalog();
                c.jobs.keys().filter(|n| c.is_view(n)).cloned().collect()
            };
            let (mut rows_now, mut as_of, mut changes) = (vec![], vec![], vec![]);
            for name in &names {
                let published = inner.view(name).and_then(|v| v.current());
                rows_now.push(published.as_ref().map(|p| p.rows.num_rows() as u64));
                as_of.push(published.as_ref().map(|p| p.end));
                let stream = inner.log(name)?;
                changes.push(stream.readable_end());
            }
            rows(
                vec![
                    Field::new("name", DataType::Utf8, false),
                    Field::new("rows", DataType::UInt64, true),
                    Field::new("as_of_change", DataType::UInt64, true),
                    Field::new("changelog_end", DataType::UInt64, false),
                ],
                vec![
                    text(names.into_iter().map(Some).collect()),
                    Arc::new(UInt64Array::from(rows_now)),
                    Arc::new(UInt64Array::from(as_of)),
                    Arc::new(UInt64Array::from(changes)),
                ],
            )
        }
        ShowObject::Dataflow { dot } => crate::dataflow::show(engine, None, dot, at),
    }
}

pub(crate) fn describe(engine: &Engine, name: &str, at: Option<Location>) -> Result<Output> {
    let sink = engine.inner.catalog().sinks.get(name).cloned();
    let schema = match (sink, engine.inner.view(name)) {
        (Some(entry), _) => crate::sink::schema_of_entry(name, &entry)?,
        (None, Some(view)) => Arc::clone(view.schema()),
        (None, None) => std::sync::Arc::clone(engine.inner.stream(name, at)?.schema()),
    };
    let wm = engine.inner.catalog().streams.get(name).and_then(|e| e.watermark.clone());
    let mut names = vec![];
    let mut types = vec![];
    let mut nulls = vec![];
    let mut notes = vec![];
    for f in schema.fields() {
        names.push(Some(f.name().clone()));
        types.push(Some(f.data_type().to_string()));
        nulls.push(f.is_nullable());
        notes.push(
            wm.as_ref()
                .filter(|w| &w.column == f.name())
                .map(|w| format!("event time, WATERMARK AS {}", w.expr)),
        );
    }
    rows(
        vec![
            Field::new("column", DataType::Utf8, false),
            Field::new("type", DataType::Utf8, false),
            Field::new("nullable", DataType::Boolean, false),
            Field::new("note", DataType::Utf8, true),
        ],
        vec![text(names), text(types), Arc::new(BooleanArray::from(nulls)), text(notes)],
    )
}

/// One row of `SHOW JOBS`.
#[derive(Default)]
pub(crate) struct JobRow {
    pub name: String,
    pub kind: &'static str,
    pub output: String,
    pub inputs: Vec<String>,
    /// Per input, the rows it has not read yet (empty when not known).
    pub input_lags: Vec<u64>,
    pub state: &'static str,
    pub rows_in: u64,
    pub rows_out: u64,
    pub lag: u64,
    /// Milliseconds since the job last had read all its inputs held (0 when it has).
    pub lag_ms: u64,
    pub late: u64,
    /// The watermark (windowed jobs and push queries), milliseconds.
    pub watermark: Option<i64>,
    /// The last checkpoint's epoch and time (milliseconds).
    pub checkpoint: Option<(u64, i64)>,
    pub error: Option<String>,
    /// For a new version being built: the stream or view it takes over.
    pub rebuilds: Option<String>,
    /// How much of what its inputs hold it has read, in percent (jobs that run).
    pub progress: Option<f64>,
}

/// `SHOW JOBS`: jobs, connector sources (and connectors that could not be restored), push
/// queries.
fn show_jobs(engine: &Engine) -> Result<Output> {
    let out = job_rows(engine);
    let strings = |f: fn(&JobRow) -> String| text(out.iter().map(|r| Some(f(r))).collect());
    let numbers = |f: fn(&JobRow) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(out.iter().map(f)))
    };
    rows(
        vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("output", DataType::Utf8, false),
            Field::new("inputs", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("rows_in", DataType::UInt64, false),
            Field::new("rows_out", DataType::UInt64, false),
            Field::new("lag_rows", DataType::UInt64, false),
            Field::new("lag_ms", DataType::UInt64, false),
            Field::new("late_rows", DataType::UInt64, false),
            Field::new("watermark", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("checkpoint", DataType::UInt64, true),
            Field::new("checkpoint_at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("error", DataType::Utf8, true),
            Field::new("rebuilds", DataType::Utf8, true),
            Field::new("progress_pct", DataType::Float64, true),
        ],
        vec![
            strings(|r| r.name.clone()),
            strings(|r| r.kind.to_string()),
            strings(|r| r.output.clone()),
            strings(|r| r.inputs.join(", ")),
            strings(|r| r.state.to_string()),
            numbers(|r| r.rows_in),
            numbers(|r| r.rows_out),
            numbers(|r| r.lag),
            numbers(|r| r.lag_ms),
            numbers(|r| r.late),
            Arc::new(TimestampMillisecondArray::from(
                out.iter().map(|r| r.watermark).collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(
                out.iter().map(|r| r.checkpoint.map(|c| c.0)).collect::<Vec<_>>(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                out.iter().map(|r| r.checkpoint.map(|c| c.1)).collect::<Vec<_>>(),
            )),
            text(out.iter().map(|r| r.error.clone()).collect()),
            text(out.iter().map(|r| r.rebuilds.clone()).collect()),
            Arc::new(Float64Array::from(
                out.iter()
                    .map(|r| r.progress.map(|p| (p * 10.0).round() / 10.0))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
}

/// The rows of `SHOW JOBS`: jobs, connector sources (and connectors that could not be
/// restored), push queries.
pub(crate) fn job_rows(engine: &Engine) -> Vec<JobRow> {
    use std::sync::atomic::Ordering::Relaxed;
    let inner = &engine.inner;
    let mut out: Vec<JobRow> = Vec::new();
    let entries: Vec<(String, crate::catalog::JobEntry)> =
        inner.catalog().jobs.iter().map(|(n, e)| (n.clone(), e.clone())).collect();
    for (name, e) in entries {
        let live = inner.jobs().get(&name).map(|h| h.progress.borrow().clone());
        let restart_error = inner.restart_errors().get(&name).cloned();
        let (state, error) = match (&e.state, live.as_ref().map(|p| &p.status)) {
            _ if restart_error.is_some() => ("failed", restart_error),
            (_, Some(Status::Failed(m))) | (JobState::Failed(m), _) => ("failed", Some(m.clone())),
            (JobState::Finished, _) | (_, Some(Status::Finished)) => ("finished", None),
            (JobState::Running, Some(_)) => ("running", None),
            (JobState::Running, None) => ("stopped", None),
        };
        let input_lags: Vec<u64> = match &live {
            Some(p) => e
                .inputs
                .iter()
                .zip(&p.positions)
                .map(|(s, pos)| {
                    inner.log(s).map(|s| s.readable_end().saturating_sub(*pos)).unwrap_or(0)
                })
                .collect(),
            None => vec![0; e.inputs.len()],
        };
        let lag: u64 = input_lags.iter().sum();
        // Of the rows from where it started to the inputs' ends, the share read.
        let progress = live.as_ref().map(|_| {
            let total: u64 = e
                .inputs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    inner.log(s).map_or(0, |s| {
                        let first = e.start.get(i).copied().unwrap_or(s.info().start);
                        s.readable_end().saturating_sub(first)
                    })
                })
                .sum();
            if total == 0 { 100.0 } else { 100.0 * total.saturating_sub(lag) as f64 / total as f64 }
        });
        let lag_ms = match &live {
            Some(p) if lag > 0 => p.behind_since.map_or(0, |t| t.elapsed().as_millis() as u64),
            _ => 0,
        };
        // A job not running shows the checkpoint it would resume from.
        let checkpoint = match live.as_ref().and_then(|p| p.checkpoint.clone()) {
            Some(t) => Some((t.epoch, t.taken_ms)),
            None => crate::checkpoint::Checkpoints::new(Arc::clone(&inner.store), e.id)
                .latest()
                .ok()
                .flatten()
                .map(|m| (m.epoch, m.taken_ms)),
        };
        out.push(JobRow {
            name,
            kind: match e.kind {
                JobKind::DerivedStream => "derived stream",
                JobKind::MaterializedView => "materialized view",
                JobKind::InsertInto => "insert into",
            },
            output: e.output.clone(),
            rebuilds: e.replaces.clone(),
            progress,
            inputs: e.inputs.clone(),
            input_lags,
            state,
            rows_in: live.as_ref().map_or(0, |p| p.rows_in),
            rows_out: live.as_ref().map_or(0, |p| p.rows_out),
            lag,
            lag_ms,
            late: live.as_ref().map_or(0, |p| p.late_rows),
            // (+inf once every input ended: no timestamp to show.)
            watermark: live.as_ref().and_then(|p| p.watermark).filter(|w| *w != i64::MAX),
            checkpoint,
            error,
        });
    }
    // Connector sources, while they run (or until the engine closes).
    let mut sources: Vec<(String, crate::nexmark::source::SourceState)> =
        inner.sources().iter().map(|(n, h)| (n.clone(), h.state.borrow().clone())).collect();
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    for (stream, state) in sources {
        use crate::nexmark::source::SourceState;
        let (state, error) = match state {
            SourceState::Running => ("running", None),
            SourceState::Finished => ("finished", None),
            SourceState::Stopped => ("stopped", None),
            SourceState::Failed(m) => ("failed", Some(m)),
        };
        out.push(JobRow {
            name: format!("nexmark-{stream}"),
            kind: "nexmark source",
            rows_out: inner.log(&stream).map(|s| s.end_offset()).unwrap_or(0),
            output: stream,
            state,
            error,
            ..JobRow::default()
        });
    }
    // Connectors that could not be restored on open.
    let mut broken: Vec<(String, String)> = {
        let jobs = inner.catalog().jobs.keys().cloned().collect::<Vec<_>>();
        inner
            .restart_errors()
            .iter()
            .filter(|(n, _)| !jobs.contains(n))
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect()
    };
    broken.sort();
    for (name, error) in broken {
        out.push(JobRow {
            name,
            kind: "connector",
            state: "failed",
            error: Some(error),
            ..JobRow::default()
        });
    }
    // Push queries, while they run.
    let running: Vec<(u64, Arc<crate::subscribe::PushEntry>)> =
        inner.push_queries.running().iter().map(|(id, e)| (*id, Arc::clone(e))).collect();
    for (id, e) in running {
        let lags: Vec<u64> = e
            .inputs
            .iter()
            .zip(&e.positions)
            .map(|(s, p)| s.readable_end().saturating_sub(p.load(Relaxed)))
            .collect();
        out.push(JobRow {
            name: format!("push-{id}"),
            kind: "push query",
            output: "(client)".to_string(),
            inputs: e.inputs.iter().map(|s| s.name().to_string()).collect(),
            input_lags: lags.clone(),
            state: "running",
            rows_in: e.rows_in.load(Relaxed),
            rows_out: e.rows_out.load(Relaxed),
            lag: lags.iter().sum(),
            late: e.late_rows.load(Relaxed),
            watermark: Some(e.watermark.load(Relaxed)).filter(|w| *w != i64::MIN && *w != i64::MAX),
            ..JobRow::default()
        });
    }
    out
}

/// How far a job has read its inputs ([`Engine::job_progress`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobProgress {
    /// The share of its inputs' rows (from where it started) it has read, in percent.
    pub percent: f64,
    /// The rows its inputs hold that it has not read yet.
    pub lag_rows: u64,
    /// `running`, `finished` (every input sealed and read), `failed` or `stopped`.
    pub state: &'static str,
    /// Why it failed.
    pub error: Option<String>,
}

impl Engine {
    /// How far job `name` (a derived stream's, a view's or an `INSERT INTO` job) has read its
    /// inputs: for a backfill, a new job reading a long retained history. `None` when there is
    /// no such job.
    pub fn job_progress(&self, name: &str) -> Option<JobProgress> {
        let row = job_rows(self).into_iter().find(|r| r.name == name)?;
        Some(JobProgress {
            percent: row.progress.unwrap_or(if row.state == "finished" { 100.0 } else { 0.0 }),
            lag_rows: row.lag,
            state: row.state,
            error: row.error,
        })
    }
}
