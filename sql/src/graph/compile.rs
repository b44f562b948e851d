//! From DataFusion's optimized plan to a [`Graph`]: joins become join nodes, aggregations and
//! TopNs run nodes (compiled as a query of one operator would be, their inputs fed by the
//! nodes below them), and the stateless parts between become the sources' pipelines and the
//! nodes' filters and projections.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};
use datafusion::common::{Column, DFSchema};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, TableScan};

use super::{Graph, GraphNode, NodeOp, Port, Source};
use crate::error::{Error, Location, Result};
use crate::stream_plan::{InputPipeline, Op, StatelessPlan, physical};
use crate::updating_plan::ChangelogColumns;
use crate::windowed_plan::{
    EmitMode, Grouping, Watermark, WindowSource, WindowedInput, WindowedPlan, descend, op_of,
};
use crate::windowed_run::StatePart;

mod joins;

/// What the compiler needs to know of a stream read.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Its columns.
    pub schema: SchemaRef,
    /// Its watermark as SQL over its columns, and the column it is for.
    pub watermark: Option<(String, String)>,
    /// Where its `__op` is, for a changelog.
    pub changelog: Option<ChangelogColumns>,
    /// Whether it is sealed (no row will come after those stored).
    pub sealed: bool,
}

/// A table read `FOR SYSTEM_TIME AS OF ...` (a scan the engine's `__as_of` table function
/// makes of `t FOR SYSTEM_TIME AS OF e`).
#[derive(Debug, Clone)]
pub struct AsOf {
    /// The table (a stream, or a materialized view).
    pub stream: String,
    /// The expression after `AS OF`, as written.
    pub time: String,
    /// When the stream stands for a deduplicating view (a temporal join reads the view's
    /// input as its versions: [`crate::versions`]).
    pub versions: Option<Versioned>,
}

/// The view a temporal join's versions come from.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The view.
    pub view: String,
    /// The stream's columns it keeps one row per: the join's keys on the table's side.
    pub keys: Vec<String>,
}

impl AsOf {
    /// Whether the time is the processing time (`PROCTIME()`): a lookup join.
    pub fn processing_time(&self) -> bool {
        let t = self.time.trim().to_ascii_lowercase().replace(' ', "");
        matches!(t.as_str(), "proctime()" | "now()" | "current_timestamp")
    }
}

/// Whether `plan` has a join.
fn has_join(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Join(_)) || plan.inputs().iter().any(|p| has_join(p))
}

/// Whether `plan`'s first stateful operator reads another (an aggregation over an
/// aggregation).
fn nested(plan: &LogicalPlan) -> bool {
    match descend(plan).1 {
        LogicalPlan::Aggregate(a) => stateful(&a.input),
        LogicalPlan::Window(w) => stateful(&w.input),
        _ => false,
    }
}

/// Whether `plan` has a node that needs state.
fn stateful(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Join(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Distinct(_)
    ) || plan.inputs().iter().any(|p| stateful(p))
}

/// Compile `plan` as a graph of operators, if it has a join or an operator over another
/// (`None` otherwise: one operator, or none).
///
/// # Errors
/// [`Error::NotSupported`] for what is not built yet (a join without an equality, `IN`/`EXISTS`
/// subqueries, windows over a join's output, `EMIT CHANGES EVERY`); [`Error::Plan`] when an
/// expression cannot be compiled.
pub fn compile_graph(
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
    resolve: &dyn Fn(&TableScan) -> Option<WindowSource>,
    streams: &dyn Fn(&str) -> Option<StreamInfo>,
    as_of: &dyn Fn(&TableScan) -> Option<AsOf>,
    emit: EmitMode,
) -> Result<Option<WindowedPlan>> {
    if !has_join(plan) && !nested(plan) {
        return Ok(None);
    }
    if let EmitMode::Changes { every_ms: Some(_) } = emit {
        return Err(Error::not_supported("EMIT CHANGES EVERY over a join", at));
    }
    let mut b = Builder {
        state,
        at,
        resolve,
        streams,
        as_of,
        nodes: Vec::new(),
        sources: Vec::new(),
        uses: Vec::new(),
    };
    let root = b.build(plan)?;
    let node = &b.nodes[root];
    let (schema, changelog) = (Arc::clone(&node.schema), node.changelog);
    let out_schema = if changelog {
        crate::window_agg::changes::changelog_schema(&schema)
    } else {
        Arc::clone(&schema)
    };
    let (sources, inputs): (Vec<Source>, Vec<WindowedInput>) = b.sources.into_iter().unzip();
    let mut uses = b.uses;
    uses.sort();
    uses.dedup();
    let graph = Graph { nodes: b.nodes, sources, schema, changelog, uses };
    Ok(Some(WindowedPlan {
        inputs,
        grouping: Grouping::Graph(Box::new(graph)),
        after: Vec::new(),
        schema: out_schema,
        emit: EmitMode::Changes { every_ms: None },
    }))
}

