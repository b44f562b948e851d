//! The engine: a store of logs, a catalog, a DataFusion session, and the running jobs.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::ScalarUDF;
use kappa_sql::stream_plan::StatelessPlan;
use kappa_storage::{AppendAck, Store, StoreOptions, Stream};

use crate::catalog::{Catalog, JobEntry, JobState};
use crate::error::{Error, Result};
use crate::job::{JobHandle, Status};
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
}
