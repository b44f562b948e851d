//! Shared by the crash test and its child process `kappa-crash-appender`.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use kappa_storage::Durability;

/// The streams the child appends to.
pub const STREAMS: [(&str, Durability); 2] =
    [("durable_log", Durability::Durable), ("relaxed_log", Durability::Relaxed)];

/// Schema of the crash-test streams.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tag", DataType::Int64, false),
        Field::new("row", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

/// Rows in the batch of `tag`.
pub fn rows_of(tag: i64) -> usize {
    1 + (tag.rem_euclid(37)) as usize
}

/// The payload of row `row` of batch `tag`.
pub fn payload(tag: i64, row: i64) -> String {
    format!("{tag}:{row}:{}", "p".repeat((row % 13) as usize))
}

/// The batch of `tag`: every row carries the tag, its index, and a payload derived from both.
pub fn tagged_batch(tag: i64) -> RecordBatch {
    let n = rows_of(tag);
    let rows: Vec<i64> = (0..n as i64).collect();
    let columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![tag; n])),
        Arc::new(Int64Array::from(rows.clone())),
        Arc::new(StringArray::from(rows.iter().map(|r| payload(tag, *r)).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(schema(), columns).unwrap_or_else(|e| unreachable!("fixed schema: {e}"))
}

/// Start `command` (its standard output piped), let it run `ms` milliseconds, kill it with
/// SIGKILL: the lines it printed until then.
///
/// # Errors
/// When it cannot be started or killed, or it ended by itself before the kill.
pub fn run_and_kill(command: &mut std::process::Command, ms: u64) -> anyhow::Result<Vec<String>> {
    use std::io::BufRead;
    let mut child = command.stdout(std::process::Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no standard output"))?;
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()).collect::<Vec<_>>()
    });
    std::thread::sleep(std::time::Duration::from_millis(ms));
    child.kill()?;
    let status = child.wait()?;
    if status.success() {
        anyhow::bail!("the child ended by itself");
    }
    reader.join().map_err(|_| anyhow::anyhow!("the reader of the child's output panicked"))
}
