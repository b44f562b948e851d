//! The engine: a store of logs, a catalog, a DataFusion session, and the running jobs.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use kappa_sql::stream_plan::StatelessPlan;
use kappa_storage::{AppendAck, Store, StoreOptions, Stream};

use crate::catalog::{Catalog, JobEntry, JobKind, JobState};
use crate::error::{Error, Result};
use crate::job::{self, JobHandle, JobSpec, Status};
use crate::output::{Output, Subscription};
use crate::table::StreamTable;

/// A continuous job's compiled query.
pub(crate) enum JobPlan {
    /// Filters and projections: every batch alone.
    Stateless(StatelessPlan),
    /// A windowed aggregation.
    Windowed(Box<kappa_sql::windowed_plan::WindowedPlan>),
}

impl JobPlan {
    /// The schema of its output.
    pub fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
        match self {
            JobPlan::Stateless(p) => &p.schema,
            JobPlan::Windowed(p) => &p.schema,
        }
    }

    /// The streams it reads, in the order of its inputs.
    pub fn inputs(&self) -> Vec<String> {
        match self {
            JobPlan::Stateless(p) => p.inputs.iter().map(|i| i.stream.clone()).collect(),
            JobPlan::Windowed(p) => p.inputs.iter().map(|i| i.pipeline.stream.clone()).collect(),
        }
    }

    /// The materialized views it depends on without reading them (read as versions through
    /// their inputs: a temporal join).
    pub fn uses(&self) -> Vec<String> {
        match self {
            JobPlan::Windowed(p) => match &p.grouping {
                kappa_sql::windowed_plan::Grouping::Graph(g) => g.uses.clone(),
                _ => Vec::new(),
            },
            JobPlan::Stateless(_) => Vec::new(),
        }
    }

    /// For each output column, the input column it copies unchanged, if any.
    pub fn origins(&self) -> Vec<Option<String>> {
        match self {
            JobPlan::Stateless(p) => p.origins.clone(),
            JobPlan::Windowed(p) => vec![None; p.schema.fields().len()],
        }
    }
}

/// Options of [`Engine::open_with`].
#[derive(Debug, Default)]
pub struct EngineOptions {
    /// Scalar functions to register before any job restarts (jobs that call them need them).
    pub udfs: Vec<ScalarUDF>,
    /// How the store is opened (its I/O: tests inject faults there).
    pub store: StoreOptions,
    /// How often streams' `retention` is enforced in the background (default: a minute).
    pub retention_check: Option<std::time::Duration>,
}

