//! Property test of `EMIT CHANGES`: random events (some late), random window kinds, the push
//! query with `EMIT CHANGES` (after every batch) or `EMIT CHANGES EVERY` (a short processing-time
//! interval), with or without a HAVING that groups enter and leave, started before the rows
//! arrive. Its changelog must be consistent: a `-U` row
//! retracts a row emitted before and not retracted since, and applying every row in order to
//! a table yields, once the stream is sealed, exactly the `EMIT FINAL` answer of the same
//! query (each window's final row once).
//! `PROPTEST_CASES` sets the number of cases (default 16).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kappa::Engine;
use kappa_tests::events::{Event, batches};
use kappa_tests::slt::format_rows;
use proptest::prelude::*;

fn event() -> impl Strategy<Value = Event> {
    (0i64..4, prop::option::weighted(0.9, -50i64..100), 1i64..700, 0i64..1500)
}

fn window() -> impl Strategy<Value = String> {
    prop_oneof![
        (1i64..6).prop_map(|s| format!("TUMBLE(ev, ts, INTERVAL '{s}' SECOND)")),
        (1i64..3, 2i64..4).prop_map(|(s, m)| format!(
            "HOP(ev, ts, INTERVAL '{s}' SECOND, INTERVAL '{}' SECOND)",
            s * m
        )),
        (1i64..3, 2i64..4).prop_map(|(s, m)| format!(
            "CUMULATE(ev, ts, INTERVAL '{s}' SECOND, INTERVAL '{}' SECOND)",
            s * m
        )),
        // Sessions grow and merge: -D of the rows emitted before, +I of the new ones.
        (2i64..15).prop_map(|g| format!("SESSION(ev, ts, INTERVAL '{}' MILLISECOND, k)", g * 100)),
    ]
}

async fn check(events: Vec<Event>, cut: usize, window: String, every: bool, having: bool) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(
            "CREATE STREAM ev (k BIGINT, v BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH (durability = 'relaxed')",
        )
        .await
        .unwrap();
    let query = format!(
        "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s, max(v) AS hi
         FROM {window} GROUP BY k, window_start, window_end{}",
        // A group can pass, then fail (-D), then pass again (+I).
        if having { " HAVING count(*) % 2 = 1 OR max(v) > 90" } else { "" }
    );
    let emit = if every { "EMIT CHANGES EVERY INTERVAL '3' MILLISECOND" } else { "EMIT CHANGES" };
    let mut changes = engine.subscribe(&format!("{query} {emit}")).await.unwrap();
    let mut finals = engine.subscribe(&format!("{query} EMIT FINAL")).await.unwrap();
    for b in batches(&events, cut) {
        engine.append("ev", b).await.unwrap();
        if every && cut.is_multiple_of(3) {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    engine.execute("SEAL STREAM ev").await.unwrap();
    let what = format!("{window} {emit}, {} events in batches of {cut}", events.len());
    // The table the changelog describes.
    let mut log = Vec::new();
    while let Some(b) = changes.next().await {
        log.extend(format_rows(&[b.unwrap()]).unwrap());
    }
    let mut got = kappa_tests::apply_changelog(log).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut want = Vec::new();
    while let Some(b) = finals.next().await {
        want.extend(format_rows(&[b.unwrap()]).unwrap());
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "{what}");
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: kappa_tests::cases(16),
        ..ProptestConfig::default()
    })]

    #[test]
    fn applying_the_changelog_gives_the_final_windows(
        events in prop::collection::vec(event(), 0..200),
        cut in 1usize..40,
        window in window(),
        every in prop::bool::ANY,
        having in prop::bool::ANY,
    ) {
        kappa_tests::block_on(check(events, cut, window, every, having));
    }
}
