//! Property test of materialized views: random rows appended to a stream in random batches,
//! views over it with every kind of aggregate state (`COUNT`, `SUM`, `MIN`, `MAX`, `AVG` of
//! integers and decimals, `COUNT(DISTINCT)`, `FILTER`, a function without its own state:
//! `STDDEV`, rounded: its sum of floats depends on the order of the rows), one with a `HAVING` that groups enter and leave, one without `GROUP BY`, and a
//! view over a view (an aggregation over a changelog that retracts, with `MIN`, `MAX` and
//! `COUNT(DISTINCT)` over it). After every few batches each view, queried as a table, must
//! equal DataFusion's batch answer of its query over the rows so far; at the end, the
//! changelog of each view, replayed, must give the view's rows.
//! `PROPTEST_CASES` sets the number of cases (default 8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kappa::Engine;
use kappa_tests::slt::format_rows;
use proptest::prelude::*;

/// A row: key, value (maybe NULL), price in cents, a word.
type Row = (i64, Option<i64>, i64, u8);

fn row() -> impl Strategy<Value = Row> {
    (0i64..6, prop::option::weighted(0.85, -20i64..40), 0i64..5000, 0u8..4)
}

const BY_KEY: &str = "SELECT k, count(*) AS n, count(v) AS nv, sum(v) AS sv, min(v) AS lo,
    max(w) AS hw, avg(p) AS ap, avg(v) AS av, count(DISTINCT v) AS dv,
    count(*) FILTER (WHERE v > 10) AS big, round(stddev(v), 6) AS sd
  FROM ev GROUP BY k";

const HAVING: &str = "SELECT k, sum(v) AS sv FROM ev GROUP BY k HAVING count(*) % 2 = 1";

const GLOBAL: &str = "SELECT count(*) AS n, sum(v) AS sv, max(p) AS hp FROM ev";

/// Over `by_key`'s rows: the view of a view reads its changelog.
const OVER: &str = "SELECT n % 3 AS b, count(*) AS groups, sum(sv) AS total, min(lo) AS lo,
    max(hw) AS hw, count(DISTINCT nv) AS dn FROM {src} GROUP BY n % 3";

fn batch(rows: &[Row]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("p", DataType::Decimal128(10, 2), false),
        Field::new("w", DataType::Utf8, false),
    ]));
    let words = ["ash", "birch", "cedar", "dogwood"];
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.1))),
            Arc::new(
                Decimal128Array::from_iter_values(rows.iter().map(|r| i128::from(r.2)))
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| words[r.3 as usize]))),
        ],
    )
    .unwrap()
}

async fn sorted(engine: &Engine, sql: &str) -> Vec<String> {
    let mut rows = format_rows(&engine.query(sql).await.unwrap()).unwrap();
    rows.sort();
    rows
}

/// Every view equals DataFusion's answer of its query over the rows so far.
async fn compare(engine: &Engine, what: &str) {
    let over_rows = OVER.replace("{src}", &format!("({BY_KEY})"));
    for (view, query) in
        [("by_key", BY_KEY), ("odd", HAVING), ("total", GLOBAL), ("over", over_rows.as_str())]
    {
        let got = sorted(engine, &format!("SELECT * FROM {view}")).await;
        let want = sorted(engine, query).await;
        assert_eq!(got, want, "{what}: view {view}");
    }
}

/// The rows of a view's changelog, as `values... op`.
fn changelog(dir: &std::path::Path, view: &str) -> Vec<String> {
    let store = kappa_storage::Store::open(dir, Default::default()).unwrap();
    let stream = store.stream(view).unwrap();
    let mut reader = stream.reader(kappa_storage::ReadFrom::Offset(0)).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = reader.next_batch().unwrap() {
        batches.push(b.batch);
    }
    let rows = format_rows(&batches).unwrap();
    store.close().unwrap();
    rows
}

