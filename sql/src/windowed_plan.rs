//! The streaming plan of a windowed aggregation: `SELECT ... FROM TUMBLE(s, ts, size) [WHERE
//! ...] GROUP BY window_start, window_end, ... [HAVING ...]`.
//!
//! It has three parts: the inputs (per window function's scan, several under `UNION ALL`:
//! read the stream, assign windows, the filters and projections below the aggregation), the
//! aggregation ([`crate::window_agg`], [`crate::session_agg`]), and the filters and
//! projections above it, run on every window it emits. Each input's watermark comes from its
//! stream's declaration, evaluated on every batch read (before any filter): the highest value
//! so far; the plan's is the minimum over its inputs ([`WindowedRun`]).

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::compute::{cast, max};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::DFSchema;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
#[expect(
    deprecated,
    reason = "the helper DataFusion's own planner used until 55; its successor, LoweredAggregateBuilder, is still settling"
)]
use datafusion::physical_planner::create_aggregate_expr_and_maybe_filter;

use crate::error::{Error, Location, Result};
use crate::session_agg::{Bound, SessionPlan};
use crate::stream_plan::{InputPipeline, Op, physical};
use crate::updating_agg::UpdatingAggregateSpec;
use crate::window::{WindowRead, WindowSpec, windowed_schema};
use crate::window_agg::{Aggregate, Panes, WindowAggregateSpec};
pub use crate::windowed_run::{
    AggregationSnapshot, InputStatus, RunSnapshot, StatePart, WindowedRun,
};

/// What the engine knows of a window table function's scan.
#[derive(Debug, Clone)]
pub struct WindowSource {
    /// The stream read.
    pub stream: String,
    /// Its schema.
    pub stream_schema: SchemaRef,
    /// The windows.
    pub spec: WindowSpec,
    /// The time column, in the stream's schema.
    pub time: usize,
    /// A session's partition key columns, in the stream's schema.
    pub partition: Vec<usize>,
    /// The stream's watermark expression, as SQL over its columns (none: windows close only
    /// when the stream is sealed).
    pub watermark: Option<String>,
    /// The column the watermark is declared for (`WATERMARK FOR column`).
    pub watermark_column: Option<String>,
}

/// An aggregation over streams: by windows the watermark closes, or without windows
/// (updating every group as rows come).
#[derive(Debug, Clone)]
pub struct WindowedPlan {
    /// The inputs (several under UNION ALL): read the stream, assign windows, filter and
    /// project up to the aggregation.
    pub inputs: Vec<WindowedInput>,
    /// The aggregation.
    pub grouping: Grouping,
    /// Filters and projections over each emitted window (HAVING, the SELECT list).
    pub after: Vec<Op>,
    /// The output schema.
    pub schema: SchemaRef,
    /// When results are emitted (with `EMIT CHANGES`, `schema` ends with `__op`).
    pub emit: EmitMode,
}

/// How a [`WindowedPlan`] aggregates.
#[derive(Debug, Clone)]
pub enum Grouping {
    /// By windows (or sessions).
    Windows(Box<Windows>),
    /// Without windows: every group updated as rows come, a changelog out
    /// ([`crate::updating_agg`]).
    Updating(UpdatingAggregateSpec),
    /// Not an aggregation: the best `N` rows of each partition ([`crate::topn`]).
    TopN(crate::topn::TopNSpec),
    /// Several operators: joins, and aggregations or TopNs over or under them
    /// ([`crate::graph`]); the plan's `after` is empty (each node has its own).
    Graph(Box<crate::graph::Graph>),
}

/// A windowed aggregation.
#[derive(Debug, Clone)]
pub struct Windows {
    /// The windows of the query (the pipeline may assign panes instead).
    pub window: WindowSpec,
    /// The aggregation.
    pub aggregate: WindowAggregateSpec,
    /// Session windows: how rows get their sessions before `input.ops` (which then has no
    /// window assignment), and how the aggregation keys them.
    pub session: Option<SessionPlan>,
}

impl WindowedPlan {
    /// The windows, for a windowed aggregation.
    pub fn windows(&self) -> Option<&Windows> {
        match &self.grouping {
            Grouping::Windows(w) => Some(w),
            Grouping::Updating(_) | Grouping::TopN(_) | Grouping::Graph(_) => None,
        }
    }

    /// Whether the output is a changelog of rows the plan keeps (an aggregation without
    /// windows, a TopN, or a graph whose last operator is one): what a materialized view
    /// publishes.
    pub fn keeps_rows(&self) -> bool {
        match &self.grouping {
            Grouping::Updating(_) | Grouping::TopN(_) => true,
            Grouping::Windows(_) => false,
            Grouping::Graph(g) => matches!(
                g.nodes.last().map(|n| &n.op),
                Some(crate::graph::NodeOp::Run(p)) if p.keeps_rows()
            ),
        }
    }