/// What feeds a join's side.
enum Feed {
    /// A node.
    Node(usize),
    /// Sources (several under `UNION ALL`), with the side's time column (the one their
    /// watermarks are for), if the pipelines pass it, and the table it reads `FOR
    /// SYSTEM_TIME AS OF`, if so.
    Sources(Vec<usize>, Option<usize>, Option<AsOf>, Vec<Option<String>>),
}

struct Builder<'a> {
    state: &'a SessionState,
    at: Option<Location>,
    resolve: &'a dyn Fn(&TableScan) -> Option<WindowSource>,
    streams: &'a dyn Fn(&str) -> Option<StreamInfo>,
    as_of: &'a dyn Fn(&TableScan) -> Option<AsOf>,
    nodes: Vec<GraphNode>,
    sources: Vec<(Source, WindowedInput)>,
    /// The views read as versions.
    uses: Vec<String>,
}

impl Builder<'_> {
    fn not_supported<T>(&self, what: impl Into<String>) -> Result<T> {
        Err(Error::not_supported(what.into(), self.at))
    }

    /// The node computing `plan` (a join or an aggregation, under filters and projections).
    fn build(&mut self, plan: &LogicalPlan) -> Result<usize> {
        let (above, node) = descend(plan);
        match node {
            LogicalPlan::Join(j) => self.join(plan, &above, j),
            LogicalPlan::Aggregate(_) | LogicalPlan::Window(_) => self.run(plan),
            LogicalPlan::Distinct(_) => {
                self.not_supported("DISTINCT (or UNION without ALL) over a join")
            }
            LogicalPlan::Union(_) => self.not_supported("UNION ALL of joins"),
            other => self.not_supported(format!(
                "the plan node {} with a join",
                other.display().to_string().split(':').next().unwrap_or("?").trim()
            )),
        }
    }

    fn feed_changelog(&self, feed: &Feed) -> bool {
        match feed {
            Feed::Node(c) => self.nodes[*c].changelog,
            Feed::Sources(list, ..) => list.iter().any(|i| self.sources[*i].0.changelog),
        }
    }

    /// A side's time column (its values are at least its watermark, late rows aside).
    fn feed_time(&self, feed: &Feed) -> Option<usize> {
        match feed {
            Feed::Sources(_, t, ..) => *t,
            Feed::Node(c) => match &self.nodes[*c].op {
                // A windowed aggregation's window_end, if passed unchanged.
                NodeOp::Run(p) => {
                    let w = p.windows()?;
                    if w.aggregate.end_offset != 0 || w.session.is_some() {
                        return None;
                    }
                    let mut at = w.aggregate.end_key;
                    for op in &p.after {
                        match op {
                            Op::Filter(_) => {}
                            Op::Project { exprs, .. } => {
                                at = exprs.iter().position(|e| {
                                    e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                                        .is_some_and(|c| c.index() == at)
                                })?;
                            }
                            Op::Window { .. } => return None,
                        }
                    }
                    Some(at)
                }
                NodeOp::Join(_) => None,
            },
        }
    }

    /// An aggregation over a windowed aggregation's output (node `c`) that groups by its
    /// window's end: windowed too, each window closed when `c`'s watermark passes its end (as
    /// `c` emits all of a window's rows at once). `None` when it is not one.
    fn cascaded(
        &self,
        plan: &LogicalPlan,
        a: &datafusion::logical_expr::Aggregate,
        c: usize,
    ) -> Result<Option<WindowedPlan>> {
        let NodeOp::Run(child) = &self.nodes[c].op else { return Ok(None) };
        let Some(w) = child.windows() else { return Ok(None) };
        let Some(t) = self.feed_time(&Feed::Node(c)) else { return Ok(None) };
        let input = a.input.schema();
        let end = Column::from(input.qualified_field(t));
        let Some(end_key) =
            a.group_expr.iter().position(|e| matches!(e, Expr::Column(col) if *col == end))
        else {
            return Ok(None);
        };
        let (above, _) = descend(plan);
        let mut group = Vec::with_capacity(a.group_expr.len());
        for e in &a.group_expr {
            if let Expr::GroupingSet(_) = e {
                return self
                    .not_supported("GROUPING SETS, ROLLUP and CUBE in a windowed aggregation");
            }
            group.push(physical(self.state, e, input, self.at)?);
        }
        let aggregate = crate::window_agg::WindowAggregateSpec {
            group,
            end_key,
            end_offset: 0,
            aggregates: crate::windowed_plan::aggregates_of(a, self.state, self.at)?,
            schema: Arc::clone(a.schema.inner()),
            panes: None,
            changes: false,
        };
        let after = above
            .iter()
            .rev()
            .map(|n| op_of(n, self.state, self.at))
            .collect::<Result<Vec<_>>>()?;
        let pipeline =
            InputPipeline { stream: format!("__node{c}"), projection: None, ops: Vec::new() };
        Ok(Some(WindowedPlan {
            inputs: vec![WindowedInput { pipeline, watermark: None }],
            grouping: Grouping::Windows(Box::new(crate::windowed_plan::Windows {
                window: w.window,
                aggregate,
                session: None,
            })),
            after,
            schema: Arc::clone(plan.schema().inner()),
            emit: EmitMode::Final,
        }))
    }

    /// What feeds a join side computing `plan`.
    fn feed(&mut self, plan: &LogicalPlan) -> Result<Feed> {
        if stateful(plan) {
            return Ok(Feed::Node(self.build(plan)?));
        }
        let mut compiled = crate::stream_plan::compile(plan, self.state, self.at)?;
        // `t FOR SYSTEM_TIME AS OF ...`: the table function's scan reads stream `t`.
        let as_of = match descend(plan).1 {
            LogicalPlan::TableScan(scan) => (self.as_of)(scan),
            _ => None,
        };
        if let Some(a) = &as_of {
            for p in &mut compiled.inputs {
                p.stream = a.stream.clone();
            }
        }
        let mut list = Vec::new();
        let mut time_names = Vec::new();
        for pipeline in compiled.inputs {
            let (i, time) = self.source(pipeline, Port { node: usize::MAX, input: 0 }, false)?;
            list.push(i);
            time_names.push(time);
        }
        // The side's time column: the same watermarked column of every source, passed as is.
        let time = match time_names.first() {
            Some(Some(name)) if time_names.iter().all(|t| t.as_ref() == Some(name)) => {
                compiled.origins.iter().position(|o| o.as_ref() == Some(name))
            }
            _ => None,
        };
        if time.is_none() {
            for i in &list {
                self.sources[*i].0.late_by = None;
            }
        }
        Ok(Feed::Sources(list, time, as_of, compiled.origins))
    }

    /// A source reading `pipeline`'s stream into `to`; also the name of its watermark's column.
    fn source(
        &mut self,
        mut pipeline: InputPipeline,
        to: Port,
        raw: bool,
    ) -> Result<(usize, Option<String>)> {
        let Some(info) = (self.streams)(&pipeline.stream) else {
            return self.not_supported(format!(
                "reading {} in a continuous query (only streams)",
                pipeline.stream
            ));
        };
        let mut read = pipeline.projection.clone().unwrap_or_else(|| {
            let visible = info.changelog.map_or(info.schema.fields().len(), |c| c.visible);
            (0..visible).collect()
        });
        let width = read.len();
        let mut watermark = None;
        let mut late_by = None;
        let mut time_name = None;
        if !raw && let Some((sql, column)) = &info.watermark {
            let t =
                info.schema.index_of(column).map_err(|e| Error::plan(e.to_string(), self.at))?;
            let at = match read.iter().position(|c| *c == t) {
                Some(p) => p,
                None => {
                    read.push(t);
                    read.len() - 1
                }
            };
            let read_schema = Arc::new(
                info.schema.project(&read).map_err(|e| Error::plan(e.to_string(), self.at))?,
            );
            let df =
                DFSchema::try_from(read_schema).map_err(|e| Error::plan(e.to_string(), self.at))?;
            let expr = self.state.create_logical_expr(sql, &df).map_err(|e| {
                Error::plan(format!("the watermark {sql}: {}", e.message()), self.at)
            })?;
            watermark = Some(match crate::windowed_plan::delay_of(&expr, &df) {
                Some((column, delay_ms)) => Watermark::Delay { column, delay_ms },
                None => Watermark::Expr(physical(self.state, &expr, &df, self.at)?),
            });
            late_by = Some(at);
            time_name = Some(column.clone());
        }
        let changelog = info.changelog.is_some() && !raw;
        if let Some(c) = info.changelog
            && !raw
        {
            // (`__op` last, after any column added for the watermark.)
            if read.len() > width {
                return self.not_supported("a watermark on a changelog read by a join");
            }
            read.push(c.op);
        }
        let ops = if raw { Vec::new() } else { std::mem::take(&mut pipeline.ops) };
        pipeline.projection = Some(read);
        let src = Source { to, raw, ops, changelog, watermark, late_by, width };
        let input = WindowedInput { pipeline, watermark: None };
        self.sources.push((src, input));
        Ok((self.sources.len() - 1, time_name))
    }

    /// A run node: an aggregation (windowed over streams, or updating) or a TopN, whose input
    /// may be another node.
    fn run(&mut self, plan: &LogicalPlan) -> Result<usize> {
        let (_, node) = descend(plan);
        let input = match node {
            LogicalPlan::Aggregate(a) => &a.input,
            LogicalPlan::Window(w) => &w.input,
            _ => return self.not_supported("this plan node in a join"),
        };
        let child = if stateful(input) { Some(self.build(input)?) } else { None };
        let name = child.map(|c| format!("__node{c}"));
        let child_changelog = child.is_some_and(|c| self.nodes[c].changelog);
        let child_schema = child.map(|c| Arc::clone(&self.nodes[c].schema));
        let (state, at) = (self.state, self.at);
        let below = |p: &LogicalPlan| -> Result<StatelessPlan> {
            match (&name, &child_schema) {
                (Some(name), Some(schema)) => Ok(StatelessPlan {
                    schema: Arc::clone(schema),
                    inputs: vec![InputPipeline {
                        stream: name.clone(),
                        projection: None,
                        ops: Vec::new(),
                    }],
                    origins: vec![None; schema.fields().len()],
                }),
                _ => crate::stream_plan::compile(p, state, at),
            }
        };
        let streams = self.streams;
        let changelog = |stream: &str| -> Option<ChangelogColumns> {
            if name.as_deref() == Some(stream) {
                let n = child_schema.as_ref().map_or(0, |s| s.fields().len());
                return child_changelog.then_some(ChangelogColumns { op: n, visible: n });
            }
            streams(stream).and_then(|s| s.changelog)
        };
        let is_changelog = |stream: &str| changelog(stream).is_some();
        let changes = EmitMode::Changes { every_ms: None };
        let cascaded = match (child, node) {
            (Some(c), LogicalPlan::Aggregate(a)) => self.cascaded(plan, a, c)?,
            _ => None,
        };
        let compiled = if let Some(w) = cascaded {
            w
        } else if child.is_none()
            && let Some(w) = crate::windowed_plan::compile_windowed(
                plan,
                state,
                at,
                self.resolve,
                EmitMode::Final,
            )?
        {
            w
        } else if let Some(u) = crate::updating_plan::compile_updating_over(
            plan, state, at, &changelog, changes, &below,
        )? {
            u
        } else if let Some(t) =
            crate::topn_plan::compile_topn_over(plan, state, at, &is_changelog, changes, &below)?
        {
            t
        } else {
            return self.not_supported("this aggregation with a join");
        };

        let k = self.nodes.len();
        let changelog_out = compiled.emit != EmitMode::Final;
        let schema = crate::window_agg::changes::rows_schema(&compiled.schema);
        let schema = if changelog_out { schema } else { Arc::clone(&compiled.schema) };
        for (i, input) in compiled.inputs.iter().enumerate() {
            let port = Port { node: k, input: i };
            if Some(&input.pipeline.stream) == name.as_ref() {
                if let Some(c) = child {
                    self.nodes[c].parent = Some(port);
                }
            } else {
                self.source(input.pipeline.clone(), port, true)?;
            }
        }
        self.nodes.push(GraphNode {
            op: NodeOp::Run(Box::new(compiled)),
            parent: None,
            after: Vec::new(),
            schema,
            changelog: changelog_out,
        });
        Ok(k)
    }
}

