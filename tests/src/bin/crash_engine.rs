//! Child process of the engine crash test: opens an engine on a directory (creating an input
//! stream and a derived stream on first use), then appends batches to the input forever,
//! printing `ack BASE ROWS` for each acknowledged append. The test kills it at random moments.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use kappa::Engine;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let dir = std::env::args().nth(1).context("usage: kappa-crash-engine DIR")?;
    let engine = Engine::open(&dir).await?;
    engine
        .execute(
            "CREATE STREAM IF NOT EXISTS input (id BIGINT NOT NULL, v BIGINT, tag VARCHAR);
             CREATE STREAM IF NOT EXISTS derived AS
               SELECT id, v * 2 AS v2, upper(tag) AS tag FROM input WHERE v % 3 <> 0",
        )
        .await?;
    let count = engine.query("SELECT count(*) FROM input").await?;
    let mut next: i64 = count
        .first()
        .and_then(|b| {
            b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().map(|a| a.value(0))
        })
        .unwrap_or(0);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let mut out = std::io::stdout().lock();
    loop {
        let rows = 1 + (next % 50) as usize;
        let ids: Vec<i64> = (next..next + rows as i64).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids.clone())),
                Arc::new(Int64Array::from(ids.iter().map(|i| i * 7 % 11).collect::<Vec<_>>())),
                Arc::new(StringArray::from(
                    ids.iter().map(|i| format!("t{i}")).collect::<Vec<_>>(),
                )),
            ],
        )?;
        let ack = engine.append("input", batch).await?;
        writeln!(out, "ack {} {}", ack.base_offset, ack.rows)?;
        out.flush()?;
        next += rows as i64;
    }
}