    /// The aggregation's output schema (group keys then aggregates).
    pub fn aggregate_schema(&self) -> &SchemaRef {
        match &self.grouping {
            Grouping::Windows(w) => &w.aggregate.schema,
            Grouping::Updating(u) => &u.schema,
            Grouping::TopN(t) => &t.schema,
            Grouping::Graph(g) => &g.schema,
        }
    }
}

/// One input of a windowed aggregation.
#[derive(Debug, Clone)]
pub struct WindowedInput {
    /// Read the stream, assign windows, filter and project up to the aggregation.
    pub pipeline: InputPipeline,
    /// The stream's watermark over the batch read (before `pipeline.ops`).
    pub watermark: Option<Watermark>,
}

/// When a windowed aggregation emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// `EMIT FINAL`: each window once, when the watermark closes it.
    Final,
    /// `EMIT CHANGES [EVERY ...]`: a changelog of every group's value, after each batch read
    /// (or every `every_ms` milliseconds of processing time), and when the window closes.
    Changes {
        /// The interval between early emissions; `None`: after every batch.
        every_ms: Option<i64>,
    },
}

/// Compile `plan` as a windowed aggregation, if it is one (`None` otherwise: no aggregation,
/// or one that does not read a window function). `resolve` tells a window function's scan.
///
/// # Errors
/// [`Error::NotSupported`] for the parts of a windowed aggregation not built yet; [`Error::Plan`]
/// when an expression cannot be compiled.
pub fn compile_windowed(
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
    resolve: &dyn Fn(&TableScan) -> Option<WindowSource>,
    emit: EmitMode,
) -> Result<Option<WindowedPlan>> {
    let changes = emit != EmitMode::Final;
    // Down to the aggregation, then below it down to the scan (or, under UNION ALL, one scan
    // per branch, each with its own filters and projections).
    let (above, node) = descend(plan);
    let LogicalPlan::Aggregate(aggregate) = node else { return Ok(None) };
    let (below, node) = descend(&aggregate.input);
    let mut branches: Vec<(Vec<&LogicalPlan>, &TableScan)> = Vec::new();
    match node {
        LogicalPlan::TableScan(s) => branches.push((Vec::new(), s)),
        LogicalPlan::Union(u) => {
            for input in &u.inputs {
                match descend(input) {
                    (own, LogicalPlan::TableScan(s)) => branches.push((own, s)),
                    _ => return Ok(None),
                }
            }
        }
        LogicalPlan::Aggregate(_) => {
            return Err(Error::not_supported(
                "an aggregation over an aggregation in a windowed aggregation",
                at,
            ));
        }
        _ => return Ok(None),
    }
    let mut sources = Vec::with_capacity(branches.len());
    for (_, scan) in &branches {
        match resolve(scan) {
            Some(s) => sources.push(s),
            None => return Ok(None),
        }
    }
    let not_supported = |what: &str| Err(Error::not_supported(what.to_string(), at));
    let Some(first) = sources.first() else { return Ok(None) };
    let spec_of_all = first.spec;
    if sources.iter().any(|s| s.spec != spec_of_all) {
        return Err(Error::plan(
            "the branches of a UNION ALL under a windowed aggregation must use the same window",
            at,
        ));
    }
    if sources.len() > 1 && matches!(spec_of_all, WindowSpec::Session { .. }) {
        return not_supported("SESSION windows over a UNION ALL");
    }
    let mut inputs = Vec::with_capacity(branches.len());
    let mut session_read = None;
    for ((own, scan), source) in branches.iter().zip(&sources) {
        let (input, read) = branch(state, at, scan, source, own, &below)?;
        session_read.get_or_insert(read);
        inputs.push(input);
    }
    let Some((time, partition, assigned)) = session_read else { return Ok(None) };
    let source = first.clone();

    // The aggregation.
    let input_schema = aggregate.input.schema();
    let mut group = Vec::new();
    let key = |name: &str| {
        aggregate.group_expr.iter().position(|e| matches!(e, Expr::Column(c) if c.name == name))
    };
    // The window's end: its key, or the start key plus the size (a session: its id, in every
    // window column).
    let end = match (key("window_end"), key("window_start"), source.spec) {
        (Some(k), _, _) => Some((k, 0)),
        (None, Some(k), WindowSpec::Tumble { size, .. } | WindowSpec::Hop { size, .. }) => {
            Some((k, size))
        }
        (None, Some(k), WindowSpec::Session { .. }) => Some((k, 0)),
        (None, Some(_), WindowSpec::Cumulate { .. }) => {
            return not_supported("a CUMULATE aggregation without window_end in GROUP BY");
        }
        (None, None, WindowSpec::Session { .. }) => key("window_time").map(|k| (k, 0)),
        (None, None, _) => None,
    };
    for e in &aggregate.group_expr {
        if let Expr::GroupingSet(_) = e {
            return not_supported("GROUPING SETS, ROLLUP and CUBE in a windowed aggregation");
        }
        group.push(physical(state, e, input_schema, at)?);
    }
    let Some((end_key, end_offset)) = end else {
        return Err(Error::plan(
            "a windowed aggregation groups by its window: GROUP BY window_start, window_end, ...",
            at,
        ));
    };
    let aggregates = aggregates_of(aggregate, state, at)?;
    // Whether the window columns are only passed along below the aggregation and only
    // grouped by: then the pipeline may carry something else in them (a pane's bounds, a
    // session's id).
    let windowy = |e: &Expr| {
        e.column_refs()
            .iter()
            .any(|c| matches!(c.name.as_str(), "window_start" | "window_end" | "window_time"))
    };
    let plain = |e: &Expr| matches!(e, Expr::Column(_)) || !windowy(e);
    let below_ok = below.iter().chain(branches.iter().flat_map(|b| b.0.iter())).all(|n| match n {
        LogicalPlan::Filter(f) => !windowy(&f.predicate),
        LogicalPlan::Projection(p) => p.expr.iter().all(plain),
        _ => false,
    });
    let bound = |e: &Expr| match e {
        Expr::Column(c) => match c.name.as_str() {
            "window_start" => Some(Bound::Start),
            "window_end" => Some(Bound::End),
            "window_time" => Some(Bound::Time),
            _ => None,
        },
        _ => None,
    };
    let keys_ok = aggregate.group_expr.iter().all(|e| bound(e).is_some() || !windowy(e));
    let carried = below_ok && keys_ok && !aggregate.aggr_expr.iter().any(windowy);
    let mut session = None;
    if let WindowSpec::Session { gap } = source.spec {
        // A changelog keyed by the group keys needs one session per key: the partition keys
        // must be grouped by.
        let grouped: Vec<&str> = aggregate
            .group_expr
            .iter()
            .filter_map(|e| match e {
                Expr::Column(c) => Some(c.name.as_str()),
                _ => None,
            })
            .collect();
        if changes
            && source
                .partition
                .iter()
                .any(|p| !grouped.contains(&source.stream_schema.field(*p).name().as_str()))
        {
            return not_supported(
                "EMIT CHANGES of sessions without their partition keys in GROUP BY",
            );
        }
        if !carried {
            return not_supported(
                "a session aggregation that computes with window_start, window_end or window_time below it (group by them and compute above)",
            );
        }
        let bounds = (0..aggregate.group_expr.len())
            .filter_map(|k| bound(&aggregate.group_expr[k]).map(|b| (k, b)))
            .collect();
        let keys = (0..aggregate.group_expr.len())
            .filter(|k| bound(&aggregate.group_expr[*k]).is_none())
            .collect();
        session = Some(SessionPlan {
            gap,
            time,
            partition,
            assigned: Arc::clone(&assigned),
            bounds,
            keys,
        });
    }
    // Hopping windows by panes, when nothing below the aggregation computes with the window
    // columns (the pipeline then gives each row its pane instead of its windows).
    let mut panes = None;
    let mut end_key = end_key;
    let mut end_offset = end_offset;
    if let WindowSpec::Hop { slide, size, offset } = source.spec {
        let (start, end) = (key("window_start"), key("window_end"));
        let keys_ok = aggregate
            .group_expr
            .iter()
            .enumerate()
            .all(|(k, e)| Some(k) == start || Some(k) == end || !windowy(e));
        // (Panes group by the keys other than the window's: there must be one.)
        let others =
            aggregate.group_expr.len() - usize::from(start.is_some()) - usize::from(end.is_some());
        // (EMIT CHANGES reads open windows, which panes do not keep.)
        if carried && keys_ok && others > 0 && !changes {
            for input in &mut inputs {
                if let Some(Op::Window { spec, .. }) = ops_window(&mut input.pipeline.ops) {
                    *spec = WindowSpec::Tumble { size: slide, offset };
                }
            }
            (end_key, end_offset) = match end {
                Some(k) => (k, 0),
                None => (end_key, slide),
            };
            let keys = (0..aggregate.group_expr.len())
                .filter(|k| Some(*k) != start && Some(*k) != end)
                .collect();
            panes = Some(Panes { slide, size, start_key: start, end_key: end, keys });
        }
    }
    let spec = WindowAggregateSpec {
        group,
        end_key,
        end_offset,
        aggregates,
        schema: Arc::clone(aggregate.schema.inner()),
        panes,
        changes,
    };
    let after = above.iter().rev().map(|n| op_of(n, state, at)).collect::<Result<Vec<_>>>()?;
    let schema = if changes {
        crate::window_agg::changes::changelog_schema(plan.schema().as_arrow())
    } else {
        Arc::clone(plan.schema().inner())
    };
    Ok(Some(WindowedPlan {
        inputs,
        grouping: Grouping::Windows(Box::new(Windows {
            window: source.spec,
            aggregate: spec,
            session,
        })),
        after,
        schema,
        emit,
    }))
}

