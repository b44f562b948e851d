//! Materialized views: `CREATE MATERIALIZED VIEW v AS SELECT ... GROUP BY ...` (or a TopN,
//! a deduplication: `ROW_NUMBER() OVER (...)` bounded by a filter).
//!
//! A view is a job of an updating aggregation ([`kappa_sql::updating_agg`]) or a TopN
//! ([`kappa_sql::topn`]) whose output log,
//! named as the view, is its changelog (the view's columns, then `__op`; a derived log,
//! committed at the job's checkpoints). The view's current rows are not kept twice: the
//! aggregation's state holds them, and at every checkpoint the job **publishes** them
//! ([`ViewState::publish`]): one batch of the rows as of that checkpoint, with the changelog
//! offset they reflect. A snapshot query reads the rows last published (after the usual
//! read-your-writes wait, which asks the job for a checkpoint), so it never sees a half-applied
//! epoch. On open, a view whose job does not run (finished, failed) publishes the rows of its
//! last checkpoint.
//!
//! Continuous queries read a view as its changelog: an aggregation over it takes back the
//! rows its `-U` and `-D` rows retract.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::datasource::TableProvider;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::engine::JobPlan;
use crate::error::{Error, Result};

/// A view's rows as of one checkpoint.
#[derive(Debug)]
pub(crate) struct Published {
    /// The rows (the view's columns).
    pub rows: RecordBatch,
    /// The end of the view's changelog they reflect.
    pub end: u64,
}

/// What the job of a view shares with its table.
#[derive(Debug)]
pub(crate) struct ViewState {
    schema: SchemaRef,
    current: RwLock<Option<Arc<Published>>>,
}

impl ViewState {
    /// A view of these columns, with no rows published yet.
    pub fn new(schema: SchemaRef) -> Arc<ViewState> {
        Arc::new(ViewState { schema, current: RwLock::new(None) })
    }

    /// The view's columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Make `rows` (as of changelog offset `end`) what queries see.
    pub fn publish(&self, rows: RecordBatch, end: u64) {
        let p = Arc::new(Published { rows, end });
        match self.current.write() {
            Ok(mut c) => *c = Some(p),
            Err(poisoned) => *poisoned.into_inner() = Some(p),
        }
    }

    /// The rows last published, if any.
    pub fn current(&self) -> Option<Arc<Published>> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A view as a DataFusion table: the rows last published.
#[derive(Debug)]
pub(crate) struct ViewTable {
    pub state: Arc<ViewState>,
}

#[async_trait]
impl TableProvider for ViewTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.state.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let rows = match self.state.current() {
            Some(p) => vec![p.rows.clone()],
            None => Vec::new(),
        };
        let exec = MemorySourceConfig::try_new_exec(&[rows], self.schema(), projection.cloned())?;
        Ok(exec)
    }
}

/// Where a changelog stream keeps `__op` (a stream whose last column is `__op`, `TINYINT`): a
/// view's changelog hides it from queries, a stream made by `EMIT CHANGES` shows it.
pub(crate) fn changelog_columns(
    inner: &crate::engine::Inner,
    stream: &str,
) -> Option<kappa_sql::updating_plan::ChangelogColumns> {
    let s = inner.log(stream).ok()?;
    let fields = s.schema().fields();
    let last = fields.last()?;
    if last.name() != kappa_sql::window_agg::changes::OP_COLUMN
        || last.data_type() != &datafusion::arrow::datatypes::DataType::Int8
    {
        return None;
    }
    let n = fields.len();
    let visible = if inner.catalog().is_view(stream) { n - 1 } else { n };
    Some(kappa_sql::updating_plan::ChangelogColumns { op: n - 1, visible })
}

/// What a join's plan needs to know of a stream read: its columns, its watermark, where a
/// changelog keeps `__op`.
pub(crate) fn stream_info(
    inner: &crate::engine::Inner,
    stream: &str,
) -> Option<kappa_sql::graph::StreamInfo> {
    let s = inner.log(stream).ok()?;
    let watermark = inner.catalog().streams.get(stream)?.watermark.clone();
    Some(kappa_sql::graph::StreamInfo {
        schema: Arc::clone(s.schema()),
        watermark: watermark.map(|w| (w.expr, w.column)),
        changelog: changelog_columns(inner, stream),
        sealed: s.info().sealed.is_some(),
    })
}

/// A `CREATE MATERIALIZED VIEW` statement.
pub(crate) struct NewView {
    pub name: String,
    pub or_replace: bool,
    pub if_not_exists: bool,
    pub options: Vec<(String, String)>,
    pub query: Box<kappa_sql::sqlparser::ast::Query>,
    pub emit: Option<kappa_sql::ast::Emit>,
}

