//! Nexmark-like bids generated in memory, and windowed plans over them compiled by kappa's
//! planner without a log (for tests of the windowed operator itself: memory, snapshots).

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kappa::datafusion::datasource::MemTable;
use kappa::datafusion::prelude::SessionContext;
use kappa::sql::window::WindowSpec;
use kappa::sql::windowed_plan::{EmitMode, WindowSource, WindowedPlan, compile_windowed};

/// Events per second of event time: a 10-second window holds 200,000.
pub const RATE: i64 = 20_000;

/// The bids' schema: `auction`, `price`, `datetime`.
pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("datetime", ts, false),
    ]))
}

/// Events `from..from + n`: auction ids grow with time (about 20,000 per 10 seconds), times up
/// to 2 s out of order.
///
/// # Panics
/// Never (arrays of one length).
pub fn batch(from: i64, n: usize) -> RecordBatch {
    let i: Vec<i64> = (from..from + n as i64).collect();
    let auction: Vec<i64> = i.iter().map(|i| i / 10 + (i * 31) % 97).collect();
    let price: Vec<i64> = i.iter().map(|i| (i * 7919) % 10_000).collect();
    let time: Vec<i64> =
        i.iter().map(|i| 1_700_000_000_000 + i * 1000 / RATE - (i * 104_729) % 2000).collect();
    match RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(auction)),
            Arc::new(Int64Array::from(price)),
            Arc::new(TimestampMillisecondArray::from(time)),
        ],
    ) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// The windowed plan of `select` (over table `w`: the bids and the window columns) with
/// windows `spec` over the bids, watermark `datetime - 4 s`.
///
/// # Errors
/// When the query does not plan as a windowed aggregation.
pub async fn windowed_plan(spec: WindowSpec, select: &str) -> anyhow::Result<WindowedPlan> {
    windowed_plan_partitioned(spec, Vec::new(), select, EmitMode::Final).await
}

/// [`windowed_plan`] with session windows partitioned by columns `partition` of the bids,
/// emitting `emit`.
///
/// # Errors
/// As [`windowed_plan`].
pub async fn windowed_plan_partitioned(
    spec: WindowSpec,
    partition: Vec<usize>,
    select: &str,
    emit: EmitMode,
) -> anyhow::Result<WindowedPlan> {
    let ctx = SessionContext::new();
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    let mut fields: Vec<Field> = schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    for name in ["window_start", "window_end", "window_time"] {
        fields.push(Field::new(name, ts.clone(), true));
    }
    let table = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
    ctx.register_table("w", Arc::new(table))?;
    let state = ctx.state();
    let plan = state.optimize(&state.create_logical_plan(select).await?)?;
    let resolve = |_: &kappa::datafusion::logical_expr::TableScan| {
        Some(WindowSource {
            stream: "bid".into(),
            stream_schema: schema(),
            spec,
            time: 2,
            partition: partition.clone(),
            watermark: Some("datetime - INTERVAL '4' SECOND".into()),
            watermark_column: Some("datetime".into()),
        })
    };
    compile_windowed(&plan, &state, None, &resolve, emit)?
        .ok_or_else(|| anyhow::anyhow!("not a windowed aggregation: {select}"))
}

/// The plan of `select`, a join over two streams of bids `l` and `r` (each with the bids'
/// columns and the watermark `datetime - 4 s`), as kappa compiles a query of several
/// operators.
///
/// # Errors
/// When the query does not plan as a graph of operators.
pub async fn join_plan(select: &str) -> anyhow::Result<WindowedPlan> {
    let ctx = SessionContext::new();
    for name in ["l", "r"] {
        ctx.register_table(name, Arc::new(MemTable::try_new(schema(), vec![vec![]])?))?;
    }
    let state = ctx.state();
    let plan = state.optimize(&state.create_logical_plan(select).await?)?;
    let streams = |_: &str| {
        Some(kappa::sql::graph::StreamInfo {
            schema: schema(),
            watermark: Some(("datetime - INTERVAL '4' SECOND".into(), "datetime".into())),
            changelog: None,
            sealed: false,
        })
    };
    kappa::sql::graph::compile_graph(
        &plan,
        &state,
        None,
        &|_| None,
        &streams,
        &|_| None,
        EmitMode::Final,
    )?
    .ok_or_else(|| anyhow::anyhow!("not a join: {select}"))
}
