//! End-to-end checks of the embedded API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use datafusion::arrow::util::pretty::pretty_format_batches;
use kappa::{Engine, Output};

fn table(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_insert_query_derive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path()).await.unwrap();
        e.execute(
            "CREATE STREAM bids (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)",
        )
        .await
        .unwrap();
        let out = e
            .execute("INSERT INTO bids VALUES (1, 100, TIMESTAMP '2026-01-01 00:00:01'), (2, 20, TIMESTAMP '2026-01-01 00:00:02')")
            .await
            .unwrap();
        assert!(matches!(&out[0], Output::Done { rows: Some(2), .. }), "{out:?}");
        e.execute("CREATE STREAM big AS SELECT auction, price * 2 AS doubled, ts FROM bids WHERE price > 50")
            .await
            .unwrap();
        let rows = e.query("SELECT auction, doubled FROM big").await.unwrap();
        let t = table(&rows);
        assert!(t.contains("| 1       | 200     |"), "{t}");
        e.execute("INSERT INTO bids VALUES (3, 300, TIMESTAMP '2026-01-01 00:00:03')")
            .await
            .unwrap();
        let rows = e.query("SELECT count(*) AS n FROM big").await.unwrap();
        assert!(table(&rows).contains("| 2 |"), "{}", table(&rows));
        let shown = e.query("SELECT 1").await.unwrap();
        assert_eq!(shown[0].num_rows(), 1);
        let out = e.execute("SHOW STREAMS; SHOW JOBS; DESCRIBE big").await.unwrap();
        for o in &out {
            let Output::Rows { batches, .. } = o else { panic!("{o:?}") };
            println!("{}", table(batches));
        }
        e.close().await.unwrap();
    }
    let e = Engine::open(dir.path()).await.unwrap();
    e.execute("INSERT INTO bids VALUES (4, 400, TIMESTAMP '2026-01-01 00:00:04')").await.unwrap();
    let rows = e.query("SELECT auction FROM big ORDER BY auction").await.unwrap();
    let t = table(&rows);
    assert!(
        t.contains("| 4       |") && t.contains("| 3       |") && t.contains("| 1       |"),
        "{t}"
    );
    assert!(!t.contains("| 2       |"), "{t}");
    // Push query with LIMIT.
    let mut sub = e.subscribe("SELECT auction FROM big EMIT CHANGES LIMIT 2").await.unwrap();
    let mut n = 0;
    while let Some(b) = sub.next().await {
        n += b.unwrap().num_rows();
    }
    assert_eq!(n, 2);
    e.execute("SEAL STREAM bids").await.unwrap();
    e.wait_for_jobs().await.unwrap();
    let out = e.execute("SHOW JOBS").await.unwrap();
    let Output::Rows { batches, .. } = &out[0] else { panic!() };
    println!("{}", table(batches));
    e.close().await.unwrap();
}

/// A scalar function of one `BIGINT`, computed by `f` over each batch's column.
fn int64_udf(
    name: &str,
    f: impl Fn(&datafusion::arrow::array::Int64Array) -> datafusion::arrow::array::Int64Array
    + Send
    + Sync
    + 'static,
) -> kappa::datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::arrow::datatypes::DataType;
    use kappa::datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use std::sync::Arc;
    let fun = Arc::new(move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let a = arrays[0].as_any().downcast_ref::<Int64Array>().expect("Int64");
        Ok(ColumnarValue::Array(Arc::new(f(a)) as ArrayRef))
    });
    create_udf(name, vec![DataType::Int64], DataType::Int64, Volatility::Immutable, fun)
}

fn double_udf() -> kappa::datafusion::logical_expr::ScalarUDF {
    int64_udf("double_it", |a| a.iter().map(|v| v.map(|x| x * 2)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_functions_in_jobs_survive_reopen_when_registered_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path()).await.unwrap();
        e.register_udf(double_udf());
        e.execute(
            "CREATE STREAM s (x BIGINT); CREATE STREAM d AS SELECT x, double_it(x) AS y FROM s",
        )
        .await
        .unwrap();
        e.execute("INSERT INTO s VALUES (1), (2)").await.unwrap();
        let t = table(&e.query("SELECT sum(y) AS total FROM d").await.unwrap());
        assert!(t.contains("| 6     |"), "{t}");
        e.close().await.unwrap();
    }
    {
        // Registered again at open: the job restarts where it left off.
        let options = kappa::EngineOptions { udfs: vec![double_udf()], ..Default::default() };
        let e = Engine::open_with(dir.path(), options).await.unwrap();
        e.execute("INSERT INTO s VALUES (10)").await.unwrap();
        let t = table(&e.query("SELECT sum(y) AS total FROM d").await.unwrap());
        assert!(t.contains("| 26    |"), "{t}");
        e.close().await.unwrap();
    }
    {
        // Without the function the job cannot restart: it is failed, with the reason.
        let e = Engine::open(dir.path()).await.unwrap();
        let out = e.execute("SHOW JOBS").await.unwrap();
        let Output::Rows { batches, .. } = &out[0] else { panic!() };
        let t = table(batches);
        assert!(t.contains("failed") && t.contains("double_it"), "{t}");
        e.close().await.unwrap();
    }
}

