//! `EXPLAIN statement`: how kappa runs a query, as lines of text.
//!
//! A snapshot query shows DataFusion's physical plan. A continuous query (a push query with
//! `EMIT`, `CREATE STREAM ... AS`, `INSERT INTO ... SELECT`) shows kappa's streaming plan: each
//! input with the columns read and the steps applied to every batch, and for a windowed
//! aggregation the windows, the watermark and its source, the aggregation, and what bounds
//! its state.

use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::displayable;
use kappa_sql::ast::{ObjectKind, Statement};
use kappa_sql::stream_plan::{InputPipeline, Op};
use kappa_sql::window::WindowSpec;
use kappa_sql::windowed_plan::EmitMode;
use kappa_sql::windowed_plan::Watermark;
use kappa_sql::{Location, ParsedStatement};

use crate::engine::{Engine, JobPlan};
use crate::error::{Error, Result};
use crate::output::Output;

mod graph;
mod window;

pub(crate) fn ms(v: i64) -> String {
    if v % 1000 == 0 { format!("{} s", v / 1000) } else { format!("{v} ms") }
}

fn window(spec: &WindowSpec) -> String {
    match *spec {
        WindowSpec::Tumble { size, offset } => {
            format!("TUMBLE size {} offset {}", ms(size), ms(offset))
        }
        WindowSpec::Hop { slide, size, offset } => {
            format!("HOP slide {} size {} offset {}", ms(slide), ms(size), ms(offset))
        }
        WindowSpec::Cumulate { step, max_size, offset } => {
            format!("CUMULATE step {} max {} offset {}", ms(step), ms(max_size), ms(offset))
        }
        WindowSpec::Session { gap } => format!("SESSION gap {}", ms(gap)),
    }
}

fn emit_text(emit: EmitMode) -> String {
    match emit {
        EmitMode::Final => "EMIT FINAL".into(),
        EmitMode::Changes { every_ms: None } => {
            "EMIT CHANGES (-U/+U or +I per updated group after every batch read and when its window closes; __op last)".into()
        }
        EmitMode::Changes { every_ms: Some(e) } => format!(
            "EMIT CHANGES EVERY {} (-U/+U or +I per group updated since the last emission, every {} of processing time and when its window closes; __op last)",
            ms(e),
            ms(e)
        ),
    }
}

pub(crate) fn ops(lines: &mut Vec<String>, indent: &str, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Filter(p) => lines.push(format!("{indent}filter: {p}")),
            Op::Project { exprs, schema } => {
                let cols: Vec<String> = exprs
                    .iter()
                    .zip(schema.fields())
                    .map(|(e, f)| {
                        let e = e.to_string();
                        if e.split('@').next() == Some(f.name().as_str()) {
                            f.name().clone()
                        } else {
                            format!("{e} AS {}", f.name())
                        }
                    })
                    .collect();
                lines.push(format!("{indent}project: {}", cols.join(", ")));
            }
            Op::Window { spec, .. } => {
                lines.push(format!("{indent}assign windows: {}", window(spec)))
            }
        }
    }
}

pub(crate) fn input(engine: &Engine, lines: &mut Vec<String>, p: &InputPipeline) {
    if let Some(k) = p.stream.strip_prefix("__node") {
        lines.push(format!("  input: the output of operator #{k}"));
        ops(lines, "    ", &p.ops);
        return;
    }
    let columns = engine.inner.log(&p.stream).ok().map(|s| {
        let schema = s.schema();
        match &p.projection {
            Some(cols) => cols.iter().map(|i| schema.field(*i).name().clone()).collect(),
            None => schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
        }
    });
    lines.push(format!(
        "  read stream {} from its first retained row: columns {}",
        p.stream,
        columns.map_or_else(|| "?".to_string(), |c| c.join(", "))
    ));
    ops(lines, "    ", &p.ops);
}

