//! Streams as DataFusion tables, for snapshot queries.
//!
//! [`StreamTable`] is the `TableProvider` of a stream. A scan reads the log from its first
//! retained offset up to its end at the moment the scan is planned (the snapshot), through a
//! storage reader: projection pushdown reads only the needed columns (Arrow IPC decodes only
//! those), and filters that bound the event-time column by a constant (`ts >= TIMESTAMP
//! '...'`, `ts < ...`, `BETWEEN`) become a time range: the reader starts at the first row at or
//! after the lower bound (time index) and skips whole frames outside the range without decoding
//! them. Those filters are declared `Inexact`, so DataFusion still applies them to the rows.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use kappa_storage::{ReadFrom, Stream};

type DfResult<T> = datafusion::common::Result<T>;

/// A stream as a table.
#[derive(Debug)]
pub(crate) struct StreamTable {
    stream: Arc<Stream>,
    /// The event-time column: index and unit.
    event_time: Option<(usize, TimeUnit)>,
}

impl StreamTable {
    pub fn new(stream: Arc<Stream>) -> StreamTable {
        let schema = Arc::clone(stream.schema());
        let event_time = stream.options().event_time_column.as_ref().and_then(|c| {
            let i = schema.index_of(c).ok()?;
            match schema.field(i).data_type() {
                DataType::Timestamp(u, _) => Some((i, *u)),
                _ => None,
            }
        });
        StreamTable { stream, event_time }
    }

    /// The time bound a filter puts on the event-time column, if it is one.
    fn time_bound(&self, e: &Expr) -> Option<Bound> {
        let (col, unit) = self.event_time?;
        let name = self.stream.schema().field(col).name();
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else { return None };
        let (op, value) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) if &c.name == name => (*op, v),
            (Expr::Literal(v, _), Expr::Column(c)) if &c.name == name => (op.swap()?, v),
            _ => return None,
        };
        let (lo, hi) = timestamp_in(value, unit)?;
        match op {
            Operator::Gt | Operator::GtEq => Some(Bound::Lower(lo)),
            Operator::Lt | Operator::LtEq => Some(Bound::Upper(hi)),
            Operator::Eq => Some(Bound::Both(lo, hi)),
            _ => None,
        }
    }
}

enum Bound {
    Lower(i64),
    Upper(i64),
    Both(i64, i64),
}

/// A timestamp literal in `unit`, as an inclusive range of raw values (a finer literal rounds
/// outward, so the range never excludes a matching row).
fn timestamp_in(v: &ScalarValue, unit: TimeUnit) -> Option<(i64, i64)> {
    let (raw, from) = match v {
        ScalarValue::TimestampSecond(Some(x), _) => (*x, TimeUnit::Second),
        ScalarValue::TimestampMillisecond(Some(x), _) => (*x, TimeUnit::Millisecond),
        ScalarValue::TimestampMicrosecond(Some(x), _) => (*x, TimeUnit::Microsecond),
        ScalarValue::TimestampNanosecond(Some(x), _) => (*x, TimeUnit::Nanosecond),
        _ => return None,
    };
    let scale = |u: TimeUnit| -> i128 {
        match u {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        }
    };
    let (f, t) = (scale(from), scale(unit));
    let x = i128::from(raw);
    let (lo, hi) = if t >= f {
        (x * (t / f), x * (t / f))
    } else {
        let d = f / t;
        (x.div_euclid(d), x.div_euclid(d) + i128::from(x.rem_euclid(d) != 0))
    };
    Some((i64::try_from(lo).ok()?, i64::try_from(hi).ok()?))
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.stream.schema())
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.time_bound(f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (mut lo, mut hi) = (i64::MIN, i64::MAX);
        for f in filters {
            match self.time_bound(f) {
                Some(Bound::Lower(l)) => lo = lo.max(l),
                Some(Bound::Upper(h)) => hi = hi.min(h),
                Some(Bound::Both(l, h)) => (lo, hi) = (lo.max(l), hi.min(h)),
                None => {}
            }
        }
        let time_range = (lo != i64::MIN || hi != i64::MAX).then_some((lo, hi));
        let schema = match projection {
            Some(p) => Arc::new(self.stream.schema().project(p)?),
            None => Arc::clone(self.stream.schema()),
        };
        let end = self.stream.end_offset();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(StreamScanExec {
            stream: Arc::clone(&self.stream),
            projection: projection.cloned(),
            schema,
            end,
            time_range,
            limit,
            properties,
        }))
    }
}

/// Reads a stream's log up to a snapshot end.
#[derive(Debug)]
pub(crate) struct StreamScanExec {
    stream: Arc<Stream>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    end: u64,
    time_range: Option<(i64, i64)>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for StreamScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamScanExec: stream={}, end={}", self.stream.name(), self.end)?;
        if let Some((lo, hi)) = self.time_range {
            write!(f, ", event_time=[{lo}, {hi}]")?;
        }
        if let Some(p) = &self.projection {
            write!(f, ", projection={p:?}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StreamScanExec {
    fn name(&self) -> &str {
        "StreamScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let ext = |e: kappa_storage::Error| DataFusionError::External(Box::new(e));
        let from = match self.time_range {
            Some((lo, _))
                if lo != i64::MIN && self.stream.options().event_time_column.is_some() =>
            {
                ReadFrom::EventTime(lo)
            }
            _ => ReadFrom::Earliest,
        };
        let mut reader = self.stream.reader(from).map_err(ext)?;
        if let Some(p) = &self.projection {
            reader = reader.with_projection(p.clone()).map_err(ext)?;
        }
        if let Some((lo, hi)) = self.time_range {
            reader = reader.with_time_range(lo, hi);
        }
        let end = self.end;
        let mut left = self.limit.unwrap_or(usize::MAX);
        let iter = std::iter::from_fn(move || -> Option<DfResult<RecordBatch>> {
            if left == 0 || reader.position() >= end {
                return None;
            }
            match reader.next_batch() {
                Ok(Some(b)) => {
                    let mut batch = b.batch;
                    let room = (end.saturating_sub(b.offset)) as usize;
                    let keep = batch.num_rows().min(room).min(left);
                    if keep < batch.num_rows() {
                        batch = batch.slice(0, keep);
                    }
                    left -= keep;
                    Some(Ok(batch))
                }
                Ok(None) => None,
                Err(e) => Some(Err(ext(e))),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(iter),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_literals_round_outward() {
        let ns = ScalarValue::TimestampNanosecond(Some(1_500_000_001), None);
        assert_eq!(timestamp_in(&ns, TimeUnit::Millisecond), Some((1500, 1501)));
        let s = ScalarValue::TimestampSecond(Some(2), None);
        assert_eq!(timestamp_in(&s, TimeUnit::Millisecond), Some((2000, 2000)));
        let neg = ScalarValue::TimestampMillisecond(Some(-1), None);
        assert_eq!(timestamp_in(&neg, TimeUnit::Second), Some((-1, 0)));
        assert_eq!(timestamp_in(&ScalarValue::Int64(Some(1)), TimeUnit::Second), None);
    }
}
