//! Engine throughput beside DataFusion on the same data in the same run:
//! - `COPY s FROM` a CSV and a Parquet file, beside DataFusion reading the file into memory;
//! - a stateless job (`CREATE STREAM d AS SELECT ... WHERE ...`) catching up with a loaded
//!   stream, beside DataFusion running the same SELECT over the same rows in memory;
//! - the Nexmark generator on one core (all events, and the bids alone).
//!
//! Run: `KAPPA_BENCH_DIR=/path cargo bench -p kappa --bench engine [-- copy|stateless|generator]`
//! (`KAPPA_BENCH_ROWS` rows for COPY, default 1,000,000; `KAPPA_BENCH_JOB_ROWS` for the job,
//! default 4,000,000; `KAPPA_BENCH_ROUNDS` pairs, default 15).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionContext};
use kappa::Engine;

const DDL: &str = "CREATE STREAM bids (auction BIGINT NOT NULL, bidder BIGINT, price BIGINT, \
                   channel VARCHAR, ts TIMESTAMP(3)) WITH (durability = 'relaxed')";
const QUERY: &str = "SELECT auction, price * 100 AS cents, upper(channel) AS channel, ts \
                     FROM bids WHERE price > 500 AND channel <> 'app'";

fn rows() -> usize {
    std::env::var("KAPPA_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

fn root() -> PathBuf {
    let r = std::env::var_os("KAPPA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("kappa-bench"))
        .join("engine");
    std::fs::create_dir_all(&r).unwrap();
    r
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, false),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

fn batches(n: usize) -> Vec<RecordBatch> {
    let channels = ["web", "app", "partner", "mobile"];
    (0..n)
        .step_by(8192)
        .map(|start| {
            let ids: Vec<i64> = (start as i64..(start + 8192).min(n) as i64).collect();
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(
                        ids.iter().map(|i| 1000 + i % 5000).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(
                        ids.iter().map(|i| i * 7 % 100_000).collect::<Vec<_>>(),
                    )),
                    Arc::new(Int64Array::from(
                        ids.iter().map(|i| i * 31 % 1000).collect::<Vec<_>>(),
                    )),
                    Arc::new(StringArray::from(
                        ids.iter().map(|i| channels[(*i % 4) as usize]).collect::<Vec<_>>(),
                    )),
                    Arc::new(TimestampMillisecondArray::from(
                        ids.iter().map(|i| 1_767_225_600_000 + i * 10).collect::<Vec<_>>(),
                    )),
                ],
            )
            .unwrap()
        })
        .collect()
}

fn write_files(data: &[RecordBatch]) -> (PathBuf, PathBuf) {
    let dir = root();
    let csv = dir.join("bids.csv");
    let parquet = dir.join("bids.parquet");
    let mut w = datafusion::arrow::csv::Writer::new(std::fs::File::create(&csv).unwrap());
    for b in data {
        w.write(b).unwrap();
    }
    let mut p = datafusion::parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        schema(),
        None,
    )
    .unwrap();
    for b in data {
        p.write(b).unwrap();
    }
    p.close().unwrap();
    (csv, parquet)
}

