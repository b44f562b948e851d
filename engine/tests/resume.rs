//! A job that fails inside a running engine stops with its error in `SHOW JOBS`, the engine
//! goes on, and `RESUME JOB` restarts it from its last checkpoint once the cause is fixed: here
//! a user function that failed on a row, registered again fixed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use kappa::datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use kappa::datafusion::arrow::datatypes::{DataType, Int64Type};
use kappa::datafusion::common::DataFusionError;
use kappa::datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use kappa::{Engine, Output};

/// `checked(x)`: `x`, or an error for `x = 13` while `broken`.
fn checked(broken: bool) -> ScalarUDF {
    let fun = Arc::new(move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let a = arrays[0].as_primitive::<Int64Type>();
        if broken && a.iter().any(|v| v == Some(13)) {
            return Err(DataFusionError::Execution("checked: 13 is unlucky".into()));
        }
        Ok(ColumnarValue::Array(Arc::new(a.clone()) as ArrayRef))
    });
    create_udf("checked", vec![DataType::Int64], DataType::Int64, Volatility::Immutable, fun)
}

/// The job's state and error in `SHOW JOBS`.
async fn job(engine: &Engine) -> (String, Option<String>) {
    let out = engine.execute("SHOW JOBS").await.unwrap();
    let Some(Output::Rows { batches, .. }) = out.into_iter().next() else { panic!("no rows") };
    let b = &batches[0];
    let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).as_string::<i32>().clone();
    let (state, error) = (col("state"), col("error"));
    (state.value(0).to_string(), (!error.is_null(0)).then(|| error.value(0).to_string()))
}

fn values(batches: &[kappa::datafusion::arrow::array::RecordBatch]) -> Vec<i64> {
    let mut v: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_resumes_from_its_checkpoint_once_the_cause_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine.register_udf(checked(true));
    engine
        .execute("CREATE STREAM s (a BIGINT); CREATE STREAM d AS SELECT checked(a) AS b FROM s")
        .await
        .unwrap();
    engine.execute("INSERT INTO s VALUES (1), (2)").await.unwrap();
    assert_eq!(values(&engine.query("SELECT b FROM d").await.unwrap()), [1, 2]);
    engine.execute("INSERT INTO s VALUES (13), (14)").await.unwrap();
    let mut state = job(&engine).await;
    for _ in 0..500 {
        if state.0 == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        state = job(&engine).await;
    }
    assert_eq!(state.0, "failed");
    assert!(state.1.as_deref().unwrap_or("").contains("13 is unlucky"), "{state:?}");
    // Still failing: RESUME JOB says why and the job stays failed.
    let err = engine.execute("RESUME JOB d").await.err();
    assert!(err.is_none(), "the restart itself succeeds: {err:?}");
    for _ in 0..500 {
        if job(&engine).await.0 == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(job(&engine).await.0, "failed");
    // The engine goes on meanwhile.
    engine.execute("INSERT INTO s VALUES (15)").await.unwrap();
    // Fixed: the job resumes from its checkpoint, and each row is in its output once.
    engine.register_udf(checked(false));
    engine.execute("RESUME JOB d").await.unwrap();
    assert_eq!(values(&engine.query("SELECT b FROM d").await.unwrap()), [1, 2, 13, 14, 15]);
    assert_eq!(job(&engine).await, ("running".to_string(), None));
    engine.close().await.unwrap();
}
