//! Running statements: DDL, INSERT, SEAL, snapshot queries, SET.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{ExprSchemable, LogicalPlan};
use kappa_sql::ast::{CreateStream, ObjectKind, Statement};
use kappa_sql::sqlparser::ast::Query;
use kappa_sql::{Location, ParsedStatement};

use crate::catalog::{JobKind, StreamEntry, WatermarkEntry};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Output;

type At = Option<Location>;

fn done(tag: &str) -> Output {
    Output::Done { tag: tag.to_string(), rows: None }
}

/// The tables a plan scans, as referenced.
pub(crate) fn scanned_tables(plan: &LogicalPlan) -> Vec<datafusion::common::TableReference> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(s) = node {
            out.push(s.table_name.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// The streams a plan reads.
pub(crate) fn scanned_streams(plan: &LogicalPlan) -> Vec<String> {
    let mut out = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(s) = node {
            // A window function's scan reads its stream.
            let stream = crate::window_table::stream_of(s)
                .unwrap_or_else(|| s.table_name.table().to_string());
            out.push(stream);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out.sort();
    out.dedup();
    out
}

impl Engine {
    pub(crate) async fn run_statement(&self, s: ParsedStatement) -> Result<Output> {
        let at = Some(s.location);
        match s.statement {
            Statement::CreateStream(c) => {
                let _guard = self.inner.ddl.lock().await;
                self.create_stream(c, &s.text, at).await
            }
            Statement::CreateTable(c) => {
                let _guard = self.inner.ddl.lock().await;
                self.create_table(c, &s.text, at).await
            }
            Statement::CreateMaterializedView {
                name,
                or_replace,
                if_not_exists,
                options,
                query,
                emit,
            } => {
                let _guard = self.inner.ddl.lock().await;
                let view =
                    crate::view::NewView { name, or_replace, if_not_exists, options, query, emit };
                self.create_view(view, &s.text, at).await
            }
            Statement::Rebuild { kind, name, from } => {
                let _guard = self.inner.ddl.lock().await;
                self.rebuild(kind, &name, from, at).await
            }
            Statement::Insert { stream, stream_location, statement, .. } => {
                let _guard = self.inner.ddl.lock().await;
                // A sink takes rows without a log; name an unknown target where it is written.
                let target = if self.inner.catalog().sinks.contains_key(&stream) {
                    None
                } else {
                    Some(self.inner.stream(&stream, stream_location)?)
                };
                self.insert(&stream, target, *statement, &s.text, at).await
            }
            Statement::CopyFrom { stream, path, options } => {
                crate::copy::copy_from(self, &stream, &path, &options, at).await
            }
            Statement::CopyTo { source, path, options } => {
                crate::copy::copy_to(self, source, &path, &options, at).await
            }
            Statement::Seal { stream } => self.seal(&stream, at).await,
            Statement::Resume { job } => {
                let _guard = self.inner.ddl.lock().await;
                self.resume_job(&job, at).await
            }
            Statement::Query { query, emit: None } => self.snapshot(query, at).await,
            Statement::Query { query, emit: Some(emit) } => Ok(Output::Subscription(
                crate::subscribe::start(self, query, Some(emit), at).await?,
            )),
            Statement::Show(what) => crate::show::show(self, what, at),
            Statement::Describe { name } => crate::show::describe(self, &name, at),
            Statement::Explain { target: kappa_sql::ast::ExplainTarget::Window(name) } => {
                self.explain_window(&name, at)
            }
            Statement::Explain {
                target: kappa_sql::ast::ExplainTarget::Dataflow { name, dot },
            } => crate::dataflow::show(self, Some(&name), dot, at),
            Statement::Explain { target: kappa_sql::ast::ExplainTarget::Statement(target) } => {
                self.explain(*target, at).await
            }
            Statement::Drop { kind, name, if_exists } => {
                let _guard = self.inner.ddl.lock().await;
                self.drop_object(kind, &name, if_exists, at).await
            }
            Statement::Set { name, value } => self.set(&name, &value, at),
        }
    }

    /// The catalog entry of a derived stream written by job `job` running `compiled`, and
    /// its log's options: the inputs' event time and watermark when the query passes the
    /// column, `state_ttl` kept for a changelog's state.
    ///
    /// # Errors
    /// When `ttl` is set for a plan that reads a changelog.
    pub(crate) fn derived_entry(
        &self,
        compiled: &crate::engine::JobPlan,
        declared: BTreeMap<String, String>,
        options: &mut kappa_storage::StreamOptions,
        job: &str,
        ttl: Option<std::time::Duration>,
        at: At,
    ) -> Result<StreamEntry> {
        let schema = Arc::clone(compiled.schema());
        let mut entry =
            StreamEntry { options: declared, job: Some(job.to_string()), ..Default::default() };
        let wms: Vec<Option<WatermarkEntry>> = compiled
            .inputs()
            .iter()
            .map(|s| self.inner.catalog().streams.get(s).and_then(|e| e.watermark.clone()))
            .collect();
        if let Some(Some(first)) = wms.first()
            && wms.iter().all(|w| w.as_ref() == Some(first))
            && let Some(j) =
                compiled.origins().iter().position(|o| o.as_deref() == Some(&first.column))
            && schema.field(j).name() == &first.column
        {
            options.event_time_column = Some(first.column.clone());
            entry.watermark = Some(first.clone());
        }
        // Readers see its rows once a checkpoint of the job commits them.
        options.derived = true;
        // A changelog's state (without windows) expires after `state_ttl`, kept.
        crate::view::check_ttl(compiled, ttl, at)?;
        if let (crate::engine::JobPlan::Windowed(p), Some(ttl)) = (compiled, ttl)
            && p.windows().is_none()
        {
            entry.options.insert("state_ttl".into(), format!("{}ms", ttl.as_millis()));
        }
        Ok(entry)
    }

    pub(crate) async fn create_stream(
        &self,
        c: CreateStream,
        full_text: &str,
        at: At,
    ) -> Result<Output> {
        if c.or_replace && self.inner.catalog().streams.contains_key(&c.name) {
            if c.query.is_none() {
                return Err(Error::not_supported(
                    "CREATE OR REPLACE STREAM of a stream without a query (a new version runs a query: CREATE OR REPLACE STREAM s AS SELECT ...)",
                    at,
                ));
            }
            return self.replace(kappa_sql::ast::ObjectKind::Stream, &c.name, full_text, at).await;
        }
        crate::rebuild::check_not_version_name(&c.name, false, at)?;
        if c.name.contains(crate::late::SUFFIX) {
            return Err(Error::plan(
                format!(
                    "stream names holding {} are kept for the late rows of jobs",
                    crate::late::SUFFIX
                ),
                at,
            ));
        }
        let (exists, is_sink) = {
            let cat = self.inner.catalog();
            (cat.streams.contains_key(&c.name), cat.sinks.contains_key(&c.name))
        };
        if exists {
            if c.if_not_exists {
                return Ok(done("CREATE STREAM"));
            }
            return Err(Error::plan(format!("stream '{}' already exists", c.name), at));
        }
        if is_sink {
            return Err(Error::plan(format!("'{}' exists already, as a sink table", c.name), at));
        }
        let mut declared = BTreeMap::new();
        for (k, v) in &c.options {
            if declared.insert(k.clone(), v.clone()).is_some() {
                return Err(Error::plan(format!("option '{k}' is given twice"), at));
            }
        }
        let (source, own_options) = crate::connectors::split_connector(&c.name, &declared, at)?;
        let mut options = crate::options::stream_options(&own_options, at)?;
        if source.is_some() && c.query.is_some() {
            return Err(Error::plan(
                "a nexmark stream is filled by its connector: it takes no AS SELECT",
                at,
            ));
        }
        match c.query {
            Some((query, emit)) => {
                if !c.columns.is_empty() || c.watermark.is_some() {
                    return Err(Error::plan(
                        "CREATE STREAM ... AS SELECT takes its columns from the query: no column list or WATERMARK",
                        at,
                    ));
                }
                // The job keeps the statement as written; a restart parses it again.
                let text = full_text.to_string();
                let plan = self.plan_query(query, at).await?;
                let compiled = self.compile_job(&plan, emit.as_ref(), at).await?;
                let schema: SchemaRef = Arc::clone(compiled.schema());
                check_unique_names(&schema, at)?;
                let ttl = self.inner.state_ttl();
                let entry =
                    self.derived_entry(&compiled, declared, &mut options, &c.name, ttl, at)?;
                self.inner.create_log(&c.name, Arc::clone(&schema), options)?;
                let stream = self.inner.log(&c.name)?;
                self.inner.catalog().streams.insert(c.name.clone(), entry);
                if let Err(e) =
                    self.create_job(&c.name, JobKind::DerivedStream, &c.name, &text, compiled)
                {
                    let mut cat = self.inner.catalog();
                    cat.streams.remove(&c.name);
                    let _ = cat.save(&self.inner.store);
                    drop(cat);
                    let _ = self.inner.store.drop_stream(&c.name);
                    return Err(e);
                }
                self.inner.register_table(&c.name, stream)?;
                Ok(done("CREATE STREAM"))
            }
            None => {
                let mut schema: SchemaRef =
                    Arc::new(kappa_sql::types::schema_of(&c.columns, &c.column_locations, at)?);
                // (column, expression, where): as declared, or a nexmark stream's default.
                let mut watermark = c
                    .watermark
                    .as_ref()
                    .map(|w| (w.column.clone(), w.expr_text.clone(), w.location));
                if let Some(src) = &source {
                    schema = nexmark_schema(src.kind, &schema, at)?;
                    if watermark.is_none() {
                        watermark = Some((
                            "datetime".into(),
                            "datetime - INTERVAL '4' SECOND".into(),
                            None,
                        ));
                    }
                }
                let mut entry = StreamEntry { options: declared, ..Default::default() };
                if let Some((column, expr_text, location)) = &watermark {
                    let at = location.or(at);
                    let field = schema.field_with_name(column).map_err(|_| {
                        Error::plan(format!("WATERMARK FOR {column}: no such column"), at)
                    })?;
                    if !kappa_sql::types::is_timestamp(field.data_type()) {
                        return Err(Error::plan(
                            format!(
                                "WATERMARK FOR {column}: the column is {}, it must be a TIMESTAMP",
                                field.data_type()
                            ),
                            at,
                        ));
                    }
                    let df = DFSchema::try_from(Arc::clone(&schema))?;
                    let expr = self
                        .inner
                        .ctx
                        .parse_sql_expr(expr_text, &df)
                        .map_err(|e| crate::error::planning(e, at))?;
                    let t = expr.get_type(&df).map_err(|e| crate::error::planning(e, at))?;
                    if !kappa_sql::types::is_timestamp(&t) {
                        return Err(Error::plan(
                            format!(
                                "the watermark expression {expr_text} is {t}, it must be a TIMESTAMP"
                            ),
                            at,
                        ));
                    }
                    options.event_time_column = Some(column.clone());
                    entry.watermark =
                        Some(WatermarkEntry { column: column.clone(), expr: expr_text.clone() });
                }
                self.inner.create_log(&c.name, schema, options)?;
                let stream = self.inner.log(&c.name)?;
                {
                    let mut cat = self.inner.catalog();
                    cat.streams.insert(c.name.clone(), entry);
                    if let Err(e) = cat.save(&self.inner.store) {
                        cat.streams.remove(&c.name);
                        drop(cat);
                        let _ = self.inner.store.drop_stream(&c.name);
                        return Err(e);
                    }
                }
                self.inner.register_table(&c.name, stream)?;
                if let Some(src) = source
                    && let Err(e) = self.start_source(&c.name, src)
                {
                    // Undone: the stream never existed for anyone.
                    let mut cat = self.inner.catalog();
                    cat.streams.remove(&c.name);
                    let _ = cat.save(&self.inner.store);
                    drop(cat);
                    let _ = self.inner.ctx.deregister_table(c.name.as_str());
                    let _ = self.inner.store.drop_stream(&c.name);
                    return Err(e);
                }
                Ok(done("CREATE STREAM"))
            }
        }
    }

    /// `INSERT INTO s ...`: a one-shot append when the source reads no stream (`VALUES`), a
    /// continuous job otherwise.
    async fn insert(
        &self,
        stream: &str,
        target: Option<Arc<kappa_storage::Stream>>,
        statement: kappa_sql::sqlparser::ast::Statement,
        text: &str,
        at: At,
    ) -> Result<Output> {
        let plan = self.plan_insert(statement, at).await?;
        self.inner.check_appendable(stream, at)?;
        let reads = scanned_streams(&plan);
        if reads.is_empty()
            && let Some(target) = target
        {
            let batches = self.inner.ctx.execute_logical_plan(plan).await?.collect().await?;
            let schema = target.schema();
            for b in &batches {
                for (i, f) in schema.fields().iter().enumerate() {
                    let c = b.column(i);
                    if !f.is_nullable() && c.null_count() > 0 {
                        return Err(Error::plan(
                            format!("column {} is NOT NULL, but a row gives it no value", f.name()),
                            at,
                        ));
                    }
                }
            }
            let batches: Vec<_> = batches
                .into_iter()
                .map(|b| {
                    datafusion::arrow::record_batch::RecordBatch::try_new(
                        Arc::clone(schema),
                        b.columns().to_vec(),
                    )
                })
                .collect::<std::result::Result<_, _>>()?;
            let batch = concat_batches(target.schema(), &batches)?;
            let rows = batch.num_rows() as u64;
            tokio::task::spawn_blocking(move || target.append(&batch)).await.map_err(|e| {
                Error::Io { path: stream.into(), source: std::io::Error::other(e) }
            })??;
            return Ok(Output::Done { tag: "INSERT".into(), rows: Some(rows) });
        }
        if reads.is_empty() {
            // Into a sink: the rows are computed, counted, and dropped.
            let batches = self.inner.ctx.execute_logical_plan(plan).await?.collect().await?;
            let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
            return Ok(Output::Done { tag: "INSERT".into(), rows: Some(rows) });
        }
        if reads.iter().any(|r| r == stream) || self.feeds(stream, &reads) {
            return Err(Error::plan(
                format!(
                    "a job cannot write into stream '{stream}', which it reads (directly or through other jobs)"
                ),
                at,
            ));
        }
        let compiled = self.compile_job(&plan, None, at).await?;
        if let (crate::engine::JobPlan::Windowed(p), Some(_)) = (&compiled, &target)
            && p.windows().is_none()
        {
            let what = match &p.grouping {
                kappa_sql::windowed_plan::Grouping::Graph(g) if !g.changelog => None,
                kappa_sql::windowed_plan::Grouping::Graph(_) => Some(
                    "a join whose result is a changelog (an outer join without time bounds, an aggregation or a TopN over a join, or a changelog input)",
                ),
                _ => Some("an aggregation without windows"),
            };
            if let Some(what) = what {
                return Err(Error::not_supported(
                    format!(
                        "INSERT INTO stream {stream} of {what} (its result is a changelog of updates: CREATE MATERIALIZED VIEW, or CREATE STREAM ... AS for the changelog as a stream)"
                    ),
                    at,
                ));
            }
        }
        let name = {
            let c = self.inner.catalog();
            let mut n = 1;
            loop {
                let candidate = format!("insert_into_{stream}_{n}");
                if !c.jobs.contains_key(&candidate) {
                    break candidate;
                }
                n += 1;
            }
        };
        // The whole INSERT is the job's query: a restart plans it again the same way.
        self.create_job(&name, JobKind::InsertInto, stream, text, compiled)?;
        Ok(Output::Done { tag: format!("INSERT JOB {name}"), rows: None })
    }

    async fn snapshot(&self, query: Box<Query>, at: At) -> Result<Output> {
        let plan = self.plan_caught_up(query, at).await?;
        let schema: SchemaRef = Arc::clone(plan.schema().inner());
        let batches = self.inner.ctx.execute_logical_plan(plan).await?.collect().await?;
        Ok(Output::Rows { schema, batches })
    }

    async fn seal(&self, stream: &str, at: At) -> Result<Output> {
        let s = self.inner.stream(stream, at)?;
        if let Some(job) = self.inner.catalog().streams.get(stream).and_then(|e| e.job.clone()) {
            return Err(Error::plan(
                format!(
                    "stream '{stream}' is derived by job {job}: it seals once its inputs are sealed and read"
                ),
                at,
            ));
        }
        tokio::task::spawn_blocking(move || s.seal())
            .await
            .map_err(|e| Error::Io { path: stream.into(), source: std::io::Error::other(e) })??;
        Ok(done("SEAL STREAM"))
    }

    async fn drop_object(
        &self,
        kind: ObjectKind,
        name: &str,
        if_exists: bool,
        at: At,
    ) -> Result<Output> {
        match kind {
            ObjectKind::Stream => {
                if !self.inner.catalog().streams.contains_key(name) {
                    if if_exists {
                        return Ok(done("DROP STREAM"));
                    }
                    return Err(Error::plan(format!("stream '{name}' does not exist"), at));
                }
                if self.inner.catalog().is_view(name) {
                    return Err(Error::plan(
                        format!("'{name}' is a materialized view: DROP MATERIALIZED VIEW {name}"),
                        at,
                    ));
                }
                let owner = self.inner.catalog().streams.get(name).and_then(|e| e.job.clone());
                if let Some(job) = owner.filter(|j| j != name) {
                    return Err(Error::plan(
                        format!(
                            "stream '{name}' keeps the late rows of job {job}: it is dropped with the job"
                        ),
                        at,
                    ));
                }
                let readers = self.inner.catalog().readers_of(name);
                if !readers.is_empty() {
                    return Err(Error::plan(
                        format!(
                            "stream '{name}' is read by job {}: drop that first",
                            readers.join(", ")
                        ),
                        at,
                    ));
                }
                self.cancel_rebuild(name, at).await?;
                let writers: Vec<String> = self
                    .inner
                    .catalog()
                    .jobs
                    .iter()
                    .filter(|(n, j)| j.output == name && n.as_str() != name)
                    .map(|(n, _)| n.clone())
                    .collect();
                if !writers.is_empty() {
                    return Err(Error::plan(
                        format!(
                            "stream '{name}' is written by job {}: DROP JOB first",
                            writers.join(", ")
                        ),
                        at,
                    ));
                }
                self.drop_log_and_job(name, at).await?;
                Ok(done("DROP STREAM"))
            }
            ObjectKind::MaterializedView | ObjectKind::View => {
                if !self.inner.catalog().is_view(name) {
                    if if_exists {
                        return Ok(done("DROP MATERIALIZED VIEW"));
                    }
                    return Err(Error::plan(
                        format!("materialized view '{name}' does not exist"),
                        at,
                    ));
                }
                let readers = self.inner.catalog().all_readers_of(name);
                if !readers.is_empty() {
                    return Err(Error::plan(
                        format!(
                            "view '{name}' is read by job {}: drop that first",
                            readers.join(", ")
                        ),
                        at,
                    ));
                }
                self.cancel_rebuild(name, at).await?;
                self.drop_log_and_job(name, at).await?;
                self.inner.views.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
                Ok(done("DROP MATERIALIZED VIEW"))
            }
            ObjectKind::Job => {
                let entry = self.inner.catalog().jobs.get(name).cloned();
                let Some(entry) = entry else {
                    if if_exists {
                        return Ok(done("DROP JOB"));
                    }
                    return Err(Error::plan(format!("job '{name}' does not exist"), at));
                };
                if entry.replaces.is_some() {
                    // A new version being built: cancelled, its log goes with it.
                    self.drop_version(name, at).await?;
                    return Ok(done("DROP JOB"));
                }
                match entry.kind {
                    JobKind::DerivedStream => {
                        return Err(Error::plan(
                            format!(
                                "job {name} derives stream {}: DROP STREAM {} instead",
                                entry.output, entry.output
                            ),
                            at,
                        ));
                    }
                    JobKind::MaterializedView => {
                        return Err(Error::plan(
                            format!(
                                "job {name} maintains materialized view {}: DROP MATERIALIZED VIEW {} instead",
                                entry.output, entry.output
                            ),
                            at,
                        ));
                    }
                    JobKind::InsertInto => {}
                }
                self.check_late_unread(name, at)?;
                self.stop_job(name).await;
                {
                    let mut c = self.inner.catalog();
                    c.jobs.remove(name);
                    c.save(&self.inner.store)?;
                }
                crate::job::forget(&self.inner.store, entry.id)?;
                self.drop_late_stream(name)?;
                Ok(done("DROP JOB"))
            }
            ObjectKind::Table => self.drop_sink(name, if_exists, at),
        }
    }

    /// Drop `name`'s log with the job that owns it (its catalog entries, checkpoints and late
    /// streams).
    pub(crate) async fn drop_log_and_job(&self, name: &str, at: At) -> Result<()> {
        self.check_late_unread(name, at)?;
        self.stop_job(name).await;
        let (job_id, log) = {
            let mut c = self.inner.catalog();
            let log = c.log_name(name);
            let id = c.jobs.remove(name).map(|j| j.id);
            c.streams.remove(name);
            c.save(&self.inner.store)?;
            (id, log)
        };
        self.stop_sources(Some(name)).await;
        let _ = self.inner.ctx.deregister_table(name);
        self.inner.store.drop_stream(&log)?;
        if let Some(id) = job_id {
            crate::job::forget(&self.inner.store, id)?;
            self.drop_late_stream(name)?;
        }
        Ok(())
    }

    fn set(&self, name: &str, value: &str, at: At) -> Result<Output> {
        if name.starts_with("datafusion.") {
            let state = self.inner.ctx.state_ref();
            let mut state = state.write();
            state
                .config_mut()
                .options_mut()
                .set(name, value)
                .map_err(|e| Error::plan(e.message().to_string(), at))?;
            return Ok(done("SET"));
        }
        match name {
            "checkpoint_interval" => {
                let off = value.trim() == "0" || value.trim().eq_ignore_ascii_case("off");
                let every = if off {
                    Some(std::time::Duration::ZERO)
                } else {
                    crate::options::duration(value)
                };
                let every = every.ok_or_else(|| {
                    Error::plan(
                        format!("checkpoint_interval = '{value}' is not a duration (e.g. '1s', '500ms', 'off' for none but when asked and at a stop)"),
                        at,
                    )
                })?;
                self.inner.checkpoint_interval.set((!every.is_zero()).then_some(every));
                Ok(done("SET"))
            }
            "state_ttl" => {
                let ttl = crate::view::parse_ttl(value, at)?;
                *self.inner.state_ttl.lock().unwrap_or_else(|p| p.into_inner()) = ttl;
                Ok(done("SET"))
            }
            _ => Err(Error::plan(
                format!("unknown setting '{name}' (DataFusion settings start with datafusion.)"),
                at,
            )),
        }
    }
}

pub(crate) fn check_unique_names(schema: &SchemaRef, at: At) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(Error::plan(
                format!(
                    "the query has two columns named {}: give them different names with AS",
                    f.name()
                ),
                at,
            ));
        }
    }
    Ok(())
}

/// The schema of a nexmark stream of `kind`: the generator's, or the declared columns if they
/// match it (same names and types, in order).
fn nexmark_schema(kind: crate::nexmark::Kind, declared: &SchemaRef, at: At) -> Result<SchemaRef> {
    let expected = kind.schema();
    if declared.fields().is_empty() {
        return Ok(expected);
    }
    let same = declared.fields().len() == expected.fields().len()
        && declared
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(d, e)| d.name() == e.name() && d.data_type() == e.data_type());
    if same {
        return Ok(Arc::clone(declared));
    }
    let columns: Vec<String> = expected
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Int64 => "BIGINT".to_string(),
                DataType::Utf8 => "VARCHAR".to_string(),
                DataType::Timestamp(_, None) => "TIMESTAMP(3)".to_string(),
                other => other.to_string(),
            };
            format!("{} {t}", f.name())
        })
        .collect();
    Err(Error::plan(
        format!(
            "the nexmark {} stream has the columns ({}); declare them so, or leave the column list out",
            kind.name(),
            columns.join(", ")
        ),
        at,
    ))
}