impl crate::engine::Engine {
    /// `CREATE MATERIALIZED VIEW v AS SELECT ...`: the changelog log `v`, its job, its table.
    pub(crate) async fn create_view(
        &self,
        v: NewView,
        text: &str,
        at: Option<kappa_sql::Location>,
    ) -> Result<crate::output::Output> {
        use kappa_sql::ast::Emit;
        let done =
            || crate::output::Output::Done { tag: "CREATE MATERIALIZED VIEW".into(), rows: None };
        if v.or_replace && self.inner.catalog().is_view(&v.name) {
            return self
                .replace(kappa_sql::ast::ObjectKind::MaterializedView, &v.name, text, at)
                .await;
        }
        crate::rebuild::check_not_version_name(&v.name, true, at)?;
        if v.name.contains(crate::late::SUFFIX) {
            return Err(Error::plan(
                format!("names holding {} are kept for the late rows of jobs", crate::late::SUFFIX),
                at,
            ));
        }
        let exists = {
            let c = self.inner.catalog();
            if c.is_view(&v.name) {
                Some("a materialized view")
            } else if c.streams.contains_key(&v.name) {
                Some("a stream")
            } else if c.sinks.contains_key(&v.name) {
                Some("a sink table")
            } else {
                None
            }
        };
        match exists {
            Some("a materialized view") if v.if_not_exists => return Ok(done()),
            Some(what) => {
                return Err(Error::plan(format!("'{}' exists already, as {what}", v.name), at));
            }
            None => {}
        }
        if !matches!(v.emit, None | Some(Emit::Changes { every: None })) {
            return Err(Error::plan(
                "a materialized view takes its changes as they come: no EMIT clause but EMIT CHANGES",
                at,
            ));
        }
        let mut ttl = self.inner.state_ttl();
        for (k, value) in &v.options {
            match k.as_str() {
                "state_ttl" => ttl = parse_ttl(value, at)?,
                other => {
                    return Err(Error::plan(
                        format!(
                            "unknown option '{other}' of a materialized view (it takes state_ttl)"
                        ),
                        at,
                    ));
                }
            }
        }
        let plan = self.plan_query(v.query, at).await?;
        let compiled = self.compile_job(&plan, v.emit.as_ref(), at).await?;
        check_ttl(&compiled, ttl, at)?;
        check_view_plan(&compiled, at)?;
        let schema = Arc::clone(compiled.schema());
        crate::statements::check_unique_names(&schema, at)?;
        let mut options = crate::options::stream_options(&Default::default(), at)?;
        // Readers see its changes once a checkpoint of the job commits them.
        options.derived = true;
        self.inner.create_log(&v.name, Arc::clone(&schema), options)?;
        let mut entry =
            crate::catalog::StreamEntry { job: Some(v.name.clone()), ..Default::default() };
        if let Some(ttl) = ttl {
            entry.options.insert("state_ttl".into(), format!("{}ms", ttl.as_millis()));
        }
        self.inner.catalog().streams.insert(v.name.clone(), entry);
        let state = ViewState::new(kappa_sql::window_agg::changes::rows_schema(&schema));
        let created = self.inner.register_view(&v.name, state).and_then(|()| {
            self.create_job(
                &v.name,
                crate::catalog::JobKind::MaterializedView,
                &v.name,
                text,
                compiled,
            )
        });
        if let Err(e) = created {
            {
                let mut c = self.inner.catalog();
                c.streams.remove(&v.name);
                let _ = c.save(&self.inner.store);
            }
            self.inner.views.lock().unwrap_or_else(|p| p.into_inner()).remove(&v.name);
            let _ = self.inner.ctx.deregister_table(v.name.as_str());
            let _ = self.inner.store.drop_stream(&v.name);
            return Err(e);
        }
        Ok(done())
    }

    /// Publish the rows of the last checkpoint of every view whose job does not run
    /// (finished, failed, or not restarted), so that queries see them.
    pub(crate) async fn publish_idle_views(&self) {
        let idle: Vec<(String, crate::catalog::JobEntry)> = {
            let c = self.inner.catalog();
            let jobs = self.inner.jobs();
            c.jobs
                .iter()
                .filter(|(n, _)| c.is_view(n) && !jobs.contains_key(n.as_str()))
                .map(|(n, j)| (n.clone(), j.clone()))
                .collect()
        };
        for (name, entry) in idle {
            if let Err(e) = self.publish_from_checkpoint(&name, &entry).await {
                self.inner
                    .restart_errors()
                    .insert(name, format!("could not load the view's rows: {e}"));
            }
        }
    }