/// The graph's own part of a snapshot: per source its watermark, idle and ended; per node its
/// output watermark and its inputs'; the late rows.
pub(super) fn sources_part(
    sources: &[(i64, bool, bool)],
    node_wm: &[i64],
    port_wm: &[[i64; 2]],
    late_rows: u64,
) -> Result<StatePart> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("watermark", DataType::Int64, false),
        Field::new("idle", DataType::Boolean, false),
        Field::new("ended", DataType::Boolean, false),
        Field::new("late_rows", DataType::UInt64, false),
    ]));
    // Rows: the sources, then per node (output, left, right) as watermarks.
    let mut w: Vec<i64> = sources.iter().map(|s| s.0).collect();
    let mut idle: Vec<bool> = sources.iter().map(|s| s.1).collect();
    let mut ended: Vec<bool> = sources.iter().map(|s| s.2).collect();
    for (n, p) in node_wm.iter().zip(port_wm) {
        w.extend([*n, p[0], p[1]]);
        idle.extend([false; 3]);
        ended.extend([false; 3]);
    }
    let rows = w.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(w)),
        Arc::new(BooleanArray::from(idle)),
        Arc::new(BooleanArray::from(ended)),
        Arc::new(UInt64Array::from(vec![late_rows; rows])),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)
        .map_err(|e| Error::plan(format!("snapshot: {e}"), None))?;
    Ok(StatePart { name: "graph".into(), schema, batches: vec![batch] })
}

