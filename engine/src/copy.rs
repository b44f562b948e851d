//! `COPY s FROM 'file'` and `COPY s|(query) TO 'file'`, in CSV, JSON lines and Parquet.
//!
//! COPY FROM is all or nothing: the whole file is read and checked before anything is
//! appended. Up to [`COPY_BUFFER_BYTES`] of decoded rows are kept and appended after the check;
//! a larger file is checked in a first pass and read again to append. An error names the file,
//! the row (from 1, not counting a CSV header) and the column. COPY TO writes a temporary file
//! beside the target and renames it over once complete.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::FormatOptions;
use futures::StreamExt;
use kappa_sql::Location;
use kappa_sql::ast::{CopyOptions, CopySource, FileFormat};
use kappa_storage::Stream;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Output;

/// Decoded rows a COPY FROM keeps in memory before switching to two passes.
pub const COPY_BUFFER_BYTES: usize = 256 << 20;
const BATCH_ROWS: usize = 8192;

type At = Option<Location>;

fn format_of(path: &str, options: &CopyOptions, at: At) -> Result<FileFormat> {
    options.format.or_else(|| FileFormat::from_path(path)).ok_or_else(|| {
        Error::plan(
            format!("cannot tell the format of '{path}' from its name: add (FORMAT csv), (FORMAT json) or (FORMAT parquet)"),
            at,
        )
    })
}

fn copy_error(
    path: &Path,
    row: Option<u64>,
    column: Option<String>,
    message: impl Into<String>,
) -> Error {
    Error::Copy { path: path.to_path_buf(), row, column, message: message.into() }
}

pub(crate) async fn copy_from(
    engine: &Engine,
    stream: &str,
    path: &str,
    options: &CopyOptions,
    at: At,
) -> Result<Output> {
    let target = engine.inner.stream(stream, at)?;
    engine.inner.check_appendable(stream, at)?;
    let format = format_of(path, options, at)?;
    if format != FileFormat::Csv && (options.header.is_some() || options.delimiter.is_some()) {
        return Err(Error::plan("HEADER and DELIMITER apply to CSV only", at));
    }
    let path = PathBuf::from(path);
    let options = options.clone();
    let rows =
        tokio::task::spawn_blocking(move || load(&target, &path, format, &options))
            .await
            .map_err(|e| Error::Io { path: stream.into(), source: std::io::Error::other(e) })??;
    Ok(Output::Done { tag: "COPY".into(), rows: Some(rows) })
}

/// Check the whole file, then append it.
fn load(
    target: &Arc<Stream>,
    path: &Path,
    format: FileFormat,
    options: &CopyOptions,
) -> Result<u64> {
    let schema = Arc::clone(target.schema());
    let stamp = file_stamp(path)?;
    let mut kept: Vec<RecordBatch> = Vec::new();
    let mut bytes = 0usize;
    let mut spilled = false;
    read_file(path, format, options, &schema, &mut |b| {
        if !spilled {
            bytes += b.get_array_memory_size();
            kept.push(b);
            if bytes > COPY_BUFFER_BYTES {
                spilled = true;
                kept.clear();
            }
        }
        Ok(())
    })?;
    let mut rows = 0u64;
    let mut pending = Vec::new();
    let mut append = |b: RecordBatch| -> Result<()> {
        rows += b.num_rows() as u64;
        pending.push(target.submit(&b)?);
        if pending.len() >= 64 {
            for p in pending.drain(..) {
                p.wait()?;
            }
        }
        Ok(())
    };
    if spilled {
        // The second pass must read the file the first one checked.
        if file_stamp(path)? != stamp {
            return Err(copy_error(path, None, None, "the file changed while it was being loaded"));
        }
        read_file(path, format, options, &schema, &mut append)?;
    } else {
        for b in kept {
            append(b)?;
        }
    }
    for p in pending {
        p.wait()?;
    }
    Ok(rows)
}

/// Size and modification time of a file.
fn file_stamp(path: &Path) -> Result<(u64, Option<std::time::SystemTime>)> {
    let m =
        std::fs::metadata(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    Ok((m.len(), m.modified().ok()))
}

/// The schema with every field nullable (readers must not fail on a null before we can say
/// which row holds it).
fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ))
}

/// Check NOT NULL columns and give the batch the stream's schema. `first_row` is the row
/// number (from 1) of the batch's first row.
fn finish_batch(
    path: &Path,
    schema: &SchemaRef,
    batch: RecordBatch,
    first_row: u64,
) -> Result<RecordBatch> {
    for (i, f) in schema.fields().iter().enumerate() {
        let c = batch.column(i);
        if !f.is_nullable() && c.null_count() > 0 {
            let idx = (0..c.len()).find(|r| c.is_null(*r)).unwrap_or(0);
            return Err(copy_error(
                path,
                Some(first_row + idx as u64),
                Some(f.name().clone()),
                "a NOT NULL column is empty",
            ));
        }
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())?)
}

fn read_file(
    path: &Path,
    format: FileFormat,
    options: &CopyOptions,
    schema: &SchemaRef,
    sink: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    match format {
        FileFormat::Csv => read_csv(path, file, options, schema, sink),
        FileFormat::Json => read_json(path, file, schema, sink),
        FileFormat::Parquet => read_parquet(path, file, schema, sink),
    }
}

