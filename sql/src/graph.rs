//! A continuous query of several stateful operators: joins, and aggregations or TopNs over
//! joins or under them ([`compile`] builds it from DataFusion's plan).
//!
//! The plan is a tree of nodes ([`Graph::nodes`], children before parents): a [`NodeOp::Join`]
//! ([`crate::join`]) or a [`NodeOp::Run`] (an aggregation, TopN or windowed aggregation, as a
//! query of one operator runs it: [`WindowedRun`]). The job's inputs are the streams read
//! ([`Graph::sources`]): each goes to one input of one node, either as read (a run's input:
//! the run applies its own pipeline) or through the filters and projections below a join,
//! which the graph applies. A node's output goes through the filters and projections above it
//! to its parent's input, as inserts or as a changelog.
//!
//! **Watermarks.** Each source's watermark is its stream's declared one over the batches read
//! (the highest so far); an input of a join has the minimum of what feeds it (an idle source
//! left out, an ended one `+inf`); a join's output has the minimum of its two inputs'; a run's
//! is its own. A join lets go of the rows its other input's watermark puts out of reach; the
//! rows of a source arriving below its watermark are then late: left out and reported (as a
//! windowed aggregation does), since the rows they would meet may be gone.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int8Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};

use crate::error::{Error, Result};
use crate::join::{Delta, Join, JoinSpec};
use crate::stream_plan::{Op, run_ops, run_ops_keeping, split_op};
use crate::windowed_plan::{EmitMode, Watermark, WindowedPlan};
use crate::windowed_run::{RunSnapshot, StatePart, WindowedRun};

mod compile;

pub use compile::{AsOf, StreamInfo, Versioned, compile_graph};

/// Nodes and sources of a query of several operators.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The operators, children before parents; the last is the root.
    pub nodes: Vec<GraphNode>,
    /// Per input of the job (a stream read), where its batches go.
    pub sources: Vec<Source>,
    /// The root's output columns (without `__op`).
    pub schema: SchemaRef,
    /// Whether the root's output is a changelog.
    pub changelog: bool,
    /// The materialized views it reads as versions, through their inputs (it depends on
    /// their definitions, not on their changelogs).
    pub uses: Vec<String>,
}

/// An input of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    /// The node.
    pub node: usize,
    /// Its input: a join's side (0 left, 1 right), a run's input.
    pub input: usize,
}

/// Where a stream read goes.
#[derive(Debug, Clone)]
pub struct Source {
    /// The node input it feeds.
    pub to: Port,
    /// The node (a run) takes the batches as read, and runs its own pipeline on them.
    pub raw: bool,
    /// Otherwise: the filters and projections the graph runs before the node.
    pub ops: Vec<Op>,
    /// The batches end with `__op` (a changelog read).
    pub changelog: bool,
    /// The stream's watermark over a batch read.
    pub watermark: Option<Watermark>,
    /// The time column its watermark is for, in the batch read: rows below the watermark are
    /// left out as late (when the join lets go of rows by this input's watermark).
    pub late_by: Option<usize>,
    /// The columns the pipeline reads (the batch read may have the time column after them).
    pub width: usize,
}

/// One operator.
#[derive(Debug, Clone)]
pub struct GraphNode {
    /// What it does.
    pub op: NodeOp,
    /// Where its output goes (`None`: the root).
    pub parent: Option<Port>,
    /// The filters and projections above it (for a join; a run has its own).
    pub after: Vec<Op>,
    /// Its output columns (after `after`, without `__op`).
    pub schema: SchemaRef,
    /// Whether its output is a changelog.
    pub changelog: bool,
}

/// What a node does.
#[derive(Debug, Clone)]
pub enum NodeOp {
    /// A join of its two inputs.
    Join(Box<JoinSpec>),
    /// An aggregation, TopN or windowed aggregation; an input fed by another node is named
    /// `__node<k>` in the plan.
    Run(Box<WindowedPlan>),
}