/// The aggregate functions of `aggregate`, with their `FILTER` clauses, over its input.
///
/// # Errors
/// [`Error::NotSupported`] for `ORDER BY` inside an aggregate; [`Error::Plan`] when one
/// cannot be built.
pub(crate) fn aggregates_of(
    aggregate: &datafusion::logical_expr::Aggregate,
    state: &SessionState,
    at: Option<Location>,
) -> Result<Vec<Aggregate>> {
    let input_schema = aggregate.input.schema();
    let mut aggregates = Vec::new();
    for e in &aggregate.aggr_expr {
        #[expect(deprecated, reason = "see the import")]
        let (function, filter, order) = create_aggregate_expr_and_maybe_filter(
            e,
            input_schema,
            input_schema.as_arrow(),
            state.execution_props(),
        )
        .map_err(|e| Error::plan(e.message().to_string(), at))?;
        if !order.is_empty() {
            return Err(Error::not_supported(
                "ORDER BY inside an aggregate function of a continuous query",
                at,
            ));
        }
        aggregates.push(Aggregate { function, filter });
    }
    Ok(aggregates)
}

/// A stream's watermark, computed on every batch read: the largest value so far is the
/// watermark.
#[derive(Debug, Clone)]
pub enum Watermark {
    /// `time - INTERVAL ...` (or the time itself): the batch's largest time minus the delay,
    /// without evaluating the expression on every row.
    Delay {
        /// The time column in the batch read.
        column: usize,
        /// The delay in milliseconds.
        delay_ms: i64,
    },
    /// Any other expression over the batch: its largest value.
    Expr(Arc<dyn PhysicalExpr>),
}

