//! Property test of windowed aggregation: random events with bounded out-of-orderness (less
//! than the watermark's delay, so no row is late), random window kinds and sizes, in one
//! stream or split over two read through UNION ALL (the minimum watermark); the push
//! query (`EMIT FINAL`, started before the rows are appended, so that windows close as the
//! watermark passes them while later batches arrive, the rest when the stream is sealed) gives
//! the same rows as DataFusion batch over the same stream.
//! `PROPTEST_CASES` sets the number of cases (default 24).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kappa::Engine;
use kappa_tests::events::{Event, batches};
use kappa_tests::slt::format_rows;
use proptest::prelude::*;

fn event() -> impl Strategy<Value = Event> {
    (0i64..4, prop::option::weighted(0.9, -50i64..100), 1i64..700, 0i64..999)
}

fn window() -> impl Strategy<Value = String> {
    prop_oneof![
        (1i64..6).prop_map(|s| format!("TUMBLE(ev, ts, INTERVAL '{s}' SECOND)")),
        (1i64..3, 2i64..4)
            .prop_map(|(s, m)| format!("HOP(ev, ts, INTERVAL '{s}' SECOND, INTERVAL '{}' SECOND)", s * m)),
        (1i64..3, 2i64..4).prop_map(|(s, m)| format!(
            "TABLE(CUMULATE(TABLE ev, DESCRIPTOR(ts), INTERVAL '{s}' SECOND, INTERVAL '{}' SECOND))",
            s * m
        )),
        (1i64..4).prop_map(|s| format!(
            "TUMBLE(ev, ts, INTERVAL '{s}' SECOND, INTERVAL '500' MILLISECOND)"
        )),
    ]
}

/// `split`: the events go alternately to two streams, read through `UNION ALL` (the
/// watermark is the minimum of theirs).
async fn check(events: Vec<Event>, cut: usize, window: String, split: bool) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    for name in ["ev", "ev2"] {
        engine
            .execute(&format!(
                "CREATE STREAM {name} (k BIGINT, v BIGINT, ts TIMESTAMP(3),
                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (durability = 'relaxed')"
            ))
            .await
            .unwrap();
    }
    let from = if split {
        let second = window.replace("(ev,", "(ev2,").replace("TABLE ev,", "TABLE ev2,");
        format!("(SELECT * FROM {window} UNION ALL SELECT * FROM {second})")
    } else {
        window.clone()
    };
    let query = format!(
        "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi,
                avg(v) AS mean, count(v) FILTER (WHERE v > 0) AS positive, count(DISTINCT v) AS d
         FROM {from} GROUP BY k, window_start, window_end"
    );
    // The push query starts first and reads the batches as they are appended (one frame
    // each), so windows close as the watermark passes them, before the end.
    let mut sub = engine.subscribe(&format!("{query} EMIT FINAL")).await.unwrap();
    for (i, b) in batches(&events, cut).into_iter().enumerate() {
        let to = if split && i % 2 == 1 { "ev2" } else { "ev" };
        engine.append(to, b).await.unwrap();
    }
    engine.execute("SEAL STREAM ev").await.unwrap();
    engine.execute("SEAL STREAM ev2").await.unwrap();
    let mut want = format_rows(&engine.query(&query).await.unwrap()).unwrap();
    let mut got = Vec::new();
    while let Some(b) = sub.next().await {
        got.extend(format_rows(&[b.unwrap()]).unwrap());
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "{from}, {} events in batches of {cut}", events.len());
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: kappa_tests::cases(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn windowed_push_queries_equal_datafusion_batch(
        events in prop::collection::vec(event(), 0..250),
        cut in 1usize..60,
        window in window(),
        split in prop::bool::weighted(0.3),
    ) {
        kappa_tests::block_on(check(events, cut, window, split));
    }
}

/// A windowed derived stream stopped and restarted at several points (the engine closed and
/// opened again while rows arrive): its output holds every window once, the same as batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_derived_stream_restarts_without_losing_or_repeating_a_window() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<Event> =
        (0..3000).map(|i| (i % 5, Some(i % 97), 37, (i * 7919) % 900)).collect();
    let parts = batches(&events, 100);
    let query = "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
                 FROM TUMBLE(ev, ts, INTERVAL '2' SECOND) GROUP BY k, window_start, window_end";
    // By panes.
    let hop = "SELECT k, window_start, window_end, count(*) AS n, max(v) AS s
               FROM HOP(ev, ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND)
               GROUP BY k, window_start, window_end";
    // By sessions (one batch per advance, tagged with its largest end).
    let session = "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
                   FROM SESSION(ev, ts, INTERVAL '100' MILLISECOND, k)
                   GROUP BY k, window_start, window_end";
    {
        let engine = Engine::open(dir.path()).await.unwrap();
        engine
            .execute(
                "CREATE STREAM ev (k BIGINT, v BIGINT, ts TIMESTAMP(3),
                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)",
            )
            .await
            .unwrap();
        engine.execute(&format!("CREATE STREAM w AS {query}")).await.unwrap();
        engine.execute(&format!("CREATE STREAM h AS {hop}")).await.unwrap();
        engine.execute(&format!("CREATE STREAM s AS {session}")).await.unwrap();
        engine.close().await.unwrap();
    }
    for (i, chunk) in parts.chunks(3).enumerate() {
        let engine = Engine::open(dir.path()).await.unwrap();
        for b in chunk {
            engine.append("ev", b.clone()).await.unwrap();
        }
        // Sometimes let the jobs catch up before the close, sometimes not.
        if i % 2 == 0 {
            engine.wait_for_jobs().await.unwrap();
        }
        engine.close().await.unwrap();
    }
    let engine = Engine::open(dir.path()).await.unwrap();
    engine.execute("SEAL STREAM ev").await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    let mut got = format_rows(&engine.query("SELECT * FROM w").await.unwrap()).unwrap();
    let mut want = format_rows(&engine.query(query).await.unwrap()).unwrap();
    got.sort();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "windows written once each");
    assert_eq!(got, want);
    let mut got = format_rows(&engine.query("SELECT * FROM h").await.unwrap()).unwrap();
    let mut want = format_rows(&engine.query(hop).await.unwrap()).unwrap();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the HOP stream");
    let mut got = format_rows(&engine.query("SELECT * FROM s").await.unwrap()).unwrap();
    let mut want = format_rows(&engine.query(session).await.unwrap()).unwrap();
    got.sort();
    want.sort();
    assert!(want.len() > 100, "{} sessions", want.len());
    assert_eq!(got, want, "the SESSION stream");
    // The derived stream is sealed once its input is sealed and read.
    let streams = format!("{:?}", engine.execute("SHOW STREAMS").await.unwrap());
    assert!(!streams.contains("false"), "{streams}");
    engine.close().await.unwrap();
}
