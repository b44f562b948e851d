//! The streaming plan of a TopN or a deduplication ([`crate::topn`]):
//!
//! ```sql
//! SELECT ... FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY o) AS rn FROM s)
//! WHERE rn <= N
//! ```
//!
//! DataFusion plans it as filters and projections over a window node with one `row_number()`
//! over a stateless input. The conjunct of the filter that bounds the row number (`rn <= N`,
//! `rn < N`, `rn = 1`) becomes the TopN's `N`; the rest of the filters and projections run on
//! every batch of changes.

use std::sync::Arc;

use datafusion::arrow::compute::SortOptions;
use datafusion::common::ScalarValue;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};

use crate::error::{Error, Location, Result};
use crate::stream_plan::{Op, physical};
use crate::topn::TopNSpec;
use crate::windowed_plan::{EmitMode, Grouping, WindowedInput, WindowedPlan, descend, op_of};

/// The bound a conjunct puts on the row number `rank`: `Some(N)` for `rank <= N`, `rank < N+1`,
/// `rank = 1` (and the same with the sides swapped).
pub(crate) fn bound(e: &Expr, rank: &str) -> Option<usize> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else { return None };
    let value = |e: &Expr| match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::UInt64(Some(n)) => Some(*n as i128),
            ScalarValue::Int64(Some(n)) => Some(i128::from(*n)),
            ScalarValue::Int32(Some(n)) => Some(i128::from(*n)),
            _ => None,
        },
        _ => None,
    };
    let is_rank = |e: &Expr| matches!(e, Expr::Column(c) if c.name == rank);
    let (op, n) = if is_rank(left) {
        (*op, value(right)?)
    } else if is_rank(right) {
        (op.swap()?, value(left)?)
    } else {
        return None;
    };
    let n = match op {
        Operator::LtEq => n,
        Operator::Lt => n - 1,
        Operator::Eq if n == 1 => 1,
        _ => return None,
    };
    usize::try_from(n).ok().filter(|n| *n >= 1)
}

/// Compile `plan` as a TopN, if it is one (`None` when there is no window node under its
/// filters and projections).
///
/// # Errors
/// [`Error::NotSupported`] for a window node that is not one `ROW_NUMBER()` bounded by a
/// filter, or over a changelog; [`Error::Plan`] when an expression cannot be compiled.
pub fn compile_topn(
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
    is_changelog: &dyn Fn(&str) -> bool,
    emit: EmitMode,
) -> Result<Option<WindowedPlan>> {
    let below = |p: &LogicalPlan| crate::stream_plan::compile(p, state, at);
    compile_topn_over(plan, state, at, is_changelog, emit, &below)
}

/// [`compile_topn`] with the window node's input compiled by `below` (a stateless plan; in a
/// plan of several operators, an operator's output as an input of its own name).
pub(crate) fn compile_topn_over(
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
    is_changelog: &dyn Fn(&str) -> bool,
    emit: EmitMode,
    below: &dyn Fn(&LogicalPlan) -> Result<crate::stream_plan::StatelessPlan>,
) -> Result<Option<WindowedPlan>> {
    let (above, node) = descend(plan);
    let LogicalPlan::Window(window) = node else { return Ok(None) };
    let not_supported = |what: &str| Err(Error::not_supported(what.to_string(), at));
    let [expr] = window.window_expr.as_slice() else {
        return not_supported("several window functions (OVER) in a continuous query");
    };
    let Expr::WindowFunction(f) = expr.clone().unalias_nested().data else {
        return not_supported("this window function (OVER) in a continuous query");
    };
    let WindowFunction { fun, params } = f.as_ref();
    if fun.name() != "row_number" {
        return not_supported(&format!(
            "{}() OVER in a continuous query (ROW_NUMBER() bounded by a filter is: TopN, deduplication)",
            fun.name().to_ascii_uppercase()
        ));
    }
    if params.order_by.is_empty() {
        return not_supported("ROW_NUMBER() OVER without ORDER BY in a continuous query");
    }
    if !matches!(emit, EmitMode::Changes { every_ms: None }) {
        return not_supported(
            "a TopN with EMIT FINAL or EMIT CHANGES EVERY (it emits its changes after every batch)",
        );
    }
    let input_schema = window.input.schema();
    let rank_index = input_schema.fields().len();
    let rank = window.schema.field(rank_index).name().clone();
    // The filter that bounds the row number: its conjunct becomes N, the rest stays.
    let mut limit = None;
    let mut after = Vec::with_capacity(above.len());
    for node in above.iter().rev() {
        match node {
            LogicalPlan::Filter(f) if limit.is_none() => {
                let mut rest = Vec::new();
                for c in split_conjunction(&f.predicate) {
                    match bound(c, &rank) {
                        Some(n) if limit.is_none() => limit = Some(n),
                        _ => rest.push(c.clone()),
                    }
                }
                if let Some(p) = conjunction(rest) {
                    after.push(Op::Filter(physical(state, &p, f.input.schema(), at)?));
                }
            }
            other => after.push(op_of(other, state, at)?),
        }
    }
    let Some(limit) = limit else {
        return not_supported(
            "ROW_NUMBER() OVER in a continuous query without a filter that bounds it (WHERE rn <= N, or rn = 1)",
        );
    };
    let rank_used = reads(&after, rank_index);
    let below = below(&window.input)?;
    if below.inputs.iter().any(|p| is_changelog(&p.stream)) {
        return not_supported("a TopN over a changelog (a view, or a stream of EMIT CHANGES)");
    }
    let partition = params
        .partition_by
        .iter()
        .map(|e| physical(state, e, input_schema, at))
        .collect::<Result<Vec<_>>>()?;
    let order = params
        .order_by
        .iter()
        .map(|s| {
            let options = SortOptions { descending: !s.asc, nulls_first: s.nulls_first };
            Ok((physical(state, &s.expr, input_schema, at)?, options))
        })
        .collect::<Result<Vec<_>>>()?;
    let spec = TopNSpec {
        partition,
        order,
        limit,
        rank_used,
        input: Arc::clone(input_schema.inner()),
        schema: Arc::clone(window.schema.inner()),
    };
    Ok(Some(WindowedPlan {
        inputs: below
            .inputs
            .into_iter()
            .map(|pipeline| WindowedInput { pipeline, watermark: None })
            .collect(),
        grouping: Grouping::TopN(spec),
        after,
        schema: crate::window_agg::changes::changelog_schema(plan.schema().as_arrow()),
        emit,
    }))
}

/// Whether the ops read column `column` of their input to give their output (a filter
/// reads its columns; a projection those of the expressions whose outputs are read).
fn reads(ops: &[Op], column: usize) -> bool {
    use std::collections::HashSet;
    let columns = |e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| -> Vec<usize> {
        datafusion::physical_expr::utils::collect_columns(e).iter().map(|c| c.index()).collect()
    };
    // The columns read at each point, from the output back (`None`: all of them).
    let mut read: Option<HashSet<usize>> = None;
    for op in ops.iter().rev() {
        match op {
            Op::Filter(p) => {
                if let Some(r) = &mut read {
                    r.extend(columns(p));
                }
            }
            Op::Project { exprs, .. } => {
                let mut before = HashSet::new();
                for (i, e) in exprs.iter().enumerate() {
                    if read.as_ref().is_none_or(|r| r.contains(&i)) {
                        before.extend(columns(e));
                    }
                }
                read = Some(before);
            }
            Op::Window { .. } => read = None,
        }
    }
    read.is_none_or(|r| r.contains(&column))
}