/// The kappa engine, embedded. Cheap to clone (a handle); every method takes `&self`.
///
/// It must run inside a multi-thread tokio runtime: jobs are tasks that do blocking log
/// writes with `block_in_place`.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Arc<Store>,
    pub ctx: SessionContext,
    pub catalog: Mutex<Catalog>,
    pub jobs: Mutex<HashMap<String, JobHandle>>,
    /// Jobs that could not restart on open, with the reason (not persisted).
    pub restart_errors: Mutex<HashMap<String, String>>,
    /// `SET checkpoint_interval`, read by every job.
    pub checkpoint_interval: crate::recovery::Interval,
    pub closed: AtomicBool,
    /// Serializes statements that change the catalog.
    pub ddl: tokio::sync::Mutex<()>,
    /// Running push queries, for `SHOW JOBS`.
    pub push_queries: Arc<crate::subscribe::Registry>,
    /// Running connector sources (nexmark), by stream.
    pub sources: Mutex<HashMap<String, crate::nexmark::source::SourceHandle>>,
    /// `SET state_ttl`: the default for jobs created from now on (not persisted; each job
    /// keeps the value it was created with).
    pub state_ttl: Mutex<Option<std::time::Duration>>,
    /// Materialized views' published rows, by view.
    pub views: Mutex<HashMap<String, Arc<crate::view::ViewState>>>,
    /// Retention and rates in the background (set once open).
    pub retention: std::sync::OnceLock<crate::retention::RetentionTask>,
    /// Rates of streams and jobs, sampled in the background.
    pub meter: crate::meter::Meter,
    /// Bumped at every switch of a stream or view to a new version (push queries follow).
    pub switches: tokio::sync::watch::Sender<u64>,
    /// Rebuild switches under way (their jobs are stopped for a moment).
    pub switching: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Inner {
    pub fn catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a job's state in the catalog.
    pub fn set_job_state(&self, name: &str, state: JobState) -> Result<()> {
        let mut c = self.catalog();
        if let Some(j) = c.jobs.get_mut(name) {
            j.state = state;
        }
        c.save(&self.store)
    }

    pub fn jobs(&self) -> MutexGuard<'_, HashMap<String, JobHandle>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sources(&self) -> MutexGuard<'_, HashMap<String, crate::nexmark::source::SourceHandle>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuse appends to a stream that a job or a connector writes.
    pub fn check_appendable(&self, stream: &str, at: Option<kappa_sql::Location>) -> Result<()> {
        let c = self.catalog();
        let Some(e) = c.streams.get(stream) else { return Ok(()) };
        if let Some(job) = &e.job {
            return Err(Error::plan(
                format!("stream '{stream}' is written by job {job}; append to its inputs"),
                at,
            ));
        }
        if let Some(connector) = e.options.get("connector") {
            return Err(Error::plan(
                format!("stream '{stream}' is filled by its {connector} connector"),
                at,
            ));
        }
        Ok(())
    }

    pub fn restart_errors(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.restart_errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stream(&self, name: &str, at: Option<kappa_sql::Location>) -> Result<Arc<Stream>> {
        let log = {
            let c = self.catalog();
            match c.streams.get(name) {
                Some(e) => e.log.clone().unwrap_or_else(|| name.to_string()),
                None => return Err(Error::plan(format!("stream '{name}' does not exist"), at)),
            }
        };
        Ok(self.store.stream(&log)?)
    }

    /// The log that holds stream (or view) `name` now: its own, or after a rebuild the new
    /// version's ([`crate::catalog::StreamEntry::log`]).
    pub fn log_name(&self, name: &str) -> String {
        self.catalog().log_name(name)
    }

    /// Create log `name` for a stream. A log of that name the catalog no longer holds (an
    /// old version's, dropped after a grace period) goes first.
    ///
    /// # Errors
    /// As [`Store::create_stream`].
    pub fn create_log(
        &self,
        name: &str,
        schema: datafusion::arrow::datatypes::SchemaRef,
        options: kappa_storage::StreamOptions,
    ) -> Result<Arc<Stream>> {
        if self.store.stream(name).is_ok() && !self.catalog().logs().contains(name) {
            self.store.drop_stream(name)?;
        }
        Ok(self.store.create_stream(name, schema, options)?)
    }

    /// The log of stream (or view) `name` ([`Inner::log_name`]).
    ///
    /// # Errors
    /// When it does not exist.
    pub fn log(&self, name: &str) -> Result<Arc<Stream>> {
        Ok(self.store.stream(&self.log_name(name))?)
    }

    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        multi_thread_runtime()
    }

    /// Make `stream` queryable by SQL.
    /// Register view `name`'s table (its published rows) and keep its state for its job.
    pub fn register_view(&self, name: &str, state: Arc<crate::view::ViewState>) -> Result<()> {
        let _ = self.ctx.deregister_table(name)?;
        let table = crate::view::ViewTable { state: Arc::clone(&state) };
        self.ctx.register_table(name, Arc::new(table))?;
        self.views.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), state);
        Ok(())
    }

    /// `SET state_ttl`'s value now.
    pub fn state_ttl(&self) -> Option<std::time::Duration> {
        *self.state_ttl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `state_ttl` job `output`'s entry keeps (its stream's or view's options).
    pub fn job_ttl(&self, output: &str) -> Result<Option<std::time::Duration>> {
        let c = self.catalog();
        let Some(v) = c.streams.get(output).and_then(|e| e.options.get("state_ttl")) else {
            return Ok(None);
        };
        crate::options::duration(v).map(Some).ok_or_else(|| {
            Error::plan(format!("{output}: state_ttl = '{v}' is not a duration"), None)
        })
    }

    /// View `name`'s state, if it is a view.
    pub fn view(&self, name: &str) -> Option<Arc<crate::view::ViewState>> {
        self.views.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Make stream `name` (held in `stream`, its log) a table of snapshot queries.
    pub fn register_table(&self, name: &str, stream: Arc<Stream>) -> Result<()> {
        let _ = self.ctx.deregister_table(name)?;
        self.ctx.register_table(name, Arc::new(StreamTable::new(stream)))?;
        Ok(())
    }
}

/// Kappa runs in a multi-thread tokio runtime (its jobs and COPY write with `block_in_place`).
fn multi_thread_runtime() -> Result<()> {
    let ok = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if ok {
        Ok(())
    } else {
        Err(Error::not_supported("running kappa outside a multi-thread tokio runtime", None))
    }
}

/// How long read-your-writes waits for a job the catalog runs but that is not running (a
/// rebuild's switch stops it for a few milliseconds).
const SWITCH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Engine {
    /// Open (creating if needed) the data directory `dir`: recover every log, load the catalog,
    /// and restart every job where it left off.
    ///
    /// # Errors
    /// [`Error::Storage`] when the directory is locked by another process or damaged;
    /// [`Error::Catalog`].
    pub async fn open(dir: impl AsRef<Path>) -> Result<Engine> {
        Engine::open_with(dir, EngineOptions::default()).await
    }

    /// [`Engine::open`] with options.
    ///
    /// # Errors
    /// As [`Engine::open`]; [`Error::Sql`] when not called inside a multi-thread tokio runtime.
    pub async fn open_with(dir: impl AsRef<Path>, options: EngineOptions) -> Result<Engine> {
        multi_thread_runtime()?;
        let dir = dir.as_ref().to_path_buf();
        let store_options = options.store.clone();
        let store =
            tokio::task::spawn_blocking(move || Store::open(&dir, store_options))
                .await
                .map_err(|e| Error::Io { path: ".".into(), source: std::io::Error::other(e) })??;
        let mut catalog = Catalog::load(&store)?;
        // Reconcile: logs the catalog does not know were never acknowledged; entries without
        // their log were being dropped.
        // A new version's stream whose job was never written (a crash between the two
        // catalog writes of a rebuild) goes, and its log below.
        let orphans: Vec<String> = catalog
            .streams
            .iter()
            .filter(|(n, e)| {
                crate::rebuild::is_version_name(n)
                    && e.job.as_deref() == Some(n.as_str())
                    && !catalog.jobs.contains_key(n.as_str())
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in orphans {
            catalog.streams.remove(&n);
        }
        // (After a rebuild a stream's log is the new version's, `x__v2`; the old version's
        // log, no longer the catalog's, goes here if the switch did not drop it.)
        let names: BTreeSet<String> = store.stream_names().into_iter().collect();
        let logs = catalog.logs();
        for n in &names {
            if !logs.contains(n) {
                store.drop_stream(n)?;
            }
        }
        catalog.streams.retain(|n, e| names.contains(e.log.as_deref().unwrap_or(n)));
        let sinks: BTreeSet<String> = catalog.sinks.keys().cloned().collect();
        let outputs: BTreeSet<String> = catalog.streams.keys().cloned().collect();
        catalog.jobs.retain(|_, j| outputs.contains(&j.output) || sinks.contains(&j.output));
        catalog.save(&store)?;
        let mut config = SessionConfig::new().with_information_schema(true);
        config.options_mut().sql_parser.collect_spans = true;
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        // `1.5` is an exact DECIMAL, as in Flink, PostgreSQL and DuckDB (`0.908 * price` in
        // Nexmark q1 is money), not a DOUBLE.
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        config.options_mut().execution.parquet.schema_force_view_types = false;
        let ctx = SessionContext::new_with_config(config);
        // Kappa's built-ins first: a function of the program's own of the same name wins.
        crate::functions::register(&ctx);
        for udf in options.udfs {
            ctx.register_udf(udf);
        }
        let inner = Arc::new(Inner {
            store: Arc::new(store),
            ctx,
            catalog: Mutex::new(catalog),
            jobs: Mutex::new(HashMap::new()),
            restart_errors: Mutex::new(HashMap::new()),
            checkpoint_interval: crate::recovery::Interval::default(),
            closed: AtomicBool::new(false),
            ddl: tokio::sync::Mutex::new(()),
            push_queries: Arc::default(),
            sources: Mutex::new(HashMap::new()),
            views: Mutex::new(HashMap::new()),
            state_ttl: Mutex::new(None),
            retention: std::sync::OnceLock::new(),
            meter: crate::meter::Meter::default(),
            switches: tokio::sync::watch::channel(0).0,
            switching: std::sync::atomic::AtomicUsize::new(0),
        });
        let every = options
            .retention_check
            .unwrap_or(crate::retention::DEFAULT_CHECK)
            .max(std::time::Duration::from_millis(10));
        let _ = inner
            .retention
            .set(crate::retention::RetentionTask::spawn(Arc::downgrade(&inner), every));
        let streams: Vec<String> = inner.catalog().streams.keys().cloned().collect();
        for name in streams {
            let s = inner.log(&name)?;
            if inner.catalog().is_view(&name) {
                inner.register_view(
                    &name,
                    crate::view::ViewState::new(kappa_sql::window_agg::changes::rows_schema(
                        s.schema(),
                    )),
                )?;
            } else {
                inner.register_table(&name, s)?;
            }
        }
        for name in kappa_sql::window::WINDOW_FUNCTIONS {
            let f = crate::window_table::WindowFunction { name, inner: Arc::downgrade(&inner) };
            inner.ctx.register_udtf(name, Arc::new(f));
        }
        let as_of = crate::as_of::AsOfFunction { inner: Arc::downgrade(&inner) };
        inner.ctx.register_udtf("__as_of", Arc::new(as_of));
        let engine = Engine { inner };
        engine.open_connectors();
        engine.abandon_incomplete().await;
        let to_start: Vec<(String, JobEntry)> = engine
            .inner
            .catalog()
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Running)
            .map(|(n, j)| (n.clone(), j.clone()))
            .collect();
        for (name, entry) in to_start {
            // Not persisted: the next open tries again (a UDF registered, a file restored).
            if let Err(e) = engine.restart_job(&name, &entry).await {
                engine.inner.restart_errors().insert(name, format!("could not restart: {e}"));
            }
        }
        engine.publish_idle_views().await;
        // Rebuilds under way switch once caught up.
        engine.watch_versions();
        Ok(engine)
    }

    /// Run SQL: one or more statements separated by semicolons, in order. Returns one
    /// [`Output`] per statement; stops at the first error (earlier statements took effect).
    ///
    /// # Errors
    /// The first failing statement's error, located in `sql` ([`Error::location`]).
    pub async fn execute(&self, sql: &str) -> Result<Vec<Output>> {
        self.inner.check_open()?;
        let statements = kappa_sql::parse(sql)?;
        let mut out = Vec::with_capacity(statements.len());
        for s in statements {
            let at = Some(s.location);
            out.push(self.run_statement(s).await.map_err(|e| e.or_at(at))?);
        }
        Ok(out)
    }

    /// Run one snapshot query and collect its rows.
    ///
    /// # Errors
    /// As [`Engine::execute`]; [`Error::Sql`] when `sql` is not one query.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut outs = self.execute_one(sql).await?;
        match outs.pop() {
            Some(Output::Rows { batches, .. }) => Ok(batches),
            _ => Err(Error::plan("query() takes a query (SELECT ...); use execute()", None)),
        }
    }

    /// Run one snapshot query and stream its rows as DataFusion computes them, without
    /// collecting them (for results larger than memory, or to measure a batch plan).
    ///
    /// # Errors
    /// As [`Engine::query`]; errors while the rows are computed come through the stream.
    pub async fn query_stream(
        &self,
        sql: &str,
    ) -> Result<datafusion::execution::SendableRecordBatchStream> {
        self.inner.check_open()?;
        let s = kappa_sql::parse_one(sql)?;
        let at = Some(s.location);
        match s.statement {
            kappa_sql::Statement::Query { query, emit: None } => {
                let plan = self.plan_caught_up(query, at).await.map_err(|e| e.or_at(at))?;
                Ok(self.inner.ctx.execute_logical_plan(plan).await?.execute_stream().await?)
            }
            _ => Err(Error::plan("query_stream() takes a query (SELECT ... without EMIT)", at)),
        }
    }

    /// Start a push query: the rows present now, then new rows as they arrive. `sql` is a
    /// query, with or without `EMIT CHANGES`.
    ///
    /// # Errors
    /// As [`Engine::execute`]; "not supported yet" for queries that need state.
    pub async fn subscribe(&self, sql: &str) -> Result<Subscription> {
        self.inner.check_open()?;
        let s = kappa_sql::parse_one(sql)?;
        let at = Some(s.location);
        match s.statement {
            kappa_sql::Statement::Query { query, emit } => {
                crate::subscribe::start(self, query, emit, at).await.map_err(|e| e.or_at(at))
            }
            _ => Err(Error::plan("subscribe() takes a query (SELECT ...)", at)),
        }
    }

    /// Append a batch to a stream; returns once it is durable (or written, for a relaxed
    /// stream).
    ///
    /// # Errors
    /// [`Error::Sql`] for an unknown stream; [`Error::Storage`] for a schema mismatch, a
    /// sealed stream, or an I/O failure.
    pub async fn append(&self, stream: &str, batch: RecordBatch) -> Result<AppendAck> {
        self.inner.check_open()?;
        let s = self.inner.stream(stream, None)?;
        self.inner.check_appendable(stream, None)?;
        let ack = tokio::task::spawn_blocking(move || s.append(&batch))
            .await
            .map_err(|e| Error::Io { path: stream.into(), source: std::io::Error::other(e) })??;
        Ok(ack)
    }

    /// Register a scalar function for queries and jobs created from now on. Jobs that use it
    /// restart after a reopen only if it is registered again ([`EngineOptions::udfs`]).
    pub fn register_udf(&self, udf: ScalarUDF) {
        self.inner.ctx.register_udf(udf);
    }

    /// The streams of the catalog and their schemas, by name (for a shell's completion).
    pub fn streams(&self) -> Vec<(String, datafusion::arrow::datatypes::SchemaRef)> {
        // (A materialized view's log is its changelog, not a stream of its own.)
        let names: Vec<String> = {
            let c = self.inner.catalog();
            c.streams.keys().filter(|n| !c.is_view(n)).cloned().collect()
        };
        let mut out: Vec<_> = names
            .into_iter()
            .filter_map(|n| {
                let schema = Arc::clone(self.inner.log(&n).ok()?.schema());
                Some((n, schema))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The materialized views and their columns, by name (for a shell's completion).
    pub fn views(&self) -> Vec<(String, datafusion::arrow::datatypes::SchemaRef)> {
        let views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> =
            views.iter().map(|(n, v)| (n.clone(), Arc::clone(v.schema()))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The rows stream `name` holds now (retained and readable), if it exists (for a shell's
    /// progress display).
    pub fn stream_rows(&self, name: &str) -> Option<u64> {
        let info = self.inner.log(name).ok()?.info();
        Some(info.end - info.start)
    }

    /// Wait until every connector source that ends has ended (nexmark with a number of
    /// events), then until every running job has processed everything its inputs hold (what
    /// `kappa -f` does before it exits).
    ///
    /// # Errors
    /// The error of a job that failed meanwhile.
    pub async fn wait_for_jobs(&self) -> Result<()> {
        self.wait_for_sources().await?;
        let outputs: Vec<String> =
            self.inner.catalog().jobs.values().map(|j| j.output.clone()).collect();
        let names = self.upstream_order(&outputs);
        self.catch_up_jobs(&names).await?;
        for name in names {
            let status = self.inner.jobs().get(&name).map(|j| j.progress.borrow().status.clone());
            if let Some(Status::Failed(m)) = status {
                return Err(Error::plan(format!("job {name} failed: {m}"), None));
            }
        }
        self.wait_for_rebuilds().await
    }

    /// Stop every job (each records its progress) and close the logs.
    ///
    /// # Errors
    /// [`Error::Storage`] when a log cannot be closed cleanly.
    pub async fn close(&self) -> Result<()> {
        let _ddl = self.inner.ddl.lock().await;
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop_sources(None).await;
        if let Some(r) = self.inner.retention.get() {
            r.stop().await;
        }
        let jobs: Vec<JobHandle> = self.inner.jobs().drain().map(|(_, j)| j).collect();
        for j in &jobs {
            let _ = j.stop.send(true);
        }
        for j in jobs {
            let _ = j.task.await;
        }
        let store = Arc::clone(&self.inner.store);
        tokio::task::spawn_blocking(move || store.close())
            .await
            .map_err(|e| Error::Io { path: ".".into(), source: std::io::Error::other(e) })??;
        Ok(())
    }

    async fn execute_one(&self, sql: &str) -> Result<Vec<Output>> {
        self.inner.check_open()?;
        let s = kappa_sql::parse_one(sql)?;
        let at = Some(s.location);
        Ok(vec![self.run_statement(s).await.map_err(|e| e.or_at(at))?])
    }

    /// The jobs that write `stream` (its deriving job, `INSERT INTO` jobs, the job whose
    /// late rows it keeps).
    pub(crate) fn writers_of(&self, stream: &str) -> Vec<(String, Vec<String>)> {
        let c = self.inner.catalog();
        let owner = c.streams.get(stream).and_then(|e| e.job.clone());
        c.jobs
            .iter()
            .filter(|(n, j)| {
                (j.output == stream || owner.as_deref() == Some(n.as_str()))
                    && j.state == JobState::Running
            })
            .map(|(n, j)| (n.clone(), j.inputs.clone()))
            .collect()
    }

    /// Plan a snapshot query over what every job upstream of it has processed of its inputs
    /// now ([`Engine::catch_up`]), its views pinned. When a rebuild switched a name meanwhile,
    /// the plan (which may read the old version, whose job stopped) is made again.
    pub(crate) async fn plan_caught_up(
        &self,
        query: Box<kappa_sql::sqlparser::ast::Query>,
        at: Option<kappa_sql::Location>,
    ) -> Result<LogicalPlan> {
        let mut tries = 0;
        loop {
            let before = *self.inner.switches.borrow();
            let plan = self.plan_query(query.clone(), at).await?;
            self.catch_up(&crate::statements::scanned_streams(&plan)).await?;
            tries += 1;
            if *self.inner.switches.borrow() == before || tries == 3 {
                return crate::view::pin_views(plan);
            }
        }
    }

    /// Read-your-writes: for every job upstream of `streams`, wait until it has processed what
    /// its inputs held when this was called (upstream jobs first).
    pub(crate) async fn catch_up(&self, streams: &[String]) -> Result<()> {
        let order = self.upstream_order(streams);
        self.catch_up_jobs(&order).await
    }

    /// The running jobs that feed `streams`, directly or not, each after every job it reads
    /// from (a post-order walk: upstream first).
    fn upstream_order(&self, streams: &[String]) -> Vec<String> {
        enum Step {
            Stream(String),
            Done(String),
        }
        let mut order: Vec<String> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<Step> = streams.iter().rev().map(|s| Step::Stream(s.clone())).collect();
        while let Some(step) = stack.pop() {
            match step {
                Step::Done(job) => order.push(job),
                Step::Stream(s) => {
                    for (job, inputs) in self.writers_of(&s) {
                        if seen.insert(job.clone()) {
                            stack.push(Step::Done(job));
                            stack.extend(inputs.into_iter().map(Step::Stream));
                        }
                    }
                }
            }
        }
        order
    }

    async fn catch_up_jobs(&self, jobs: &[String]) -> Result<()> {
        for name in jobs {
            // A job the catalog runs is stopped for the few milliseconds of a rebuild's switch
            // (its new version then resumes under the name): wait for it, a while.
            let deadline = tokio::time::Instant::now() + SWITCH_WAIT;
            loop {
                let entry = self
                    .inner
                    .catalog()
                    .jobs
                    .get(name)
                    .map(|j| (j.inputs.clone(), j.state.clone()));
                let Some((inputs, state)) = entry else { break };
                let targets: Vec<u64> = inputs
                    .iter()
                    .map(|s| self.inner.log(s).map(|s| s.readable_end()).unwrap_or(0))
                    .collect();
                // A job whose inputs are all sealed runs to its end (and seals its output).
                let sealed = inputs
                    .iter()
                    .all(|s| self.inner.log(s).is_ok_and(|s| s.info().sealed.is_some()));
                let rx = self
                    .inner
                    .jobs()
                    .get(name)
                    .map(|j| (j.progress.clone(), Arc::clone(&j.request)));
                if let Some((mut rx, request)) = rx {
                    job::wait_for(&mut rx, &request, &targets, sealed).await;
                    break;
                }
                let stopped = state != JobState::Running
                    || self.inner.switching.load(std::sync::atomic::Ordering::Acquire) == 0
                    || tokio::time::Instant::now() > deadline;
                if stopped {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    /// Plan a query with DataFusion (tables are the streams).
    pub(crate) async fn plan_query(
        &self,
        query: Box<kappa_sql::sqlparser::ast::Query>,
        at: Option<kappa_sql::Location>,
    ) -> Result<LogicalPlan> {
        let stmt = kappa_sql::sqlparser::ast::Statement::Query(query);
        let state = self.inner.ctx.state();
        state
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(stmt)))
            .await
            .map_err(|e| crate::error::planning(e, at))
    }

    /// Plan an `INSERT`: DataFusion types `VALUES` by the target's columns, fills unlisted
    /// columns with NULL and casts to the target's types. Returns the plan of the rows.
    pub(crate) async fn plan_insert(
        &self,
        statement: kappa_sql::sqlparser::ast::Statement,
        at: Option<kappa_sql::Location>,
    ) -> Result<LogicalPlan> {
        let state = self.inner.ctx.state();
        let plan = state
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(statement)))
            .await
            .map_err(|e| crate::error::planning(e, at))?;
        match plan {
            LogicalPlan::Dml(d) => Ok(d.input.as_ref().clone()),
            _ => Err(Error::plan("not an INSERT", at)),
        }
    }

    /// Compile a continuous query after DataFusion's optimizer (run once): a windowed
    /// aggregation, or else a stateless query.
    pub(crate) async fn compile_job(
        &self,
        plan: &LogicalPlan,
        emit: Option<&kappa_sql::ast::Emit>,
        at: Option<kappa_sql::Location>,
    ) -> Result<JobPlan> {
        let emit_clause = emit;
        let emit = self.emit_mode(emit, at)?;
        // Deduplicating views read as of an event time: their inputs, as versions.
        let expanded = self.expand_versions(plan, at).await?;
        let (plan, views) = match &expanded {
            Some((p, views)) => (p, views.as_slice()),
            None => (plan, &[][..]),
        };
        let (optimized, state) = self.optimize_continuous(plan, at)?;
        let inner = Arc::clone(&self.inner);
        let resolve = move |scan: &datafusion::logical_expr::TableScan| {
            crate::window_table::window_source(&inner, scan)
        };
        // Joins, and the aggregations and TopNs over or under them: a graph of operators.
        let streams = |name: &str| crate::view::stream_info(&self.inner, name);
        let as_of = crate::as_of::as_of;
        let graph = kappa_sql::graph::compile_graph(
            &optimized, &state, at, &resolve, &streams, &as_of, emit,
        )?
        .map(|g| JobPlan::Windowed(Box::new(g)));
        // A view expanded into its versions is only the table of a temporal join.
        let used = graph.as_ref().map(JobPlan::uses).unwrap_or_default();
        if let Some(v) = views.iter().find(|v| !used.contains(v)) {
            return Err(Error::not_supported(
                format!(
                    "reading view {v} FOR SYSTEM_TIME AS OF an event time other than as the table a JOIN looks up as of the other side's time"
                ),
                at,
            ));
        }
        if let Some(g) = graph {
            return Ok(g);
        }
        if let Some(w) =
            kappa_sql::windowed_plan::compile_windowed(&optimized, &state, at, &resolve, emit)?
        {
            return Ok(JobPlan::Windowed(Box::new(w)));
        }
        // Without windows: a changelog of the groups (EMIT CHANGES, also when not written).
        let updating_emit = match emit_clause {
            None => kappa_sql::windowed_plan::EmitMode::Changes { every_ms: None },
            Some(_) => emit,
        };
        let changelog = |stream: &str| crate::view::changelog_columns(&self.inner, stream);
        if let Some(u) = kappa_sql::updating_plan::compile_updating(
            &optimized,
            &state,
            at,
            &changelog,
            updating_emit,
        )? {
            return Ok(JobPlan::Windowed(Box::new(u)));
        }
        let is_changelog = |stream: &str| changelog(stream).is_some();
        if let Some(t) = kappa_sql::topn_plan::compile_topn(
            &optimized,
            &state,
            at,
            &is_changelog,
            updating_emit,
        )? {
            return Ok(JobPlan::Windowed(Box::new(t)));
        }
        // Continuous queries read streams only (not information_schema).
        for name in crate::statements::scanned_tables(&optimized) {
            let function = name.table().strip_suffix("()");
            if function.is_some_and(|f| kappa_sql::window::WINDOW_FUNCTIONS.contains(&f)) {
                return Err(Error::not_supported(
                    "a window function in a continuous query without a windowed aggregation (GROUP BY window_start, window_end, ...)",
                    at,
                ));
            }
            if self.inner.catalog().is_view(name.table()) {
                return Err(Error::not_supported(
                    format!(
                        "reading materialized view {name} in a continuous query without aggregation (aggregate it, or SUBSCRIBE to it)"
                    ),
                    at,
                ));
            }
            if name.schema().is_some() || !self.inner.catalog().streams.contains_key(name.table()) {
                return Err(Error::not_supported(
                    format!("reading {name} in a continuous query (only streams)"),
                    at,
                ));
            }
        }
        Ok(JobPlan::Stateless(kappa_sql::stream_plan::compile(&optimized, &state, at)?))
    }

    /// A continuous query's plan after DataFusion's optimizer, and the session state that
    /// compiles it.
    pub(crate) fn optimize_continuous(
        &self,
        plan: &LogicalPlan,
        at: Option<kappa_sql::Location>,
    ) -> Result<(LogicalPlan, datafusion::execution::SessionState)> {
        // Without the rewrite of a DISTINCT aggregate into an aggregation over an aggregation:
        // an aggregation keeps COUNT(DISTINCT x) as one distinct state per group.
        let state = self.inner.ctx.state();
        // A temporal join needs both sides' event times, which the query may not select: the
        // columns are not pruned then.
        let temporal = crate::as_of::reads_as_of(plan);
        // Nor are filters pushed into a temporal join's table: a version filtered out is
        // still the latest of its key (a filter over the join's output is not one over its
        // versions).
        let rules = state
            .optimizers()
            .iter()
            .filter(|r| r.name() != "single_distinct_aggregation_to_group_by")
            .filter(|r| !temporal || r.name() != "optimize_projections")
            .filter(|r| !temporal || r.name() != "push_down_filter")
            .cloned()
            .collect();
        let state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_optimizer_rules(rules)
            .build();
        let optimized = state.optimize(plan).map_err(|e| crate::error::planning(e, at))?;
        Ok((optimized, state))
    }

    /// The emit policy of a windowed aggregation from its `EMIT` clause (`EVERY` must be a
    /// positive constant interval).
    pub(crate) fn emit_mode(
        &self,
        emit: Option<&kappa_sql::ast::Emit>,
        at: Option<kappa_sql::Location>,
    ) -> Result<kappa_sql::windowed_plan::EmitMode> {
        use kappa_sql::ast::Emit;
        use kappa_sql::windowed_plan::EmitMode;
        Ok(match emit {
            None | Some(Emit::Final) => EmitMode::Final,
            Some(Emit::Changes { every: None }) => EmitMode::Changes { every_ms: None },
            Some(Emit::Changes { every: Some(e) }) => {
                let state = self.inner.ctx.state();
                let text = e.to_string();
                let bad = || {
                    Error::plan(
                        format!(
                            "EMIT CHANGES EVERY takes a positive interval of days or less, like INTERVAL '5' SECOND, got {text}"
                        ),
                        at,
                    )
                };
                let expr = state
                    .create_logical_expr(&text, &datafusion::common::DFSchema::empty())
                    .map_err(|_| bad())?;
                let value = match expr {
                    datafusion::logical_expr::Expr::Literal(v, _) => v,
                    _ => return Err(bad()),
                };
                match kappa_sql::window::fixed_millis(&value) {
                    Some(ms) if ms > 0 => EmitMode::Changes { every_ms: Some(ms) },
                    _ => return Err(bad()),
                }
            }
        })
    }

    /// Stream `stream`'s `idle_timeout` option.
    ///
    /// # Errors
    /// When the catalog holds a value that is not a duration.
    pub(crate) fn idle_timeout(&self, stream: &str) -> Result<Option<std::time::Duration>> {
        let c = self.inner.catalog();
        let Some(v) = c.streams.get(stream).and_then(|e| e.options.get("idle_timeout")) else {
            return Ok(None);
        };
        crate::options::duration(v).map(Some).ok_or_else(|| {
            Error::plan(format!("stream {stream}: idle_timeout = '{v}' is not a duration"), None)
        })
    }

    /// Whether `stream` is upstream of any of `streams` (through jobs).
    pub(crate) fn feeds(&self, stream: &str, streams: &[String]) -> bool {
        let jobs = self.upstream_order(streams);
        let c = self.inner.catalog();
        jobs.iter().filter_map(|j| c.jobs.get(j)).any(|j| j.inputs.iter().any(|i| i == stream))
    }

    /// `RESUME JOB name`: restart a job that failed (or could not restart on open) from its
    /// last checkpoint.
    ///
    /// # Errors
    /// When there is no such job, it runs or finished, or it fails to start again (it then
    /// stays as it was, and `SHOW JOBS` shows that error).
    pub(crate) async fn resume_job(
        &self,
        name: &str,
        at: Option<kappa_sql::Location>,
    ) -> Result<Output> {
        let Some(entry) = self.inner.catalog().jobs.get(name).cloned() else {
            return Err(Error::plan(
                format!("there is no job named {name} (SHOW JOBS lists them)"),
                at,
            ));
        };
        let status = self.inner.jobs().get(name).map(|h| h.progress.borrow().status.clone());
        match (&entry.state, status) {
            // (A job that just failed is marked failed in the catalog first.)
            (JobState::Running, Some(Status::Running)) => {
                return Err(Error::plan(format!("job {name} is running"), at));
            }
            (JobState::Finished, _) | (_, Some(Status::Finished)) => {
                return Err(Error::plan(
                    format!("job {name} finished: its inputs are sealed and read"),
                    at,
                ));
            }
            _ => {}
        }
        self.stop_job(name).await;
        let previous = entry.state.clone();
        self.inner.set_job_state(name, JobState::Running)?;
        self.inner.restart_errors().remove(name);
        let entry = JobEntry { state: JobState::Running, ..entry };
        if let Err(e) = self.restart_job(name, &entry).await {
            // As it was (a job that could not restart on open is tried again at the next).
            self.inner.set_job_state(name, previous)?;
            self.inner.restart_errors().insert(name.to_string(), format!("could not resume: {e}"));
            return Err(e.or_at(at));
        }
        Ok(Output::Done { tag: "RESUME JOB".into(), rows: None })
    }

    /// A job's plan, planned and compiled again from the statement its catalog entry keeps.
    ///
    /// # Errors
    /// When the statement no longer parses, plans or compiles.
    pub(crate) async fn compile_entry(&self, entry: &JobEntry) -> Result<JobPlan> {
        let parsed = kappa_sql::parse_one(&entry.query)?;
        // (A version in a cascade reads the new versions of its inputs until the switch.)
        let renamed = |mut query: Box<kappa_sql::sqlparser::ast::Query>| {
            kappa_sql::rename::rename_tables(&mut query, &entry.reads).map(|()| query)
        };
        let (plan, emit) = match parsed.statement {
            kappa_sql::Statement::Query { query, emit } => {
                (self.plan_query(renamed(query)?, None).await?, emit)
            }
            kappa_sql::Statement::CreateStream(c) => match c.query {
                Some((query, emit)) => (self.plan_query(renamed(query)?, None).await?, emit),
                None => return Err(Error::plan("a job's statement has no query", None)),
            },
            kappa_sql::Statement::Insert { statement, .. } => {
                (self.plan_insert(*statement, None).await?, None)
            }
            kappa_sql::Statement::CreateMaterializedView { query, emit, .. } => {
                (self.plan_query(renamed(query)?, None).await?, emit)
            }
            _ => return Err(Error::plan("a job's query is not a query", None)),
        };
        self.compile_job(&plan, emit.as_ref(), None).await
    }

    /// Start a job from its catalog entry (on open).
    pub(crate) async fn restart_job(&self, name: &str, entry: &JobEntry) -> Result<()> {
        let compiled = self.compile_entry(entry).await?;
        if entry.kind.owns_output() {
            // Planned again, the query must still give the stream's columns (a setting or a
            // function that changed since could change a type).
            let stream = self.inner.log(&entry.output)?;
            let columns = |s: &datafusion::arrow::datatypes::Schema| -> Vec<String> {
                s.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect()
            };
            let (now, stored) = (columns(compiled.schema()), columns(stream.schema()));
            if now != stored {
                return Err(Error::plan(
                    format!(
                        "its query now gives the columns ({}), but stream {} holds ({})",
                        now.join(", "),
                        entry.output,
                        stored.join(", ")
                    ),
                    None,
                ));
            }
        }
        self.launch_job(name, entry, compiled)
    }

    /// Run a job whose catalog entry exists.
    pub(crate) fn launch_job(&self, name: &str, entry: &JobEntry, plan: JobPlan) -> Result<()> {
        self.inner.check_open()?;
        let inputs = plan
            .inputs()
            .iter()
            .map(|s| self.inner.log(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // A sink table takes the rows without a log.
        let output = if self.inner.catalog().sinks.contains_key(&entry.output) {
            None
        } else {
            Some(self.inner.log(&entry.output)?)
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let job_name = name.to_string();
        let on_end = Box::new(move |status: &Status| {
            let Some(inner) = weak.upgrade() else { return };
            let state = match status {
                Status::Finished => JobState::Finished,
                Status::Failed(m) => JobState::Failed(m.clone()),
                Status::Running | Status::Stopped => return,
            };
            let _ = inner.set_job_state(&job_name, state);
        });
        let handle = match plan {
            JobPlan::Stateless(plan) => job::start(JobSpec {
                name: name.to_string(),
                id: entry.id,
                kind: entry.kind,
                plan: Arc::new(plan),
                inputs,
                start: (!entry.start.is_empty()).then(|| entry.start.clone()),
                output,
                store: Arc::clone(&self.inner.store),
                interval: self.inner.checkpoint_interval.clone(),
                on_end,
            })?,
            JobPlan::Windowed(plan) => {
                let mut late = Vec::with_capacity(inputs.len());
                let mut idle = Vec::with_capacity(inputs.len());
                let names = plan.inputs.iter().map(|i| i.pipeline.stream.clone());
                // (An aggregation without windows has no late rows; a plan of several
                // operators has when one of its inputs is read by event time.)
                let has_late = plan.windows().is_some()
                    || matches!(
                        &plan.grouping,
                        kappa_sql::windowed_plan::Grouping::Graph(g)
                            if g.sources.iter().any(|s| s.late_by.is_some() || s.raw)
                    );
                for (i, (input, stream)) in inputs.iter().zip(names).enumerate() {
                    if has_late {
                        late.push(self.late_stream(name, i, input.name())?);
                    }
                    idle.push(self.idle_timeout(&stream)?);
                }
                crate::window_job::start(crate::window_job::WindowJobSpec {
                    name: name.to_string(),
                    id: entry.id,
                    kind: entry.kind,
                    plan: *plan,
                    inputs,
                    start: (!entry.start.is_empty()).then(|| entry.start.clone()),
                    idle,
                    output,
                    late,
                    view: self.inner.view(name),
                    ttl: self.inner.job_ttl(&entry.output)?,
                    store: Arc::clone(&self.inner.store),
                    interval: self.inner.checkpoint_interval.clone(),
                    on_end,
                })?
            }
        };
        self.inner.jobs().insert(name.to_string(), handle);
        Ok(())
    }

    /// Stop a job and wait for it.
    pub(crate) async fn stop_job(&self, name: &str) {
        let handle = self.inner.jobs().remove(name);
        if let Some(h) = handle {
            let _ = h.stop.send(true);
            let _ = h.task.await;
        }
    }

    /// Add a job to the catalog and start it.
    pub(crate) fn create_job(
        &self,
        name: &str,
        kind: JobKind,
        output: &str,
        query_text: &str,
        plan: JobPlan,
    ) -> Result<()> {
        self.create_job_version(name, kind, output, query_text, plan, None)
    }

    /// [`Engine::create_job`], or of a new version of a stream or view (`version`).
    pub(crate) fn create_job_version(
        &self,
        name: &str,
        kind: JobKind,
        output: &str,
        query_text: &str,
        plan: JobPlan,
        version: Option<crate::cascade::VersionOf>,
    ) -> Result<()> {
        let entry = {
            let mut c = self.inner.catalog();
            // (A new version reads the stream's inputs, and in a cascade the new versions it
            // reads under the old names; never anything else being rebuilt.)
            let rebuilding = crate::rebuild::being_rebuilt(&c);
            let renamed: Vec<&String> =
                version.as_ref().map(|v| v.reads.values().collect()).unwrap_or_default();
            if let Some((read, v)) = plan
                .inputs()
                .iter()
                .chain(plan.uses().iter())
                .filter(|s| !renamed.contains(s))
                .find_map(|s| rebuilding.get(s).map(|v| (s.clone(), v.clone())))
            {
                return Err(Error::not_supported(
                    format!(
                        "a job reading '{read}' while job {v} rebuilds it (its reads would span the two versions: wait for the switch, or DROP JOB {v})"
                    ),
                    None,
                ));
            }
            if c.jobs.len() >= crate::catalog::MAX_JOBS {
                return Err(Error::plan(
                    format!("at most {} jobs may exist", crate::catalog::MAX_JOBS),
                    None,
                ));
            }
            let id = c.next_job_id;
            if id >= 1 << 24 {
                return Err(Error::plan("job ids are exhausted (2^24 jobs were created)", None));
            }
            c.next_job_id += 1;
            let entry = JobEntry {
                id,
                kind,
                output: output.to_string(),
                query: query_text.to_string(),
                inputs: plan.inputs(),
                uses: plan.uses(),
                replaces: version.as_ref().map(|v| v.replaces.clone()),
                start: version.as_ref().map(|v| v.start.clone()).unwrap_or_default(),
                group: version.as_ref().and_then(|v| v.group.clone()),
                reads: version.map(|v| v.reads).unwrap_or_default(),
                state: JobState::Running,
            };
            c.jobs.insert(name.to_string(), entry.clone());
            c.save(&self.inner.store)?;
            entry
        };
        if let Err(e) = self.launch_job(name, &entry, plan) {
            let mut c = self.inner.catalog();
            c.jobs.remove(name);
            let _ = c.save(&self.inner.store);
            return Err(e);
        }
        Ok(())
    }
}
