//! A deduplicating materialized view as a table of versions, for a temporal join as of the
//! event time:
//!
//! ```sql
//! CREATE MATERIALIZED VIEW rates_now AS
//!   SELECT currency, rate, ts FROM (
//!     SELECT *, ROW_NUMBER() OVER (PARTITION BY currency ORDER BY ts DESC) AS rn FROM rates)
//!   WHERE rn = 1;
//! SELECT ... FROM orders o JOIN rates_now FOR SYSTEM_TIME AS OF o.ts r ON o.currency = r.currency;
//! ```
//!
//! As of event time `t`, such a view holds, per key, the row of the greatest time at or before
//! `t` (among equal times the first to come, as its TopN keeps it). That is the version of the
//! key as of `t` when every row of the view's input is a version from its time on: the join
//! reads the view's input stream (through the view's filters and projections, the row number
//! being 1) as its table of versions, not the view's changelog, whose rows say neither when a
//! version was replaced nor the versions a late-but-kept row would have been between. Only a
//! view of that shape is a table of versions: one row per key, the latest by its stream's
//! event time, with no filter over the deduplicated rows (a row filtered out there deletes its
//! key from its time on, which versions cannot say).

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::WindowFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};

use crate::error::{Error, Location, Result};
use crate::graph::StreamInfo;
use crate::windowed_plan::descend;

/// A deduplicating view's rows as versions.
#[derive(Debug, Clone)]
pub struct Versions {
    /// The view's plan with the deduplication taken out: every row of its input, numbered 1.
    pub plan: LogicalPlan,
    /// The columns of the input stream it keeps one row per (its `PARTITION BY`).
    pub keys: Vec<String>,
}

/// The versions of view `view`, whose (optimized) plan is `plan`.
///
/// # Errors
/// [`Error::NotSupported`] naming what makes the view something else than one row per key, the
/// latest by its stream's event time.
pub fn dedup_versions(
    view: &str,
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
    streams: &dyn Fn(&str) -> Option<StreamInfo>,
) -> Result<Versions> {
    let refuse = |why: &str| {
        Err(Error::not_supported(
            format!(
                "a temporal join as of the event time with view {view}, which {why} (a view is a table of versions when it keeps one row per key, the latest by its stream's event time: ROW_NUMBER() OVER (PARTITION BY key ORDER BY event_time DESC) = 1; FOR SYSTEM_TIME AS OF PROCTIME() looks any view up)"
            ),
            at,
        ))
    };
    let (above, node) = descend(plan);
    let LogicalPlan::Window(window) = node else {
        return refuse("is not a deduplication");
    };
    let [expr] = window.window_expr.as_slice() else {
        return refuse("has several window functions");
    };
    let Expr::WindowFunction(f) = expr.clone().unalias_nested().data else {
        return refuse("is not a deduplication");
    };
    let WindowFunction { fun, params } = f.as_ref();
    if fun.name() != "row_number" {
        return refuse("is not a deduplication");
    }
    let input_schema = window.input.schema();
    let rank = window.schema.field(input_schema.fields().len()).name().clone();
    // Over the deduplicated rows, only the bound of the row number, and it is 1.
    let mut bounded = false;
    for node in &above {
        if let LogicalPlan::Filter(f) = node {
            for c in split_conjunction(&f.predicate) {
                match crate::topn_plan::bound(c, &rank) {
                    Some(1) => bounded = true,
                    Some(_) => return refuse("keeps more than one row per key"),
                    None => return refuse("filters the rows it keeps"),
                }
            }
        }
    }
    if !bounded {
        return refuse("is not a deduplication");
    }
    // Its input: a stateless plan over streams, whose origins name the columns.
    let input = match crate::stream_plan::compile(&window.input, state, at) {
        Ok(p) => p,
        Err(_) => return refuse("deduplicates something else than a stream's rows"),
    };
    let origin = |e: &Expr| -> Option<String> {
        let Expr::Column(c) = e else { return None };
        let i = input_schema.index_of_column(c).ok()?;
        input.origins.get(i).cloned().flatten()
    };
    if input.inputs.len() != 1 {
        return refuse("deduplicates the rows of several streams (UNION ALL)");
    }
    let [order] = params.order_by.as_slice() else {
        return refuse("does not order by its stream's event time alone");
    };
    let time = origin(&order.expr);
    for p in &input.inputs {
        let event_time = streams(&p.stream).and_then(|s| s.watermark).map(|w| w.1);
        if event_time.is_none() || event_time != time {
            return refuse("does not order by its stream's event time (a WATERMARK's column)");
        }
    }
    if order.asc {
        return refuse("keeps the first row per key, not the latest (ORDER BY its time DESC)");
    }
    // (A row without a time is no version; the view must not keep it over one with a time.)
    let nullable = match &order.expr {
        Expr::Column(c) => {
            input_schema.index_of_column(c).map_or(true, |i| input_schema.field(i).is_nullable())
        }
        _ => true,
    };
    if nullable && order.nulls_first {
        return refuse(
            "keeps a row without a time over those with one (ORDER BY its time DESC puts NULLs first: write DESC NULLS LAST, or declare the column NOT NULL)",
        );
    }
    if params.partition_by.is_empty() {
        return refuse("has no key (PARTITION BY)");
    }
    let mut keys = Vec::with_capacity(params.partition_by.len());
    for e in &params.partition_by {
        match origin(e) {
            Some(k) => keys.push(k),
            None => return refuse("partitions by an expression, not by its stream's columns"),
        }
    }
    // The window node becomes its input (with the row number 1, if the view selects it); the
    // filter bounding the row number goes.
    let selected = plan.schema().fields().iter().any(|f| f.name() == &rank)
        || above.iter().any(|n| {
            !matches!(n, LogicalPlan::Filter(_))
                && n.expressions().iter().any(|e| e.column_refs().iter().any(|c| c.name == rank))
        });
    let numbered = if selected {
        let mut exprs: Vec<Expr> = input_schema.columns().into_iter().map(Expr::Column).collect();
        exprs.push(Expr::Literal(ScalarValue::UInt64(Some(1)), None).alias(rank));
        LogicalPlan::Projection(
            Projection::try_new(exprs, std::sync::Arc::clone(&window.input))
                .map_err(|e| Error::plan(e.message().to_string(), at))?,
        )
    } else {
        window.input.as_ref().clone()
    };
    let plan = strip(plan.clone(), &numbered)
        .and_then(|p| p.transform_up(|n| n.recompute_schema().map(Transformed::yes)))
        .map_err(|e| Error::plan(e.message().to_string(), at))?
        .data;
    // The versions' times are among the view's columns.
    let selected = crate::stream_plan::compile(&plan, state, at).map(|p| p.origins);
    if !selected.is_ok_and(|o| o.contains(&time)) {
        return refuse("does not select its event time (a version's time)");
    }
    Ok(Versions { plan, keys })
}

/// `plan` with its window node (under projections, aliases and the filters bounding the row
/// number, which go) replaced by `numbered`.
fn strip(plan: LogicalPlan, numbered: &LogicalPlan) -> datafusion::common::Result<LogicalPlan> {
    match plan {
        LogicalPlan::Filter(f) => strip(std::sync::Arc::unwrap_or_clone(f.input), numbered),
        LogicalPlan::Window(_) => Ok(numbered.clone()),
        other => Ok(other.map_children(|c| strip(c, numbered).map(Transformed::yes))?.data),
    }
}
