//! Append and read throughput of the log, each beside the physical limit measured in the same
//! run on the same disk: a plain `write` (+ `fdatasync`) loop of the same bytes, and a plain
//! `read` of the same files.
//!
//! Run: `cargo bench -p kappa-storage --bench log` (set `KAPPA_BENCH_DIR` to choose the disk;
//! default: a temporary directory under `target/`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kappa_storage::{Durability, ReadFrom, Store, StoreOptions, StreamOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// A batch of about `bytes` bytes of Arrow data: 64-byte rows (two i64 and a 44-byte string,
/// plus its 4-byte offset).
fn batch_of(bytes: usize) -> RecordBatch {
    let rows = (bytes / 64).max(1);
    let ids: Vec<i64> = (0..rows as i64).collect();
    let payload: Vec<String> = ids.iter().map(|i| format!("{:044}", i * 7919)).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int64Array::from(ids.iter().map(|i| i * 3).collect::<Vec<_>>())),
            Arc::new(StringArray::from(payload)),
        ],
    )
    .unwrap()
}

fn bench_root() -> PathBuf {
    let root = std::env::var_os("KAPPA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kappa-bench"));
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = bench_root().join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Bytes one frame of this batch takes on disk (what both the log and the raw loop write).
fn frame_bytes(batch: &RecordBatch) -> usize {
    let dir = fresh_dir("probe");
    let store = Store::open(&dir, StoreOptions::default()).unwrap();
    let s = store
        .create_stream(
            "p",
            schema(),
            StreamOptions { durability: Durability::Relaxed, ..Default::default() },
        )
        .unwrap();
    s.append(batch).unwrap();
    let bytes = s.info().bytes as usize;
    drop(s);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

fn append(c: &mut Criterion) {
    for (size, label) in SIZES {
        let batch = batch_of(size);
        let frame = frame_bytes(&batch);
        let mut g = c.benchmark_group(format!("append/{label}"));
        g.throughput(Throughput::Bytes(frame as u64));
        g.measurement_time(Duration::from_secs(4));
        g.warm_up_time(Duration::from_secs(1));
        for durability in [Durability::Relaxed, Durability::Durable] {
            let name = format!("{durability:?}").to_lowercase();
            let dir = fresh_dir(&format!("append-{label}-{name}"));
            let store = Store::open(&dir, StoreOptions::default()).unwrap();
            let s = store
                .create_stream("s", schema(), StreamOptions { durability, ..Default::default() })
                .unwrap();
            g.bench_function(BenchmarkId::new("kappa", &name), |b| {
                b.iter(|| s.append(&batch).unwrap())
            });
            drop(s);
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let bytes = vec![0x5au8; frame];
        for (name, sync) in [("raw_write", false), ("raw_write_fdatasync", true)] {
            let dir = fresh_dir(&format!("raw-{label}-{name}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut file_no = 0u64;
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{file_no:020}.raw")))
                .unwrap();
            let mut written = 0usize;
            g.bench_function(BenchmarkId::new(name, ""), |b| {
                b.iter(|| {
                    f.write_all(&bytes).unwrap();
                    if sync {
                        f.sync_data().unwrap();
                    }
                    written += bytes.len();
                    // Start a new file like a segment roll (and keep the old one, as the log
                    // does, so that its dirty pages are written back, not discarded).
                    if written >= 64 << 20 {
                        file_no += 1;
                        f = OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(dir.join(format!("{file_no:020}.raw")))
                            .unwrap();
                        written = 0;
                    }
                })
            });
            let _ = std::fs::remove_dir_all(&dir);
        }
        g.finish();
    }
}

fn read(c: &mut Criterion) {
    const TOTAL: usize = 256 << 20;
    for (size, label) in SIZES {
        let batch = batch_of(size);
        let dir = fresh_dir(&format!("read-{label}"));
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        let s = store
            .create_stream(
                "s",
                schema(),
                StreamOptions { durability: Durability::Relaxed, ..Default::default() },
            )
            .unwrap();
        while (s.info().bytes as usize) < TOTAL {
            s.append(&batch).unwrap();
        }
        s.seal().unwrap();
        // Small frames are merged in the background once segments close: read what a replay
        // reads once that is done.
        assert!(store.wait_for_compaction(Duration::from_secs(600)));
        eprintln!("read/{label}: {} segments compacted", s.info().compactions);
        let info = s.info();
        let bytes = info.bytes;
        let files: Vec<PathBuf> = std::fs::read_dir(s.dir().join("p0"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        drop(s);
        drop(store);
        // Reopen: all but the last segment are closed and mapped.
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        let s = store.stream("s").unwrap();
        let mut g = c.benchmark_group(format!("read/{label}"));
        g.throughput(Throughput::Bytes(bytes));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(6));
        g.bench_function("kappa_sealed_segments", |b| {
            b.iter(|| {
                let mut r = s.reader(ReadFrom::Earliest).unwrap();
                let mut rows = 0;
                while let Some(b) = r.next_batch().unwrap() {
                    rows += b.batch.num_rows();
                }
                rows
            })
        });
        let mut buf = vec![0u8; 1 << 20];
        g.bench_function("raw_read", |b| {
            b.iter(|| {
                let mut n = 0usize;
                for p in &files {
                    let mut f = std::fs::File::open(p).unwrap();
                    loop {
                        let k = f.read(&mut buf).unwrap();
                        if k == 0 {
                            break;
                        }
                        n += k;
                    }
                }
                n
            })
        });
        g.finish();
        drop(s);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Run `work(per)` on `threads` threads at once, `per` = `iters / threads` rounded up; the time
/// per append, as if exactly `iters` appends had been made.
fn concurrently(threads: usize, iters: u64, work: impl Fn(u64) + Sync) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| work(per));
        }
    });
    start.elapsed().mul_f64(iters as f64 / (per * threads as u64) as f64)
}

fn group_commit(c: &mut Criterion) {
    let batch = Arc::new(batch_of(1 << 10));
    let frame = frame_bytes(&batch);
    let mut g = c.benchmark_group("group_commit/1KiB");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(6));
    for threads in [8usize, 32] {
        let dir = fresh_dir("group-commit");
        let store = Store::open(&dir, StoreOptions::default()).unwrap();
        let s = store.create_stream("s", schema(), StreamOptions::default()).unwrap();
        g.bench_function(format!("kappa_durable_{threads}_appenders"), |b| {
            b.iter_custom(|iters| {
                concurrently(threads, iters, |per| {
                    for _ in 0..per {
                        s.append(&batch).unwrap();
                    }
                })
            })
        });
        // The same appenders, each keeping up to DEPTH appends in flight (`submit`, then
        // `wait` for the oldest), as a producer with pipelined requests does.
        const DEPTH: usize = 8;
        g.bench_function(format!("kappa_durable_{threads}_appenders_{DEPTH}_in_flight"), |b| {
            b.iter_custom(|iters| {
                concurrently(threads, iters, |per| {
                    let mut in_flight = std::collections::VecDeque::with_capacity(DEPTH);
                    for _ in 0..per {
                        if in_flight.len() == DEPTH {
                            let p: kappa_storage::PendingAppend = in_flight.pop_front().unwrap();
                            p.wait().unwrap();
                        }
                        in_flight.push_back(s.submit(&batch).unwrap());
                    }
                    for p in in_flight {
                        p.wait().unwrap();
                    }
                })
            })
        });
        let info = s.info();
        eprintln!(
            "group commit, {threads} appenders (both runs): {} appends shared {} syncs ({:.1} appends per sync)",
            info.appended_batches,
            info.syncs,
            info.appended_batches as f64 / info.syncs.max(1) as f64
        );
        drop(s);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let raw_dir = fresh_dir("group-commit-raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let mut f = OpenOptions::new().create(true).append(true).open(raw_dir.join("raw.log")).unwrap();
    let bytes = vec![0x5au8; frame];
    g.bench_function("raw_one_fdatasync_per_append", |b| {
        b.iter(|| {
            f.write_all(&bytes).unwrap();
            f.sync_data().unwrap();
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&raw_dir);
}

criterion_group!(benches, append, read, group_commit);
criterion_main!(benches);
