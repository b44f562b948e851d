//! Push queries (`SELECT ... EMIT CHANGES [LIMIT n]`): the stateless plan of the query run
//! from the first retained row of each input, then on new rows as they arrive, into a bounded
//! channel that the [`Subscription`] reads. A top-level `LIMIT n` ends it after `n` rows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::logical_expr::{FetchType, LogicalPlan, SkipType};
use kappa_sql::Location;
use kappa_sql::sqlparser::ast::Query;
use tokio::sync::{mpsc, watch};

use crate::engine::{Engine, JobPlan};
use crate::error::{Error, Result};
use crate::job::{InputMsg, InputSpec, spawn_inputs};
use crate::output::Subscription;

/// Batches buffered between a push query and its reader.
const QUEUE: usize = 16;

/// What `SHOW JOBS` shows of a running push query.
#[derive(Debug)]
pub(crate) struct PushEntry {
    pub inputs: Vec<Arc<kappa_storage::Stream>>,
    /// Per input: the offset after the last row read.
    pub positions: Vec<AtomicU64>,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    /// Rows that came after their window had closed (windowed push queries).
    pub late_rows: AtomicU64,
    /// The watermark of a windowed push query, in milliseconds (`i64::MIN`: none yet).
    pub watermark: std::sync::atomic::AtomicI64,
}

/// The running push queries of an engine, by number.
impl PushEntry {
    /// Count a batch read from input `i`.
    fn read(&self, i: usize, b: &kappa_storage::ReadBatch) {
        let rows = b.batch.num_rows() as u64;
        self.rows_in.fetch_add(rows, Ordering::Relaxed);
        if let Some(p) = self.positions.get(i) {
            p.store(b.offset + rows, Ordering::Relaxed);
        }
    }

    /// Send rows to the client, at most `left` of them (and count them); false when the query
    /// is done (its limit reached, or the client gone).
    async fn deliver(
        &self,
        out: datafusion::arrow::record_batch::RecordBatch,
        left: &mut usize,
        tx: &mpsc::Sender<Result<datafusion::arrow::record_batch::RecordBatch>>,
    ) -> bool {
        let out = if out.num_rows() > *left { out.slice(0, *left) } else { out };
        *left -= out.num_rows();
        self.rows_out.fetch_add(out.num_rows() as u64, Ordering::Relaxed);
        tx.send(Ok(out)).await.is_ok() && *left > 0
    }
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, Arc<PushEntry>>>,
}