impl Engine {
    /// `EXPLAIN statement`.
    pub(crate) async fn explain(
        &self,
        target: ParsedStatement,
        at: Option<Location>,
    ) -> Result<Output> {
        let mut lines = Vec::new();
        // (`SET state_ttl`, for jobs created now.)
        let ttl = self.inner.state_ttl();
        match target.statement {
            Statement::Query { query, emit: None } => {
                let plan = self.plan_query(query, at).await?;
                let state = self.inner.ctx.state();
                let physical = state.create_physical_plan(&plan).await?;
                lines.push(
                    "snapshot query, run by DataFusion over the streams as they are now:".into(),
                );
                for l in displayable(physical.as_ref()).indent(false).to_string().lines() {
                    lines.push(format!("  {l}"));
                }
            }
            Statement::Query { query, emit: Some(emit) } => {
                let plan = self.plan_query(query, at).await?;
                self.explain_continuous(&mut lines, "push query", &plan, Some(&emit), ttl, at)
                    .await?;
            }
            Statement::CreateStream(c) if c.query.is_some() => {
                let Some((query, emit)) = c.query else {
                    return Err(Error::plan("no query", at));
                };
                let plan = self.plan_query(query, at).await?;
                let what = format!("job deriving stream {}", c.name);
                self.explain_continuous(&mut lines, &what, &plan, emit.as_ref(), ttl, at).await?;
                if c.or_replace && self.inner.catalog().jobs.contains_key(&c.name) {
                    lines.extend(self.explain_rebuild(ObjectKind::Stream, &c.name, None, at)?);
                }
            }
            Statement::Rebuild { kind, name, from } => {
                lines.extend(self.explain_rebuild(kind, &name, from.as_ref(), at)?);
            }
            Statement::CreateMaterializedView {
                name, query, emit, options, or_replace, ..
            } => {
                let replaces = or_replace && self.inner.catalog().is_view(&name);
                let plan = self.plan_query(query, at).await?;
                let mut ttl = ttl;
                for (k, v) in &options {
                    if k == "state_ttl" {
                        ttl = crate::view::parse_ttl(v, at)?;
                    }
                }
                let what = format!("job of materialized view {name}");
                self.explain_continuous(&mut lines, &what, &plan, emit.as_ref(), ttl, at).await?;
                if replaces {
                    lines.extend(self.explain_rebuild(
                        ObjectKind::MaterializedView,
                        &name,
                        None,
                        at,
                    )?);
                }
            }
            Statement::Insert { stream, statement, .. } => {
                let plan = self.plan_insert(*statement, at).await?;
                if crate::statements::scanned_streams(&plan).is_empty() {
                    lines.push(format!("one-time append of the rows into {stream}"));
                } else {
                    let what = format!("job appending into {stream}");
                    self.explain_continuous(&mut lines, &what, &plan, None, ttl, at).await?;
                }
            }
            _ => {
                return Err(Error::not_supported(
                    "EXPLAIN of statements other than queries, CREATE STREAM ... AS, CREATE MATERIALIZED VIEW, ALTER ... REBUILD and INSERT",
                    at,
                ));
            }
        }
        let schema = Arc::new(Schema::new(vec![Field::new("plan", DataType::Utf8, false)]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(lines))])?;
        Ok(Output::Rows { schema, batches: vec![batch] })
    }

    async fn explain_continuous(
        &self,
        lines: &mut Vec<String>,
        what: &str,
        plan: &datafusion::logical_expr::LogicalPlan,
        emit: Option<&kappa_sql::ast::Emit>,
        ttl: Option<std::time::Duration>,
        at: Option<Location>,
    ) -> Result<()> {
        let compiled = self.compile_job(plan, emit, at).await?;
        let output = Arc::clone(compiled.schema());
        match compiled {
            JobPlan::Stateless(p) => {
                lines.push(format!("{what}: stateless, each batch on its own"));
                for i in &p.inputs {
                    input(self, lines, i);
                }
                lines.push("  state: none".into());
            }
            JobPlan::Windowed(p)
                if p.windows().is_none()
                    && !matches!(p.grouping, kappa_sql::windowed_plan::Grouping::Graph(_)) =>
            {
                updating(self, lines, what, &p, ttl);
            }
            JobPlan::Windowed(p)
                if matches!(p.grouping, kappa_sql::windowed_plan::Grouping::Graph(_)) =>
            {
                graph::explain(self, lines, what, &p, ttl)?;
            }
            JobPlan::Windowed(p) => self.windowed(lines, what, &p)?,
        }
        let columns: Vec<String> =
            output.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
        lines.push(format!("  output: {}", columns.join(", ")));
        Ok(())
    }

    /// EXPLAIN of a windowed aggregation.
    pub(crate) fn windowed(
        &self,
        lines: &mut Vec<String>,
        what: &str,
        p: &kappa_sql::windowed_plan::WindowedPlan,
    ) -> Result<()> {
        let Some(w) = p.windows() else { return Ok(()) };
        lines.push(format!("{what}: windowed aggregation, {}", emit_text(p.emit)));
        let from = lines.len();
        for i in &p.inputs {
            input(self, lines, &i.pipeline);
        }
        if let (Some(session), Some(first)) = (&w.session, p.inputs.first()) {
            let first = &first.pipeline;
            let names: Vec<String> = match (self.inner.log(&first.stream), &first.projection) {
                (Ok(stream), Some(read)) => session
                    .partition
                    .iter()
                    .filter_map(|k| read.get(*k))
                    .map(|c| stream.schema().field(*c).name().clone())
                    .collect(),
                _ => Vec::new(),
            };
            let per =
                if names.is_empty() { String::new() } else { format!(" per {}", names.join(", ")) };
            lines.insert(
                from + 1,
                format!(
                    "    assign sessions: SESSION gap {}{per} (each row gets its open session's id as its window)",
                    ms(session.gap)
                ),
            );
        }
        if w.aggregate.panes.is_some() {
            for l in &mut lines[from..] {
                *l = l.replace("assign windows: TUMBLE", "assign panes (of the HOP): TUMBLE");
            }
        }
        let several = p.inputs.len() > 1;
        if several {
            lines.push("  watermark: the minimum over the inputs' (an input without data for its stream's idle_timeout is left out until its next row; a sealed input counts as +inf):".into());
        }
        for i in &p.inputs {
            let stream = &i.pipeline.stream;
            let source = match &i.watermark {
                Some(Watermark::Delay { delay_ms, .. }) => format!(
                    "the largest time read minus {} (the WATERMARK of stream {stream})",
                    ms(*delay_ms)
                ),
                Some(Watermark::Expr(e)) => {
                    format!("the largest {e} read (the WATERMARK of stream {stream})")
                }
                None if stream.starts_with("__node") => format!(
                    "operator #{}'s (it gives each window's rows at once, when its watermark passes the window's end)",
                    stream.trim_start_matches("__node")
                ),
                None => format!(
                    "none: stream {stream} declares no WATERMARK, windows close when it is sealed"
                ),
            };
            let idle = match self.idle_timeout(stream)? {
                Some(d) => {
                    format!(", idle after {} without data", ms(d.as_millis() as i64))
                }
                None => String::new(),
            };
            lines.push(if several {
                format!("    {stream}: {source}{idle}; +inf once sealed and read")
            } else {
                if stream.starts_with("__node") {
                    format!("  watermark: {source}")
                } else {
                    format!("  watermark: {source}{idle}; +inf once the stream is sealed and read")
                }
            });
        }
        let a = &w.aggregate;
        let keys: Vec<String> =
            a.schema.fields().iter().take(a.group.len()).map(|f| f.name().clone()).collect();
        let aggs: Vec<String> =
            a.aggregates.iter().map(|x| x.function.name().to_string()).collect();
        lines.push(format!("  aggregate: group by {}; {}", keys.join(", "), aggs.join(", ")));
        match (&a.panes, &w.session) {
            (_, Some(session)) => {
                lines.push(format!(
                    "    by sessions with a gap of {}: rows less than the gap apart chain, a row between two sessions merges them",
                    ms(session.gap)
                ));
                lines.push(format!(
                    "    state: partial aggregates per open session and batch (compacted), merged and freed when the watermark closes the session (bounded by the watermark; at most {} sessions and {} partial groups)",
                    kappa_sql::session::MAX_OPEN_SESSIONS,
                    kappa_sql::window_agg::MAX_OPEN_GROUPS
                ));
                lines.push(
                    "    late rows (at or behind the watermark, which could join a closed session): left out, counted in SHOW JOBS, a job appends them to its stream <job>__late".into(),
                );
            }
            (Some(panes), None) => lines.push(format!(
                "    by panes of {}: each row updates its pane; a closing window merges {} panes",
                ms(panes.slide),
                panes.size / panes.slide
            )),
            (None, None) => lines.push("    each row updates each window that holds it".into()),
        }
        if w.session.is_none() {
            lines.push(format!(
                "    state: the groups of open windows, freed when the watermark closes each window (bounded by the watermark; at most {} groups)",
                kappa_sql::window_agg::MAX_OPEN_GROUPS
            ));
            lines.push(
                "    late rows (every window closed; a row late for some windows only is left out of those): counted in SHOW JOBS, a job appends them to its stream <job>__late"
                    .into(),
            );
        }
        if !p.after.is_empty() {
            lines.push(if p.emit == EmitMode::Final {
                "  on each closed window:".into()
            } else {
                "  on each batch of changes (__op kept):".into()
            });
            ops(lines, "    ", &p.after);
        }
        Ok(())
    }
}

