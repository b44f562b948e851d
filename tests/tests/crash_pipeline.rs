//! Exactly-once under kill -9: a child process runs a pipeline over Nexmark bids filled in
//! real time (a stateless derived stream, a tumbling and a session window aggregation, and a
//! changelog of EMIT CHANGES; checkpoints every 50 ms)
//! and is killed with SIGKILL at random moments, `KAPPA_CRASH_CYCLES` times (default 20).
//! Then the engine is opened once more, the source finishes and seals the bids, the jobs drain,
//! and every output must equal the batch answer over the bids: no row lost, none twice, and
//! each window written once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::display::array_value_to_string;
use kappa::Engine;
use rand::{Rng, SeedableRng};

/// Every row as text, in order.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let cells: Vec<String> =
                b.columns().iter().map(|c| array_value_to_string(c, r).unwrap()).collect();
            out.push(cells.join("|"));
        }
    }
    out
}

/// Assert two row lists are equal, showing where they first differ.
fn same(what: &str, got: &[String], expected: &[String]) {
    if got == expected {
        return;
    }
    let at =
        got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()));
    let around = |v: &[String]| v[at.saturating_sub(2)..(at + 3).min(v.len())].to_vec();
    panic!(
        "{what}: {} rows, {} expected; first difference at row {at}:\n got      {:?}\n expected {:?}",
        got.len(),
        expected.len(),
        around(got),
        around(expected)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pipeline_recovers_exactly_once() {
    let cycles: usize =
        std::env::var("KAPPA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed = std::env::var("KAPPA_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(11);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // About as many events as the children live to generate, at 20,000 a second.
    let rate = 20_000u64;
    let events = (cycles as u64 * rate * 2 / 5).max(rate);
    let mut killed_ready = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa-crash-pipeline"))
            .args([dir.path().to_str().unwrap(), &events.to_string(), &rate.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout).lines().map_while(|l| l.ok()).collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(100..800)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "cycle {cycle}: the child ended by itself");
        if reader.join().unwrap().iter().any(|l| l == "ready") {
            killed_ready += 1;
        }
    }
    assert!(killed_ready > cycles / 2, "only {killed_ready} of {cycles} children got going");
    let engine = Engine::open(dir.path()).await.unwrap();
    // The source finishes (sealing the bids), then the jobs drain and seal their outputs.
    engine.wait_for_jobs().await.unwrap();
    let bids = rows(&engine.query("SELECT count(*) FROM bid").await.unwrap());
    let mut cheap = rows(&engine.query("SELECT * FROM cheap").await.unwrap());
    let mut expected = rows(
        &engine
            .query("SELECT auction, bidder, price, dateTime FROM bid WHERE price % 3 = 0")
            .await
            .unwrap(),
    );
    assert!(!expected.is_empty());
    // (A batch scan may read segments in parallel: compared in one order.)
    cheap.sort();
    expected.sort();
    same("the stateless derived stream", &cheap, &expected);
    let windows = engine.query("SELECT * FROM per_second").await.unwrap();
    let mut got = rows(&windows);
    // Windows were written in order of their end, each once.
    let ends: Vec<String> = got.iter().map(|r| r.split('|').nth(2).unwrap().to_string()).collect();
    assert!(ends.windows(2).all(|w| w[0] <= w[1]), "windows out of order");
    let mut expected = rows(
        &engine
            .query(
                "SELECT auction, window_start, window_end, count(*) AS n, max(price) AS hi,
                        sum(price) AS total
                 FROM TUMBLE(bid, dateTime, INTERVAL '1' SECOND)
                 GROUP BY auction, window_start, window_end",
            )
            .await
            .unwrap(),
    );
    got.sort();
    expected.sort();
    same("the windowed aggregation", &got, &expected);
    let late = rows(&engine.query("SELECT count(*) FROM per_second__late").await.unwrap());
    assert_eq!(late, vec!["0"], "no bid is late");
    let mut sessions = rows(&engine.query("SELECT * FROM visits").await.unwrap());
    let mut expected = rows(
        &engine
            .query(
                "SELECT bidder, window_start, window_end, count(*) AS n, sum(price) AS total
                 FROM SESSION(bid, dateTime, INTERVAL '50' MILLISECOND, bidder)
                 GROUP BY bidder, window_start, window_end",
            )
            .await
            .unwrap(),
    );
    sessions.sort();
    expected.sort();
    same("the session windows", &sessions, &expected);
    let late = rows(&engine.query("SELECT count(*) FROM visits__late").await.unwrap());
    assert_eq!(late, vec!["0"], "no bid is late for its session");
    // The changelog, applied in log order, gives the final windows; a -U retracts a row there.
    let mut log = engine.subscribe("SELECT * FROM running EMIT CHANGES").await.unwrap();
    let mut table: std::collections::HashMap<String, i64> = Default::default();
    let mut changes = 0;
    while let Some(b) = log.next().await {
        for row in rows(&[b.unwrap()]) {
            changes += 1;
            let (data, op) = row.rsplit_once('|').unwrap();
            let count = table.entry(data.to_string()).or_default();
            match op {
                "0" | "2" => *count += 1,
                "1" | "3" => {
                    assert!(*count > 0, "-U or -D of a row not in the table: {data}");
                    *count -= 1;
                }
                other => panic!("__op {other}"),
            }
        }
    }
    let mut applied: Vec<String> =
        table.into_iter().filter(|(_, n)| *n > 0).flat_map(|(r, n)| vec![r; n as usize]).collect();
    let mut expected = rows(
        &engine
            .query(
                "SELECT channel, window_start, window_end, count(*) AS n, max(price) AS hi
                 FROM TUMBLE(bid, dateTime, INTERVAL '2' SECOND)
                 GROUP BY channel, window_start, window_end",
            )
            .await
            .unwrap(),
    );
    applied.sort();
    expected.sort();
    same("the EMIT CHANGES changelog, applied", &applied, &expected);
    engine.close().await.unwrap();
    eprintln!(
        "pipeline kill -9: {cycles} cycles ({killed_ready} after start-up), {} bids, {} cheap rows, {} window rows, {} sessions, {changes} changes",
        bids[0],
        cheap.len(),
        got.len(),
        sessions.len()
    );
}