impl Watermark {
    /// The watermark a batch gives, in milliseconds (`i64::MIN` when every value is NULL).
    ///
    /// # Errors
    /// When the expression fails or is not a timestamp.
    pub fn of(&self, batch: &RecordBatch) -> Result<i64> {
        let (ms, delay) = self.millis(batch)?;
        Ok(max(&ms).map_or(i64::MIN, |m| m.saturating_sub(delay)))
    }

    /// Each row's watermark value (`i64::MIN` for a NULL), in milliseconds.
    ///
    /// # Errors
    /// As [`Watermark::of`].
    pub fn per_row(&self, batch: &RecordBatch) -> Result<Vec<i64>> {
        let (ms, delay) = self.millis(batch)?;
        Ok(ms.iter().map(|v| v.map_or(i64::MIN, |m| m.saturating_sub(delay))).collect())
    }

    /// The values the watermark is the largest of, in milliseconds, and the delay to take
    /// off them.
    fn millis(&self, batch: &RecordBatch) -> Result<(TimestampMillisecondArray, i64)> {
        let fail = |e: String| Error::plan(format!("the watermark: {e}"), None);
        let (values, delay) = match self {
            Watermark::Delay { column, delay_ms } => (Arc::clone(batch.column(*column)), *delay_ms),
            Watermark::Expr(e) => (
                e.evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(|e| fail(e.message().to_string()))?,
                0,
            ),
        };
        let ms = cast(&values, &DataType::Timestamp(TimeUnit::Millisecond, None))
            .map_err(|e| fail(e.to_string()))?;
        let ms = ms
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| fail("not a timestamp".into()))?
            .clone();
        Ok((ms, delay))
    }
}

