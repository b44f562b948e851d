//! Engine throughput beside DataFusion on the same data in the same run:
//! - `COPY s FROM` a CSV and a Parquet file, beside DataFusion reading the file into memory;
//! - a stateless job (`CREATE STREAM d AS SELECT ... WHERE ...`) catching up with a loaded
//!   stream, beside DataFusion running the same SELECT over the same rows in memory.
//!
//! Run: `KAPPA_BENCH_DIR=/path cargo bench -p kappa --bench engine` (`KAPPA_BENCH_ROWS` rows,
//! default 1,000,000).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

    // A stateless job over a loaded stream, beside DataFusion batch over the same rows.
    let dir = fresh("job");
    let engine = rt.block_on(async {
        let e = Engine::open(&dir).await.unwrap();
        e.execute(DDL).await.unwrap();
        for b in &data {
            e.append("bids", b.clone()).await.unwrap();
        }
        e
    });
    let mut g = c.benchmark_group("stateless_job");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n as u64));
    let mut k = 0;
    // Time from creating a derived stream over `query` until its job has caught up.
    let mut job_time = |query: &str, iters: u64| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            k += 1;
            total += rt.block_on(async {
                let start = Instant::now();
                engine.execute(&format!("CREATE STREAM d{k} AS {query}")).await.unwrap();
                engine.wait_for_jobs().await.unwrap();
                let t = start.elapsed();
                engine.execute(&format!("DROP STREAM d{k}")).await.unwrap();
                t
            });
        }
        total
    };
    g.bench_function("kappa_derived_stream_catch_up", |b| {
        b.iter_custom(|iters| job_time(QUERY, iters))
    });
    // The fixed cost in the figure above: creating the derived stream and its job (metadata
    // and catalog fsyncs) and the first progress record, over an empty input.
    rt.block_on(engine.execute(&DDL.replace("bids", "empty_bids"))).unwrap();
    let over_empty = QUERY.replace("FROM bids", "FROM empty_bids");
    g.bench_function("kappa_derived_stream_over_empty_input", |b| {
        b.iter_custom(|iters| job_time(&over_empty, iters))
    });
    g.bench_function("datafusion_batch_same_select", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += rt.block_on(async {
                    let ctx = SessionContext::new();
                    let table = MemTable::try_new(schema(), vec![data.clone()]).unwrap();
                    ctx.register_table("bids", Arc::new(table)).unwrap();
                    let start = Instant::now();
                    let out = ctx.sql(QUERY).await.unwrap().collect().await.unwrap();
                    std::hint::black_box(out);
                    start.elapsed()
                });
            }
            total
        })
    });
    g.finish();
    rt.block_on(engine.close()).unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
