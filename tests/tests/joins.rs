//! Property test of joins: random rows of two streams (keys with NULLs and repeats, event
//! times out of order within the watermark's delay, so no row is late), appended in random
//! batches that interleave the two streams. Every kind of join runs as a job: regular inner,
//! left, full, semi and anti joins (their changelogs replayed), interval joins inner, left and
//! full (state bounded by the watermarks, append-only), a window join of two windowed
//! aggregations, a view of an aggregation over an interval join, and temporal joins (inner
//! and left) of `l` with a third stream of versions `v` as of `l`'s event time (`v`'s times
//! are distinct, so that "the latest version" is one row; the batch answer finds it with `NOT
//! EXISTS` a later one). Once the streams are
//! sealed and the jobs finished, each output must equal DataFusion's batch answer of its query
//! over the same rows. `PROPTEST_CASES` sets the number of cases (default 6).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use kappa::Engine;
use kappa_tests::slt::format_rows;
use proptest::prelude::*;

/// A row: key (maybe NULL), time jitter in ms, a value.
type Row = (Option<i64>, i64, i64);

fn row() -> impl Strategy<Value = Row> {
    (prop::option::weighted(0.9, 0i64..5), 0i64..4000, 0i64..50)
}

const INTERVAL: &str = "r.t BETWEEN l.t - INTERVAL '2' SECOND AND l.t + INTERVAL '1' SECOND";

/// (name, query, whether the output is a changelog).
fn queries() -> Vec<(&'static str, String, bool)> {
    vec![
        ("inner", "SELECT l.k, l.v, r.w FROM l JOIN r ON l.k = r.k".into(), false),
        ("left_j", "SELECT l.v, r.w, r.k FROM l LEFT JOIN r ON l.k = r.k".into(), true),
        ("full_j", "SELECT l.v, r.w FROM l FULL JOIN r ON l.k = r.k".into(), true),
        ("semi", "SELECT l.v, l.t FROM l WHERE l.k IN (SELECT k FROM r)".into(), false),
        (
            "anti",
            "SELECT l.v FROM l WHERE NOT EXISTS (SELECT 1 FROM r WHERE r.k = l.k)".into(),
            true,
        ),
        (
            "i_inner",
            format!("SELECT l.v, r.w, r.t FROM l JOIN r ON l.k = r.k AND {INTERVAL}"),
            false,
        ),
        (
            "i_left",
            format!("SELECT l.v, r.w FROM l LEFT JOIN r ON l.k = r.k AND {INTERVAL}"),
            false,
        ),
        (
            "i_full",
            format!("SELECT l.v, r.w FROM l FULL JOIN r ON l.k = r.k AND {INTERVAL}"),
            false,
        ),
        (
            "w_join",
            "SELECT a.k, a.n, b.m, a.window_end FROM
               (SELECT k, count(*) AS n, window_end FROM TUMBLE(l, t, INTERVAL '3' SECOND)
                GROUP BY k, window_start, window_end) a
             JOIN
               (SELECT k, max(w) AS m, window_end FROM TUMBLE(r, t, INTERVAL '3' SECOND)
                GROUP BY k, window_start, window_end) b
             ON a.k = b.k AND a.window_end = b.window_end"
                .into(),
            false,
        ),
        (
            "w_full",
            "SELECT a.k, a.n, b.m, b.window_end FROM
               (SELECT k, count(*) AS n, window_end FROM TUMBLE(l, t, INTERVAL '3' SECOND)
                GROUP BY k, window_start, window_end) a
             FULL JOIN
               (SELECT k, max(w) AS m, window_end FROM TUMBLE(r, t, INTERVAL '3' SECOND)
                GROUP BY k, window_start, window_end) b
             ON a.k = b.k AND a.window_end = b.window_end"
                .into(),
            false,
        ),
    ]
}

/// The temporal joins, and their batch answers.
const TEMPORAL: [(&str, &str, &str); 2] = [
    (
        "t_inner",
        "SELECT l.v, x.w FROM l JOIN v FOR SYSTEM_TIME AS OF l.t AS x ON l.k = x.k",
        "SELECT l.v, x.w FROM l JOIN v x ON l.k = x.k WHERE x.t <= l.t
           AND NOT EXISTS (SELECT 1 FROM v y WHERE y.k = x.k AND y.t <= l.t AND y.t > x.t)",
    ),
    (
        "t_left",
        "SELECT l.v, x.w FROM l LEFT JOIN v FOR SYSTEM_TIME AS OF l.t x ON l.k = x.k",
        "SELECT l.v, x.w FROM l JOIN v x ON l.k = x.k WHERE x.t <= l.t
           AND NOT EXISTS (SELECT 1 FROM v y WHERE y.k = x.k AND y.t <= l.t AND y.t > x.t)
         UNION ALL
         SELECT l.v, NULL FROM l WHERE NOT EXISTS (SELECT 1 FROM v y WHERE y.k = l.k AND y.t <= l.t)",
    ),
];

