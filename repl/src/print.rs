//! Printing results: `table` (with expanded display and a row limit), `csv`, `tsv`, `json`
//! and `ndjson`, for whole results and for the rows of a push query as they arrive.

use std::io::Write;

use kappa::datafusion::arrow::array::{RecordBatch, StringArray};
use std::sync::Arc;

use kappa::datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use kappa::datafusion::arrow::error::ArrowError;
use kappa::datafusion::arrow::json::writer::{JsonArray, JsonFormat, LineDelimited};
use kappa::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Tsv,
    Json,
    Ndjson,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" | "aligned" | "box" | "duckbox" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "tsv" | "tabs" => Ok(Format::Tsv),
            "json" => Ok(Format::Json),
            "ndjson" | "jsonl" | "jsonlines" => Ok(Format::Ndjson),
            other => Err(format!("unknown format '{other}': use table, csv, tsv, json or ndjson")),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
        })
    }
}

/// How results are printed.
#[derive(Debug, Clone)]
pub struct Style {
    pub format: Format,
    /// Expanded display (`\x`): one block per row (table format).
    pub expanded: bool,
    /// At most this many rows of a table are printed (a footer says how many there were).
    pub max_rows: Option<usize>,
}

/// An Arrow error as an I/O error; a failed write stays what it was (a broken pipe).
fn arrow_err(e: ArrowError) -> std::io::Error {
    match e {
        ArrowError::IoError(_, e) => e,
        other => std::io::Error::other(other),
    }
}

fn options() -> FormatOptions<'static> {
    FormatOptions::default().with_null("NULL")
}

/// A formatter of each column of `batch`.
fn formatters<'a>(
    batch: &'a RecordBatch,
    opts: &'a FormatOptions<'a>,
) -> std::io::Result<Vec<ArrayFormatter<'a>>> {
    batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), opts))
        .collect::<Result<_, _>>()
        .map_err(arrow_err)
}

/// The first `limit` rows of `batches`.
fn head(batches: &[RecordBatch], limit: usize) -> Vec<RecordBatch> {
    let mut left = limit;
    let mut out = Vec::new();
    for b in batches {
        if left == 0 {
            break;
        }
        let n = b.num_rows().min(left);
        out.push(b.slice(0, n));
        left -= n;
    }
    out
}

fn rows_word(n: usize) -> &'static str {
    if n == 1 { "row" } else { "rows" }
}

/// Print a whole result.
///
/// # Errors
/// A failed write (a broken pipe included), or a value Arrow cannot format.
pub fn rows(
    w: &mut dyn Write,
    style: &Style,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> std::io::Result<()> {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    // Text to print as it is (`SHOW DATAFLOW`, also as DOT for Graphviz).
    let (key, value) = kappa::PRINT_LINES;
    if schema.metadata().get(key).is_some_and(|v| v == value) {
        for b in batches {
            if let Some(lines) = b.column(0).as_any().downcast_ref::<StringArray>() {
                for line in lines.iter().flatten() {
                    writeln!(w, "{line}")?;
                }
            }
        }
        return Ok(());
    }
    match style.format {
        Format::Table => {
            let shown = style.max_rows.map_or(total, |m| m.min(total));
            let limited;
            let batches = if shown < total {
                limited = head(batches, shown);
                &limited[..]
            } else {
                batches
            };
            if style.expanded {
                expanded(w, schema, batches)?;
            } else {
                use kappa::datafusion::arrow::util::pretty;
                let table = if batches.is_empty() {
                    pretty::pretty_format_batches_with_schema(schema.clone(), batches)
                        .map_err(arrow_err)?
                        .to_string()
                } else {
                    pretty::pretty_format_batches_with_options(batches, &options())
                        .map_err(arrow_err)?
                        .to_string()
                };
                writeln!(w, "{table}")?;
            }
            if shown < total {
                writeln!(
                    w,
                    "({total} {}, the first {shown} shown: \\pset maxrows N shows more)",
                    rows_word(total)
                )
            } else {
                writeln!(w, "({total} {})", rows_word(total))
            }
        }
        // Encoded into memory, then written: a failed write (a closed pipe) stays an I/O error
        // of its own kind.
        Format::Csv | Format::Tsv => {
            let empty = [RecordBatch::new_empty(schema.clone())];
            let batches = if batches.is_empty() { &empty[..] } else { batches };
            w.write_all(&csv(batches, true, style.format)?)
        }
        Format::Json => {
            let mut buf = json::<JsonArray>(batches)?;
            buf.push(b'\n');
            w.write_all(&buf)
        }
        Format::Ndjson => w.write_all(&json::<LineDelimited>(batches)?),
    }
}

/// `batches` as CSV (or TSV), with a header line or not.
fn csv(batches: &[RecordBatch], header: bool, format: Format) -> std::io::Result<Vec<u8>> {
    let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
    let mut buf = Vec::new();
    let mut writer = kappa::datafusion::arrow::csv::WriterBuilder::new()
        .with_header(header)
        .with_delimiter(delimiter)
        .build(&mut buf);
    for b in batches {
        writer.write(b).map_err(arrow_err)?;
    }
    drop(writer);
    Ok(buf)
}

/// `batches` as a JSON array or as JSON lines, nulls written out.
fn json<F: JsonFormat>(batches: &[RecordBatch]) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut writer = kappa::datafusion::arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, F>(&mut buf);
    for b in batches {
        writer.write(b).map_err(arrow_err)?;
    }
    writer.finish().map_err(arrow_err)?;
    drop(writer);
    Ok(buf)
}