/// What [`sources_part`] wrote.
#[allow(clippy::type_complexity)]
pub(super) fn read_sources_part(
    parts: &[StatePart],
    sources: usize,
    nodes: usize,
) -> Result<(Vec<(i64, bool, bool)>, Vec<i64>, Vec<[i64; 2]>, u64)> {
    let bad = || Error::plan("the snapshot of the graph is damaged", None);
    let part = parts.iter().find(|p| p.name == "graph").ok_or_else(bad)?;
    let b = datafusion::arrow::compute::concat_batches(&part.schema, &part.batches)
        .map_err(|e| Error::plan(e.to_string(), None))?;
    if b.num_rows() != sources + 3 * nodes || b.num_columns() != 4 {
        return Err(bad());
    }
    let w = b.column(0).as_primitive_opt::<Int64Type>().ok_or_else(bad)?;
    let idle = b.column(1).as_boolean_opt().ok_or_else(bad)?;
    let ended = b.column(2).as_boolean_opt().ok_or_else(bad)?;
    let late = b.column(3).as_primitive_opt::<UInt64Type>().ok_or_else(bad)?;
    let src = (0..sources).map(|i| (w.value(i), idle.value(i), ended.value(i))).collect();
    let node_wm = (0..nodes).map(|k| w.value(sources + 3 * k)).collect();
    let port_wm =
        (0..nodes).map(|k| [w.value(sources + 3 * k + 1), w.value(sources + 3 * k + 2)]).collect();
    let late_rows = if b.num_rows() > 0 { late.value(0) } else { 0 };
    Ok((src, node_wm, port_wm, late_rows))
}
