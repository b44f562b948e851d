//! Fault injection during checkpoints: for every N, the Nth write (failed or torn) or the Nth
//! sync after the jobs have processed their input fails while they take a checkpoint (a
//! windowed aggregation's state files, manifests, the commits of its output and late stream;
//! a stateless job's manifest and commit). The engine is then closed and opened again on a
//! healthy disk, a job that failed is resumed (`RESUME JOB`), more rows arrive, the input is
//! sealed, and both outputs must equal the batch answer over all the rows. And a torn or
//! missing newest manifest: the jobs go on from the checkpoint before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use kappa::storage::{Fault, FaultyIo, Io, StoreOptions};
use kappa::{Engine, EngineOptions, Output};

fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut out = kappa_tests::slt::format_rows(batches).unwrap();
    out.sort();
    out
}

/// `INSERT` of rows `from..to`: three keys, 700 ms apart.
fn insert(from: i64, to: i64) -> String {
    let values: Vec<String> = (from..to)
        .map(|i| {
            format!(
                "({}, {i}, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL '{}' MILLISECOND)",
                i % 3,
                i * 700
            )
        })
        .collect();
    format!("INSERT INTO input VALUES {}", values.join(", "))
}

/// The input and the two jobs: a windowed aggregation and a stateless job.
const DDL: &str = "SET checkpoint_interval = 'off';
     CREATE STREAM input (k BIGINT, v BIGINT, ts TIMESTAMP(3),
                          WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
     CREATE STREAM sums AS
       SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
       FROM TUMBLE(input, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end;
     CREATE STREAM doubled AS SELECT k, v * 2 AS v2 FROM input";

/// Both outputs equal the batch answer over the input, and no row was late.
async fn check(engine: &Engine, what: &str) {
    let got = rows(&engine.query("SELECT * FROM sums").await.unwrap());
    let expected = rows(
        &engine
            .query(
                "SELECT k, window_start, window_end, count(*) AS n, sum(v) AS s
                 FROM TUMBLE(input, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end",
            )
            .await
            .unwrap(),
    );
    assert_eq!(got, expected, "{what}: the windowed aggregation");
    let got = rows(&engine.query("SELECT * FROM doubled").await.unwrap());
    let expected = rows(&engine.query("SELECT k, v * 2 AS v2 FROM input").await.unwrap());
    assert_eq!(got, expected, "{what}: the stateless job");
    assert_eq!(rows(&engine.query("SELECT count(*) FROM sums__late").await.unwrap()), ["0"]);
}

/// Jobs by state, from `SHOW JOBS`.
async fn job_states(engine: &Engine) -> Vec<(String, String, u64)> {
    let out = engine.execute("SHOW JOBS").await.unwrap();
    let Some(Output::Rows { batches, .. }) = out.into_iter().next() else { panic!("no rows") };
    let mut jobs = Vec::new();
    for b in &batches {
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let (names, states, lag) = (col("name"), col("state"), col("lag_rows"));
        for r in 0..b.num_rows() {
            jobs.push((
                names.as_string::<i32>().value(r).to_string(),
                states.as_string::<i32>().value(r).to_string(),
                lag.as_primitive::<arrow::datatypes::UInt64Type>().value(r),
            ));
        }
    }
    jobs
}

/// One run: the fault armed once both jobs have processed the second rows.
async fn run(fault: Fault) -> (bool, usize) {
    let dir = tempfile::tempdir().unwrap();
    let io = Arc::new(FaultyIo::new(Fault::None, false));
    let options = EngineOptions {
        store: StoreOptions { io: Arc::clone(&io) as Arc<dyn Io> },
        ..Default::default()
    };
    let engine = Engine::open_with(dir.path(), options).await.unwrap();
    engine.execute(DDL).await.unwrap();
    engine.execute(&insert(0, 40)).await.unwrap();
    // A snapshot query asks both jobs for a checkpoint.
    engine.query("SELECT count(*) FROM sums").await.unwrap();
    engine.query("SELECT count(*) FROM doubled").await.unwrap();
    engine.execute(&insert(40, 80)).await.unwrap();
    // Processed (not checkpointed: nobody asks, no interval).
    while job_states(&engine).await.iter().any(|j| j.2 > 0) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    io.arm(match fault {
        Fault::FailWrite(n) => Fault::FailWrite(io.writes() + n),
        Fault::TearWrite(n) => Fault::TearWrite(io.writes() + n),
        Fault::FailSync(n) => Fault::FailSync(io.syncs() + n),
        Fault::None => Fault::None,
    });
    let _ = engine.query("SELECT count(*) FROM sums").await;
    let _ = engine.query("SELECT count(*) FROM doubled").await;
    let _ = engine.close().await;
    let tripped = io.tripped();
    drop(engine);
    // Again, on a healthy disk.
    let engine = Engine::open(dir.path()).await.unwrap();
    let mut resumed = 0;
    for (name, state, _) in job_states(&engine).await {
        if state == "failed" {
            engine.execute(&format!("RESUME JOB {name}")).await.unwrap();
            resumed += 1;
        }
    }
    // Before any new row: the stateless job's output is whole (a checkpoint whose commit
    // failed is committed by the restart).
    let got = rows(&engine.query("SELECT * FROM doubled").await.unwrap());
    let expected = rows(&engine.query("SELECT k, v * 2 AS v2 FROM input").await.unwrap());
    assert_eq!(got, expected, "{fault:?}: the stateless job after the restart");
    engine.execute(&insert(80, 120)).await.unwrap();
    engine.execute("SEAL STREAM input").await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    check(&engine, &format!("{fault:?}")).await;
    engine.close().await.unwrap();
    (tripped, resumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_during_a_checkpoint_leaves_jobs_that_recover() {
    let (mut runs, mut resumed) = (0, 0);
    for kind in 0..3 {
        // Every N until the checkpoints complete before the Nth operation.
        for n in 1.. {
            let fault = match kind {
                0 => Fault::FailWrite(n),
                1 => Fault::TearWrite(n),
                _ => Fault::FailSync(n),
            };
            runs += 1;
            let (tripped, r) = run(fault).await;
            resumed += r;
            if !tripped {
                assert!(n > 2, "{fault:?}: the checkpoints wrote almost nothing");
                break;
            }
            assert!(n < 200, "the checkpoints never complete");
        }
    }
    // Most faults fail a job (its checkpoint at a reader's request or at the close).
    assert!(resumed > runs / 2, "{resumed} jobs resumed in {runs} runs");
    eprintln!("checkpoint faults: {runs} runs, {resumed} failed jobs resumed");
}

/// The newest manifest of every job, in the data directory's metadata folder.
fn newest_manifests(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut by_job: std::collections::BTreeMap<String, std::path::PathBuf> = Default::default();
    for entry in std::fs::read_dir(dir.join("meta")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if let Some(rest) = name.strip_prefix("ckpt-")
            && name.ends_with(".manifest")
        {
            let job = rest.split('-').next().unwrap().to_string();
            let newer = by_job.get(&job).is_none_or(|p| *p < path);
            if newer {
                by_job.insert(job, path);
            }
        }
    }
    by_job.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_missing_manifest_falls_back_to_the_previous_checkpoint() {
    for damage in ["torn", "missing"] {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).await.unwrap();
        engine.execute(DDL).await.unwrap();
        // Two checkpoints of each job, windows closed between them.
        for (from, to) in [(0, 40), (40, 80)] {
            engine.execute(&insert(from, to)).await.unwrap();
            engine.query("SELECT count(*) FROM sums").await.unwrap();
            engine.query("SELECT count(*) FROM doubled").await.unwrap();
        }
        let before = rows(&engine.query("SELECT * FROM sums").await.unwrap());
        engine.close().await.unwrap();
        drop(engine);
        let newest = newest_manifests(dir.path());
        assert_eq!(newest.len(), 2, "{newest:?}");
        for m in &newest {
            assert!(m.to_string_lossy().ends_with("00000000000000000002.manifest"), "{m:?}");
            match damage {
                "torn" => {
                    let bytes = std::fs::read(m).unwrap();
                    std::fs::write(m, &bytes[..bytes.len() / 2]).unwrap();
                }
                _ => std::fs::remove_file(m).unwrap(),
            }
        }
        // Both jobs go on from their first checkpoints: what was committed after it stays
        // (it may have been read), and is not written again.
        let engine = Engine::open(dir.path()).await.unwrap();
        assert_eq!(rows(&engine.query("SELECT * FROM sums").await.unwrap()), before, "{damage}");
        engine.execute(&insert(80, 120)).await.unwrap();
        engine.execute("SEAL STREAM input").await.unwrap();
        engine.wait_for_jobs().await.unwrap();
        check(&engine, damage).await;
        engine.close().await.unwrap();
    }
}
