//! The window table functions in snapshot queries: `FROM TUMBLE(bid, dateTime, INTERVAL '10'
//! SECOND)`, `HOP(...)`, `CUMULATE(...)`, `SESSION(bid, dateTime, gap, bidder)` (Flink's `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(...),
//! ...))` is rewritten to this form by the parser).
//!
//! Each is a DataFusion table function whose table is the stream's columns plus
//! `window_start`, `window_end` and `window_time`. Its scan reads the stream (only the columns
//! the query needs, and the time column) and assigns windows to every batch with
//! [`kappa_sql::window::assign`], the function continuous jobs will use too. A session scan
//! reads the whole stream into one partition and finds its sessions
//! ([`kappa_sql::session::assign_sessions`], the tracker continuous jobs use).

use std::fmt;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult, plan_err};
use datafusion::datasource::TableProvider;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::Distribution;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use kappa_sql::session::assign_sessions;
use kappa_sql::window::{WindowRead, WindowSpec, assign, windowed_schema};

use crate::engine::Inner;
use crate::table::StreamTable;

/// `tumble`, `hop`, `cumulate` or `session`, as a DataFusion table function.
#[derive(Debug)]
pub(crate) struct WindowFunction {
    pub name: &'static str,
    pub inner: Weak<Inner>,
}

fn plan_error(e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Plan(e.to_string())
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let upper = self.name.to_ascii_uppercase();
        let (Some(Expr::Column(table)), Some(Expr::Column(time))) = (exprs.first(), exprs.get(1))
        else {
            return plan_err!(
                "{upper} takes a stream and its time column first: {upper}(bid, dateTime, ...)"
            );
        };
        // A session's partition keys follow its gap.
        let sizes = if self.name == "session" { exprs.len().min(3) } else { exprs.len() };
        let spec = WindowSpec::from_args(self.name, &exprs[2..sizes]).map_err(plan_error)?;
        let Some(inner) = self.inner.upgrade() else {
            return plan_err!("the engine is closed");
        };
        if inner.catalog().is_view(&table.name) {
            return plan_err!(
                "{upper} over materialized view {} (a changelog, whose rows update) is not supported yet",
                table.name
            );
        }
        let stream = inner.stream(&table.name, None).map_err(plan_error)?;
        let partition = exprs[sizes..]
            .iter()
            .map(|e| match e {
                Expr::Column(c) => stream.schema().index_of(&c.name).map_err(|_| {
                    plan_error(format!("{upper}: stream {} has no column {}", table.name, c.name))
                }),
                other => plan_err!(
                    "{upper}: the partition keys after the gap are columns of the stream, got {other}"
                ),
            })
            .collect::<DfResult<Vec<usize>>>()?;
        let time_index = stream.schema().index_of(&time.name).map_err(|_| {
            plan_error(format!("{upper}: stream {} has no column {}", table.name, time.name))
        })?;
        if !kappa_sql::types::is_timestamp(stream.schema().field(time_index).data_type()) {
            return plan_err!(
                "{upper}: the time column {} is {}, it must be a TIMESTAMP",
                time.name,
                stream.schema().field(time_index).data_type()
            );
        }
        let schema = windowed_schema(stream.schema(), None).map_err(plan_error)?;
        Ok(Arc::new(WindowTable {
            name: table.name.clone(),
            stream: Arc::clone(&stream),
            source: StreamTable::new(stream),
            spec,
            time_index,
            partition,
            schema,
        }))
    }
}

/// A stream with its rows' windows.
#[derive(Debug)]
pub(crate) struct WindowTable {
    /// The stream's name (its log may be another's: a rebuilt stream's).
    name: String,
    pub stream: Arc<kappa_storage::Stream>,
    source: StreamTable,
    pub spec: WindowSpec,
    pub time_index: usize,
    /// A session's partition keys.
    pub partition: Vec<usize>,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for WindowTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let columns = self.source.schema().fields().len();
        let WindowRead { read, time, keys, output } = WindowRead::new(
            columns,
            self.time_index,
            &self.partition,
            projection.map(|p| p.as_slice()),
        );
        let input = self.source.scan(state, Some(&read), &[], None).await?;
        let assigned = windowed_schema(&input.schema(), None).map_err(plan_error)?;
        let schema = Arc::new(assigned.project(&output)?);
        let properties = properties(&input, &schema);
        Ok(Arc::new(WindowExec {
            input,
            spec: self.spec,
            time,
            keys,
            assigned,
            output,
            schema,
            properties,
        }))
    }
}

