//! The streaming plan of a stateless continuous query.
//!
//! DataFusion plans the query (`SqlToRel`, then its optimizer pushes filters and merges
//! projections); this module then walks the optimized `LogicalPlan`. A plan made only of table
//! scans, filters, projections, aliases and `UNION ALL` is stateless: every input batch can be
//! processed alone. Each input stream gets a [`InputPipeline`]: the columns to read and a chain
//! of [`Op`]s (filter, projection) as DataFusion `PhysicalExpr`s, which the engine evaluates on
//! every batch it reads. Any other node (aggregation, join, sort, limit, window function) needs
//! state and is refused with a "not supported yet" error that names it, until the issues that
//! build stateful operators.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use crate::error::{Error, Location, Result};
use crate::window::WindowSpec;

/// One step of a pipeline.
#[derive(Debug, Clone)]
pub enum Op {
    /// Keep the rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute new columns.
    Project {
        /// One expression per output column.
        exprs: Vec<Arc<dyn PhysicalExpr>>,
        /// The output schema.
        schema: SchemaRef,
    },
    /// Each row once per window that holds its time, with the window columns appended
    /// ([`crate::window::assign`]).
    Window {
        /// The windows.
        spec: WindowSpec,
        /// The time column in the batch.
        time: usize,
        /// The batch's schema with the window columns.
        schema: SchemaRef,
    },
}

/// Run `ops` over a batch of stream `stream`. `None` when every row was filtered out.
///
/// # Errors
/// [`Error::Plan`] when an expression fails on the data, naming the stream.
pub fn run_ops(ops: &[Op], stream: &str, batch: RecordBatch) -> Result<Option<RecordBatch>> {
    let fail = |e: String| Error::plan(format!("on a row of stream {stream}: {e}"), None);
    let mut b = batch;
    for op in ops {
        if b.num_rows() == 0 {
            return Ok(None);
        }
        match op {
            Op::Filter(p) => {
                let mask = p
                    .evaluate(&b)
                    .and_then(|v| v.into_array(b.num_rows()))
                    .map_err(|e| fail(e.message().to_string()))?;
                let Some(mask) = mask.as_boolean_opt() else {
                    return Err(fail(format!("a filter returned {}", mask.data_type())));
                };
                b = filter_record_batch(&b, mask).map_err(|e| fail(e.to_string()))?;
            }
            Op::Project { exprs, schema } => {
                let n = b.num_rows();
                let cols = exprs
                    .iter()
                    .map(|e| e.evaluate(&b).and_then(|v| v.into_array(n)))
                    .collect::<datafusion::common::Result<Vec<_>>>()
                    .map_err(|e| fail(e.message().to_string()))?;
                let options = RecordBatchOptions::new().with_row_count(Some(n));
                b = RecordBatch::try_new_with_options(Arc::clone(schema), cols, &options)
                    .map_err(|e| fail(e.to_string()))?;
            }
            Op::Window { spec, time, schema } => {
                b = crate::window::assign(spec, &b, *time, schema)?;
            }
        }
    }
    Ok((b.num_rows() > 0).then_some(b))
}

/// Run `ops` (filters and projections, in order) over `batch`: the rows out, and the position
/// in `batch` of each (`None`: none passed).
///
/// # Errors
/// As [`run_ops`].
pub fn run_ops_keeping(
    ops: &[Op],
    stream: &str,
    batch: RecordBatch,
) -> Result<Option<(RecordBatch, Vec<u32>)>> {
    use datafusion::arrow::array::{AsArray, UInt32Array};
    let mut kept: Vec<u32> = (0..batch.num_rows() as u32).collect();
    let mut b = batch;
    for op in ops {
        if let Op::Filter(p) = op {
            let mask = p.evaluate(&b).and_then(|v| v.into_array(b.num_rows())).map_err(|e| {
                Error::plan(format!("on a row of stream {stream}: {}", e.message()), None)
            })?;
            let Some(mask) = mask.as_boolean_opt() else {
                return Err(Error::plan("a filter is not a boolean", None));
            };
            let positions = datafusion::arrow::compute::filter(&UInt32Array::from(kept), mask)
                .map_err(|e| Error::plan(e.to_string(), None))?;
            kept = positions
                .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
                .values()
                .to_vec();
        }
        match run_ops(std::slice::from_ref(op), stream, b)? {
            Some(next) => b = next,
            None => return Ok(None),
        }
    }
    Ok(Some((b, kept)))
}

/// A changelog batch read with its `__op` last: the rows without it, and the row kinds.
///
/// # Errors
/// When the last column is missing or not `TINYINT`.
pub fn split_op(batch: &RecordBatch) -> Result<(RecordBatch, Vec<i8>)> {
    let mut columns = batch.columns().to_vec();
    let op = columns.pop().ok_or_else(|| Error::plan("a changelog without __op", None))?;
    let op = op
        .as_primitive_opt::<datafusion::arrow::datatypes::Int8Type>()
        .ok_or_else(|| Error::plan("a changelog's __op is not TINYINT", None))?
        .values()
        .to_vec();
    let fields: Vec<_> = batch.schema().fields().iter().take(columns.len()).cloned().collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    let data = RecordBatch::try_new_with_options(schema, columns, &options)
        .map_err(|e| Error::plan(e.to_string(), None))?;
    Ok((data, op))
}

/// What one input stream goes through.
#[derive(Debug, Clone)]
pub struct InputPipeline {
    /// The stream read.
    pub stream: String,
    /// Columns read from the stream (indexes into its schema); `None`: all.
    pub projection: Option<Vec<usize>>,
    /// Steps, in order.
    pub ops: Vec<Op>,
}

