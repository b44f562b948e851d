//! Planning continuous queries: DataFusion's logical plan, optimized once for streams, then
//! compiled into a stateless pipeline or a plan of windowed operators ([`JobPlan`]).

use std::sync::Arc;

use datafusion::logical_expr::LogicalPlan;

use crate::engine::{Engine, JobPlan};
use crate::error::{Error, Result};

impl Engine {
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
}