/// A map of batches keeps its input's partitions (DataFusion may split the scan below it).
fn properties(input: &Arc<dyn ExecutionPlan>, schema: &SchemaRef) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(Arc::clone(schema)),
        input.output_partitioning().clone(),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

/// Assigns windows to the batches of its input.
#[derive(Debug)]
struct WindowExec {
    input: Arc<dyn ExecutionPlan>,
    spec: WindowSpec,
    /// The time column in the input.
    time: usize,
    /// A session's partition keys in the input.
    keys: Vec<usize>,
    /// The input's schema with the window columns.
    assigned: SchemaRef,
    /// The columns of the assigned batch to output.
    output: Vec<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for WindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowExec: {:?}", self.spec)
    }
}

impl ExecutionPlan for WindowExec {
    fn name(&self) -> &str {
        "WindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        // Sessions are found over all the rows at once.
        match self.spec {
            WindowSpec::Session { .. } => vec![Distribution::SinglePartition],
            _ => vec![Distribution::UnspecifiedDistribution],
        }
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![!matches!(self.spec, WindowSpec::Session { .. })]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(input) = children.into_iter().next() else {
            return plan_err!("WindowExec has one input");
        };
        Ok(Arc::new(WindowExec {
            properties: properties(&input, &self.schema),
            input,
            spec: self.spec,
            time: self.time,
            keys: self.keys.clone(),
            assigned: Arc::clone(&self.assigned),
            output: self.output.clone(),
            schema: Arc::clone(&self.schema),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (spec, time, assigned, output) =
            (self.spec, self.time, Arc::clone(&self.assigned), self.output.clone());
        if let WindowSpec::Session { gap } = spec {
            let keys = self.keys.clone();
            let all = futures::stream::once(async move {
                let batches: Vec<_> = input.try_collect().await?;
                let out = assign_sessions(&batches, gap, time, &keys, &assigned)
                    .map_err(|e| DataFusionError::Execution(e.to_string()))?;
                let out = out.iter().map(|b| b.project(&output)).collect::<Result<Vec<_>, _>>()?;
                Ok::<_, DataFusionError>(futures::stream::iter(out.into_iter().map(Ok)))
            })
            .try_flatten();
            return Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), all)));
        }
        let batches = input.map(move |b| {
            let b = b?;
            let windowed = assign(&spec, &b, time, &assigned)
                .map_err(|e| DataFusionError::Execution(e.to_string()))?;
            Ok(windowed.project(&output)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), batches)))
    }
}

/// The stream a window function's scan reads, if `scan` is one.
pub(crate) fn stream_of(scan: &datafusion::logical_expr::TableScan) -> Option<String> {
    let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
    let any: &dyn std::any::Any = provider.as_ref();
    Some(any.downcast_ref::<WindowTable>()?.name.clone())
}

/// The window function behind a scan of a continuous query, if it reads one (for
/// [`kappa_sql::windowed_plan::compile_windowed`]).
pub(crate) fn window_source(
    inner: &Inner,
    scan: &datafusion::logical_expr::TableScan,
) -> Option<kappa_sql::windowed_plan::WindowSource> {
    let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
    let any: &dyn std::any::Any = provider.as_ref();
    let table = any.downcast_ref::<WindowTable>()?;
    let stream = table.name.clone();
    let declared = inner.catalog().streams.get(&stream)?.watermark.clone();
    Some(kappa_sql::windowed_plan::WindowSource {
        stream_schema: Arc::clone(table.stream.schema()),
        stream,
        spec: table.spec,
        time: table.time_index,
        partition: table.partition.clone(),
        watermark_column: declared.as_ref().map(|w| w.column.clone()),
        watermark: declared.map(|w| w.expr),
    })
}
