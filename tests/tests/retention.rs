//! Retention and many readers.
//!
//! - Retention in the background removes whole expired segments only: after it ran, the rows
//!   a query sees are a suffix of what was appended, starting at a segment's first row, and
//!   the active segment stays.
//! - A reader never sees a gap it did not skip: a push query stalled at the beginning of a
//!   stream while retention removes the rows it had not read yet gets the rows it read, then an
//!   error naming the retained offsets (no row after the gap).
//! - Many subscribers: push queries that never read (their bounded queues full) and a job do
//!   not slow the producer: every append completes, and a reader that does read gets every row
//!   in order.
//! - A rebuild from an offset or a time retention removed is refused, naming what is retained;
//!   from what is retained it reads the rows from there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kappa::{Engine, EngineOptions};

fn rows(from: i64, n: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("pad", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(from..from + n)),
            Arc::new(StringArray::from_iter_values((from..from + n).map(|i| format!("{i:0>100}")))),
        ],
    )
    .unwrap()
}

async fn open(dir: &std::path::Path) -> Engine {
    let options =
        EngineOptions { retention_check: Some(Duration::from_millis(100)), ..Default::default() };
    Engine::open_with(dir, options).await.unwrap()
}

/// An engine with stream `s` keeping a second of 16 KiB segments.
async fn with_retention(dir: &std::path::Path) -> Engine {
    let engine = open(dir).await;
    engine
        .execute(
            "CREATE STREAM s (id BIGINT NOT NULL, pad VARCHAR NOT NULL)
             WITH (retention = '1 s', segment_size = '16 KiB')",
        )
        .await
        .unwrap();
    engine
}

async fn ids(engine: &Engine, sql: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for b in engine.query(sql).await.unwrap() {
        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        out.extend(a.values().iter().copied());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_whole_expired_segments_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let engine = with_retention(dir.path()).await;
    // About 50 segments of 16 KiB (a batch of 40 rows is one frame of about 5 KiB).
    for i in 0..200 {
        engine.append("s", rows(i * 40, 40)).await.unwrap();
    }
    let all = ids(&engine, "SELECT id FROM s ORDER BY id").await;
    assert_eq!(all.len(), 8000);
    // No append from now on: only the background task removes segments.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let left = ids(&engine, "SELECT id FROM s ORDER BY id").await;
    assert!(!left.is_empty(), "the active segment stays");
    assert!(left.len() < 400, "expired segments went: {} rows left", left.len());
    // A suffix, contiguous, that starts at a batch's first row (segments hold whole frames).
    let first = left[0];
    assert_eq!(first % 40, 0, "starts at a frame boundary");
    assert_eq!(left, (first..8000).collect::<Vec<_>>());
    // Appends go on after it.
    engine.append("s", rows(8000, 40)).await.unwrap();
    assert_eq!(ids(&engine, "SELECT count(*) FROM s").await, vec![8040 - first]);
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_retention_gets_an_error_not_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let engine = with_retention(dir.path()).await;
    engine.append("s", rows(0, 40)).await.unwrap();
    let mut sub = engine.subscribe("SELECT id FROM s").await.unwrap();
    // It reads the first batch, then stalls: its queue (16 batches) fills.
    let first = sub.next().await.unwrap().unwrap();
    assert_eq!(first.num_rows(), 40);
    for i in 1..400 {
        engine.append("s", rows(i * 40, 40)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // What it delivers is contiguous from the start; then an error names what is retained.
    let mut next = 40i64;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await.unwrap() {
            Some(Ok(b)) => {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                for v in a.values() {
                    assert_eq!(*v, next, "no gap");
                    next += 1;
                }
            }
            Some(Err(e)) => break e.to_string(),
            None => panic!("the push query ended without an error after row {next}"),
        }
    };
    assert!(next < 16_000, "it stopped at the gap: {next}");
    assert!(error.contains("retained offsets"), "{error}");
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscribers_do_not_slow_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    engine.execute("CREATE STREAM s (id BIGINT NOT NULL, pad VARCHAR NOT NULL)").await.unwrap();
    engine.execute("CREATE STREAM evens AS SELECT id FROM s WHERE id % 2 = 0").await.unwrap();
    // Eight push queries that never read, and one that reads everything.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(engine.subscribe("SELECT id FROM s EMIT CHANGES").await.unwrap());
    }
    let mut reader = engine.subscribe("SELECT id FROM s EMIT CHANGES").await.unwrap();
    let producer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for i in 0..500 {
                engine.append("s", rows(i * 40, 40)).await.unwrap();
            }
        })
    };
    // The producer finishes while eight readers hold their queues full.
    tokio::time::timeout(Duration::from_secs(120), producer).await.unwrap().unwrap();
    let mut next = 0i64;
    while next < 20_000 {
        let b = tokio::time::timeout(Duration::from_secs(30), reader.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        for v in a.values() {
            assert_eq!(*v, next);
            next += 1;
        }
    }
    // The job read it all too, at its own pace.
    assert_eq!(ids(&engine, "SELECT count(*) FROM evens").await, vec![10_000]);
    drop(stalled);
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_before_what_is_retained_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    engine
        .execute(
            "CREATE STREAM s (id BIGINT NOT NULL, pad VARCHAR NOT NULL, ts TIMESTAMP(3) NOT NULL,
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
             WITH (retention = '1 s', segment_size = '16 KiB');
             CREATE STREAM d AS SELECT id, ts FROM s",
        )
        .await
        .unwrap();
    for i in 0..100i64 {
        let b = rows(i * 40, 40);
        let ts = arrow::array::TimestampMillisecondArray::from_iter_values(
            (i * 40..i * 40 + 40).map(|v| 1_767_225_600_000 + v * 1000),
        );
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("pad", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::clone(b.column(0)), Arc::clone(b.column(1)), Arc::new(ts)],
        )
        .unwrap();
        engine.append("s", b).await.unwrap();
    }
    engine.wait_for_jobs().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let first = ids(&engine, "SELECT min(id) FROM s").await[0];
    assert!(first > 0, "retention removed the first segments");
    // From offset 0, or from the first second: gone.
    let e = engine.execute("ALTER STREAM d REBUILD FROM OFFSET 0").await.unwrap_err();
    assert!(e.to_string().contains(&format!("stream s retains offsets {first}..4000")), "{e}");
    let e = engine
        .execute("ALTER STREAM d REBUILD FROM TIMESTAMP '2026-01-01 00:00:00'")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("TIMESTAMP '2026-01-01 00:00:00' is not retained"), "{e}");
    // From what is retained: the rows from there.
    engine.execute(&format!("ALTER STREAM d REBUILD FROM OFFSET {first}")).await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    assert_eq!(ids(&engine, "SELECT count(*) FROM d").await, vec![4000 - first]);
    engine.close().await.unwrap();
}