/// Expanded display: a block per row, psql's `\x`.
fn expanded(w: &mut dyn Write, schema: &SchemaRef, batches: &[RecordBatch]) -> std::io::Result<()> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut record = 0;
    let opts = options();
    for b in batches {
        let formatters = formatters(b, &opts)?;
        for row in 0..b.num_rows() {
            record += 1;
            writeln!(w, "-[ RECORD {record} ]{}", "-".repeat(width.saturating_sub(8) + 4))?;
            for (name, f) in names.iter().zip(&formatters) {
                writeln!(w, "{name:width$} | {}", f.value(row))?;
            }
        }
    }
    if record == 0 {
        writeln!(w, "(no rows)")?;
    }
    Ok(())
}

/// The name of a changelog's operation column, and how it is printed.
const OP_COLUMN: &str = "__op";

/// `batch` with its `__op` column, if any, first and named `op`.
fn op_first(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let Ok(i) = schema.index_of(OP_COLUMN) else { return Ok(batch.clone()) };
    let mut order: Vec<usize> = vec![i];
    order.extend((0..schema.fields().len()).filter(|j| *j != i));
    let fields: Vec<Field> = order
        .iter()
        .map(|j| {
            let f = schema.field(*j);
            if *j == i { f.clone().with_name("op") } else { f.clone() }
        })
        .collect();
    let columns = order.iter().map(|j| Arc::clone(batch.column(*j))).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Prints the rows of a push query as they arrive: a header once, then each batch, flushed.
pub struct Streaming {
    format: Format,
    schema: SchemaRef,
    /// Column widths of the table, fixed by the header and the first batch.
    widths: Option<Vec<usize>>,
    pub rows: u64,
}

impl Streaming {
    /// A printer of rows with `schema` (table, csv, tsv or ndjson; json prints as ndjson, one
    /// object per line, since the rows never end). A changelog's `__op` column (`+I`, `-U`,
    /// `+U`, `-D`) comes first, as `op`.
    pub fn new(format: Format, schema: SchemaRef) -> Streaming {
        let format = if format == Format::Json { Format::Ndjson } else { format };
        let schema = op_first(&RecordBatch::new_empty(schema))
            .map_or_else(|_| Arc::new(Schema::empty()), |b| b.schema());
        Streaming { format, schema, widths: None, rows: 0 }
    }

    fn line(&self, widths: &[usize]) -> String {
        let mut s = String::from("+");
        for w in widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s
    }

    /// Print a batch (the header first, before the first one).
    ///
    /// # Errors
    /// A failed write, or a value Arrow cannot format.
    pub fn batch(&mut self, w: &mut dyn Write, batch: &RecordBatch) -> std::io::Result<()> {
        let batch = &op_first(batch).map_err(arrow_err)?;
        let first = self.rows == 0 && self.widths.is_none();
        self.rows += batch.num_rows() as u64;
        match self.format {
            Format::Table => {
                let opts = options();
                let formatters = formatters(batch, &opts)?;
                let cells: Vec<Vec<String>> = (0..batch.num_rows())
                    .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
                    .collect();
                if self.widths.is_none() {
                    let widths: Vec<usize> = self
                        .schema
                        .fields()
                        .iter()
                        .enumerate()
                        .map(|(i, f)| {
                            cells
                                .iter()
                                .map(|row| row[i].chars().count())
                                .chain([f.name().chars().count()])
                                .max()
                                .unwrap_or(0)
                        })
                        .collect();
                    let names: Vec<String> =
                        self.schema.fields().iter().map(|f| f.name().clone()).collect();
                    writeln!(w, "{}", self.line(&widths))?;
                    writeln!(w, "{}", row_text(&names, &widths))?;
                    writeln!(w, "{}", self.line(&widths))?;
                    self.widths = Some(widths);
                }
                let widths = self.widths.clone().unwrap_or_default();
                for row in &cells {
                    writeln!(w, "{}", row_text(row, &widths))?;
                }
            }
            Format::Csv | Format::Tsv => {
                w.write_all(&csv(std::slice::from_ref(batch), first, self.format)?)?;
                if first {
                    self.widths = Some(Vec::new());
                }
            }
            Format::Json | Format::Ndjson => {
                w.write_all(&json::<LineDelimited>(std::slice::from_ref(batch))?)?;
            }
        }
        w.flush()
    }

    /// Close the table (its bottom line), if one was started.
    ///
    /// # Errors
    /// A failed write.
    pub fn end(&mut self, w: &mut dyn Write) -> std::io::Result<()> {
        if self.format == Format::Table
            && let Some(widths) = &self.widths
        {
            writeln!(w, "{}", self.line(widths))?;
        }
        w.flush()
    }
}

fn row_text(cells: &[String], widths: &[usize]) -> String {
    let mut s = String::from("|");
    for (c, w) in cells.iter().zip(widths) {
        let pad = w.saturating_sub(c.chars().count());
        s.push(' ');
        s.push_str(c);
        s.push_str(&" ".repeat(pad + 1));
        s.push('|');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kappa::datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn a_changelog_prints_its_op_column_first() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", kappa::datafusion::arrow::datatypes::DataType::Int64, false),
            Field::new(OP_COLUMN, kappa::datafusion::arrow::datatypes::DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 1])),
                Arc::new(StringArray::from(vec!["-U", "+U"])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut p = Streaming::new(Format::Table, schema);
        p.batch(&mut out, &batch).unwrap();
        p.end(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "+----+---+\n| op | k |\n+----+---+\n| -U | 1 |\n| +U | 1 |\n+----+---+\n"
        );
    }
}
