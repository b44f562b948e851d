//! Exactly-once under kill -9: a child process runs a pipeline over Nexmark bids filled in
//! real time (a stateless derived stream, a tumbling and a session window aggregation, a
//! changelog of EMIT CHANGES, and materialized views: an aggregation, a view of that view, a
//! TopN; joins: an interval join with a windowed aggregation, a view over a join with a
//! view's changelog; checkpoints every 50 ms)
//! and is killed with SIGKILL at random moments, `KAPPA_CRASH_CYCLES` times (default 20).
//! Then the engine is opened once more, the source finishes and seals the bids, the jobs drain,
//! and every output must equal the batch answer over the bids: no row lost, none twice, and
//! each window written once, in order; a view's changelog, replayed, gives the view.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use arrow::array::RecordBatch;
use kappa::Engine;
use kappa_tests::crash::run_and_kill;
use rand::{Rng, SeedableRng};

/// Every row as text (values separated by spaces), in order.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    kappa_tests::slt::format_rows(batches).unwrap()
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa-crash-pipeline"));
        child
            .args([dir.path().to_str().unwrap(), &events.to_string(), &rate.to_string()])
            .stderr(Stdio::inherit());
        let printed = run_and_kill(&mut child, rng.random_range(300..2500))
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        if printed.iter().any(|l| l == "ready") {
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
    let ends: Vec<String> = got.iter().map(|r| r.split(' ').nth(2).unwrap().to_string()).collect();
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
    let mut changelog = Vec::new();
    while let Some(b) = log.next().await {
        changelog.extend(rows(&[b.unwrap()]));
    }
    let changes = changelog.len();
    let applied = kappa_tests::apply_changelog(changelog).unwrap();
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
    expected.sort();
    same("the EMIT CHANGES changelog, applied", &applied, &expected);
    // The views equal the batch answers of their queries.
    let per_auction = "SELECT auction, count(*) AS n, max(price) AS hi, sum(price) AS total,
                              count(DISTINCT bidder) AS bidders
                       FROM bid GROUP BY auction";
    let views = [
        ("per_auction".to_string(), per_auction.to_string()),
        (
            "by_count".to_string(),
            format!(
                "SELECT n, count(*) AS auctions, max(hi) AS hi FROM ({per_auction}) GROUP BY n"
            ),
        ),
        (
            // (Ties of price may rank otherwise in batch: the columns that do not depend on it.)
            "(SELECT auction, price, rn FROM top3)".to_string(),
            "SELECT auction, price, rn FROM (SELECT auction, bidder, price,
               ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn FROM bid)
             WHERE rn <= 3"
                .to_string(),
        ),
    ];
    // The interval join of the bids with each window's highest price.
    let mut got = rows(&engine.query("SELECT * FROM top_bids").await.unwrap());
    let mut expected = rows(
        &engine
            .query(
                "SELECT B.auction, B.price, B.bidder, B.dateTime FROM bid B
                 JOIN (SELECT max(price) AS maxprice, window_end
                       FROM TUMBLE(bid, dateTime, INTERVAL '100' MILLISECOND)
                       GROUP BY window_start, window_end) M
                 ON B.price = M.maxprice
                    AND B.dateTime BETWEEN M.window_end - INTERVAL '100' MILLISECOND AND M.window_end",
            )
            .await
            .unwrap(),
    );
    got.sort();
    expected.sort();
    assert!(!expected.is_empty());
    same("the interval join", &got, &expected);
    let top_bids = got.len();
    let views = [
        views[0].clone(),
        views[1].clone(),
        views[2].clone(),
        (
            "by_auction_size".to_string(),
            format!(
                "SELECT p.n, count(*) AS bids, max(b.price) AS hi
                 FROM bid b JOIN ({per_auction}) p ON b.auction = p.auction GROUP BY p.n"
            ),
        ),
    ];
    let mut view_rows = 0;
    for (view, query) in &views {
        let mut got = rows(&engine.query(&format!("SELECT * FROM {view}")).await.unwrap());
        let mut expected = rows(&engine.query(query).await.unwrap());
        got.sort();
        expected.sort();
        same(&format!("view {view}"), &got, &expected);
        view_rows += got.len();
    }
    let per_auction_rows = {
        let mut r = rows(&engine.query("SELECT * FROM per_auction").await.unwrap());
        r.sort();
        r
    };
    engine.close().await.unwrap();
    // The view's changelog, replayed, gives its rows: no change lost or written twice.
    let store = kappa::storage::Store::open(dir.path(), Default::default()).unwrap();
    let mut reader =
        store.stream("per_auction").unwrap().reader(kappa::storage::ReadFrom::Offset(0)).unwrap();
    let mut changelog = Vec::new();
    while let Some(b) = reader.next_batch().unwrap() {
        changelog.extend(rows(&[b.batch]));
    }
    store.close().unwrap();
    let replayed = kappa_tests::apply_changelog(changelog).unwrap();
    same("the changelog of view per_auction, replayed", &replayed, &per_auction_rows);
    eprintln!(
        "views: {view_rows} rows equal their batch answers; the changelog replays to the view"
    );
    eprintln!(
        "pipeline kill -9: {cycles} cycles ({killed_ready} after start-up), {} bids, {} cheap rows, {} window rows, {} sessions, {changes} changes, {top_bids} joined",
        bids[0],
        cheap.len(),
        got.len(),
        sessions.len()
    );
}
