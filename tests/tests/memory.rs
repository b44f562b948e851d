//! Memory of a windowed aggregation: events through a 10-second tumbling window (bids of
//! auctions whose ids grow with time, as Nexmark's do, a little out of order, watermark 4 s
//! behind) keep the process's anonymous resident memory flat: the state is the open windows',
//! not the history's. The windowed plan is compiled by kappa's planner and run directly over
//! generated batches (no log, so that the measure is the operator's).
//!
//! `KAPPA_MEMORY_EVENTS` sets the number of events (default 10 million; the check is
//! 100 million: `KAPPA_MEMORY_EVENTS=100000000 cargo test --release -p kappa-tests --test
//! memory -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use kappa::datafusion::datasource::MemTable;
use kappa::datafusion::prelude::SessionContext;
use kappa::sql::window::WindowSpec;
use kappa::sql::windowed_plan::{EmitMode, WindowSource, WindowedRun, compile_windowed};

const BATCH: usize = 8192;
/// Events per second of event time: a 10-second window holds 200,000.
const RATE: i64 = 20_000;

fn bids() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("datetime", ts, false),
    ]))
}

/// Anonymous resident memory, KiB (Linux).
fn anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Events `from..from + n`: auction ids grow with time, times up to 2 s out of order.
fn batch(from: i64, n: usize) -> RecordBatch {
    let i: Vec<i64> = (from..from + n as i64).collect();
    let auction: Vec<i64> = i.iter().map(|i| i / 10 + (i * 31) % 97).collect();
    let price: Vec<i64> = i.iter().map(|i| (i * 7919) % 10_000).collect();
    let time: Vec<i64> =
        i.iter().map(|i| 1_700_000_000_000 + i * 1000 / RATE - (i * 104_729) % 2000).collect();
    RecordBatch::try_new(
        bids(),
        vec![
            Arc::new(Int64Array::from(auction)),
            Arc::new(Int64Array::from(price)),
            Arc::new(TimestampMillisecondArray::from(time)),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tumbling_window_over_many_events_keeps_memory_flat() {
    let events: i64 = std::env::var("KAPPA_MEMORY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // The window function's table: the stream's columns and the window's.
    let ctx = SessionContext::new();
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    let mut fields: Vec<Field> = bids().fields().iter().map(|f| f.as_ref().clone()).collect();
    for name in ["window_start", "window_end", "window_time"] {
        fields.push(Field::new(name, ts.clone(), true));
    }
    let table = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]]).unwrap();
    ctx.register_table("tumble_bid", Arc::new(table)).unwrap();
    let plan = ctx
        .state()
        .create_logical_plan(
            "SELECT auction, window_start, window_end, count(*) AS n, max(price) AS hi
             FROM tumble_bid GROUP BY auction, window_start, window_end",
        )
        .await
        .unwrap();
    let state = ctx.state();
    let plan = state.optimize(&plan).unwrap();
    let resolve = |_: &kappa::datafusion::logical_expr::TableScan| {
        Some(WindowSource {
            stream: "bid".into(),
            stream_schema: bids(),
            spec: WindowSpec::Tumble { size: 10_000, offset: 0 },
            time: 2,
            partition: Vec::new(),
            watermark: Some("datetime - INTERVAL '4' SECOND".into()),
            watermark_column: Some("datetime".into()),
        })
    };
    let windowed =
        compile_windowed(&plan, &state, None, &resolve, EmitMode::Final).unwrap().unwrap();
    let read = windowed.inputs[0].pipeline.projection.clone().unwrap();
    let mut run = WindowedRun::new(windowed).unwrap();
    let (mut rows_out, mut samples) = (0usize, Vec::new());
    let every = (events / 20).max(BATCH as i64);
    let mut next_sample = every;
    let mut at = 0i64;
    let start = std::time::Instant::now();
    while at < events {
        let n = BATCH.min((events - at) as usize);
        let b = batch(at, n).project(&read).unwrap();
        rows_out += run.push(0, b).unwrap().iter().map(|w| w.1.num_rows()).sum::<usize>();
        at += n as i64;
        if at >= next_sample {
            samples.push((at, anon_kib()));
            next_sample += every;
        }
    }
    rows_out += run.finish().unwrap().iter().map(|w| w.1.num_rows()).sum::<usize>();
    let secs = start.elapsed().as_secs_f64();
    for (at, kib) in &samples {
        eprintln!("{at:>12} events: {:>6} MiB anonymous", kib / 1024);
    }
    eprintln!(
        "{events} events, {rows_out} window rows, {secs:.1} s ({:.2} M events/s)",
        events as f64 / secs / 1e6
    );
    assert_eq!(run.late_rows(), 0, "no event is late by more than the watermark's delay");
    assert!(rows_out as i64 > events / RATE / 10, "every window is emitted");
    // After the first fifth (allocator and windows warmed up), memory stays within 32 MiB of
    // what it was then, whatever the number of events behind.
    let warm = samples[samples.len() / 5].1;
    let peak = samples.iter().skip(samples.len() / 5).map(|s| s.1).max().unwrap();
    assert!(
        peak <= warm + 32 * 1024,
        "anonymous memory grew from {} MiB to {} MiB",
        warm / 1024,
        peak / 1024
    );
}
