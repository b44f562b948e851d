//! Property test of joins: random rows of two streams (keys with NULLs and repeats, event times
//! out of order within the watermark's delay, so no row is late), appended in random batches
//! that interleave the two streams. Every kind of join runs as a job: regular inner, left,
//! right, full, semi and anti joins (their changelogs replayed), interval joins inner, left,
//! right and full (state bounded by the watermarks, append-only), a window join of two windowed
//! aggregations, a view of an aggregation over an interval join, and temporal joins (inner and
//! left) of `l` with a third stream of versions `v` as of `l`'s event time (`v`'s times are
//! distinct, so that "the latest version" is one row; the batch answer finds it with `NOT
//! EXISTS` a later one), and with a deduplicating view of a fourth stream `u` (the latest row
//! per key by time, whose times tie and come out of order; the first of equal times holds, as
//! the view keeps it). Once the streams are sealed and the jobs finished, each output must
//! equal DataFusion's batch answer of its query over the same rows. `PROPTEST_CASES` sets the
//! number of cases (default 6).
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
        ("right_j", "SELECT l.v, r.w, r.t FROM l RIGHT JOIN r ON l.k = r.k".into(), true),
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
            "i_right",
            format!("SELECT l.v, r.w, r.t FROM l RIGHT JOIN r ON l.k = r.k AND {INTERVAL}"),
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

/// A deduplicating view of `u` (`r`'s rows again, with their arrival order `seq`, some
/// filtered out before the deduplication): one row per key, the latest by time.
const VERSIONED: &str = "CREATE MATERIALIZED VIEW u_now AS SELECT k, t, w, seq FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY t DESC) AS rn FROM u WHERE w <> 'elm')
  WHERE rn = 1";

/// Row `x` of `u` is what `u_now` held for `l.k` as of `l.t`: the latest at or before it, the
/// first to come among equal times.
const AS_OF_VIEW: &str = "x.w <> 'elm' AND x.t <= l.t AND NOT EXISTS (SELECT 1 FROM u y
  WHERE y.k = x.k AND y.w <> 'elm' AND y.t <= l.t AND (y.t > x.t OR y.t = x.t AND y.seq < x.seq))";

/// The temporal joins with `u_now`, and their batch answers.
fn versioned() -> [(&'static str, &'static str, String); 2] {
    [
        (
            "tv_inner",
            "SELECT l.v, x.w, x.seq FROM l JOIN u_now FOR SYSTEM_TIME AS OF l.t AS x ON l.k = x.k",
            format!("SELECT l.v, x.w, x.seq FROM l JOIN u x ON l.k = x.k WHERE {AS_OF_VIEW}"),
        ),
        (
            "tv_left",
            "SELECT l.v, x.w, x.seq FROM l LEFT JOIN u_now FOR SYSTEM_TIME AS OF l.t x ON l.k = x.k",
            format!(
                "SELECT l.v, x.w, x.seq FROM l JOIN u x ON l.k = x.k WHERE {AS_OF_VIEW}
                 UNION ALL
                 SELECT l.v, NULL, NULL FROM l WHERE NOT EXISTS (SELECT 1 FROM u y
                   WHERE y.k = l.k AND y.w <> 'elm' AND y.t <= l.t)"
            ),
        ),
    ]
}

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

/// `r`'s rows with their arrival order, their times rounded to 500 ms (so that they tie).
fn with_seq(rows: &[(usize, Row)]) -> RecordBatch {
    let b = batch_at(rows, true, |i, jitter| (i as i64 * 200 + jitter) / 500 * 500);
    let mut fields = b.schema().fields().to_vec();
    fields.push(Arc::new(Field::new("seq", DataType::Int64, false)));
    let mut columns = b.columns().to_vec();
    columns.push(Arc::new(Int64Array::from_iter_values(rows.iter().map(|(i, _)| *i as i64))));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

async fn sorted(engine: &Engine, sql: &str) -> Vec<String> {
    let mut rows = format_rows(&engine.query(sql).await.unwrap()).unwrap();
    rows.sort();
    rows
}

async fn check(left: Vec<Row>, right: Vec<Row>, cut: usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    for (name, third) in [
        ("l", "v BIGINT NOT NULL"),
        ("r", "w VARCHAR NOT NULL"),
        ("v", "w VARCHAR NOT NULL"),
        ("u", "w VARCHAR NOT NULL, seq BIGINT NOT NULL"),
    ] {
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
    engine.execute(VERSIONED).await.unwrap();
    for (name, query, _) in versioned() {
        engine.execute(&format!("CREATE STREAM {name} AS {query}")).await.unwrap();
    }
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
            engine.append("u", with_seq(y)).await.unwrap();
        }
    }
    engine.execute("SEAL STREAM l").await.unwrap();
    engine.execute("SEAL STREAM r").await.unwrap();
    engine.execute("SEAL STREAM v").await.unwrap();
    engine.execute("SEAL STREAM u").await.unwrap();
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
    for (name, _, answer) in versioned() {
        let got = sorted(&engine, &format!("SELECT * FROM {name}")).await;
        assert_eq!(got, sorted(&engine, &answer).await, "{what}: {name}");
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