    async fn publish_from_checkpoint(
        &self,
        name: &str,
        entry: &crate::catalog::JobEntry,
    ) -> Result<()> {
        let Some(view) = self.inner.view(name) else { return Ok(()) };
        let checkpoints =
            crate::checkpoint::Checkpoints::new(Arc::clone(&self.inner.store), entry.id);
        let Some(manifest) = checkpoints.latest()? else { return Ok(()) };
        let JobPlan::Windowed(plan) = self.compile_entry(entry).await? else {
            return Err(Error::plan("a view's query is no longer an aggregation", None));
        };
        let run = crate::window_job::restore_run(*plan, &checkpoints, &manifest)?;
        let end = manifest.outputs.first().map_or(0, |o| o.end);
        if let Some(rows) = run.current_rows()? {
            view.publish(rows, end);
        }
        Ok(())
    }
}

/// A materialized view publishes the rows its plan keeps: an aggregation, a TopN, or a
/// graph whose last operator is one.
///
/// # Errors
/// [`Error::NotSupported`] naming what the plan is instead.
pub(crate) fn check_view_plan(compiled: &JobPlan, at: Option<kappa_sql::Location>) -> Result<()> {
    let updating = matches!(&compiled, JobPlan::Windowed(p) if p.keeps_rows());
    if !updating {
        let what = match compiled {
            JobPlan::Windowed(p) if p.windows().is_none() => {
                "a materialized view of a join without an aggregation or a TopN over it (CREATE STREAM ... AS gives its rows as a stream)"
            }
            JobPlan::Windowed(_) => {
                "a materialized view of a windowed aggregation (CREATE STREAM ... AS gives its windows as a stream)"
            }
            JobPlan::Stateless(_) => {
                "a materialized view of a query without GROUP BY or TopN (CREATE STREAM ... AS gives its rows as a stream)"
            }
        };
        return Err(Error::not_supported(what, at));
    }
    Ok(())
}

/// `state_ttl` is refused over a changelog input: a group forgotten would meet retractions of
/// rows it no longer holds.
///
/// # Errors
/// When `ttl` is set and `plan` reads a changelog.
pub(crate) fn check_ttl(
    plan: &JobPlan,
    ttl: Option<std::time::Duration>,
    at: Option<kappa_sql::Location>,
) -> Result<()> {
    if let (JobPlan::Windowed(p), Some(_)) = (plan, ttl)
        && let kappa_sql::windowed_plan::Grouping::Graph(g) = &p.grouping
        && g.retracts()
    {
        return Err(Error::not_supported(
            "state_ttl for a query whose join or aggregation reads a changelog (a view, a stream of EMIT CHANGES, the output of an outer join or of an aggregation)",
            at,
        ));
    }
    if let (JobPlan::Windowed(p), Some(_)) = (plan, ttl)
        && let kappa_sql::windowed_plan::Grouping::Updating(u) = &p.grouping
        && u.retracting
    {
        return Err(Error::not_supported(
            "state_ttl for an aggregation over a changelog (a view, or a stream of EMIT CHANGES)",
            at,
        ));
    }
    Ok(())
}

/// A `state_ttl` value: a duration, or `'off'` (or `0`) for none.
///
/// # Errors
/// When it is neither.
pub(crate) fn parse_ttl(
    value: &str,
    at: Option<kappa_sql::Location>,
) -> Result<Option<std::time::Duration>> {
    let v = value.trim();
    if v == "0" || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match crate::options::duration(v) {
        Some(d) if d.as_millis() >= 1 && d.as_millis() < i64::MAX as u128 => Ok(Some(d)),
        _ => Err(Error::plan(
            format!(
                "state_ttl = '{value}' is not a duration (e.g. '1 h', '30 min', 'off' for none)"
            ),
            at,
        )),
    }
}

/// Pin every view a snapshot query reads to the rows published now, once per view: two scans
/// of one view (a self-join) then see the same epoch, whatever checkpoints come while the
/// query is planned.
///
/// # Errors
/// When the plan cannot be rewritten.
pub(crate) fn pin_views(
    plan: datafusion::logical_expr::LogicalPlan,
) -> Result<datafusion::logical_expr::LogicalPlan> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::datasource::{MemTable, provider_as_source, source_as_provider};
    use datafusion::logical_expr::{LogicalPlan, TableScan};
    let mut pinned: std::collections::HashMap<String, Arc<dyn TableProvider>> =
        std::collections::HashMap::new();
    let rewritten = plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
        let provider = source_as_provider(&scan.source)?;
        let any: &dyn std::any::Any = provider.as_ref();
        let Some(view) = any.downcast_ref::<ViewTable>() else {
            return Ok(Transformed::no(node));
        };
        let name = scan.table_name.table().to_string();
        let table = match pinned.get(&name) {
            Some(t) => Arc::clone(t),
            None => {
                let rows = view.state.current().map(|p| vec![p.rows.clone()]).unwrap_or_default();
                let t: Arc<dyn TableProvider> =
                    Arc::new(MemTable::try_new(view.schema(), vec![rows])?);
                pinned.insert(name, Arc::clone(&t));
                t
            }
        };
        let scan = TableScan { source: provider_as_source(table), ..scan.clone() };
        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
    })?;
    Ok(rewritten.data)
}
