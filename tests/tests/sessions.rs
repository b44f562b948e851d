//! Property test of session windows: random events per key with bounded out-of-orderness (less
//! than the watermark's delay, so no row is late, but enough for rows to bridge sessions), random gaps, with and without partition
//! keys, in the three syntaxes. The push query (`EMIT FINAL`, started before the rows arrive)
//! and the snapshot query both equal an independent batch answer: DataFusion's `LAG` and a
//! running `SUM` number the sessions (a new one where a row is at least the gap after the
//! previous row of its key), then a plain GROUP BY.
//! `PROPTEST_CASES` sets the number of cases (default 24).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kappa::Engine;
use kappa_tests::events::{Event, batches};
use kappa_tests::slt::format_rows;
use proptest::prelude::*;

/// Times on a 100 ms grid, so that rows exactly a gap apart happen.
fn event() -> impl Strategy<Value = Event> {
    (0i64..4, prop::option::weighted(0.9, -50i64..100), 0i64..25, 0i64..30)
        .prop_map(|(k, v, step, late)| (k, v, step * 100, late * 100))
}

const AGGREGATES: &str = "count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, avg(v) AS mean,
    count(v) FILTER (WHERE v > 0) AS positive, count(DISTINCT v % 7) AS d";

/// The session query in one of three syntaxes; `keyed`: sessions per `k`.
fn query(syntax: u8, gap: i64, keyed: bool) -> String {
    let (key, by) = if keyed { ("k, ", "k, ") } else { ("", "") };
    let g = format!("INTERVAL '{gap}' MILLISECOND");
    match syntax {
        0 => format!(
            "SELECT {key}window_start, window_end, {AGGREGATES}
             FROM TABLE(SESSION(TABLE ev{}, DESCRIPTOR(ts), {g}))
             GROUP BY {by}window_start, window_end",
            if keyed { " PARTITION BY k" } else { "" }
        ),
        1 => format!(
            "SELECT {key}window_start, window_end, {AGGREGATES}
             FROM SESSION(ev, ts, {g}{}) GROUP BY {by}window_start, window_end",
            if keyed { ", k" } else { "" }
        ),
        _ => format!(
            "SELECT {key}SESSION_START(ts, {g}) AS window_start, SESSION_END(ts, {g}) AS window_end,
                 {AGGREGATES}
             FROM ev GROUP BY {by}SESSION(ts, {g})"
        ),
    }
}

/// The same answer without session windows.
fn oracle(gap: i64, keyed: bool) -> String {
    let (key, part) = if keyed { ("k, ", "PARTITION BY k ") } else { ("", "") };
    format!(
        "WITH t AS (SELECT k, v, arrow_cast(ts, 'Int64') AS ms FROM ev),
         o AS (SELECT *, CASE WHEN ms - lag(ms) OVER ({part}ORDER BY ms) < {gap} THEN 0 ELSE 1 END
               AS fresh FROM t),
         s AS (SELECT *, sum(fresh) OVER ({part}ORDER BY ms) AS sid FROM o)
         SELECT {key}arrow_cast(min(ms), 'Timestamp(Millisecond, None)') AS window_start,
                arrow_cast(max(ms) + {gap}, 'Timestamp(Millisecond, None)') AS window_end,
                {AGGREGATES}
         FROM s GROUP BY {key}sid"
    )
}

async fn check(events: Vec<Event>, cut: usize, syntax: u8, gap: i64, keyed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(
            "CREATE STREAM ev (k BIGINT, v BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '3' SECOND) WITH (durability = 'relaxed')",
        )
        .await
        .unwrap();
    // Syntax 3: sessions per k, grouped by their bounds only (sessions of different keys with
    // the same bounds are one window); checked against the snapshot query.
    let by_bounds = syntax == 3;
    let query = if by_bounds {
        format!(
            "SELECT window_start, window_end, {AGGREGATES}
             FROM SESSION(ev, ts, INTERVAL '{gap}' MILLISECOND, k) GROUP BY window_start, window_end"
        )
    } else {
        query(syntax, gap, keyed)
    };
    let mut sub = engine.subscribe(&format!("{query} EMIT FINAL")).await.unwrap();
    for b in batches(&events, cut) {
        engine.append("ev", b).await.unwrap();
    }
    engine.execute("SEAL STREAM ev").await.unwrap();
    let mut snapshot = format_rows(&engine.query(&query).await.unwrap()).unwrap();
    snapshot.sort();
    let mut want = if by_bounds {
        snapshot.clone()
    } else {
        format_rows(&engine.query(&oracle(gap, keyed)).await.unwrap()).unwrap()
    };
    want.sort();
    let mut got = Vec::new();
    while let Some(b) = sub.next().await {
        got.extend(format_rows(&[b.unwrap()]).unwrap());
    }
    got.sort();
    let what = format!("{query}: {} events in batches of {cut}", events.len());
    assert_eq!(snapshot, want, "snapshot, {what}");
    assert_eq!(got, want, "push query, {what}");
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: kappa_tests::cases(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn session_windows_equal_sessions_numbered_in_batch(
        events in prop::collection::vec(event(), 0..250),
        cut in 1usize..20,
        syntax in 0u8..4,
        gap in (5i64..40).prop_map(|g| g * 100),
        keyed in prop::bool::weighted(0.75),
    ) {
        kappa_tests::block_on(check(events, cut, syntax, gap, keyed));
    }
}

/// Many batches touching one long session: its partial states are compacted (more than 32
/// batches), and the answer stays the batch one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_over_many_batches_is_compacted_and_correct() {
    let events: Vec<Event> =
        (0..2000).map(|i| (i % 3, Some(i % 13), 100, (i * 31) % 700)).collect();
    check(events, 7, 1, 1500, true).await;
}