impl Registry {
    pub fn running(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<PushEntry>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a push query from its registry when its [`Subscription`] is dropped.
#[derive(Debug)]
pub(crate) struct Listed {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.registry.running().remove(&self.id);
    }
}

/// A top-level `LIMIT n` (without OFFSET) becomes the push query's row count.
fn strip_limit(plan: LogicalPlan, at: Option<Location>) -> Result<(LogicalPlan, Option<usize>)> {
    match plan {
        LogicalPlan::Limit(l) => {
            let skip = l.get_skip_type()?;
            let fetch = l.get_fetch_type()?;
            match (skip, fetch) {
                (SkipType::Literal(0), FetchType::Literal(n)) => Ok((l.input.as_ref().clone(), n)),
                _ => Err(Error::not_supported("OFFSET in a push query", at)),
            }
        }
        other => Ok((other, None)),
    }
}

/// List a push query reading `inputs` in `SHOW JOBS` (until the returned guard is dropped).
fn list(engine: &Engine, inputs: &[InputSpec]) -> (Arc<PushEntry>, Listed) {
    let registry = Arc::clone(&engine.inner.push_queries);
    let id = registry.next.fetch_add(1, Ordering::Relaxed) + 1;
    let entry = Arc::new(PushEntry {
        inputs: inputs.iter().map(|(s, _, _)| Arc::clone(s)).collect(),
        positions: inputs.iter().map(|(_, _, start)| AtomicU64::new(*start)).collect(),
        rows_in: AtomicU64::new(0),
        rows_out: AtomicU64::new(0),
        late_rows: AtomicU64::new(0),
        watermark: std::sync::atomic::AtomicI64::new(i64::MIN),
    });
    registry.running().insert(id, Arc::clone(&entry));
    (entry, Listed { registry, id })
}

pub(crate) async fn start(
    engine: &Engine,
    query: Box<Query>,
    emit: Option<kappa_sql::ast::Emit>,
    at: Option<Location>,
) -> Result<Subscription> {
    let plan = engine.plan_query(query, at).await?;
    let (plan, limit) = strip_limit(plan, at)?;
    let compiled = match engine.compile_job(&plan, emit.as_ref(), at).await {
        Ok(JobPlan::Windowed(windowed)) => return start_windowed(engine, *windowed, limit),
        Ok(JobPlan::Stateless(compiled)) => compiled,
        Err(e) => {
            // A query of a view's rows (not an aggregation of them): its rows now, then
            // its changes.
            let tables = crate::statements::scanned_tables(&plan);
            if tables.iter().any(|t| engine.inner.catalog().is_view(t.table())) {
                return start_view(engine, &plan, limit, at).await;
            }
            return Err(e);
        }
    };
    let mut inputs: Vec<InputSpec> = Vec::new();
    let mut sealed = true;
    for p in &compiled.inputs {
        let s = engine.inner.log(&p.stream)?;
        let info = s.info();
        sealed &= info.sealed.is_some();
        inputs.push((s, p.projection.clone(), info.start));
    }
    let ends = limit.is_some() || sealed;
    let (entry, listed) = list(engine, &inputs);
    let schema = Arc::clone(&compiled.schema);
    let (tx, rx) = mpsc::channel(QUEUE);
    let (stop_tx, stop_rx) = watch::channel(false);
    let names: Vec<String> = compiled.inputs.iter().map(|p| p.stream.clone()).collect();
    let rebuilt = (names, inputs.iter().map(|i| i.0.name().to_string()).collect(), tx.clone());
    let task = tokio::spawn(async move {
        // Dropping `stop_tx` (when this task ends or is aborted) stops the readers.
        let _stop = stop_tx;
        let (mut input_rx, _readers) = spawn_inputs(&inputs, &stop_rx);
        let mut left = limit.unwrap_or(usize::MAX);
        let mut ended = vec![false; inputs.len()];
        if left == 0 {
            return;
        }
        while let Some(msg) = input_rx.recv().await {
            match msg {
                InputMsg::Batch(i, b) => {
                    entry.read(i, &b);
                    match compiled.apply(i, b.batch) {
                        Ok(Some(out)) => {
                            if !entry.deliver(out, &mut left, &tx).await {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    }
                }
                InputMsg::End(i) => {
                    ended[i] = true;
                    if ended.iter().all(|e| *e) {
                        return;
                    }
                }
                InputMsg::Failed(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
    });
    end_on_rebuild(engine, rebuilt, &task);
    Ok(Subscription { schema, rx, task, ends, _listed: listed })
}

/// A push query over streams ends when one of them switches to a new version (a rebuild): its
/// rows start over there, which a query that gave the old version's cannot show without
/// mixing them. `what`: the streams' names, the logs read, and where to send the error.
fn end_on_rebuild(
    engine: &Engine,
    what: (
        Vec<String>,
        Vec<String>,
        mpsc::Sender<Result<datafusion::arrow::record_batch::RecordBatch>>,
    ),
    task: &tokio::task::JoinHandle<()>,
) {
    let (names, logs, tx) = what;
    // (Weak: the query's channel closes when it ends, as if this were not watching.)
    let tx = tx.downgrade();
    let inner = Arc::downgrade(&engine.inner);
    let mut switches = engine.inner.switches.subscribe();
    let abort = task.abort_handle();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = switches.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                    if abort.is_finished() {
                        return;
                    }
                    continue;
                }
            }
            let Some(inner) = inner.upgrade() else { return };
            let Some(name) =
                names.iter().zip(&logs).find(|(n, l)| inner.log_name(n) != **l).map(|p| p.0)
            else {
                continue;
            };
            let Some(tx) = tx.upgrade() else { return };
            abort.abort();
            let _ = tx
                .send(Err(Error::plan(
                    format!(
                        "stream {name} was rebuilt: its new version's rows start over, so this push query ends (run it again to read them)"
                    ),
                    None,
                )))
                .await;
            return;
        }
    });
}

/// A push query of a windowed aggregation: the streams from their first retained rows,
/// windows emitted as the watermark closes them (all remaining ones once every input is
/// sealed and read).
fn start_windowed(
    engine: &Engine,
    plan: kappa_sql::windowed_plan::WindowedPlan,
    limit: Option<usize>,
) -> Result<Subscription> {
    use crate::window_job::{Timers, Wake};
    let mut inputs: Vec<InputSpec> = Vec::with_capacity(plan.inputs.len());
    let mut timeouts = Vec::with_capacity(plan.inputs.len());
    let mut sealed = true;
    for i in &plan.inputs {
        let stream = engine.inner.log(&i.pipeline.stream)?;
        let info = stream.info();
        sealed &= info.sealed.is_some();
        timeouts.push(engine.idle_timeout(&i.pipeline.stream)?);
        inputs.push((stream, i.pipeline.projection.clone(), info.start));
    }
    let ends = limit.is_some() || sealed;
    let schema = Arc::clone(&plan.schema);
    // (`SET state_ttl` bounds a push query's state too, but not over a changelog input,
    // whose retractions a forgotten group would not hold: there it keeps everything.)
    let retracting = matches!(
        &plan.grouping,
        kappa_sql::windowed_plan::Grouping::Updating(u) if u.retracting
    ) || matches!(&plan.grouping, kappa_sql::windowed_plan::Grouping::Graph(g) if g.retracts());
    let ttl = if retracting { None } else { engine.inner.state_ttl() };
    let names: Vec<String> = plan.inputs.iter().map(|i| i.pipeline.stream.clone()).collect();
    let mut run = kappa_sql::windowed_plan::WindowedRun::new(plan)?;
    let (entry, listed) = list(engine, &inputs);
    let (tx, rx) = mpsc::channel(QUEUE);
    let rebuilt = (names, inputs.iter().map(|i| i.0.name().to_string()).collect(), tx.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let _stop = stop_tx;
        let (mut input_rx, _readers) = spawn_inputs(&inputs, &stop_rx);
        let mut left = limit.unwrap_or(usize::MAX);
        let query = async {
            if left == 0 {
                return Ok(());
            }
            let mut timers = Timers::new(run.plan().emit, timeouts, ttl);
            // What the run holds before any input (the one row of an aggregation without
            // GROUP BY).
            for (_, out) in run.tick()? {
                if !entry.deliver(out, &mut left, &tx).await {
                    return Ok(());
                }
            }
            loop {
                let wake = timers.next(&mut input_rx).await;
                let mut done = false;
                let closed = match wake {
                    Wake::Emit => timers.fire(true, &mut run)?,
                    Wake::Idle => timers.fire(false, &mut run)?,
                    Wake::Expire => timers.expire(&mut run)?,
                    Wake::Flush => run.flush()?,
                    Wake::Msg(Some(InputMsg::Batch(i, b))) => {
                        entry.read(i, &b);
                        timers.data(i);
                        let closed = run.push(i, b.batch)?;
                        entry.late_rows.store(run.late_rows(), Ordering::Relaxed);
                        entry.watermark.store(run.watermark(), Ordering::Relaxed);
                        closed
                    }
                    Wake::Msg(Some(InputMsg::End(i))) => {
                        // Sealed and read: +inf for this input; all of them: every window.
                        done = timers.end(i);
                        run.end_input(i)?
                    }
                    Wake::Msg(Some(InputMsg::Failed(e))) => return Err(e.into()),
                    Wake::Msg(None) => return Ok(()),
                };
                for (_, out) in closed {
                    if !entry.deliver(out, &mut left, &tx).await {
                        return Ok(());
                    }
                }
                if done {
                    return Ok(());
                }
            }
        };
        // A panic in the computation ends the query with an error, not silently.
        use futures::FutureExt;
        let outcome: Result<()> =
            std::panic::AssertUnwindSafe(query).catch_unwind().await.unwrap_or_else(|p| {
                Err(Error::Job(format!(
                    "the query panicked: {}",
                    crate::compute::panic_text(p.as_ref())
                )))
            });
        if let Err(e) = outcome {
            let _ = tx.send(Err(e)).await;
        }
    });
    end_on_rebuild(engine, rebuilt, &task);
    Ok(Subscription { schema, rx, task, ends, _listed: listed })
}

