//! Property test: for random input batches and a set of stateless queries, each derived
//! stream equals DataFusion's batch answer over the same rows, in the same order per input.
//! `PROPTEST_CASES` sets the number of cases (default 24).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use kappa::Engine;
use kappa::datafusion::datasource::MemTable;
use kappa::datafusion::prelude::{SessionConfig, SessionContext};
use kappa_tests::slt::format_rows;
use proptest::prelude::*;

/// Each query reads `src` (ids from 0) and maybe `src2` (ids from 1,000,000).
const QUERIES: &[&str] = &[
    "SELECT id, a * 2 + 1 AS x FROM src WHERE a > 0",
    "SELECT id, CASE WHEN a IS NULL THEN 'none' WHEN a % 2 = 0 THEN 'even' ELSE 'odd' END AS k, upper(s) AS u FROM src",
    "SELECT id, length(s) AS l, regexp_like(s, '^a') AS r, coalesce(s, 'x') || '!' AS t FROM src WHERE s IS NOT NULL OR a < -50",
    "SELECT id, a FROM src WHERE a BETWEEN -10 AND 10 UNION ALL SELECT id, a FROM src2 WHERE a > 50",
    "SELECT id, abs(a) AS m, CAST(a AS DOUBLE) / 4 AS q FROM src WHERE NOT (a IS NULL) AND s <> 'b'",
];

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("a", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]))
}

type Row = (Option<i64>, Option<String>);

fn batches_of(rows: &[Vec<Row>], first_id: i64) -> Vec<RecordBatch> {
    let mut id = first_id;
    rows.iter()
        .filter(|b| !b.is_empty())
        .map(|b| {
            let ids: Vec<i64> = (id..id + b.len() as i64).collect();
            id += b.len() as i64;
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(Int64Array::from(b.iter().map(|r| r.0).collect::<Vec<_>>())),
                    Arc::new(StringArray::from(b.iter().map(|r| r.1.clone()).collect::<Vec<_>>())),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn row() -> impl Strategy<Value = Row> {
    (
        prop::option::weighted(0.85, -100i64..100),
        prop::option::weighted(
            0.8,
            prop::sample::select(vec!["a", "b", "ab", "ba", "abc", ""]).prop_map(String::from),
        ),
    )
}

fn input() -> impl Strategy<Value = Vec<Vec<Row>>> {
    prop::collection::vec(prop::collection::vec(row(), 0..40), 0..6)
}

/// DataFusion batch over the same rows (one partition, so that order is kept).
async fn oracle(sql: &str, src: &[RecordBatch], src2: &[RecordBatch]) -> Vec<String> {
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    ctx.register_table("src", Arc::new(MemTable::try_new(schema(), vec![src.to_vec()]).unwrap()))
        .unwrap();
    ctx.register_table("src2", Arc::new(MemTable::try_new(schema(), vec![src2.to_vec()]).unwrap()))
        .unwrap();
    format_rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap()).unwrap()
}

/// Rows of a derived stream in log order, and the same split by input (ids below 1,000,000
/// come from `src`).
fn by_input(rows: Vec<String>) -> (Vec<String>, Vec<String>) {
    rows.into_iter().partition(|r| {
        r.split(' ').next().and_then(|i| i.parse::<i64>().ok()).unwrap_or(0) < 1_000_000
    })
}

async fn check(src_rows: Vec<Vec<Row>>, src2_rows: Vec<Vec<Row>>) {
    let src = batches_of(&src_rows, 0);
    let src2 = batches_of(&src2_rows, 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute("CREATE STREAM src (id BIGINT NOT NULL, a BIGINT, s VARCHAR); CREATE STREAM src2 (id BIGINT NOT NULL, a BIGINT, s VARCHAR)")
        .await
        .unwrap();
    for (i, q) in QUERIES.iter().enumerate() {
        engine.execute(&format!("CREATE STREAM d{i} AS {q}")).await.unwrap();
    }
    // Interleave the appends of the two inputs while the jobs run.
    for k in 0..src.len().max(src2.len()) {
        if let Some(b) = src.get(k) {
            engine.append("src", b.clone()).await.unwrap();
        }
        if let Some(b) = src2.get(k) {
            engine.append("src2", b.clone()).await.unwrap();
        }
    }
    engine.execute("SEAL STREAM src; SEAL STREAM src2").await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    for (i, q) in QUERIES.iter().enumerate() {
        // A push query reads the derived log in offset order, and ends as it is sealed.
        let mut sub = engine.subscribe(&format!("SELECT * FROM d{i}")).await.unwrap();
        let mut got = Vec::new();
        while let Some(b) = sub.next().await {
            got.extend(format_rows(&[b.unwrap()]).unwrap());
        }
        let want = oracle(q, &src, &src2).await;
        if std::env::var_os("KAPPA_PROPERTY_MUTANT").is_some() && !want.is_empty() {
            // Self-check of the test: a wrong answer must be caught.
            got.pop();
        }
        let (g1, g2) = by_input(got);
        let (w1, w2) = by_input(want);
        assert_eq!(g1, w1, "query {q}: rows from src differ");
        assert_eq!(g2, w2, "query {q}: rows from src2 differ");
    }
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: kappa_tests::cases(24),
        ..ProptestConfig::default()
    })]

    #[test]
    fn derived_streams_equal_datafusion_batch(src in input(), src2 in input()) {
        kappa_tests::block_on(check(src, src2));
    }
}