/// EXPLAIN of an aggregation without windows.
pub(crate) fn updating(
    engine: &Engine,
    lines: &mut Vec<String>,
    what: &str,
    p: &kappa_sql::windowed_plan::WindowedPlan,
    ttl: Option<std::time::Duration>,
) {
    let bound = |what: &str| match ttl {
        Some(t) => format!(
            "bounded by state_ttl: {what} without rows for {} s expire (their rows leave the output, -D; a later row starts anew)",
            t.as_secs_f64()
        ),
        None => format!(
            "UNBOUNDED: all {what} ever seen stay (SET state_ttl, or WITH (state_ttl = ...), bounds it)"
        ),
    };
    if let kappa_sql::windowed_plan::Grouping::TopN(t) = &p.grouping {
        let kind = if t.limit == 1 { "deduplication" } else { "TopN" };
        lines
            .push(format!("{what}: {kind} (ROW_NUMBER() <= {}), a changelog of its rows", t.limit));
        for i in &p.inputs {
            input(engine, lines, &i.pipeline);
        }
        lines.push(format!(
            "  keep: the best {} of each partition by the ORDER BY keys (equal keys: first come first); {}",
            t.limit,
            if t.rank_used { "a row whose rank moves gives -U/+U" } else { "the rank is not read: only +I and -D" }
        ));
        lines.push(format!(
            "    state: {}; at most {} rows per partition (at most {} rows in all)",
            bound("partitions"),
            t.limit,
            kappa_sql::topn::MAX_TOPN_ROWS
        ));
        if !p.after.is_empty() {
            lines.push("  on each batch of changes (__op kept):".into());
            ops(lines, "    ", &p.after);
        }
        return;
    }
    let kappa_sql::windowed_plan::Grouping::Updating(a) = &p.grouping else { return };
    lines.push(format!("{what}: updating aggregation (no windows), a changelog of its groups"));
    for i in &p.inputs {
        input(engine, lines, &i.pipeline);
        if a.retracting {
            lines.push(format!(
                "    {} is a changelog: its -U and -D rows take rows back",
                i.pipeline.stream
            ));
        }
    }
    let keys: Vec<String> =
        a.schema.fields().iter().take(a.group.len()).map(|f| f.name().clone()).collect();
    let aggs: Vec<String> = a.aggregates.iter().map(|x| x.function.name().to_string()).collect();
    let by = if keys.is_empty() { "(one group)".to_string() } else { keys.join(", ") };
    lines.push(format!("  aggregate: group by {by}; {}", aggs.join(", ")));
    lines.push(format!(
        "    state: {} (at most {} groups); per aggregate a count or sum, or for MIN and MAX over a changelog, COUNT(DISTINCT) and other functions the values of the group",
        bound("groups"),
        kappa_sql::updating_agg::MAX_GROUPS
    ));
    lines.push(
        "    after every batch: -U/+U for the groups whose values changed, +I for new groups, -D for groups whose rows were all taken back".into(),
    );
    if !p.after.is_empty() {
        lines.push("  on each batch of changes (__op kept):".into());
        ops(lines, "    ", &p.after);
    }
}