impl Graph {
    /// Whether an operator reads a changelog (its state must keep every row a retraction may
    /// take back: no `state_ttl`).
    pub fn retracts(&self) -> bool {
        self.nodes.iter().any(|n| match &n.op {
            NodeOp::Join(j) => j.changelog[0] || j.changelog[1],
            NodeOp::Run(p) => match &p.grouping {
                crate::windowed_plan::Grouping::Updating(u) => u.retracting,
                crate::windowed_plan::Grouping::Graph(g) => g.retracts(),
                _ => false,
            },
        })
    }

    /// What feeds each input of node `k`: sources (`Ok(i)`) or nodes (`Err(j)`).
    fn feeders(&self, port: Port) -> Vec<std::result::Result<usize, usize>> {
        let mut out: Vec<_> = self
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.to == port)
            .map(|(i, _)| Ok(i))
            .collect();
        out.extend(
            self.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.parent == Some(port))
                .map(|(j, _)| Err(j)),
        );
        out
    }
}

#[derive(Debug)]
enum NodeRun {
    Join(Box<Join>),
    Run(Box<WindowedRun>),
}

#[derive(Debug, Clone, Copy)]
struct SourceState {
    watermark: i64,
    idle: bool,
    ended: bool,
}

/// A graph running over its sources' batches.
#[derive(Debug)]
pub struct GraphRun {
    graph: Graph,
    nodes: Vec<NodeRun>,
    sources: Vec<SourceState>,
    /// Per node, its output's watermark last passed on; per join, its inputs'.
    node_wm: Vec<i64>,
    port_wm: Vec<[i64; 2]>,
    late: Vec<u32>,
    late_rows: u64,
}

impl GraphRun {
    /// A run from nothing.
    ///
    /// # Errors
    /// When an operator cannot be set up.
    pub fn new(graph: Graph) -> Result<GraphRun> {
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        for n in &graph.nodes {
            nodes.push(match &n.op {
                NodeOp::Join(spec) => NodeRun::Join(Box::new(Join::new(spec.as_ref().clone())?)),
                NodeOp::Run(plan) => {
                    NodeRun::Run(Box::new(WindowedRun::new(plan.as_ref().clone())?))
                }
            });
        }
        Ok(GraphRun::with(graph, nodes))
    }

    fn with(graph: Graph, nodes: Vec<NodeRun>) -> GraphRun {
        let n = nodes.len();
        let sources = vec![
            SourceState { watermark: i64::MIN, idle: false, ended: false };
            graph.sources.len()
        ];
        GraphRun {
            graph,
            nodes,
            sources,
            node_wm: vec![i64::MIN; n],
            port_wm: vec![[i64::MIN; 2]; n],
            late: Vec::new(),
            late_rows: 0,
        }
    }

    /// The plan.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Keep the changes of the aggregations and TopNs until [`GraphRun::flush`].
    pub fn defer_changes(&mut self) {
        for n in &mut self.nodes {
            if let NodeRun::Run(r) = n {
                r.defer_changes();
            }
        }
    }

    /// The lowest watermark of the sources that are neither idle nor ended (`i64::MIN`: none
    /// yet).
    pub fn watermark(&self) -> i64 {
        let (mut live, mut open) = (i64::MAX, i64::MAX);
        for (s, own) in self.sources.iter().zip(self.input_watermarks()) {
            if !s.ended {
                open = open.min(own);
                if !s.idle {
                    live = live.min(own);
                }
            }
        }
        // (Every source idle: the lowest of them, as nothing moves then.)
        if live == i64::MAX { open } else { live }
    }

    /// Where each source stands.
    pub fn input_states(&self) -> Vec<crate::windowed_run::InputStatus> {
        self.sources
            .iter()
            .zip(self.input_watermarks())
            .map(|(s, watermark)| crate::windowed_run::InputStatus {
                watermark,
                idle: s.idle,
                ended: s.ended,
            })
            .collect()
    }

    /// The windows its runs keep open: the earliest end of a window to close, and how many.
    pub fn window_status(&self) -> Option<(Option<i64>, usize)> {
        let mut out: Option<(Option<i64>, usize)> = None;
        for n in &self.nodes {
            if let NodeRun::Run(r) = n
                && let Some((end, open)) = r.window_status()
            {
                let (e, o) = out.unwrap_or((None, 0));
                let end = match (e, end) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                out = Some((end, o + open));
            }
        }
        out
    }