/// `column - INTERVAL` with a fixed length (or the column alone): the column's index and the
/// delay in milliseconds.
pub(crate) fn delay_of(expr: &Expr, schema: &DFSchema) -> Option<(usize, i64)> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    match expr {
        Expr::Column(c) => Some((schema.index_of_column(c).ok()?, 0)),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) => {
            let (Expr::Column(c), Expr::Literal(v, _)) = (left.as_ref(), right.as_ref()) else {
                return None;
            };
            // Whole milliseconds only (the window arithmetic is in milliseconds).
            let delay = crate::window::fixed_millis(v)?;
            Some((schema.index_of_column(c).ok()?, delay))
        }
        _ => None,
    }
}

/// From `node` down through filters, projections and aliases: the filters and projections met
/// (top first), and the first other node.
pub(crate) fn descend(mut node: &LogicalPlan) -> (Vec<&LogicalPlan>, &LogicalPlan) {
    let mut passed = Vec::new();
    loop {
        match node {
            LogicalPlan::Projection(p) => {
                passed.push(node);
                node = &p.input;
            }
            LogicalPlan::Filter(f) => {
                passed.push(node);
                node = &f.input;
            }
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            other => return (passed, other),
        }
    }
}

/// The window assignment of a pipeline.
fn ops_window(ops: &mut [Op]) -> Option<&mut Op> {
    ops.iter_mut().find(|o| matches!(o, Op::Window { .. }))
}

/// A filter or projection node as an op.
pub(crate) fn op_of(node: &LogicalPlan, state: &SessionState, at: Option<Location>) -> Result<Op> {
    match node {
        LogicalPlan::Filter(f) => {
            Ok(Op::Filter(physical(state, &f.predicate, f.input.schema(), at)?))
        }
        LogicalPlan::Projection(p) => Ok(Op::Project {
            exprs: p
                .expr
                .iter()
                .map(|e| physical(state, e, p.input.schema(), at))
                .collect::<Result<Vec<_>>>()?,
            schema: Arc::clone(p.schema.inner()),
        }),
        _ => Err(Error::plan("not a filter or a projection", at)),
    }
}

/// The time column, the partition keys and the schema with window columns of a branch's read.
type ReadShape = (usize, Vec<usize>, SchemaRef);

/// One window function's scan (with the filters and projections of its branch, then those
/// common to all branches) as an input of the plan; also the time column, the partition keys
/// and the schema with window columns of the batch it reads.
fn branch(
    state: &SessionState,
    at: Option<Location>,
    scan: &TableScan,
    source: &WindowSource,
    own: &[&LogicalPlan],
    common: &[&LogicalPlan],
) -> Result<(WindowedInput, ReadShape)> {
    let time_name = source.stream_schema.field(source.time).name();
    if let Some(c) = &source.watermark_column
        && c != time_name
    {
        return Err(Error::plan(
            format!(
                "the window's time column is {time_name}, but stream {} has its watermark on {c}: window by {c}",
                source.stream
            ),
            at,
        ));
    }
    // The stream's columns needed (and the time column), the windows, then the scan's columns
    // in its order.
    let WindowRead { read, time, keys: partition, output } = WindowRead::new(
        source.stream_schema.fields().len(),
        source.time,
        &source.partition,
        scan.projection.as_deref(),
    );
    let read_schema =
        Arc::new(source.stream_schema.project(&read).map_err(|e| Error::plan(e.to_string(), at))?);
    let assigned = windowed_schema(&read_schema, at)?;
    let to_scan: Vec<Arc<dyn PhysicalExpr>> = output
        .iter()
        .map(|at| Arc::new(Column::new(assigned.field(*at).name(), *at)) as Arc<dyn PhysicalExpr>)
        .collect();
    let mut ops =
        vec![Op::Project { exprs: to_scan, schema: Arc::clone(scan.projected_schema.inner()) }];
    if !matches!(source.spec, WindowSpec::Session { .. }) {
        ops.insert(0, Op::Window { spec: source.spec, time, schema: Arc::clone(&assigned) });
    }
    for node in own.iter().rev().chain(common.iter().rev()) {
        ops.push(op_of(node, state, at)?);
    }
    let watermark = match &source.watermark {
        Some(sql) => {
            let df = DFSchema::try_from(Arc::clone(&read_schema))
                .map_err(|e| Error::plan(e.to_string(), at))?;
            let expr = state
                .create_logical_expr(sql, &df)
                .map_err(|e| Error::plan(format!("the watermark {sql}: {}", e.message()), at))?;
            Some(match delay_of(&expr, &df) {
                Some((column, delay_ms)) => Watermark::Delay { column, delay_ms },
                None => Watermark::Expr(physical(state, &expr, &df, at)?),
            })
        }
        None => None,
    };
    let pipeline = InputPipeline { stream: source.stream.clone(), projection: Some(read), ops };
    Ok((WindowedInput { pipeline, watermark }, (time, partition, assigned)))
}