const VIEW: &str = "SELECT l.k, count(*) AS n, max(r.w) AS m, sum(l.v) AS s
  FROM l JOIN r ON l.k = r.k AND r.t BETWEEN l.t - INTERVAL '2' SECOND AND l.t GROUP BY l.k";

fn batch(rows: &[(usize, Row)], right: bool) -> RecordBatch {
    batch_at(rows, right, |i, jitter| i as i64 * 200 + jitter)
}

/// Versions: about every 200 ms, in order, each at its own time.
fn versions(rows: &[(usize, Row)]) -> RecordBatch {
    batch_at(rows, true, |i, jitter| i as i64 * 200 + jitter % 150)
}

fn batch_at(rows: &[(usize, Row)], right: bool, at: impl Fn(usize, i64) -> i64) -> RecordBatch {
    let third = if right {
        Field::new("w", DataType::Utf8, false)
    } else {
        Field::new("v", DataType::Int64, false)
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), false),
        third,
    ]));
    let base = 1_767_225_600_000i64;
    let words = ["ash", "birch", "cedar", "dogwood", "elm"];
    let third: arrow::array::ArrayRef = if right {
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, r)| words[(r.2 % 5) as usize])))
    } else {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, r)| r.2)))
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter(rows.iter().map(|(_, r)| r.0))),
            // (Row i at about i * 200 ms, up to 4 s later: never behind the watermark, 5 s.)
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|(i, r)| base + at(*i, r.1)),
            )),
            third,
        ],
    )
    .unwrap()
}

async fn sorted(engine: &Engine, sql: &str) -> Vec<String> {
    let mut rows = format_rows(&engine.query(sql).await.unwrap()).unwrap();
    rows.sort();
    rows
}

async fn check(left: Vec<Row>, right: Vec<Row>, cut: usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    for (name, third) in
        [("l", "v BIGINT NOT NULL"), ("r", "w VARCHAR NOT NULL"), ("v", "w VARCHAR NOT NULL")]
    {
        engine
            .execute(&format!(
                "CREATE STREAM {name} (k BIGINT, t TIMESTAMP(3) NOT NULL, {third},
                   WATERMARK FOR t AS t - INTERVAL '5' SECOND) WITH (durability = 'relaxed')"
            ))
            .await
            .unwrap();
    }
    for (name, query, _) in queries() {
        engine.execute(&format!("CREATE STREAM {name} AS {query}")).await.unwrap();
    }
    for (name, query, _) in TEMPORAL {
        engine.execute(&format!("CREATE STREAM {name} AS {query}")).await.unwrap();
    }
    engine.execute(&format!("CREATE MATERIALIZED VIEW agg AS {VIEW}")).await.unwrap();
    let left: Vec<(usize, Row)> = left.into_iter().enumerate().collect();
    let right: Vec<(usize, Row)> = right.into_iter().enumerate().collect();
    let (mut a, mut b) = (left.chunks(cut), right.chunks(cut.div_ceil(2)));
    loop {
        let (x, y) = (a.next(), b.next());
        if x.is_none() && y.is_none() {
            break;
        }
        if let Some(x) = x {
            engine.append("l", batch(x, false)).await.unwrap();
        }
        if let Some(y) = y {
            engine.append("r", batch(y, true)).await.unwrap();
            engine.append("v", versions(y)).await.unwrap();
        }
    }
    engine.execute("SEAL STREAM l").await.unwrap();
    engine.execute("SEAL STREAM r").await.unwrap();
    engine.execute("SEAL STREAM v").await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    let what = format!("{} left and {} right rows in batches of {cut}", left.len(), right.len());
    for (name, query, changelog) in queries() {
        let got = sorted(&engine, &format!("SELECT * FROM {name}")).await;
        let got = if changelog {
            kappa_tests::apply_changelog(got).unwrap_or_else(|e| panic!("{what}: {name}: {e}"))
        } else {
            got
        };
        let want = sorted(&engine, &query).await;
        assert_eq!(got, want, "{what}: {name}");
    }
    let got = sorted(&engine, "SELECT * FROM agg").await;
    assert_eq!(got, sorted(&engine, VIEW).await, "{what}: view agg");
    for (name, _, answer) in TEMPORAL {
        let got = sorted(&engine, &format!("SELECT * FROM {name}")).await;
        assert_eq!(got, sorted(&engine, answer).await, "{what}: {name}");
    }
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: kappa_tests::cases(6),
        ..ProptestConfig::default()
    })]

    #[test]
    fn joins_equal_batch_answers(
        left in prop::collection::vec(row(), 1..120),
        right in prop::collection::vec(row(), 1..120),
        cut in 1usize..40,
    ) {
        kappa_tests::block_on(check(left, right, cut));
    }
}
