//! A runner for `.slt` files: the sqllogictest format, extended for streams.
//!
//! Records, separated by blank lines (`#` starts a comment line):
//!
//! - `statement ok` then SQL: it must succeed.
//! - `statement count N` then SQL: it must succeed and report N rows written (INSERT, COPY).
//! - `statement error [@LINE:COL] TEXT` then SQL: it must fail with a message containing TEXT
//!   (and, with `@LINE:COL`, located there in the SQL).
//! - `query TYPES [rowsort]` then SQL, `----`, and the expected rows: one line per row, values
//!   separated by single spaces, `NULL` for null, `(empty)` for an empty string. TYPES has one
//!   letter per column (`I` integer, `T` text, `R` float, `B` boolean, `D` date/time); only the
//!   count is checked. With `rowsort`, rows are compared sorted. With `project(a,b)`, only
//!   those columns of the result are compared (for `SHOW` output, which is not a query).
//! - `query error [@LINE:COL] TEXT` then SQL.
//! - `subscribe N` then a push query, `----`, and the N expected rows (in arrival order): the
//!   first N rows the subscription delivers.
//! - `wait`: wait until every job has processed everything its inputs hold.
//! - `sleep MS`: wait MS milliseconds (for processing-time behaviour, like idle inputs).
//! - `reopen`: close the engine and open the data directory again.
//!
//! In SQL, `$DATA` is the absolute path of `tests/slt/data` and `$TMP` a fresh temporary
//! directory per file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use kappa::{Engine, Output};

/// One failed record.
#[derive(Debug)]
pub struct Failure {
    /// `file:line`.
    pub at: String,
    /// What differed.
    pub message: String,
}

#[derive(Debug)]
enum Record {
    Statement {
        sql: String,
        count: Option<u64>,
    },
    StatementError {
        sql: String,
        text: String,
        location: Option<(u64, u64)>,
    },
    Query {
        sql: String,
        columns: usize,
        rowsort: bool,
        project: Option<Vec<String>>,
        expected: Vec<String>,
    },
    QueryError {
        sql: String,
        text: String,
        location: Option<(u64, u64)>,
    },
    Subscribe {
        sql: String,
        rows: usize,
        expected: Vec<String>,
    },
    Wait,
    Sleep(u64),
    Reopen,
}

/// Parse a file into (line, record).
fn parse(text: &str) -> Result<Vec<(usize, Record)>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let head: Vec<&str> = line.split_whitespace().collect();
        i += 1;
        // The SQL: up to a blank line or `----`.
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let sql = sql.join("\n");
        let mut results = Vec::new();
        if i < lines.len() && lines[i].trim() == "----" {
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() {
                results.push(lines[i].trim_end().to_string());
                i += 1;
            }
        }
        let rest = |from: usize| head[from.min(head.len())..].join(" ");
        let record = match head.as_slice() {
            ["statement", "ok"] => Record::Statement { sql, count: None },
            ["statement", "count", n] => Record::Statement { sql, count: Some(n.parse()?) },
            ["statement" | "query", "error", ..] => {
                let (location, from) = match head.get(2).and_then(|t| t.strip_prefix('@')) {
                    Some(lc) => {
                        let (l, c) =
                            lc.split_once(':').ok_or_else(|| anyhow!("line {start}: @LINE:COL"))?;
                        (Some((l.parse()?, c.parse()?)), 3)
                    }
                    None => (None, 2),
                };
                if head[0] == "query" {
                    Record::QueryError { sql, text: rest(from), location }
                } else {
                    Record::StatementError { sql, text: rest(from), location }
                }
            }
            ["query", types, opts @ ..] => Record::Query {
                sql,
                columns: types.len(),
                rowsort: opts.contains(&"rowsort"),
                project: opts.iter().find_map(|o| {
                    o.strip_prefix("project(")
                        .and_then(|r| r.strip_suffix(')'))
                        .map(|r| r.split(',').map(str::to_string).collect())
                }),
                expected: results,
            },
            ["subscribe", n] => Record::Subscribe { sql, rows: n.parse()?, expected: results },
            ["wait"] => Record::Wait,
            ["sleep", ms] => Record::Sleep(ms.parse()?),
            ["reopen"] => Record::Reopen,
            _ => bail!("line {start}: unknown record '{line}'"),
        };
        out.push((start, record));
    }
    Ok(out)
}

/// Format rows as the `.slt` files write them.
pub fn format_rows(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let values: Vec<String> = formatters
                .iter()
                .map(|f| {
                    let v = f.value(r).to_string();
                    if v.is_empty() { "(empty)".to_string() } else { v }
                })
                .collect();
            out.push(values.join(" "));
        }
    }
    Ok(out)
}

fn columns_of(batches: &[RecordBatch], schema_len: usize) -> usize {
    batches.first().map(|b| b.num_columns()).unwrap_or(schema_len)
}

