//! Helpers shared by the storage integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use kappa_storage::{Reader, Store, StoreOptions, Stream, StreamOptions};

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("payload", DataType::Utf8, true),
    ]))
}

/// Rows `first..first+rows`: id = offset, ts = `ts_of(id)`, payload derived from id.
pub fn batch(first: i64, rows: usize) -> RecordBatch {
    batch_with_ts(first, rows, |i| i * 10)
}

pub fn batch_with_ts(first: i64, rows: usize, ts_of: impl Fn(i64) -> i64) -> RecordBatch {
    let ids: Vec<i64> = (first..first + rows as i64).collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(TimestampMillisecondArray::from(
                ids.iter().map(|i| ts_of(*i)).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(ids.iter().map(|i| payload(*i)).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

pub fn payload(i: i64) -> String {
    format!("row-{i}-{}", "x".repeat((i % 7) as usize))
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

pub fn options() -> StreamOptions {
    StreamOptions { event_time_column: Some("ts".into()), ..StreamOptions::default() }
}

/// Everything readable now, as (offset, ids).
pub fn read_all(reader: &mut Reader) -> Vec<(u64, Vec<i64>)> {
    let mut out = Vec::new();
    while let Some(b) = reader.next_batch().unwrap() {
        out.push((b.offset, ids(&b.batch)));
    }
    out
}

pub fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch.column(0).as_primitive::<Int64Type>().values().to_vec()
}

/// Check that every row's columns are the ones `batch` generated for its id.
pub fn check_rows(batch: &RecordBatch) {
    let ids = ids(batch);
    let p = batch.column(2).as_string::<i32>();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(p.value(i), payload(*id), "payload of row {id}");
        assert!(batch.column(1).is_valid(i));
    }
}

/// Flat list of ids readable from the start.
pub fn all_ids(stream: &Stream) -> Vec<i64> {
    let mut r = stream.reader(kappa_storage::ReadFrom::Earliest).unwrap();
    let mut out = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        check_rows(&b.batch);
        out.extend(ids(&b.batch));
    }
    out
}

/// Set the recovery point in a partition's metadata, as a crash before it was advanced leaves it.
pub fn set_recovery_point(stream_dir: &Path, rp: u64) {
    let p = stream_dir.join("p0/partition.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    v["recovery_point"] = rp.into();
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
}

pub fn segment_files(stream_dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(stream_dir.join("p0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}
