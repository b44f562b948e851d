//! A tour of the durable log: create a stream, append batches, read from an offset inside a
//! batch and from an event time, seal it, and find it all again on the next run.
//!
//! Run: `cargo run -p kappa-storage --example log_demo [DATA_DIR]` (default `./kappa-demo`),
//! twice: the second run reopens the data directory and reads what the first one wrote.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::util::pretty::pretty_format_batches;
use kappa_storage::{ReadFrom, Store, StoreOptions, StreamOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "kappa-demo".to_string());
    let store = Store::open(&dir, StoreOptions::default())?;
    println!("opened data directory {dir} (locked: a second process would get a clear error)");

    let bids = match store.stream("bids") {
        Ok(s) => {
            let info = s.info();
            println!(
                "stream 'bids' survived the restart: offsets {}..{}, {} segment(s), {} bytes, sealed at {:?}",
                info.start, info.end, info.segments, info.bytes, info.sealed
            );
            s
        }
        Err(_) => {
            let schema = Arc::new(Schema::new(vec![
                Field::new("auction", DataType::Int64, false),
                Field::new("price", DataType::Int64, false),
                Field::new("bidder", DataType::Utf8, false),
                Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false),
            ]));
            let options =
                StreamOptions { event_time_column: Some("ts".into()), ..StreamOptions::default() };
            let s = store.create_stream("bids", Arc::clone(&schema), options)?;
            println!("created stream 'bids' with event-time column 'ts'");
            let t0 = 1_764_000_000_000i64;
            for (k, rows) in [4usize, 5, 3].into_iter().enumerate() {
                let first = (k * 10) as i64;
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(Int64Array::from_iter_values(
                            (0..rows as i64).map(|i| 1000 + (first + i) % 3),
                        )),
                        Arc::new(Int64Array::from_iter_values(
                            (0..rows as i64).map(|i| 100 + 7 * (first + i)),
                        )),
                        Arc::new(StringArray::from_iter_values(
                            (0..rows).map(|i| format!("bidder-{}", (first as usize + i) % 4)),
                        )),
                        Arc::new(TimestampMillisecondArray::from_iter_values(
                            (0..rows as i64).map(|i| t0 + 1000 * (first + i)),
                        )),
                    ],
                )?;
                let ack = s.append(&batch)?;
                println!(
                    "appended {} rows at offsets {}..{} (acknowledged after fdatasync)",
                    ack.rows,
                    ack.base_offset,
                    ack.base_offset + ack.rows
                );
            }
            s
        }
    };

    println!("\nread from offset 6 (inside the second batch):");
    let mut r = bids.reader(ReadFrom::Offset(6))?;
    let mut batches = Vec::new();
    while let Some(b) = r.next_batch()? {
        batches.push(b.batch);
    }
    println!("{}", pretty_format_batches(&batches)?);

    let t = 1_764_000_000_000i64 + 21_000;
    let r = bids.reader(ReadFrom::EventTime(t))?;
    println!("\nthe first row with event time >= {t} ms is at offset {}", r.position());

    let end = bids.seal()?;
    println!("sealed at offset {end}");
    match bids.append(&batches[0]) {
        Err(e) => println!("an append after the seal is refused: {e}"),
        Ok(_) => return Err("append after seal was accepted".into()),
    }
    store.close()?;
    println!("\nclosed; run me again to reopen {dir} and read it back");
    Ok(())
}