/// Run one `.slt` file against a fresh data directory. Returns the failures.
pub async fn run_file(path: &Path, data: &Path) -> Result<Vec<Failure>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let records = parse(&text)?;
    let dir = tempfile::tempdir()?;
    let tmp = tempfile::tempdir()?;
    let subst = |sql: &str| {
        sql.replace("$DATA", &data.display().to_string())
            .replace("$TMP", &tmp.path().display().to_string())
    };
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let mut engine = Engine::open(dir.path()).await?;
    let mut failures = Vec::new();
    for (line, record) in records {
        let at = format!("{name}:{line}");
        let fail = |message: String| Failure { at: at.clone(), message };
        match record {
            Record::Statement { sql, count } => match engine.execute(&subst(&sql)).await {
                Err(e) => failures.push(fail(format!("statement failed: {e}\n  {sql}"))),
                Ok(outs) => {
                    if let Some(n) = count {
                        match outs.last() {
                            Some(Output::Done { rows: Some(r), .. }) if *r == n => {}
                            other => failures
                                .push(fail(format!("expected {n} rows written, got {other:?}"))),
                        }
                    }
                }
            },
            Record::StatementError { sql, text, location }
            | Record::QueryError { sql, text, location } => {
                match engine.execute(&subst(&sql)).await {
                    Ok(_) => failures.push(fail(format!(
                        "statement succeeded, expected error '{text}'\n  {sql}"
                    ))),
                    Err(e) => {
                        let msg = e.to_string();
                        let text = subst(&text);
                        if !msg.contains(&text) {
                            failures.push(fail(format!("error '{msg}' does not contain '{text}'")));
                        }
                        if let Some((l, c)) = location {
                            let got = e.location().map(|x| (x.line, x.column));
                            if got != Some((l, c)) {
                                failures.push(fail(format!(
                                    "error '{msg}' located at {got:?}, expected {l}:{c}"
                                )));
                            }
                        }
                    }
                }
            }
            Record::Query { sql, columns, rowsort, project, expected } => {
                match engine.execute(&subst(&sql)).await {
                    Ok(mut outs) => match outs.pop() {
                        Some(Output::Rows { schema, batches }) => {
                            let (schema, batches) = match &project {
                                Some(names) => {
                                    let idx = names
                                        .iter()
                                        .map(|n| schema.index_of(n))
                                        .collect::<std::result::Result<Vec<_>, _>>()?;
                                    let batches = batches
                                        .iter()
                                        .map(|b| b.project(&idx))
                                        .collect::<std::result::Result<Vec<_>, _>>()?;
                                    (std::sync::Arc::new(schema.project(&idx)?), batches)
                                }
                                None => (schema, batches),
                            };
                            let n = columns_of(&batches, schema.fields().len());
                            if n != columns {
                                failures.push(fail(format!("{n} columns, expected {columns}")));
                            }
                            let mut got = format_rows(&batches)?;
                            let mut want = expected.clone();
                            if rowsort {
                                got.sort();
                                want.sort();
                            }
                            if got != want {
                                failures.push(fail(format!(
                                    "rows differ\n  {sql}\n--- expected\n{}\n--- got\n{}",
                                    want.join("\n"),
                                    got.join("\n")
                                )));
                            }
                        }
                        other => failures.push(fail(format!("not a query result: {other:?}"))),
                    },
                    Err(e) => failures.push(fail(format!("query failed: {e}\n  {sql}"))),
                }
            }
            Record::Subscribe { sql, rows, expected } => {
                let result = async {
                    let mut sub = engine.subscribe(&subst(&sql)).await?;
                    let mut got: Vec<String> = Vec::new();
                    while got.len() < rows {
                        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                            Ok(Some(b)) => got.extend(format_rows(&[b?])?),
                            Ok(None) => break,
                            Err(_) => bail!("no row for 30 s after {} rows", got.len()),
                        }
                    }
                    got.truncate(rows);
                    Ok::<_, anyhow::Error>(got)
                }
                .await;
                match result {
                    Ok(got) if got == expected => {}
                    Ok(got) => failures.push(fail(format!(
                        "push rows differ\n--- expected\n{}\n--- got\n{}",
                        expected.join("\n"),
                        got.join("\n")
                    ))),
                    Err(e) => failures.push(fail(format!("subscribe failed: {e}"))),
                }
            }
            Record::Wait => {
                if let Err(e) = engine.wait_for_jobs().await {
                    failures.push(fail(format!("wait: {e}")));
                }
            }
            Record::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Record::Reopen => {
                engine.close().await?;
                engine = Engine::open(dir.path()).await?;
            }
        }
    }
    engine.close().await?;
    Ok(failures)
}

/// The `.slt` files of a folder, sorted.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    v.sort();
    Ok(v)
}
