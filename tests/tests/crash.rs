//! kill -9: a child appends and prints each acknowledged batch; we kill it at random moments,
//! reopen, and check that every acknowledged row is present and identical and that no partial
//! batch is visible. `KAPPA_CRASH_CYCLES` sets the number of cycles (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use kappa_storage::{ReadFrom, Store, StoreOptions};
use kappa_tests::crash::{STREAMS, payload, rows_of};
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    base: u64,
    rows: u64,
    tag: i64,
}

fn parse(line: &str) -> Option<(String, Ack)> {
    let mut it = line.split(' ');
    if it.next()? != "ack" {
        return None;
    }
    let stream = it.next()?.to_string();
    let base = it.next()?.parse().ok()?;
    let rows = it.next()?.parse().ok()?;
    let tag = it.next()?.parse().ok()?;
    Some((stream, Ack { base, rows, tag }))
}

/// Every appended batch of the log, whole, as (offset, tag, rows). Compaction may have merged
/// appended batches into larger ones: an appended batch starts where its `row` column is 0.
fn scan(store: &Store, name: &str) -> Vec<(u64, i64, u64)> {
    let s = store.stream(name).unwrap();
    let mut r = s.reader(ReadFrom::Earliest).unwrap();
    let mut out = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        let rows = b.batch.column(1).as_primitive::<Int64Type>();
        assert_eq!(rows.value(0), 0, "a read batch starts inside an appended batch");
        let mut start = 0;
        for i in 1..=b.batch.num_rows() {
            if i == b.batch.num_rows() || rows.value(i) == 0 {
                let appended = b.batch.slice(start, i - start);
                let tag = check_batch(&appended);
                out.push((b.offset + start as u64, tag, appended.num_rows() as u64));
                start = i;
            }
        }
    }
    out
}

/// Check one appended batch: whole, every row as the appender made it. Returns its tag.
fn check_batch(batch: &RecordBatch) -> i64 {
    let tags = batch.column(0).as_primitive::<Int64Type>();
    let rows = batch.column(1).as_primitive::<Int64Type>();
    let payloads = batch.column(2).as_string::<i32>();
    let tag = tags.value(0);
    assert_eq!(batch.num_rows(), rows_of(tag), "batch {tag} is partial");
    for i in 0..batch.num_rows() {
        assert_eq!(tags.value(i), tag);
        assert_eq!(rows.value(i), i as i64);
        assert_eq!(payloads.value(i), payload(tag, i as i64));
    }
    tag
}

#[test]
fn kill_9_loses_no_acknowledged_row_and_shows_no_partial_batch() {
    let cycles: usize =
        std::env::var("KAPPA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("KAPPA_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(2026),
    );
    let mut acked: HashMap<String, Vec<Ack>> = HashMap::new();
    let mut total_acks = 0usize;
    for cycle in 0..cycles {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kappa-crash-appender"))
            .arg(dir.path())
            .arg("4")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => lines.push(l),
                    Err(_) => break,
                }
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(30..400)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(!status.success(), "cycle {cycle}: the child ended by itself: {status:?}");
        let lines = reader.join().unwrap();
        for line in &lines {
            // A line cut by the kill is simply not an acknowledgement we saw.
            if let Some((stream, ack)) = parse(line) {
                acked.entry(stream).or_default().push(ack);
                total_acks += 1;
            }
        }
        let store = Store::open(dir.path(), StoreOptions::default())
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen failed: {e}"));
        for (name, _) in STREAMS {
            let Ok(_) = store.stream(name) else {
                assert!(!acked.contains_key(name), "cycle {cycle}: stream {name} lost");
                continue;
            };
            let batches = scan(&store, name);
            // Offsets are contiguous: no gap, no overlap.
            let mut next = 0;
            for (off, _, rows) in &batches {
                assert_eq!(*off, next, "cycle {cycle}: {name} has a gap");
                next += rows;
            }
            let by_offset: HashMap<u64, (i64, u64)> =
                batches.iter().map(|(o, t, r)| (*o, (*t, *r))).collect();
            for ack in acked.get(name).map(|v| v.as_slice()).unwrap_or(&[]) {
                assert_eq!(
                    by_offset.get(&ack.base),
                    Some(&(ack.tag, ack.rows)),
                    "cycle {cycle}: acknowledged batch {ack:?} of {name} is missing or changed"
                );
            }
        }
        drop(store);
    }
    eprintln!("kill -9: {cycles} cycles, {total_acks} acknowledged batches checked");
    assert!(
        total_acks > cycles,
        "the child acknowledged too little to test anything: {total_acks}"
    );
}