/// A function that panics on 13 (a bug in user code).
fn unlucky_udf() -> kappa::datafusion::logical_expr::ScalarUDF {
    int64_udf("unlucky", |a| {
        assert!(!a.iter().any(|v| v == Some(13)), "13 is unlucky");
        a.clone()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_job_fails_the_job_and_nothing_hangs() {
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).await.unwrap();
    e.register_udf(unlucky_udf());
    e.execute("CREATE STREAM s (x BIGINT)").await.unwrap();
    // Ten batches of 20,000 rows, one bad row in the sixth: the job catches up with several
    // pieces of computation at once, and the failing one is not the last.
    for b in 0..10i64 {
        let values: Vec<i64> = (0..20_000)
            .map(|i| if b == 5 && i == 7 { 13 } else { 1000 + b * 20_000 + i })
            .collect();
        let schema = e.query("SELECT x FROM s LIMIT 0").await.unwrap();
        let schema = schema.first().map(|b| b.schema()).unwrap_or_else(|| {
            std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                datafusion::arrow::datatypes::Field::new(
                    "x",
                    datafusion::arrow::datatypes::DataType::Int64,
                    true,
                ),
            ]))
        });
        let batch =
            RecordBatch::try_new(schema, vec![std::sync::Arc::new(Int64Array::from(values))])
                .unwrap();
        e.append("s", batch).await.unwrap();
    }
    e.execute("CREATE STREAM d AS SELECT unlucky(x) AS y FROM s").await.unwrap();
    let err = e.wait_for_jobs().await.unwrap_err();
    assert!(err.to_string().contains("job d failed") && err.to_string().contains("13 is unlucky"));
    let out = e.execute("SHOW JOBS").await.unwrap();
    let Output::Rows { batches, .. } = &out[0] else { panic!() };
    let t = table(batches);
    assert!(t.contains("failed") && t.contains("13 is unlucky"), "{t}");
    // Output stops before the failed piece's batches (pieces take 32 Ki rows: two batches), in
    // order, with nothing after them.
    let rows = e.query("SELECT count(*) AS n, max(y) AS top FROM d").await.unwrap();
    let t = table(&rows);
    assert!(t.contains("| 80000 | 80999 |"), "{t}");
    e.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_pipeline_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sql = std::fs::read_to_string(root.join("queries/examples/bids.sql")).unwrap();
    let sql = sql.replace("'queries/", &format!("'{}/queries/", root.display()));
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).await.unwrap();
    let outs = e.execute(&sql).await.unwrap();
    assert_eq!(outs.len(), 19);
    let Output::Rows { batches, .. } = &outs[12] else { panic!("{:?}", outs[12]) };
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    // The view: one row per auction, the inserted bid's auction 1004 among them.
    let Output::Rows { batches, .. } = &outs[13] else { panic!("{:?}", outs[13]) };
    let rows = kappa::datafusion::arrow::util::pretty::pretty_format_batches(batches).unwrap();
    assert!(rows.to_string().contains("| 1004    | "), "{rows}");
    // The lookup join: every bid (the file's 8 and the inserted one) with its item.
    let Output::Rows { batches, .. } = &outs[14] else { panic!("{:?}", outs[14]) };
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 9);
    let rows = kappa::datafusion::arrow::util::pretty::pretty_format_batches(batches).unwrap();
    assert!(rows.to_string().contains("| 1004    | Bike  | 9000  |"), "{rows}");
    e.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_located_and_categorized() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).await.unwrap();
    let err = e.execute("CREATE STREAM s (a INT);\nSELECT b\n  FROM s").await.unwrap_err();
    assert_eq!(err.category(), "plan");
    assert_eq!(err.location().map(|l| (l.line, l.column)), Some((2, 8)), "{err}");
    let err = e.execute("SELEC 1").await.unwrap_err();
    assert_eq!(err.category(), "syntax");
    let err = e.execute("CREATE MATERIALIZED VIEW v AS SELECT 1").await.unwrap_err();
    assert_eq!(err.category(), "not supported");
    e.close().await.unwrap();
    let err = e.execute("SELECT 1").await.unwrap_err();
    assert_eq!(err.category(), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_query_is_listed_as_a_job_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).await.unwrap();
    e.execute("CREATE STREAM s (x BIGINT)").await.unwrap();
    e.execute("INSERT INTO s VALUES (1), (2), (3)").await.unwrap();
    let mut sub = e.subscribe("SELECT x FROM s WHERE x > 1 EMIT CHANGES").await.unwrap();
    assert!(!sub.ends(), "no LIMIT and an open input: it runs until dropped");
    let mut rows = 0;
    while rows < 2 {
        rows += sub.next().await.unwrap().unwrap().num_rows();
    }
    let jobs = |e: &Engine| {
        let e = e.clone();
        async move {
            let out = e.execute("SHOW JOBS").await.unwrap();
            let Output::Rows { batches, .. } = &out[0] else { panic!() };
            table(batches)
        }
    };
    let t = jobs(&e).await;
    assert!(
        t.contains("push-1")
            && t.contains("push query")
            && t.contains("| 3       | 2        | 0        |"),
        "{t}"
    );
    drop(sub);
    // Dropping it cancels the query: it leaves the list.
    let mut gone = false;
    for _ in 0..100 {
        if !jobs(&e).await.contains("push-1") {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(gone, "{}", jobs(&e).await);
    let limited = e.subscribe("SELECT x FROM s EMIT CHANGES LIMIT 1").await.unwrap();
    assert!(limited.ends());
    e.close().await.unwrap();
}
