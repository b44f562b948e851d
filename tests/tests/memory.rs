//! Memory of a windowed aggregation: events through a 10-second tumbling window (bids of
//! auctions whose ids grow with time, as Nexmark's do, a little out of order, watermark 4 s
//! behind) keep the process's anonymous resident memory flat: the state is the open windows',
//! not the history's. The windowed plan is compiled by kappa's planner and run directly over
//! generated batches (no log, so that the measure is the operator's).
//!
//! The same for an interval join: two streams of such bids joined on the auction within a
//! second of each other keep only the rows in reach of the other side's watermark.
//!
//! `KAPPA_MEMORY_EVENTS` sets the number of events (default 10 million, for the join half a million
//! per side; the issues' check is 100 million: `KAPPA_MEMORY_EVENTS=100000000 cargo test
//! --release -p kappa-tests --test memory -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kappa::sql::window::WindowSpec;
use kappa::sql::windowed_plan::WindowedRun;
use kappa_tests::bids::{RATE, batch, join_plan, windowed_plan};

const BATCH: usize = 8192;

/// Anonymous resident memory, KiB (Linux).
fn anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Push `events` generated bids through `run` (each input reads the columns `reads` names),
/// then finish it: the rows out, the anonymous memory every twentieth of the way, the seconds.
fn drive(
    run: &mut WindowedRun,
    reads: &[Vec<usize>],
    events: i64,
) -> (usize, Vec<(i64, u64)>, f64) {
    let (mut rows_out, mut samples) = (0usize, Vec::new());
    let every = (events / 20).max(BATCH as i64);
    let mut next_sample = every;
    let mut at = 0i64;
    let start = std::time::Instant::now();
    while at < events {
        let n = BATCH.min((events - at) as usize);
        let b = batch(at, n);
        for (i, read) in reads.iter().enumerate() {
            let out = run.push(i, b.project(read).unwrap()).unwrap();
            rows_out += out.iter().map(|w| w.1.num_rows()).sum::<usize>();
        }
        at += n as i64;
        if at >= next_sample {
            samples.push((at, anon_kib()));
            next_sample += every;
        }
    }
    rows_out += run.finish().unwrap().iter().map(|w| w.1.num_rows()).sum::<usize>();
    for (at, kib) in &samples {
        eprintln!("{at:>12} events: {:>6} MiB anonymous", kib / 1024);
    }
    (rows_out, samples, start.elapsed().as_secs_f64())
}

/// After the first fifth (allocator and state warmed up), memory stays within 32 MiB of what
/// it was then, whatever the number of events behind.
fn assert_flat(samples: &[(i64, u64)]) {
    let warm = samples[samples.len() / 5].1;
    let peak = samples.iter().skip(samples.len() / 5).map(|s| s.1).max().unwrap();
    assert!(
        peak <= warm + 32 * 1024,
        "anonymous memory grew from {} MiB to {} MiB",
        warm / 1024,
        peak / 1024
    );
}

fn events(default: i64) -> i64 {
    std::env::var("KAPPA_MEMORY_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tumbling_window_over_many_events_keeps_memory_flat() {
    let events = events(10_000_000);
    let windowed = windowed_plan(
        WindowSpec::Tumble { size: 10_000, offset: 0 },
        "SELECT auction, window_start, window_end, count(*) AS n, max(price) AS hi
         FROM w GROUP BY auction, window_start, window_end",
    )
    .await
    .unwrap();
    let read = windowed.inputs[0].pipeline.projection.clone().unwrap();
    let mut run = WindowedRun::new(windowed).unwrap();
    let (rows_out, samples, secs) = drive(&mut run, &[read], events);
    eprintln!(
        "{events} events, {rows_out} window rows, {secs:.1} s ({:.2} M events/s)",
        events as f64 / secs / 1e6
    );
    assert_eq!(run.late_rows(), 0, "no event is late by more than the watermark's delay");
    assert!(rows_out as i64 > events / RATE / 10, "every window is emitted");
    assert_flat(&samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_join_over_many_events_keeps_memory_flat() {
    let events = events(500_000);
    let plan = join_plan(
        "SELECT a.auction, a.price, b.price AS other FROM l a JOIN r b
         ON a.auction = b.auction
         AND b.datetime BETWEEN a.datetime - INTERVAL '1' SECOND AND a.datetime + INTERVAL '1' SECOND",
    )
    .await
    .unwrap();
    let reads: Vec<Vec<usize>> =
        plan.inputs.iter().map(|i| i.pipeline.projection.clone().unwrap()).collect();
    let mut run = WindowedRun::new(plan).unwrap();
    let (rows_out, samples, secs) = drive(&mut run, &reads, events);
    eprintln!(
        "{events} events per side, {rows_out} joined rows, {secs:.1} s ({:.2} M events/s)",
        2.0 * events as f64 / secs / 1e6
    );
    assert_eq!(run.late_rows(), 0, "no event is late by more than the watermark's delay");
    assert!(rows_out as i64 >= events, "every bid meets itself at least");
    assert_flat(&samples);
}
