//! The streaming plan of an aggregation without windows: `SELECT k, SUM(x) FROM s [WHERE
//! ...] GROUP BY k [HAVING ...]`, a changelog of its groups' rows
//! ([`crate::updating_agg`]).
//!
//! Below the aggregation the plan must be stateless (scans, filters, projections, `UNION
//! ALL`: [`crate::stream_plan`]); above it, filters and projections run on every batch of
//! changes. An input that is itself a changelog (a stream whose last column is `__op`: a
//! materialized view's, or one made by `EMIT CHANGES`) is read with its `__op`, and its `-U`
//! and `-D` rows take rows back from the aggregation.

use std::sync::Arc;

use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::error::{Error, Location, Result};
use crate::stream_plan::physical;
use crate::updating_agg::UpdatingAggregateSpec;
use crate::windowed_plan::{
    EmitMode, Grouping, WindowedInput, WindowedPlan, aggregates_of, descend, op_of,
};

/// Aggregate functions whose result depends on the order of the rows: an updating aggregation
/// keeps a group's rows as a multiset, without their order.
const ORDER_SENSITIVE: &[&str] =
    &["first_value", "last_value", "nth_value", "array_agg", "string_agg"];

/// Where a changelog stream keeps `__op`, as [`compile_updating`] needs to know.
#[derive(Debug, Clone, Copy)]
pub struct ChangelogColumns {
    /// The index of `__op` in the stream's columns.
    pub op: usize,
    /// How many columns a query over the stream sees (a materialized view's changelog hides
    /// `__op`; a stream made by `EMIT CHANGES` shows it).
    pub visible: usize,
}

/// Compile `plan` as an aggregation without windows, if it is one (`None` when the plan has
/// no aggregation under its filters and projections). `changelog` tells whether a stream is
/// a changelog, and where its `__op` is.
///
/// # Errors
/// [`Error::NotSupported`] for what is not built yet (a join or an aggregation below it,
/// `GROUPING SETS`, `EMIT CHANGES EVERY`, `EMIT FINAL`); [`Error::Plan`] when an expression
/// cannot be compiled.
pub fn compile_updating(
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
    changelog: &dyn Fn(&str) -> Option<ChangelogColumns>,
    emit: EmitMode,
) -> Result<Option<WindowedPlan>> {
    let below = |p: &LogicalPlan| crate::stream_plan::compile(p, state, at);
    compile_updating_over(plan, state, at, changelog, emit, &below)
}

/// [`compile_updating`] with the aggregation's input compiled by `below` (a stateless plan; in
/// a plan of several operators, an operator's output as an input of its own name).
pub(crate) fn compile_updating_over(
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
    changelog: &dyn Fn(&str) -> Option<ChangelogColumns>,
    emit: EmitMode,
    below: &dyn Fn(&LogicalPlan) -> Result<crate::stream_plan::StatelessPlan>,
) -> Result<Option<WindowedPlan>> {
    let (above, node) = descend(plan);
    let LogicalPlan::Aggregate(aggregate) = node else { return Ok(None) };
    match emit {
        EmitMode::Changes { every_ms: None } => {}
        EmitMode::Changes { every_ms: Some(_) } => {
            return Err(Error::not_supported(
                "EMIT CHANGES EVERY for an aggregation without windows (it emits after every batch)",
                at,
            ));
        }
        EmitMode::Final => {
            return Err(Error::plan(
                "EMIT FINAL needs windows (GROUP BY window_start, window_end, ...): an aggregation without windows emits its changes (EMIT CHANGES)",
                at,
            ));
        }
    }
    let below = below(&aggregate.input)?;
    let mut retracting = false;
    let mut inputs = Vec::with_capacity(below.inputs.len());
    for mut pipeline in below.inputs {
        if let Some(c) = changelog(&pipeline.stream) {
            retracting = true;
            let mut read = pipeline.projection.take().unwrap_or_else(|| (0..c.visible).collect());
            read.push(c.op);
            pipeline.projection = Some(read);
        }
        inputs.push(pipeline);
    }
    if retracting && inputs.len() > 1 {
        // (Every input's batches must then carry `__op`.)
        let all = inputs.iter().all(|p| changelog(&p.stream).is_some());
        if !all {
            return Err(Error::not_supported(
                "a UNION ALL of changelogs and append-only streams under an aggregation",
                at,
            ));
        }
    }
    let input_schema = aggregate.input.schema();
    let mut group = Vec::with_capacity(aggregate.group_expr.len());
    for e in &aggregate.group_expr {
        if let Expr::GroupingSet(_) = e {
            return Err(Error::not_supported(
                "GROUPING SETS, ROLLUP and CUBE in a continuous query",
                at,
            ));
        }
        group.push(physical(state, e, input_schema, at)?);
    }
    let aggregates = aggregates_of(aggregate, state, at)?;
    for a in &aggregates {
        let name = a.function.fun().name().to_ascii_lowercase();
        if ORDER_SENSITIVE.contains(&name.as_str()) {
            return Err(Error::not_supported(
                format!(
                    "{} in an aggregation without windows (its result depends on the order of the rows, which updates do not keep)",
                    name.to_ascii_uppercase()
                ),
                at,
            ));
        }
    }
    let spec = UpdatingAggregateSpec {
        group,
        aggregates,
        schema: Arc::clone(aggregate.schema.inner()),
        input: Arc::clone(input_schema.inner()),
        retracting,
    };
    let after = above.iter().rev().map(|n| op_of(n, state, at)).collect::<Result<Vec<_>>>()?;
    Ok(Some(WindowedPlan {
        inputs: inputs
            .into_iter()
            .map(|pipeline| WindowedInput { pipeline, watermark: None })
            .collect(),
        grouping: Grouping::Updating(spec),
        after,
        schema: crate::window_agg::changes::changelog_schema(plan.schema().as_arrow()),
        emit,
    }))
}
