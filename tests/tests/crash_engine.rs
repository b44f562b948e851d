//! kill -9 of a process running the engine: a child appends to `input` while the job of
//! `derived` (a filter and a projection) runs; the test kills it at random moments. After the
//! last cycle it reopens the engine, seals the input, waits for the job, and checks that every
//! acknowledged input row is there and that `derived` is exactly the query over `input`: no
//! row lost, none written twice. `KAPPA_CRASH_CYCLES` sets the cycles (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use arrow::array::{AsArray, Int64Array, RecordBatch};
use arrow::datatypes::Int64Type;
use kappa::Engine;
use rand::{Rng, SeedableRng};

fn ints(batches: &[RecordBatch], col: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_engine_loses_no_input_row_and_duplicates_no_output() {
    let cycles: usize =
        std::env::var("KAPPA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("KAPPA_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7),
    );
    let mut acked_end = 0u64;
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa-crash-engine"));
        child.arg(dir.path()).stderr(Stdio::inherit());
        let printed = kappa_tests::crash::run_and_kill(&mut child, rng.random_range(100..600))
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        for line in printed {
            let parts: Vec<&str> = line.split(' ').collect();
            if let ["ack", base, rows] = parts.as_slice() {
                let end = base.parse::<u64>().unwrap() + rows.parse::<u64>().unwrap();
                acked_end = acked_end.max(end);
            }
        }
    }
    assert!(acked_end > 0, "no append was acknowledged in {cycles} cycles");
    let engine = Engine::open(dir.path()).await.unwrap();
    engine.execute("SEAL STREAM input").await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    let input = engine.query("SELECT id, v FROM input").await.unwrap();
    let ids = ints(&input, 0);
    // Ids are offsets: contiguous from 0, every acknowledged one present.
    assert_eq!(ids, (0..ids.len() as i64).collect::<Vec<_>>());
    assert!(ids.len() as u64 >= acked_end, "{} rows, {acked_end} acknowledged", ids.len());
    let vs = ints(&input, 1);
    let expected: Vec<(i64, i64)> =
        ids.iter().zip(&vs).filter(|(_, v)| *v % 3 != 0).map(|(i, v)| (*i, v * 2)).collect();
    let derived = engine.query("SELECT id, v2, tag FROM derived").await.unwrap();
    let got: Vec<(i64, i64)> = ints(&derived, 0).into_iter().zip(ints(&derived, 1)).collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "derived has {} rows, expected {}",
        got.len(),
        expected.len()
    );
    assert_eq!(got, expected);
    for b in &derived {
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        let tags = b.column(2).as_string::<i32>();
        for r in 0..b.num_rows() {
            assert_eq!(tags.value(r), format!("T{}", ids.value(r)));
        }
    }
    let out = engine.execute("SHOW STREAMS").await.unwrap();
    drop(out);
    engine.close().await.unwrap();
    eprintln!(
        "engine kill -9: {cycles} cycles, {} input rows, {} derived rows",
        ids.len(),
        got.len()
    );
}
