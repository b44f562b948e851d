//! The Nexmark oracle: every query file of `queries/nexmark/` (and the windowed ones of
//! `queries/windows/`) runs as a continuous job over
//! sealed Nexmark streams (50,000 events, or `NEXMARK_EVENTS`), and its output must equal
//! DataFusion's batch answer to the same SELECT over the same stored streams.
//!
//! The file's blackhole sink is declared as a stream of the same columns instead, so that the
//! job's output can be read; the batch answer is cast to those columns, as the `INSERT` casts
//! the job's rows. Rows are compared as sorted lists (a batch plan may reorder them). A file
//! without an `INSERT INTO` a blackhole sink or a materialized view fails the test: a query
//! without its check is not done. A materialized view's rows (its table) must equal the batch
//! answer of its query; for a TopN, whose ties the batch plan may rank otherwise, the columns
//! that do not depend on the order of ties must, and every row must be a bid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use kappa::sql::{Statement, ast::CreateStream};
use kappa::{Engine, NexmarkStreams};
use kappa_tests::slt::format_rows;

fn queries_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries/nexmark")
}

fn events() -> u64 {
    std::env::var("NEXMARK_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000)
}

/// `CREATE STREAM name (columns)` for a sink's declaration.
fn as_stream(c: &CreateStream) -> String {
    let columns: Vec<String> = c.columns.iter().map(|c| c.to_string()).collect();
    format!("CREATE STREAM {} ({})", c.name, columns.join(", "))
}

fn cast_to(batches: &[RecordBatch], schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
    batches
        .iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

/// TopN views whose ties (rows with equal `ORDER BY` keys) a batch plan may rank in another
/// order than kappa's (first come, first ranked): the columns that do not depend on it. Their
/// rows must still each be a bid.
fn tie_free(view: &str) -> Option<&'static str> {
    match view {
        "nexmark_q18" => Some("bidder, auction, datetime"),
        "nexmark_q19" => Some("auction, price, rank_number"),
        _ => None,
    }
}

/// Every row of `view` is a row of `bid` (with the same columns).
async fn rows_are_bids(engine: &Engine, view: &str) -> Result<()> {
    let columns = ["auction", "bidder", "price", "channel", "url", "datetime", "extra"];
    let on: Vec<String> = columns.iter().map(|c| format!("v.{c} = b.{c}")).collect();
    let sql = format!("SELECT count(*) FROM {view} v LEFT ANTI JOIN bid b ON {}", on.join(" AND "));
    let rows = format_rows(&engine.query(&sql).await?)?;
    if rows != ["0"] {
        bail!("{view}: {rows:?} rows are not bids");
    }
    Ok(())
}

/// Run one query file; returns the number of rows compared.
async fn check(file: &Path) -> Result<usize> {
    // (Paths in the files, q13's side table, are relative to the repository's root.)
    std::env::set_current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))?;
    let dir = tempfile::tempdir()?;
    let engine = Engine::open(dir.path()).await?;
    engine
        .create_nexmark(NexmarkStreams { events: Some(events()), rate: 10_000, realtime: false })
        .await?;
    let text = std::fs::read_to_string(file)?;
    let mut sinks: Vec<String> = Vec::new();
    let mut checks: Vec<(String, String)> = Vec::new();
    for s in kappa::sql::parse(&text)? {
        match &s.statement {
            Statement::CreateTable(c)
                if c.options.iter().any(|(k, v)| k == "connector" && v == "blackhole") =>
            {
                engine.execute(&as_stream(c)).await?;
                sinks.push(c.name.clone());
            }
            Statement::CreateMaterializedView { name, query, .. } => {
                // A view: its rows must equal the batch answer of its query.
                engine.execute(&s.text).await?;
                checks.push((name.clone(), query.to_string()));
            }
            Statement::Insert { stream, columns, source, .. } if sinks.contains(stream) => {
                if !columns.is_empty() {
                    bail!(
                        "INSERT INTO {stream} with a column list: the oracle compares whole rows"
                    );
                }
                engine.execute(&s.text).await?;
                checks.push((stream.clone(), source.to_string()));
            }
            _ => {
                engine.execute(&s.text).await?;
            }
        }
    }
    if checks.is_empty() {
        bail!("no INSERT INTO a blackhole sink and no view: nothing to check");
    }
    engine.wait_for_jobs().await?;
    let mut compared = 0;
    for (sink, select) in checks {
        let streamed = engine.query(&format!("SELECT * FROM {sink}")).await?;
        let (streamed, select) = match tie_free(&sink) {
            Some(columns) => {
                rows_are_bids(&engine, &sink).await?;
                let mine = engine.query(&format!("SELECT {columns} FROM {sink}")).await?;
                (mine, format!("SELECT {columns} FROM ({select})"))
            }
            None => (streamed, select),
        };
        let answer = engine.query(&select).await?;
        let batch = match engine.streams().into_iter().find(|(n, _)| *n == sink) {
            Some((_, schema)) => cast_to(&answer, &schema)?,
            // (A view has the query's columns.)
            None => answer,
        };
        let (mut got, mut want) = (format_rows(&streamed)?, format_rows(&batch)?);
        got.sort();
        want.sort();
        if want.is_empty() {
            bail!("{sink}: the batch answer has no rows, so the check proves nothing");
        }
        if got != want {
            let first = got.iter().zip(&want).position(|(g, w)| g != w);
            bail!(
                "{sink}: {} rows streamed, {} in batch; first difference at sorted row {first:?}: {:?} vs {:?}",
                got.len(),
                want.len(),
                first.and_then(|i| got.get(i)),
                first.and_then(|i| want.get(i)),
            );
        }
        compared += got.len();
    }
    engine.close().await?;
    Ok(compared)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nexmark_query_equals_datafusion_batch() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(queries_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with('q') && name.ends_with(".sql")
        })
        .collect();
    // The windowed benchmark queries over the same streams.
    let windows = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries/windows");
    files.extend(
        std::fs::read_dir(windows)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql")),
    );
    files.sort();
    assert!(files.len() >= 8, "the query files: {files:?}");
    // (NEXMARK_ONLY=q3,q7 checks those files only, when working on them.)
    if let Ok(only) = std::env::var("NEXMARK_ONLY") {
        let names: Vec<&str> = only.split(',').map(str::trim).collect();
        files
            .retain(|f| f.file_stem().and_then(|s| s.to_str()).is_some_and(|s| names.contains(&s)));
    }
    let mut failures = Vec::new();
    for f in &files {
        match check(f).await {
            Ok(rows) => eprintln!("{}: {rows} rows equal", f.display()),
            Err(e) => failures.push(format!("{}: {e:#}", f.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_streams_hold_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    let streams = NexmarkStreams { events: Some(100_000), rate: 10_000, realtime: false };
    engine.create_nexmark(streams).await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    let counts = |sql: &'static str| {
        let engine = engine.clone();
        async move { format_rows(&engine.query(sql).await.unwrap()).unwrap() }
    };
    assert_eq!(counts("SELECT count(*), count(DISTINCT id) FROM person").await, ["2000 2000"]);
    assert_eq!(counts("SELECT count(*), count(DISTINCT id) FROM auction").await, ["6000 6000"]);
    assert_eq!(
        counts("SELECT count(*), min(datetime), max(datetime) FROM bid").await,
        ["92000 2015-07-15T00:00:00 2015-07-15T00:00:09.999"]
    );
    // Every bid is on an auction that exists (or opens a few events later), by a person who
    // does (the last second aside: its references may point past the last event).
    assert_eq!(
        counts("SELECT count(*) FROM bid WHERE datetime < TIMESTAMP '2015-07-15 00:00:09' AND (auction NOT IN (SELECT id FROM auction) OR bidder NOT IN (SELECT id FROM person))").await,
        ["0"]
    );
    assert_eq!(
        counts("SELECT count(*) FROM auction WHERE datetime < TIMESTAMP '2015-07-15 00:00:09' AND seller NOT IN (SELECT id FROM person)").await,
        ["0"]
    );
    engine.close().await.unwrap();
}