async fn check(rows: Vec<Row>, cut: usize, every: usize) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(
            "CREATE STREAM ev (k BIGINT NOT NULL, v BIGINT, p DECIMAL(10, 2) NOT NULL,
               w VARCHAR NOT NULL) WITH (durability = 'relaxed')",
        )
        .await
        .unwrap();
    for (name, query) in [("by_key", BY_KEY), ("odd", HAVING), ("total", GLOBAL)] {
        engine.execute(&format!("CREATE MATERIALIZED VIEW {name} AS {query}")).await.unwrap();
    }
    let over = OVER.replace("{src}", "by_key");
    engine.execute(&format!("CREATE MATERIALIZED VIEW over AS {over}")).await.unwrap();
    let what = format!("{} rows in batches of {cut}", rows.len());
    for (i, chunk) in rows.chunks(cut).enumerate() {
        engine.append("ev", batch(chunk)).await.unwrap();
        if i % every == every - 1 {
            compare(&engine, &format!("{what}, after batch {i}")).await;
        }
    }
    compare(&engine, &what).await;
    let mut tables = Vec::new();
    for view in ["by_key", "odd", "total", "over"] {
        tables.push(sorted(&engine, &format!("SELECT * FROM {view}")).await);
    }
    engine.close().await.unwrap();
    for (view, table) in ["by_key", "odd", "total", "over"].iter().zip(tables) {
        let replayed = kappa_tests::apply_changelog(changelog(dir.path(), view))
            .unwrap_or_else(|e| panic!("{what}: view {view}: {e}"));
        assert_eq!(replayed, table, "{what}: the changelog of {view} replayed");
    }
    // Reopened, the views hold the same rows (from their checkpoints).
    let engine = Engine::open(dir.path()).await.unwrap();
    compare(&engine, &format!("{what}, reopened")).await;
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: kappa_tests::cases(8),
        ..ProptestConfig::default()
    })]

    #[test]
    fn views_equal_batch_answers(
        rows in prop::collection::vec(row(), 1..300),
        cut in 1usize..60,
        every in 1usize..4,
    ) {
        kappa_tests::block_on(check(rows, cut, every));
    }
}

/// A push query over a view: the view's rows first (as `+I`), then its changes as they come;
/// applied in order they give the view's rows.
#[test]
fn a_push_query_over_a_view_gives_its_rows_then_its_changes() {
    kappa_tests::block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).await.unwrap();
        engine
            .execute(
                "CREATE STREAM ev (k BIGINT NOT NULL, v BIGINT, p DECIMAL(10, 2) NOT NULL,
                   w VARCHAR NOT NULL)",
            )
            .await
            .unwrap();
        engine
            .execute("CREATE MATERIALIZED VIEW t AS SELECT k, count(*) AS n, max(w) AS hw FROM ev GROUP BY k")
            .await
            .unwrap();
        engine.append("ev", batch(&[(1, Some(1), 100, 0), (2, None, 200, 1)])).await.unwrap();
        let mut sub =
            engine.subscribe("SELECT k, n, hw FROM t WHERE k < 3 EMIT CHANGES").await.unwrap();
        let first = sub.next().await.unwrap().unwrap();
        let mut first_rows = format_rows(&[first]).unwrap();
        first_rows.sort();
        assert_eq!(first_rows, vec!["1 1 ash 0", "2 1 birch 0"]);
        let mut log = first_rows;
        engine
            .append("ev", batch(&[(1, Some(5), 100, 3), (3, None, 1, 2), (2, None, 1, 0)]))
            .await
            .unwrap();
        let want = sorted(&engine, "SELECT k, n, hw FROM t WHERE k < 3").await;
        assert_eq!(want, vec!["1 2 dogwood", "2 2 birch"]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let next = tokio::time::timeout_at(deadline.into(), sub.next()).await;
            let b = next.expect("the changes came in time").unwrap().unwrap();
            log.extend(format_rows(&[b]).unwrap());
            if kappa_tests::apply_changelog(log.clone()).unwrap() == want {
                break;
            }
        }
        drop(sub);
        engine.close().await.unwrap();
    });
}