    /// Each source's watermark.
    pub fn input_watermarks(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.sources.len());
        for (src, s) in self.graph.sources.iter().zip(&self.sources) {
            out.push(match &self.nodes[src.to.node] {
                NodeRun::Run(r) if src.raw => {
                    r.input_watermarks().get(src.to.input).copied().unwrap_or(i64::MIN)
                }
                _ => s.watermark,
            });
        }
        out
    }

    /// Rows left out as late so far.
    pub fn late_rows(&self) -> u64 {
        self.late_rows
    }

    /// The positions of the late rows in the batch pushed last.
    pub fn late_positions(&self) -> &[u32] {
        &self.late
    }

    /// A batch read from source `i`: the root's output it leads to.
    ///
    /// # Errors
    /// When an expression fails on the data, or an operator passes its limit.
    pub fn push(&mut self, i: usize, batch: RecordBatch) -> Result<Vec<Delta>> {
        self.late.clear();
        let mut root = Vec::new();
        let Some(src) = self.graph.sources.get(i).cloned() else {
            return Err(Error::plan(format!("the plan has no input {i}"), None));
        };
        self.sources[i].idle = false;
        if src.raw {
            let outs = match &mut self.nodes[src.to.node] {
                NodeRun::Run(r) => {
                    let outs = r.push(src.to.input, batch)?;
                    self.late = r.late_positions().to_vec();
                    outs
                }
                NodeRun::Join(_) => return Err(Error::plan("a join reads no raw batches", None)),
            };
            self.late_rows += self.late.len() as u64;
            self.run_output(src.to.node, outs, &mut root)?;
            self.node_moved(src.to.node, &mut root)?;
            return Ok(root);
        }
        let before = self.sources[i].watermark;
        // (Late by the join input's watermark, which other sources may have moved past this
        // one's while it was idle.)
        let floor = match &self.nodes[src.to.node] {
            NodeRun::Join(_) => before.max(self.port_wm[src.to.node][src.to.input.min(1)]),
            NodeRun::Run(_) => before,
        };
        let mut after = before;
        if let Some(w) = &src.watermark {
            after = after.max(w.of(&batch)?);
        }
        let mut batch = batch;
        if let Some(t) = src.late_by {
            let late = late_rows(&batch, t, floor)?;
            if !late.is_empty() {
                let keep: Vec<u32> = (0..batch.num_rows() as u32)
                    .filter(|r| late.binary_search(r).is_err())
                    .collect();
                batch = take_record_batch(&batch, &UInt32Array::from(keep)).map_err(arrow)?;
                self.late_rows += late.len() as u64;
                self.late = late;
            }
        }
        let width = src.width + usize::from(src.changelog);
        if batch.num_columns() > width {
            let (s, c) = (batch.schema(), batch.columns()[..width].to_vec());
            let schema = Arc::new(s.project(&(0..width).collect::<Vec<_>>()).map_err(arrow)?);
            batch = RecordBatch::try_new(schema, c).map_err(arrow)?;
        }
        let delta = if src.changelog {
            let (data, op) = split_op(&batch)?;
            apply(&src.ops, Delta { rows: data, ops: Some(op) })?
        } else {
            apply(&src.ops, Delta { rows: batch, ops: None })?
        };
        if let Some(d) = delta {
            self.deliver(src.to, d, &mut root)?;
        }
        self.sources[i].watermark = after;
        if after > before {
            self.port_moved(src.to, &mut root)?;
        }
        Ok(root)
    }

    /// Source `i` ended (sealed and read).
    ///
    /// # Errors
    /// As [`GraphRun::push`].
    pub fn end_input(&mut self, i: usize) -> Result<Vec<Delta>> {
        self.source_changed(i, true)
    }

    /// Source `i` has had no data for its idle timeout.
    ///
    /// # Errors
    /// As [`GraphRun::push`].
    pub fn set_idle(&mut self, i: usize) -> Result<Vec<Delta>> {
        self.source_changed(i, false)
    }

    /// Every source ended.
    ///
    /// # Errors
    /// As [`GraphRun::push`].
    pub fn finish(&mut self) -> Result<Vec<Delta>> {
        let mut out = Vec::new();
        for i in 0..self.sources.len() {
            if !self.sources[i].ended {
                out.extend(self.source_changed(i, true)?);
            }
        }
        Ok(out)
    }

    fn source_changed(&mut self, i: usize, ended: bool) -> Result<Vec<Delta>> {
        self.late.clear();
        let mut root = Vec::new();
        let Some(src) = self.graph.sources.get(i).cloned() else { return Ok(root) };
        if ended {
            self.sources[i].ended = true;
        } else {
            self.sources[i].idle = true;
        }
        if src.raw {
            let outs = match &mut self.nodes[src.to.node] {
                NodeRun::Run(r) if ended => r.end_input(src.to.input)?,
                NodeRun::Run(r) => r.set_idle(src.to.input)?,
                NodeRun::Join(_) => Vec::new(),
            };
            self.run_output(src.to.node, outs, &mut root)?;
            self.node_moved(src.to.node, &mut root)?;
        } else {
            self.port_moved(src.to, &mut root)?;
        }
        Ok(root)
    }

    /// The changes the aggregations and TopNs kept (children first, so that a parent gets
    /// its child's before it gives its own).
    ///
    /// # Errors
    /// As [`GraphRun::push`].
    pub fn flush(&mut self) -> Result<Vec<Delta>> {
        let mut root = Vec::new();
        for k in 0..self.nodes.len() {
            if let NodeRun::Run(r) = &mut self.nodes[k] {
                let outs = r.flush()?;
                self.run_output(k, outs, &mut root)?;
            }
        }
        Ok(root)
    }

    /// `state_ttl`: the aggregations' and TopNs' groups and partitions without rows for
    /// `ttl_ms` expire (their rows leave the output); the joins let go of rows held that long.
    ///
    /// # Errors
    /// As [`GraphRun::push`].
    pub fn expire(&mut self, now_ms: i64, ttl_ms: i64) -> Result<Vec<Delta>> {
        let mut root = Vec::new();
        for k in 0..self.nodes.len() {
            match &mut self.nodes[k] {
                NodeRun::Run(r) => {
                    let outs = r.expire(now_ms, ttl_ms)?;
                    self.run_output(k, outs, &mut root)?;
                }
                NodeRun::Join(j) => j.expire(now_ms, ttl_ms)?,
            }
        }
        Ok(root)
    }

    /// The current rows of the root, if it is an aggregation or a TopN.
    ///
    /// # Errors
    /// As [`WindowedRun::current_rows`].
    pub fn current_rows(&self) -> Result<Option<RecordBatch>> {
        match self.nodes.last() {
            Some(NodeRun::Run(r)) => r.current_rows(),
            _ => Ok(None),
        }
    }

    /// A run's output: through its parent, or out of the root.
    fn run_output(
        &mut self,
        k: usize,
        outs: Vec<(i64, RecordBatch)>,
        root: &mut Vec<Delta>,
    ) -> Result<()> {
        let changes = match &self.graph.nodes[k].op {
            NodeOp::Run(p) => p.emit != EmitMode::Final,
            NodeOp::Join(_) => false,
        };
        for (_, batch) in outs {
            let delta = if changes {
                let (rows, ops) = split_op(&batch)?;
                Delta { rows, ops: Some(ops) }
            } else {
                Delta { rows: batch, ops: None }
            };
            self.up(k, delta, root)?;
        }
        Ok(())
    }

    /// Node `k`'s output: through its filters and projections to its parent, or out.
    fn up(&mut self, k: usize, delta: Delta, root: &mut Vec<Delta>) -> Result<()> {
        let node = &self.graph.nodes[k];
        let Some(delta) = apply(&node.after, delta)? else { return Ok(()) };
        let delta = Delta {
            rows: RecordBatch::try_new(Arc::clone(&node.schema), delta.rows.columns().to_vec())
                .map_err(arrow)?,
            ops: delta.ops,
        };
        match node.parent {
            None => {
                root.push(delta);
                Ok(())
            }
            Some(p) => self.deliver(p, delta, root),
        }
    }

    /// Rows to a node's input.
    fn deliver(&mut self, port: Port, delta: Delta, root: &mut Vec<Delta>) -> Result<()> {
        match &mut self.nodes[port.node] {
            NodeRun::Join(j) => {
                if let Some(out) = j.push(port.input, delta.rows, delta.ops.as_deref())? {
                    self.up(port.node, out, root)?;
                }
                self.node_moved(port.node, root)
            }
            NodeRun::Run(r) => {
                let batch = match &delta.ops {
                    Some(ops) => with_op(&delta.rows, ops)?,
                    None => delta.rows,
                };
                let outs = r.push(port.input, batch)?;
                self.run_output(port.node, outs, root)?;
                self.node_moved(port.node, root)
            }
        }
    }

    /// The watermark of node input `port` from what feeds it.
    fn port_watermark(&self, port: Port) -> i64 {
        let mut live = Vec::new();
        let mut all_ended = true;
        for f in self.graph.feeders(port) {
            match f {
                Ok(i) => {
                    let s = self.sources[i];
                    all_ended &= s.ended;
                    if !s.ended && !s.idle {
                        live.push(s.watermark);
                    }
                }
                Err(j) => {
                    let w = self.node_wm[j];
                    all_ended &= w == i64::MAX;
                    if w != i64::MAX {
                        live.push(w);
                    }
                }
            }
        }
        let before = match self.nodes[port.node] {
            NodeRun::Join(_) => self.port_wm[port.node][port.input.min(1)],
            NodeRun::Run(_) => i64::MIN,
        };
        match live.into_iter().min() {
            Some(w) => w.max(before),
            None if all_ended => i64::MAX,
            None => before,
        }
    }

    /// What feeds `port` moved its watermark (or ended, or went idle).
    fn port_moved(&mut self, port: Port, root: &mut Vec<Delta>) -> Result<()> {
        let w = self.port_watermark(port);
        match &mut self.nodes[port.node] {
            NodeRun::Join(j) => {
                self.port_wm[port.node][port.input] = w;
                if let Some(out) = j.advance(port.input, w)? {
                    self.up(port.node, out, root)?;
                }
            }
            NodeRun::Run(r) => {
                let outs = r.advance_input(port.input, w)?;
                self.run_output(port.node, outs, root)?;
            }
        }
        self.node_moved(port.node, root)
    }

    /// Pass node `k`'s output watermark on, if it moved.
    fn node_moved(&mut self, k: usize, root: &mut Vec<Delta>) -> Result<()> {
        let w = match &self.nodes[k] {
            NodeRun::Join(_) => self.port_wm[k][0].min(self.port_wm[k][1]),
            NodeRun::Run(r) => r.watermark(),
        };
        if w <= self.node_wm[k] {
            return Ok(());
        }
        self.node_wm[k] = w;
        match self.graph.nodes[k].parent {
            Some(p) => self.port_moved(p, root),
            None => Ok(()),
        }
    }

    /// The state for a checkpoint: per node its parts, named `n<k>_...`, and the sources'
    /// watermarks.
    ///
    /// # Errors
    /// When an operator cannot give its state.
    pub fn snapshot(&mut self) -> Result<Vec<StatePart>> {
        let mut parts = Vec::new();
        for (k, n) in self.nodes.iter_mut().enumerate() {
            match n {
                NodeRun::Run(r) => {
                    for p in r.snapshot()?.to_parts()? {
                        parts.push(StatePart { name: format!("n{k}_{}", p.name), ..p });
                    }
                }
                NodeRun::Join(j) => {
                    for (name, b) in ["left", "right", "join"].iter().zip(j.snapshot()?) {
                        parts.push(StatePart {
                            name: format!("n{k}_{name}"),
                            schema: b.schema(),
                            batches: vec![b],
                        });
                    }
                }
            }
        }
        parts.push(compile::sources_part(
            &self.sources.iter().map(|s| (s.watermark, s.idle, s.ended)).collect::<Vec<_>>(),
            &self.node_wm,
            &self.port_wm,
            self.late_rows,
        )?);
        Ok(parts)
    }

    /// A run going on from the parts [`GraphRun::snapshot`] made.
    ///
    /// # Errors
    /// When the parts are not of this graph.
    pub fn restore(graph: Graph, parts: &[StatePart]) -> Result<GraphRun> {
        let mut nodes = Vec::with_capacity(graph.nodes.len());
        for (k, n) in graph.nodes.iter().enumerate() {
            let prefix = format!("n{k}_");
            let own: Vec<StatePart> = parts
                .iter()
                .filter_map(|p| {
                    p.name
                        .strip_prefix(&prefix)
                        .map(|name| StatePart { name: name.to_string(), ..p.clone() })
                })
                .collect();
            nodes.push(match &n.op {
                NodeOp::Run(plan) => NodeRun::Run(Box::new(WindowedRun::restore(
                    plan.as_ref().clone(),
                    &RunSnapshot::from_parts(&own)?,
                )?)),
                NodeOp::Join(spec) => {
                    let get = |name: &str| -> Result<RecordBatch> {
                        let p = own.iter().find(|p| p.name == name).ok_or_else(|| {
                            Error::plan(format!("the snapshot has no part {prefix}{name}"), None)
                        })?;
                        datafusion::arrow::compute::concat_batches(&p.schema, &p.batches)
                            .map_err(arrow)
                    };
                    NodeRun::Join(Box::new(Join::restore(
                        spec.as_ref().clone(),
                        &[get("left")?, get("right")?, get("join")?],
                    )?))
                }
            });
        }
        let mut run = GraphRun::with(graph, nodes);
        let (sources, node_wm, port_wm, late_rows) =
            compile::read_sources_part(parts, run.sources.len(), run.nodes.len())?;
        for (s, (w, idle, ended)) in run.sources.iter_mut().zip(sources) {
            *s = SourceState { watermark: w, idle, ended };
        }
        run.node_wm = node_wm;
        run.port_wm = port_wm;
        run.late_rows = late_rows;
        Ok(run)
    }
}