/// A push query over a materialized view (`SELECT ... FROM v EMIT CHANGES`, filters and
/// projections only): the view's rows as of its last checkpoint, as `+I`, then its changelog
/// from the offset they reflect, through the same filters and projections, `__op` last.
async fn start_view(
    engine: &Engine,
    plan: &LogicalPlan,
    limit: Option<usize>,
    at: Option<Location>,
) -> Result<Subscription> {
    use datafusion::arrow::array::{Int8Array, RecordBatch};
    use kappa_sql::stream_plan::run_ops_keeping;
    let (optimized, state) = engine.optimize_continuous(plan, at)?;
    let compiled = kappa_sql::stream_plan::compile(&optimized, &state, at)?;
    let [pipeline] = compiled.inputs.as_slice() else {
        return Err(Error::not_supported(
            "a push query over a materialized view and other streams (UNION ALL)",
            at,
        ));
    };
    let view_name = pipeline.stream.clone();
    if engine.inner.view(&view_name).is_none() {
        return Err(Error::not_supported(
            format!("a push query over materialized view {view_name} and other streams"),
            at,
        ));
    }
    // (Watching for switches before the version is read: none is missed.)
    let switches = engine.inner.switches.subscribe();
    // Read-your-writes: the rows as of what the view's inputs hold now.
    engine.catch_up(std::slice::from_ref(&view_name)).await?;
    // The version and its log together (a switch changes both under the DDL lock).
    let (view, stream) = {
        let _ddl = engine.inner.ddl.lock().await;
        let Some(view) = engine.inner.view(&view_name) else {
            return Err(Error::plan(format!("view {view_name} is gone"), at));
        };
        (view, engine.inner.log(&view_name)?)
    };
    let published = view.current();
    let start = published.as_ref().map_or(0, |p| p.end);
    let width = view.schema().fields().len();
    let columns: Vec<usize> = pipeline.projection.clone().unwrap_or_else(|| (0..width).collect());
    let mut read = columns.clone();
    read.push(width);
    let sealed = stream.info().sealed.is_some();
    // (A rebuild of the view switches the query to the new version: see below.)
    let follow = Follow {
        inner: Arc::downgrade(&engine.inner),
        view: view_name.clone(),
        log: stream.name().to_string(),
        state: Arc::clone(&view),
        columns: columns.clone(),
        read: read.clone(),
        switches,
    };
    let inputs: Vec<InputSpec> = vec![(stream, Some(read), start)];
    let ends = limit.is_some() || sealed;
    let (entry, listed) = list(engine, &inputs);
    let schema = kappa_sql::window_agg::changes::changelog_schema(&compiled.schema);
    let out_schema = Arc::clone(&schema);
    let ops = pipeline.ops.clone();
    // Rows of the view's columns `columns` with their `__op`: through the query's ops.
    let apply = move |data: RecordBatch, op: &[i8]| -> Result<Option<RecordBatch>> {
        let Some((rows, kept)) = run_ops_keeping(&ops, &view_name, data)? else {
            return Ok(None);
        };
        let mut cols = rows.columns().to_vec();
        cols.push(Arc::new(Int8Array::from_iter_values(kept.iter().map(|i| op[*i as usize]))));
        Ok(Some(RecordBatch::try_new(Arc::clone(&out_schema), cols)?))
    };
    let initial = match &published {
        Some(p) if p.rows.num_rows() > 0 => {
            let rows = p.rows.project(&columns)?;
            let ops = vec![kappa_sql::window_agg::changes::INSERT; rows.num_rows()];
            apply(rows, &ops)?
        }
        _ => None,
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        let mut follow = follow;
        let mut left = limit.unwrap_or(usize::MAX);
        if left == 0 {
            return;
        }
        if let Some(rows) = initial
            && !entry.deliver(rows, &mut left, &tx).await
        {
            return;
        }
        // Dropping (or setting) a generation's sender stops its readers.
        let (mut generation, stop_rx) = watch::channel(false);
        let (mut input_rx, mut _readers) = spawn_inputs(&inputs, &stop_rx);
        let mut read_to = start;
        let mut switching = false;
        loop {
            // The view switched to a new version: once the old changelog is read to the end
            // its last rows reflect, its rows go (-D) and the new version's come (+I), then
            // the new changelog from there.
            if switching && read_to >= follow.state.current().map_or(0, |p| p.end) {
                let next = match follow.switch(&apply) {
                    Ok(next) => next,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let Some((changes, spec)) = next else { return };
                for out in changes {
                    if !entry.deliver(out, &mut left, &tx).await {
                        return;
                    }
                }
                read_to = spec.2;
                let _ = generation.send(true);
                let (g, stop_rx) = watch::channel(false);
                generation = g;
                (input_rx, _readers) = spawn_inputs(std::slice::from_ref(&spec), &stop_rx);
                switching = false;
                continue;
            }
            let msg = tokio::select! {
                msg = input_rx.recv() => msg,
                changed = follow.switches.changed(), if !switching => {
                    switching = changed.is_ok() && follow.switched();
                    continue;
                }
            };
            let result = match msg {
                None => return,
                Some(InputMsg::Batch(i, b)) => {
                    entry.read(i, &b);
                    read_to = b.offset + b.batch.num_rows() as u64;
                    match kappa_sql::stream_plan::split_op(&b.batch) {
                        Ok((data, op)) => apply(data, &op),
                        Err(e) => Err(e.into()),
                    }
                }
                Some(InputMsg::End(_)) => return,
                Some(InputMsg::Failed(e)) => Err(e.into()),
            };
            match result {
                Ok(Some(out)) => {
                    if !entry.deliver(out, &mut left, &tx).await {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    Ok(Subscription { schema, rx, task, ends, _listed: listed })
}

/// What a push query over a view needs to follow it to a new version (a rebuild).
struct Follow {
    inner: std::sync::Weak<crate::engine::Inner>,
    view: String,
    /// The log read now.
    log: String,
    /// The version read now.
    state: Arc<crate::view::ViewState>,
    columns: Vec<usize>,
    read: Vec<usize>,
    switches: watch::Receiver<u64>,
}

type Apply<'a> = dyn Fn(
        datafusion::arrow::array::RecordBatch,
        &[i8],
    ) -> Result<Option<datafusion::arrow::array::RecordBatch>>
    + 'a;

impl Follow {
    /// Whether the view's log is another now (a rebuild switched it).
    fn switched(&self) -> bool {
        self.inner.upgrade().is_some_and(|i| i.log_name(&self.view) != self.log)
    }

    /// Move to the view's new version: the changes from the old version's rows to the new
    /// one's (through `apply`), and where to read its changelog. `None` when the engine closed.
    fn switch(
        &mut self,
        apply: &Apply<'_>,
    ) -> Result<Option<(Vec<datafusion::arrow::array::RecordBatch>, InputSpec)>> {
        use kappa_sql::window_agg::changes::{DELETE, INSERT};
        let Some(inner) = self.inner.upgrade() else { return Ok(None) };
        let Some(state) = inner.view(&self.view) else {
            return Err(Error::plan(format!("view {} is gone", self.view), None));
        };
        let stream = inner.log(&self.view)?;
        let now = state.current();
        let start = now.as_ref().map_or(0, |p| p.end);
        let mut changes = Vec::new();
        for (published, op) in [(self.state.current(), DELETE), (now, INSERT)] {
            if let Some(p) = published.filter(|p| p.rows.num_rows() > 0) {
                let rows = p.rows.project(&self.columns)?;
                let ops = vec![op; rows.num_rows()];
                changes.extend(apply(rows, &ops)?);
            }
        }
        self.log = stream.name().to_string();
        self.state = state;
        Ok(Some((changes, (stream, Some(self.read.clone()), start))))
    }
}