fn fresh(name: &str) -> PathBuf {
    let d = root().join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn bench(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = rows();
    let data = batches(n);
    let (csv, parquet) = write_files(&data);
    for (label, path) in [("csv", &csv), ("parquet", &parquet)] {
        let bytes = std::fs::metadata(path).unwrap().len();
        let mut g = c.benchmark_group(format!("copy_from/{label}"));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(20));
        g.throughput(Throughput::Elements(n as u64));
        eprintln!("copy_from/{label}: {n} rows, {bytes} bytes");
        g.bench_function("kappa_copy", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = fresh("copy");
                    total += rt.block_on(async {
                        let e = Engine::open(&dir).await.unwrap();
                        e.execute(DDL).await.unwrap();
                        let start = Instant::now();
                        e.execute(&format!("COPY bids FROM '{}'", path.display())).await.unwrap();
                        let t = start.elapsed();
                        e.close().await.unwrap();
                        t
                    });
                }
                total
            })
        });
        g.bench_function("datafusion_read_into_memory", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(async {
                        let ctx = SessionContext::new();
                        let start = Instant::now();
                        let df = match label {
                            "csv" => ctx
                                .read_csv(
                                    path.to_str().unwrap(),
                                    CsvReadOptions::new().schema(&schema()),
                                )
                                .await
                                .unwrap(),
                            _ => ctx
                                .read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
                                .await
                                .unwrap(),
                        };
                        let got = df.collect().await.unwrap();
                        assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), n);
                        start.elapsed()
                    });
                }
                total
            })
        });
        g.finish();
    }
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A stateless job catching up with a loaded stream, beside DataFusion batch running the same
/// SELECT over the same rows in memory, measured in pairs (one of each, alternately), so that
/// the drift of a shared machine hits both sides alike; prints the medians and the median of
/// the per-pair ratios.
fn stateless_job() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let n = std::env::var("KAPPA_BENCH_JOB_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000);
    let rounds: usize =
        std::env::var("KAPPA_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let data = batches(n);
    let dir = fresh("job");
    let engine = rt.block_on(async {
        let e = Engine::open(&dir).await.unwrap();
        e.execute(DDL).await.unwrap();
        e.execute(&DDL.replace("bids", "empty_bids")).await.unwrap();
        for b in &data {
            e.append("bids", b.clone()).await.unwrap();
        }
        e
    });
    let mut k = 0;
    // From creating a derived stream (durable, the default) over `query` until its job has
    // caught up.
    let mut job = |with: &str, query: &str| {
        k += 1;
        rt.block_on(async {
            let start = Instant::now();
            engine.execute(&format!("CREATE STREAM d{k} {with} AS {query}")).await.unwrap();
            engine.wait_for_jobs().await.unwrap();
            let t = start.elapsed();
            engine.execute(&format!("DROP STREAM d{k}")).await.unwrap();
            t.as_secs_f64() * 1e3
        })
    };
    let datafusion = || {
        rt.block_on(async {
            let ctx = SessionContext::new();
            let table = MemTable::try_new(schema(), vec![data.clone()]).unwrap();
            ctx.register_table("bids", Arc::new(table)).unwrap();
            let start = Instant::now();
            let out = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
            let t = start.elapsed();
            assert!(out.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
            t.as_secs_f64() * 1e3
        })
    };
    // The fixed cost inside the job's figure: creating the derived stream and its job
    // (metadata and catalog fsyncs) and its first progress record, over an empty input.
    let over_empty = QUERY.replace("FROM bids", "FROM empty_bids");
    // The same job with a relaxed output: its appends are not synced group by group; the
    // output is synced when the job records its progress (at least once a second, and at the
    // end), so exactly-once still holds.
    let relaxed = "WITH (durability = 'relaxed')";
    let (mut kappa, mut df, mut ratio, mut fixed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut kappa_relaxed = Vec::new();
    for r in 0..rounds + 3 {
        let (tk, td, te) = (job("", QUERY), datafusion(), job("", &over_empty));
        let tr = job(relaxed, QUERY);
        if r >= 3 {
            kappa.push(tk);
            df.push(td);
            ratio.push(td / tk);
            fixed.push(te);
            kappa_relaxed.push(tr);
        }
    }
    let (tk, td, te) = (median(&mut kappa), median(&mut df), median(&mut fixed));
    let tr = median(&mut kappa_relaxed);
    let mr = median(&mut ratio);
    let rate = |ms: f64| n as f64 / ms / 1e3;
    println!("stateless_job: {n} rows, {rounds} pairs (after 3 warm-up pairs), medians:");
    println!(
        "  kappa derived stream, creation to caught up: {tk:8.2} ms {:7.2} M rows/s",
        rate(tk)
    );
    println!("  of which fixed cost (over an empty input):    {te:8.2} ms");
    println!(
        "  kappa, the same with a relaxed output:        {tr:8.2} ms {:7.2} M rows/s",
        rate(tr)
    );
    println!(
        "  datafusion batch, same select in memory:     {td:8.2} ms {:7.2} M rows/s",
        rate(td)
    );
    println!(
        "  ratio kappa/datafusion throughput: median {:.0}% (pairs {:.0}%..{:.0}%); without the fixed cost {:.0}%",
        mr * 100.0,
        ratio[0] * 100.0,
        ratio[ratio.len() - 1] * 100.0,
        td / (tk - te) * 100.0
    );
    rt.block_on(engine.close()).unwrap();
}

/// The Nexmark generator on one core: events (and bids) per second, in chunks of 10,000 events
/// as a source would make them.
fn nexmark_generator(c: &mut Criterion) {
    use kappa::nexmark::{Generator, NexmarkConfig};
    let events = 1_000_000u64;
    let g = Generator::new(NexmarkConfig { events, rate: 10_000_000 }).unwrap();
    let mut group = c.benchmark_group("nexmark_generator");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function("1M events, one core", |b| {
        b.iter(|| {
            let mut bids = 0;
            for from in (0..events).step_by(10_000) {
                bids += g.events(from, from + 10_000).unwrap().bid.num_rows();
            }
            assert_eq!(bids, 920_000);
        })
    });
    group.throughput(Throughput::Elements(920_000));
    group.bench_function("the bids of 1M events, one core", |b| {
        b.iter(|| {
            let mut bids = 0;
            for from in (0..events).step_by(10_000) {
                bids += g.bids(from, from + 10_000).unwrap().num_rows();
            }
            assert_eq!(bids, 920_000);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_group!(generator, nexmark_generator);

fn main() {
    // `cargo bench -p kappa --bench engine [-- copy|stateless|generator]`
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter.as_deref().is_none_or(|f| "copy_from".contains(f) || f.contains("copy")) {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if filter.as_deref().is_none_or(|f| "nexmark_generator".contains(f)) {
        generator();
        Criterion::default().configure_from_args().final_summary();
    }
    if filter.as_deref().is_none_or(|f| "stateless_job".contains(f)) {
        stateless_job();
    }
}
