//! A rebuild under kill -9: a child process runs a view and a derived stream over Nexmark bids
//! filled in real time, and at each start replaces both queries (the same query stamped with
//! the run's number); it is killed with SIGKILL at random moments, `KAPPA_CRASH_CYCLES` times
//! (default 12), before, during and after the switches. Then the engine is opened once more,
//! the source finishes, the rebuilds under way switch, and each name must serve one version,
//! whole: every row of the view and of the stream carries the same version, and they equal
//! the batch answers over all the bids; so does a view over the stream, rebuilt with it (a
//! cascade), of the version the stream serves; no log is left but the catalog's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use kappa::Engine;
use kappa_tests::crash::run_and_kill;
use rand::{Rng, SeedableRng};

fn rows(batches: &[arrow::array::RecordBatch]) -> Vec<String> {
    let mut r = kappa_tests::slt::format_rows(batches).unwrap();
    r.sort();
    r
}

/// Run `command`, and kill it `ms` milliseconds after it printed lines starting with `line`
/// or `or` `times` times (or when it ends its output); returns what it printed.
fn kill_after(
    command: &mut Command,
    line: &str,
    or: &str,
    times: usize,
    ms: u64,
) -> anyhow::Result<Vec<String>> {
    use std::io::BufRead;
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no standard output"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let mut seen = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen < times && std::time::Instant::now() < deadline {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(l) => {
                seen += usize::from(l.starts_with(line) || l.starts_with(or));
                printed.push(l);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(ms));
    child.kill()?;
    child.wait()?;
    let _ = reader.join();
    printed.extend(rx.try_iter());
    Ok(printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_rebuild_leaves_one_version_serving() {
    let cycles: usize =
        std::env::var("KAPPA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed = std::env::var("KAPPA_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let rate = 20_000u64;
    let events = (cycles as u64 * rate * 2 / 5).max(rate);
    let (mut replaced, mut resumed, mut killed_during) = (0, 0, 0);
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa-crash-rebuild"));
        child
            .args([
                dir.path().to_str().unwrap(),
                &events.to_string(),
                &rate.to_string(),
                &(cycle + 1).to_string(),
            ])
            .stderr(Stdio::inherit());
        // Killed early now and then; else a moment after it replaced the queries, often
        // before the switch (which takes a few hundred milliseconds).
        let printed = if rng.random_range(0..4) == 0 {
            run_and_kill(&mut child, rng.random_range(50..400))
        } else {
            kill_after(&mut child, "replaced", "not replaced", 2, rng.random_range(0..400))
        }
        .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        replaced += printed.iter().filter(|l| *l == "replaced").count();
        if printed.iter().any(|l| l.starts_with("not replaced")) {
            resumed += 1;
        }
        if printed.iter().any(|l| l == "ready")
            && !printed.iter().any(|l| l.starts_with("switched"))
        {
            killed_during += 1;
        }
        eprintln!("cycle {cycle}: {printed:?}");
    }
    assert!(replaced >= cycles / 2, "only {replaced} replacements in {cycles} runs");
    // Some kills came while a rebuild ran, and a later run found it resumed.
    eprintln!("{killed_during} runs killed during a rebuild, {resumed} found one under way");
    assert!(
        killed_during > 0 && resumed > 0,
        "{killed_during} kills during a rebuild, {resumed} resumed"
    );
    let engine = Engine::open(dir.path()).await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    for (name, query) in [
        ("per_auction", "SELECT auction, count(*), max(price) FROM bid GROUP BY auction"),
        ("cheap", "SELECT auction, price FROM bid WHERE price % 3 = 0"),
    ] {
        let versions =
            rows(&engine.query(&format!("SELECT DISTINCT version FROM {name}")).await.unwrap());
        assert_eq!(versions.len(), 1, "{name} serves one version: {versions:?}");
        eprintln!("{name}: version {versions:?} after {replaced} replacements");
        let columns = if name == "cheap" { "auction, price" } else { "auction, n, hi" };
        let got = rows(&engine.query(&format!("SELECT {columns} FROM {name}")).await.unwrap());
        let expected = rows(&engine.query(query).await.unwrap());
        assert!(!expected.is_empty());
        assert!(
            got == expected,
            "{name} (version {versions:?}): {} rows, {} expected",
            got.len(),
            expected.len()
        );
    }
    // The view over the stream, rebuilt with it: of one version of it, whole.
    let versions =
        rows(&engine.query("SELECT DISTINCT low, version FROM cheap_per_auction").await.unwrap());
    let cheap = rows(&engine.query("SELECT DISTINCT version FROM cheap").await.unwrap());
    assert_eq!(versions.len(), 1, "cheap_per_auction reads one version: {versions:?}");
    assert_eq!(versions[0], format!("{} {}", cheap[0], cheap[0]), "the version cheap serves");
    assert_eq!(
        rows(&engine.query("SELECT auction, n FROM cheap_per_auction").await.unwrap()),
        rows(
            &engine
                .query("SELECT auction, count(*) FROM bid WHERE price % 3 = 0 GROUP BY auction")
                .await
                .unwrap()
        )
    );
    // Only the catalog's logs are left (the last switch's old logs go after a grace period).
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let jobs = rows(&engine.query("SHOW JOBS").await.unwrap());
    assert!(jobs.iter().all(|j| !j.contains("__v")), "no rebuild is left: {jobs:?}");
    let mut logs: Vec<String> = std::fs::read_dir(dir.path().join("streams"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    logs.sort();
    assert_eq!(logs.len(), 4, "bid, the views' and the stream's logs: {logs:?}");
    engine.close().await.unwrap();
}
