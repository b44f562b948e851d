//! A job's worker threads start with its work and exit when the job has none for a while, or
//! when it stops. (A test binary of its own: it counts this process's threads.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use datafusion::arrow::util::pretty::pretty_format_batches;
use kappa::Engine;

/// Threads of this process named for a worker of job `job`.
fn workers(job: &str) -> usize {
    let prefix = format!("kappa-job-{job}-");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(&prefix))
        .count()
}

/// Wait up to `limit` for job `job` to have no worker thread; how long it took.
async fn until_no_workers(job: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if workers(job) == 0 {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_start_with_work_and_exit_when_idle_or_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).await.unwrap();
    e.execute("CREATE STREAM s (x BIGINT)").await.unwrap();
    e.execute("CREATE STREAM d AS SELECT x * 2 AS y FROM s").await.unwrap();
    e.wait_for_jobs().await.unwrap();
    assert_eq!(workers("d"), 0, "no work yet, no worker");
    e.execute("INSERT INTO s VALUES (1), (2), (3)").await.unwrap();
    e.wait_for_jobs().await.unwrap();
    assert!(workers("d") >= 1, "a worker computed the rows and waits for more");
    // Idle for two seconds, the workers exit; the job keeps running.
    assert!(until_no_workers("d", Duration::from_secs(10)).await.is_some());
    e.execute("INSERT INTO s VALUES (4)").await.unwrap();
    e.wait_for_jobs().await.unwrap();
    let rows = e.query("SELECT sum(y) AS total FROM d").await.unwrap();
    let t = pretty_format_batches(&rows).unwrap().to_string();
    assert!(t.contains("| 20    |"), "{t}");
    assert!(workers("d") >= 1, "a worker started again for the new row");
    // Stopping the job stops its workers at once (well before they would idle out).
    e.execute("DROP STREAM d").await.unwrap();
    let gone = until_no_workers("d", Duration::from_millis(1500)).await;
    assert!(gone.is_some(), "the workers of a dropped job exit");
    e.close().await.unwrap();
}
