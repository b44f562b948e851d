//! Rebuild under load: while rows keep arriving, the query of a view (and of a derived
//! stream) is replaced. Readers polling it never see a mix of the two versions (every row of
//! a snapshot carries the same version number) and never go back to the old one; after the
//! switch the view equals DataFusion batch over all rows with the new query, and the old
//! version's log is gone from the data directory. A push query over the view follows it to
//! the new version (its changes, applied, give the new rows); one over the stream ends with
//! an error saying it was rebuilt. A view over the stream is rebuilt with it (a cascade), and
//! its snapshots too are of one version of the stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kappa::Engine;
use kappa_tests::slt::format_rows;

fn clicks(from: i64, n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("page", DataType::Utf8, false),
        Field::new("ms", DataType::Int64, false),
    ]));
    let pages = ["a", "b", "c", "d", "e"];
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (from..from + n).map(|i| pages[(i % 5) as usize]),
            )),
            Arc::new(Int64Array::from_iter_values((from..from + n).map(|i| (i * 37) % 100))),
        ],
    )
    .unwrap()
}

/// The versions of the rows of `sql`'s result (its last column), deduplicated.
async fn versions(engine: &Engine, sql: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in engine.query(sql).await.unwrap() {
        let c = b.column(b.num_columns() - 1);
        let a = c.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..a.len() {
            out.push(a.value(i));
        }
    }
    out.sort();
    out.dedup();
    out
}

async fn sorted(engine: &Engine, sql: &str) -> Vec<String> {
    let mut rows = format_rows(&engine.query(sql).await.unwrap()).unwrap();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_under_load_switches_readers_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(
            "SET checkpoint_interval = '100 ms';
             CREATE STREAM clicks (page VARCHAR NOT NULL, ms BIGINT NOT NULL);
             CREATE MATERIALIZED VIEW per_page AS
               SELECT page, count(*) AS n, CAST(1 AS BIGINT) AS version FROM clicks GROUP BY page;
             CREATE STREAM slow AS SELECT page, ms, CAST(1 AS BIGINT) AS version FROM clicks WHERE ms > 90;
             CREATE MATERIALIZED VIEW slow_pages AS
               SELECT page, count(*) AS n, min(version) AS low, max(version) AS version
               FROM slow GROUP BY page",
        )
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                engine.append("clicks", clicks(i * 50, 50)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // Readers: every snapshot is of one version, and never the old one after the new.
    let reader = |sql: &'static str| {
        let engine = engine.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut highest = 0;
            let mut snapshots = 0;
            // (Until a snapshot that started after the switches.)
            loop {
                let last = done.load(Ordering::Acquire);
                let v = versions(&engine, sql).await;
                assert!(v.len() <= 1, "{sql}: a snapshot mixes versions {v:?}");
                if let Some(v) = v.first() {
                    assert!(*v >= highest, "{sql}: version {v} after {highest}");
                    highest = *v;
                }
                snapshots += 1;
                if last {
                    break;
                }
            }
            (highest, snapshots)
        })
    };
    let view_reader = reader("SELECT * FROM per_page");
    let stream_reader = reader("SELECT * FROM slow");
    // (A view over the stream is rebuilt with it: none of its rows mixes the two either.)
    let cascade_reader =
        reader("SELECT low AS version FROM slow_pages UNION ALL SELECT version FROM slow_pages");
    // Push queries: over the view it follows the new version; over the stream it ends.
    let mut view_changes =
        engine.subscribe("SELECT page, n, version FROM per_page EMIT CHANGES").await.unwrap();
    let mut stream_rows = engine.subscribe("SELECT * FROM slow EMIT CHANGES").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine
        .execute(
            "CREATE OR REPLACE MATERIALIZED VIEW per_page AS
               SELECT page, count(*) AS n, CAST(2 AS BIGINT) AS version FROM clicks
               WHERE ms > 50 GROUP BY page",
        )
        .await
        .unwrap();
    engine
        .execute(
            "CREATE OR REPLACE STREAM slow AS
               SELECT page, ms, CAST(2 AS BIGINT) AS version FROM clicks WHERE ms > 95",
        )
        .await
        .unwrap();
    producer.await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    done.store(true, Ordering::Release);
    let (v, n) = view_reader.await.unwrap();
    assert_eq!(v, 2, "the view's readers saw the new version ({n} snapshots)");
    let (v, n) = stream_reader.await.unwrap();
    assert_eq!(v, 2, "the stream's readers saw the new version ({n} snapshots)");
    let (v, n) = cascade_reader.await.unwrap();
    assert_eq!(v, 2, "the readers of the view over the stream saw its new version ({n} snapshots)");
    // The view's push query: the changes, applied, give the new version's rows.
    let mut changes = Vec::new();
    while let Ok(Some(b)) =
        tokio::time::timeout(Duration::from_millis(1500), view_changes.next()).await
    {
        changes.extend(format_rows(&[b.unwrap()]).unwrap());
    }
    let applied = kappa_tests::apply_changelog(changes).unwrap();
    assert_eq!(applied, sorted(&engine, "SELECT page, n, version FROM per_page").await);
    // The stream's ends with an error saying why.
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream_rows.next()).await.unwrap() {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e.to_string(),
            None => panic!("the push query over the stream ended without an error"),
        }
    };
    assert!(error.contains("stream slow was rebuilt"), "{error}");
    // The new versions over every row.
    assert_eq!(
        sorted(&engine, "SELECT page, n FROM per_page").await,
        sorted(&engine, "SELECT page, count(*) FROM clicks WHERE ms > 50 GROUP BY page").await
    );
    assert_eq!(
        sorted(&engine, "SELECT page, ms FROM slow").await,
        sorted(&engine, "SELECT page, ms FROM clicks WHERE ms > 95").await
    );
    assert_eq!(
        sorted(&engine, "SELECT page, n FROM slow_pages").await,
        sorted(&engine, "SELECT page, count(*) FROM clicks WHERE ms > 95 GROUP BY page").await
    );
    // The old versions' logs go after a grace period for scans under way.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut logs: Vec<String> = std::fs::read_dir(dir.path().join("streams"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    logs.sort();
    assert_eq!(logs, ["clicks", "per_page__v2", "slow__v2", "slow_pages__v2"]);
    engine.close().await.unwrap();
    // Reopened, the names read the new versions.
    let engine = Engine::open(dir.path()).await.unwrap();
    assert_eq!(versions(&engine, "SELECT * FROM per_page").await, [2]);
    assert_eq!(versions(&engine, "SELECT * FROM slow").await, [2]);
    assert_eq!(versions(&engine, "SELECT * FROM slow_pages").await, [2]);
    engine.close().await.unwrap();
}
