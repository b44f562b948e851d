//! Random-ish event streams for the windowing tests: `k BIGINT, v BIGINT, ts TIMESTAMP(3)`.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// One event: key, value, time step after the previous event's base time, lateness (how far
/// its time is behind that base time).
pub type Event = (i64, Option<i64>, i64, i64);

/// The schema of the events: `k`, `v`, `ts`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

/// The events as batches of `cut` rows, times from 2023-11-14 (1.7e12 ms) on.
///
/// # Panics
/// Never for these columns (the batch is built from arrays of one length).
pub fn batches(events: &[Event], cut: usize) -> Vec<RecordBatch> {
    let mut base = 1_700_000_000_000i64;
    let rows: Vec<(i64, Option<i64>, i64)> = events
        .iter()
        .map(|(k, v, step, late)| {
            base += step;
            (*k, *v, base - late)
        })
        .collect();
    rows.chunks(cut.max(1))
        .filter_map(|c| {
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from(c.iter().map(|r| r.0).collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(c.iter().map(|r| r.1).collect::<Vec<_>>())),
                    Arc::new(TimestampMillisecondArray::from(
                        c.iter().map(|r| r.2).collect::<Vec<_>>(),
                    )),
                ],
            )
            .ok()
        })
        .collect()
}