/// The number after `key` in `msg`.
fn number_after(msg: &str, key: &str) -> Option<u64> {
    let rest = &msg[msg.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn read_csv(
    path: &Path,
    file: std::fs::File,
    options: &CopyOptions,
    schema: &SchemaRef,
    sink: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let header = options.header.unwrap_or(true);
    let reader = datafusion::arrow::csv::ReaderBuilder::new(nullable(schema))
        .with_header(header)
        .with_header_validation(header)
        .with_delimiter(options.delimiter.unwrap_or(b','))
        .with_batch_size(BATCH_ROWS)
        .build(file)?;
    let mut done = 0u64;
    for b in reader {
        let b = b.map_err(|e| csv_error(path, schema, header, done, e))?;
        let n = b.num_rows() as u64;
        sink(finish_batch(path, schema, b, done + 1)?)?;
        done += n;
    }
    Ok(())
}

/// Locate an arrow-csv error: value errors say "for column C at line L" (L counts records from
/// 0, the header included), field-count errors "for line L" (from 1, header included).
fn csv_error(path: &Path, schema: &SchemaRef, header: bool, done: u64, e: ArrowError) -> Error {
    let msg = e.to_string();
    let h = u64::from(header);
    let column = number_after(&msg, "for column ")
        .and_then(|c| schema.fields().get(c as usize))
        .map(|f| f.name().clone());
    let row = if let Some(l) = number_after(&msg, " at line ") {
        Some(l + 1 - h)
    } else {
        number_after(&msg, "for line ").map(|l| l.saturating_sub(h))
    };
    let message = msg.split(". Row data").next().unwrap_or(&msg).to_string();
    let message = match row {
        Some(_) => message,
        None => format!("{message} (after row {done})"),
    };
    copy_error(path, row, column, message)
}

fn read_json(
    path: &Path,
    file: std::fs::File,
    schema: &SchemaRef,
    sink: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    // Room for more values than lines, so that a line holding two is seen, not cut.
    let builder = || {
        datafusion::arrow::json::ReaderBuilder::new(nullable(schema))
            .with_batch_size(BATCH_ROWS * 4)
    };
    let mut decoder = builder().build_decoder()?;
    let mut lines: Vec<(u64, String)> = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut number = 0u64;
    let mut rows_before = 0u64;
    // Decode one buffered batch; on an error, find the line by decoding them one at a time.
    let mut flush = |lines: &mut Vec<(u64, String)>,
                     decoder: &mut datafusion::arrow::json::reader::Decoder,
                     rows_before: &mut u64|
     -> Result<()> {
        let result = lines
            .iter()
            .try_for_each(|(_, l)| decoder.decode(l.as_bytes()).map(|_| ()))
            .and_then(|()| decoder.flush());
        match result {
            Ok(Some(b)) if b.num_rows() != lines.len() => Err(copy_error(
                path,
                None,
                None,
                format!(
                    "{} JSON values on {} lines: JSON lines holds one object per line",
                    b.num_rows(),
                    lines.len()
                ),
            )),
            Ok(Some(b)) => {
                let n = b.num_rows() as u64;
                sink(finish_batch(path, schema, b, *rows_before + 1)?)?;
                *rows_before += n;
                lines.clear();
                Ok(())
            }
            Ok(None) => {
                lines.clear();
                Ok(())
            }
            Err(_) => {
                for (k, (no, l)) in lines.iter().enumerate() {
                    let mut one = builder().build_decoder()?;
                    if let Err(e) =
                        one.decode(l.as_bytes()).map(|_| ()).and_then(|()| one.flush().map(|_| ()))
                    {
                        let msg = e.to_string();
                        let column = msg
                            .split("field '")
                            .nth(1)
                            .and_then(|r| r.split('\'').next())
                            .map(str::to_string);
                        let _ = k;
                        return Err(copy_error(path, Some(*no), column, msg));
                    }
                }
                Err(copy_error(path, None, None, "a batch of lines failed to decode together"))
            }
        }
    };
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        lines.push((number, line.trim_end().to_string()));
        if lines.len() >= BATCH_ROWS {
            flush(&mut lines, &mut decoder, &mut rows_before)?;
        }
    }
    flush(&mut lines, &mut decoder, &mut rows_before)
}

fn read_parquet(
    path: &Path,
    file: std::fs::File,
    schema: &SchemaRef,
    sink: &mut dyn FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    use datafusion::parquet::arrow::ProjectionMask;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |e: String| copy_error(path, None, None, e);
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
    let file_schema = Arc::clone(builder.schema());
    let mut indexes = Vec::new();
    for f in schema.fields() {
        let i = file_schema
            .index_of(f.name())
            .ok()
            .or_else(|| {
                file_schema.fields().iter().position(|x| x.name().eq_ignore_ascii_case(f.name()))
            })
            .ok_or_else(|| {
                let names: Vec<&str> =
                    file_schema.fields().iter().map(|x| x.name().as_str()).collect();
                copy_error(
                    path,
                    None,
                    Some(f.name().clone()),
                    format!("the file has no such column (it has: {})", names.join(", ")),
                )
            })?;
        indexes.push(i);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indexes.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    // Columns come back in file order: map each stream column to its place in the batch.
    let mut order: Vec<usize> = indexes.clone();
    order.sort_unstable();
    let options = CastOptions { safe: false, format_options: FormatOptions::default() };
    let mut done = 0u64;
    for b in reader {
        let b = b.map_err(|e| bad(format!("{e} (after row {done})")))?;
        let mut cols = Vec::with_capacity(schema.fields().len());
        for (f, i) in schema.fields().iter().zip(&indexes) {
            let pos = order.iter().position(|x| x == i).unwrap_or(0);
            let c = b.column(pos);
            let c = if c.data_type() == f.data_type() {
                Arc::clone(c)
            } else {
                cast_with_options(c, f.data_type(), &options).map_err(|e| {
                    copy_error(
                        path,
                        None,
                        Some(f.name().clone()),
                        format!("{e} (in rows {}..{})", done + 1, done + b.num_rows() as u64),
                    )
                })?
            };
            cols.push(c);
        }
        let batch = RecordBatch::try_new(nullable(schema), cols)?;
        let n = batch.num_rows() as u64;
        sink(finish_batch(path, schema, batch, done + 1)?)?;
        done += n;
    }
    Ok(())
}

pub(crate) async fn copy_to(
    engine: &Engine,
    source: CopySource,
    path: &str,
    options: &CopyOptions,
    at: At,
) -> Result<Output> {
    let format = format_of(path, options, at)?;
    let query = match source {
        CopySource::Query(q) => q,
        CopySource::Stream(name) => {
            engine.inner.stream(&name, at)?;
            let sql = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
            match kappa_sql::parse_one(&sql)?.statement {
                kappa_sql::Statement::Query { query, .. } => query,
                _ => return Err(Error::plan("cannot read the stream", at)),
            }
        }
    };
    let plan = engine.plan_caught_up(query, at).await?;
    let schema: SchemaRef = Arc::clone(plan.schema().inner());
    let mut batches = engine.inner.ctx.execute_logical_plan(plan).await?.execute_stream().await?;
    let target = PathBuf::from(path);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = PathBuf::from(format!("{path}.kappa-tmp-{}-{n}", std::process::id()));
    let io = |e: std::io::Error| Error::Io { path: tmp.clone(), source: e };
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let result: Result<u64> = async {
        let mut writer = Writer::new(format, file, &schema, options)?;
        let mut rows = 0u64;
        while let Some(b) = batches.next().await {
            let b = b?;
            rows += b.num_rows() as u64;
            tokio::task::block_in_place(|| writer.write(&b))?;
        }
        tokio::task::block_in_place(|| writer.finish())?;
        Ok(rows)
    }
    .await;
    match result {
        Ok(rows) => {
            std::fs::rename(&tmp, &target)
                .map_err(|e| Error::Io { path: target.clone(), source: e })?;
            Ok(Output::Done { tag: "COPY".into(), rows: Some(rows) })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

enum Writer {
    Csv(datafusion::arrow::csv::Writer<std::fs::File>),
    Json(datafusion::arrow::json::LineDelimitedWriter<std::fs::File>),
    Parquet(datafusion::parquet::arrow::ArrowWriter<std::fs::File>),
}

impl Writer {
    fn new(
        format: FileFormat,
        file: std::fs::File,
        schema: &SchemaRef,
        o: &CopyOptions,
    ) -> Result<Writer> {
        Ok(match format {
            FileFormat::Csv => Writer::Csv(
                datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(o.header.unwrap_or(true))
                    .with_delimiter(o.delimiter.unwrap_or(b','))
                    .build(file),
            ),
            FileFormat::Json => {
                Writer::Json(datafusion::arrow::json::LineDelimitedWriter::new(file))
            }
            FileFormat::Parquet => Writer::Parquet(
                datafusion::parquet::arrow::ArrowWriter::try_new(file, Arc::clone(schema), None)
                    .map_err(|e| Error::plan(e.to_string(), None))?,
            ),
        })
    }

    fn write(&mut self, b: &RecordBatch) -> Result<()> {
        match self {
            Writer::Csv(w) => w.write(b)?,
            Writer::Json(w) => w.write(b)?,
            Writer::Parquet(w) => w.write(b).map_err(|e| Error::plan(e.to_string(), None))?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Writer::Csv(w) => {
                let f = w.into_inner();
                f.sync_all().map_err(|e| Error::Io { path: "COPY".into(), source: e })?;
            }
            Writer::Json(mut w) => {
                w.finish()?;
                let f = w.into_inner();
                f.sync_all().map_err(|e| Error::Io { path: "COPY".into(), source: e })?;
            }
            Writer::Parquet(mut w) => {
                w.finish().map_err(|e| Error::plan(e.to_string(), None))?;
                w.inner().sync_all().map_err(|e| Error::Io { path: "COPY".into(), source: e })?;
            }
        }
        Ok(())
    }
}