/// Filters and projections over a delta (a changelog keeps each passing row's change).
fn apply(ops: &[Op], delta: Delta) -> Result<Option<Delta>> {
    if ops.is_empty() {
        return Ok((delta.rows.num_rows() > 0).then_some(delta));
    }
    match delta.ops {
        None => Ok(run_ops(ops, "", delta.rows)?.map(|rows| Delta { rows, ops: None })),
        Some(op) => match run_ops_keeping(ops, "", delta.rows)? {
            None => Ok(None),
            Some((rows, kept)) => {
                let ops = kept.iter().map(|i| op[*i as usize]).collect();
                Ok(Some(Delta { rows, ops: Some(ops) }))
            }
        },
    }
}

/// Rows with their `__op` column appended.
fn with_op(rows: &RecordBatch, ops: &[i8]) -> Result<RecordBatch> {
    let mut fields: Vec<_> = rows.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(datafusion::arrow::datatypes::Field::new(
        crate::window_agg::changes::OP_COLUMN,
        DataType::Int8,
        false,
    ));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(Int8Array::from(ops.to_vec())) as ArrayRef);
    RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), columns)
        .map_err(arrow)
}

/// The positions of the rows whose time (column `t`) is below `watermark`.
fn late_rows(batch: &RecordBatch, t: usize, watermark: i64) -> Result<Vec<u32>> {
    if watermark == i64::MIN {
        return Ok(Vec::new());
    }
    let ms =
        cast(batch.column(t), &DataType::Timestamp(TimeUnit::Millisecond, None)).map_err(arrow)?;
    let ms = cast(&ms, &DataType::Int64).map_err(arrow)?;
    let ms = ms.as_primitive::<Int64Type>();
    Ok((0..ms.len() as u32)
        .filter(|i| ms.is_valid(*i as usize) && ms.value(*i as usize) < watermark)
        .collect())
}

fn arrow(e: datafusion::arrow::error::ArrowError) -> Error {
    Error::plan(format!("join: {e}"), None)
}