/// A stateless continuous query: one pipeline per input (several for `UNION ALL`).
#[derive(Debug, Clone)]
pub struct StatelessPlan {
    /// The schema of every output batch.
    pub schema: SchemaRef,
    /// The pipelines; their outputs are interleaved in arrival order (order is kept per input).
    pub inputs: Vec<InputPipeline>,
    /// For each output column, the input column it copies unchanged in every pipeline, if any.
    pub origins: Vec<Option<String>>,
}

impl StatelessPlan {
    /// Run input `i`'s pipeline on a batch read from its stream (already projected as
    /// [`InputPipeline::projection`] says). `None` when every row was filtered out.
    ///
    /// # Errors
    /// [`Error::Plan`] when an expression fails on the data (a cast of a bad string, a division
    /// by zero, ...), naming the stream.
    pub fn apply(&self, i: usize, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let pipe = &self.inputs[i];
        let Some(b) = run_ops(&pipe.ops, &pipe.stream, batch)? else { return Ok(None) };
        let options = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), b.columns().to_vec(), &options)
            .map(Some)
            .map_err(|e| Error::plan(format!("on a row of stream {}: {e}", pipe.stream), None))
    }
}

/// Compile an optimized logical plan into a stateless streaming plan.
///
/// # Errors
/// [`Error::NotSupported`] naming the first node that needs state; [`Error::Plan`] when an
/// expression cannot be compiled.
pub fn compile(
    plan: &LogicalPlan,
    state: &SessionState,
    at: Option<Location>,
) -> Result<StatelessPlan> {
    let schema: SchemaRef = Arc::clone(plan.schema().inner());
    let pipes = walk(plan, state, at)?;
    let n = schema.fields().len();
    let mut origins: Vec<Option<String>> = vec![None; n];
    for (j, origin) in origins.iter_mut().enumerate() {
        let first = pipes.first().and_then(|p| p.1.get(j).cloned().flatten());
        if pipes.iter().all(|p| p.1.get(j).cloned().flatten() == first) {
            *origin = first;
        }
    }
    Ok(StatelessPlan { schema, inputs: pipes.into_iter().map(|p| p.0).collect(), origins })
}

/// Pipelines producing `plan`'s output, each with the origin of every current column.
type Pipes = Vec<(InputPipeline, Vec<Option<String>>)>;

fn walk(plan: &LogicalPlan, state: &SessionState, at: Option<Location>) -> Result<Pipes> {
    let unsupported =
        |what: &str| Err(Error::not_supported(format!("{what} in a continuous query"), at));
    match plan {
        LogicalPlan::TableScan(scan) => {
            let source = scan.source.schema();
            let names: Vec<Option<String>> = match &scan.projection {
                Some(p) => p.iter().map(|i| Some(source.field(*i).name().clone())).collect(),
                None => source.fields().iter().map(|f| Some(f.name().clone())).collect(),
            };
            let pipe = InputPipeline {
                stream: scan.table_name.table().to_string(),
                projection: scan.projection.clone(),
                ops: Vec::new(),
            };
            Ok(vec![(pipe, names)])
        }
        LogicalPlan::Filter(f) => {
            let mut pipes = walk(&f.input, state, at)?;
            let pred = physical(state, &f.predicate, f.input.schema(), at)?;
            for (p, _) in &mut pipes {
                p.ops.push(Op::Filter(Arc::clone(&pred)));
            }
            Ok(pipes)
        }
        LogicalPlan::Projection(p) => {
            let mut pipes = walk(&p.input, state, at)?;
            let exprs = p
                .expr
                .iter()
                .map(|e| physical(state, e, p.input.schema(), at))
                .collect::<Result<Vec<_>>>()?;
            let schema: SchemaRef = Arc::clone(p.schema.inner());
            for (pipe, origin) in &mut pipes {
                let next: Vec<Option<String>> = exprs
                    .iter()
                    .map(|e| {
                        e.downcast_ref::<Column>()
                            .and_then(|c| origin.get(c.index()).cloned().flatten())
                    })
                    .collect();
                *origin = next;
                pipe.ops.push(Op::Project { exprs: exprs.clone(), schema: Arc::clone(&schema) });
            }
            Ok(pipes)
        }
        LogicalPlan::SubqueryAlias(a) => walk(&a.input, state, at),
        LogicalPlan::Union(u) => {
            let mut out = Vec::new();
            for input in &u.inputs {
                out.extend(walk(input, state, at)?);
            }
            Ok(out)
        }
        LogicalPlan::Aggregate(_) => unsupported("aggregation (GROUP BY, COUNT, SUM, ...)"),
        LogicalPlan::Join(_) => unsupported("a join"),
        LogicalPlan::Sort(_) => unsupported("ORDER BY (a stream is ordered by its offsets)"),
        LogicalPlan::Limit(_) => {
            unsupported("LIMIT (a push query may end with EMIT CHANGES LIMIT n)")
        }
        LogicalPlan::Window(_) => unsupported("a window function (OVER)"),
        LogicalPlan::Distinct(_) => unsupported("DISTINCT (or UNION without ALL)"),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
            unsupported("a query that reads no stream")
        }
        other => unsupported(&format!("the plan node {}", node_name(other))),
    }
}

fn node_name(plan: &LogicalPlan) -> String {
    let text = plan.display().to_string();
    text.split(':').next().unwrap_or("?").trim().to_string()
}

pub(crate) fn physical(
    state: &SessionState,
    expr: &Expr,
    schema: &DFSchema,
    at: Option<Location>,
) -> Result<Arc<dyn PhysicalExpr>> {
    state
        .create_physical_expr(expr.clone(), schema)
        .map_err(|e| Error::plan(e.message().to_string(), at))
}
