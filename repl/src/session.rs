//! Running statements: scripts split into statements (and meta commands), each executed on
//! the engine, its result printed, its error reported with its place; Ctrl-C cancels what can
//! be cancelled.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kappa::{Engine, Output};
use tokio::sync::watch;

use crate::meta;
use crate::print::{self, Format, Style};
use crate::report;

/// What happens after a statement or a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// A statement failed with `ON_ERROR_STOP` (`--bail`) on.
    Bail,
    /// Ctrl-C.
    Interrupted,
    /// `\q`, or stdout was closed (a broken pipe).
    Quit,
}

/// The shell's settings (meta commands change them).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How whole results print.
    pub style: Style,
    /// How the rows of push queries print.
    pub push_format: Format,
    pub timing: bool,
    pub quiet: bool,
    /// Stop at the first error (`\set ON_ERROR_STOP on`, `--bail`).
    pub bail: bool,
    /// The interactive shell (push queries may run until Ctrl-C).
    pub interactive: bool,
    /// stderr is a terminal: progress lines.
    pub progress: bool,
    /// Colour on stderr.
    pub color: bool,
}

/// Where results go (`\o`).
enum Sink {
    Stdout(std::io::Stdout),
    File(PathBuf, std::io::BufWriter<std::fs::File>),
}

/// A shell session over an engine.
pub struct Session {
    pub engine: Engine,
    pub runtime: tokio::runtime::Handle,
    pub settings: Settings,
    /// Ctrl-C presses so far (a task of `main` counts them).
    pub interrupts: watch::Receiver<u64>,
    sink: Sink,
    /// Statements that failed.
    pub failed: usize,
    /// The data directory (for the banner).
    pub data_dir: PathBuf,
}

/// An error that is not a statement's: a write to the output failed.
fn broken(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Statements that only read: Ctrl-C drops them at once. Others may be writing; they are let
/// finish, so that nothing stored is left half done.
fn read_only(text: &str) -> bool {
    let first = text.split(|c: char| !c.is_ascii_alphabetic()).find(|w| !w.is_empty());
    first.is_some_and(|w| {
        ["select", "with", "show", "describe", "desc", "explain", "values", "table"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    })
}

/// `text` placed where it is in its script, so that the engine's locations are the script's.
fn placed(text: &str, line: u64, column: u64) -> String {
    let mut s = "\n".repeat(line.saturating_sub(1) as usize);
    s.push_str(&" ".repeat(column.saturating_sub(1) as usize));
    s.push_str(text);
    s
}

/// A meta command line: `\...` anywhere, `.word` in the first column.
pub fn is_meta(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('\\')
        || (t.starts_with('.') && t[1..].starts_with(|c: char| c.is_ascii_alphabetic()))
}

impl Session {
    pub fn new(
        engine: Engine,
        runtime: tokio::runtime::Handle,
        settings: Settings,
        interrupts: watch::Receiver<u64>,
        data_dir: PathBuf,
    ) -> Session {
        Session {
            engine,
            runtime,
            settings,
            interrupts,
            sink: Sink::Stdout(std::io::stdout()),
            failed: 0,
            data_dir,
        }
    }

    fn out(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(s) => s,
            Sink::File(_, f) => f,
        }
    }

    /// Send results to `path` (or back to stdout with `None`).
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn set_output(&mut self, path: Option<&str>) -> std::io::Result<()> {
        if let Sink::File(_, f) = &mut self.sink {
            f.flush()?;
        }
        self.sink = match path {
            None => Sink::Stdout(std::io::stdout()),
            Some(p) => {
                let file = std::fs::File::create(p)?;
                Sink::File(PathBuf::from(p), std::io::BufWriter::new(file))
            }
        };
        Ok(())
    }

    /// The file results go to, if not stdout.
    pub fn output_file(&self) -> Option<&Path> {
        match &self.sink {
            Sink::Stdout(_) => None,
            Sink::File(p, _) => Some(p),
        }
    }

    /// A notice (command tags, timings): on stdout in table format, else on stderr, so that
    /// csv and json stay parseable; none with `-q`.
    pub fn notice(&mut self, text: &str) -> std::io::Result<()> {
        if self.settings.quiet {
            return Ok(());
        }
        if self.settings.style.format == Format::Table && self.output_file().is_none() {
            writeln!(std::io::stdout(), "{text}")
        } else {
            writeln!(std::io::stderr(), "{text}")
        }
    }

    /// A receiver of Ctrl-C presses that reports only those to come.
    pub fn fresh_interrupts(&self) -> watch::Receiver<u64> {
        let mut r = self.interrupts.clone();
        r.borrow_and_update();
        r
    }

    /// Ctrl-C presses so far.
    fn interrupted_since(&self, seen: u64) -> bool {
        *self.interrupts.borrow() > seen
    }

    /// Run a script: SQL statements and meta commands. `source` names it in errors (a file);
    /// `None` for what was typed or given with `-c`.
    pub fn run_script(&mut self, text: &str, source: Option<&str>) -> Flow {
        // Lines are gathered into `pending` until it holds complete statements; a meta command
        // stands on a line of its own between statements.
        let mut pending = String::new();
        let mut pending_line = 1u64;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let no = i as u64 + 1;
            if blank(&pending) && is_meta(line) {
                pending.clear();
                let flow = self.meta(line.trim(), source, no);
                if flow != Flow::Continue {
                    return flow;
                }
                pending_line = no + 1;
                continue;
            }
            if blank(&pending) {
                pending.clear();
                pending_line = no;
            }
            pending.push_str(line);
            match kappa::sql::split(&pending) {
                // An unterminated string or comment: read on.
                Err(_) => {}
                Ok(pieces) => {
                    let complete = pieces.iter().filter(|p| p.terminated).count();
                    if complete == 0 {
                        continue;
                    }
                    for p in pieces.into_iter().take(complete) {
                        let (l, c) = (pending_line + p.location.line - 1, p.location.column);
                        let flow = self.statement(&p.text, l, c, source, text);
                        if flow != Flow::Continue {
                            return flow;
                        }
                    }
                    // Keep what follows the last `;` (the start of the next statement), with
                    // blanks for what came before it on its line, so columns stay true.
                    let rest = after_last_terminator(&pending);
                    let consumed = &pending[..pending.len() - rest.len()];
                    pending_line += consumed.matches('\n').count() as u64;
                    let line_start = consumed.rfind('\n').map_or(0, |i| i + 1);
                    let mut kept = " ".repeat(consumed[line_start..].chars().count());
                    kept.push_str(&rest);
                    pending = kept;
                }
            }
        }
        if blank(&pending) {
            return Flow::Continue;
        }
        // The end of the script: the last statement needs no `;`.
        match kappa::sql::split(&pending) {
            Ok(pieces) => {
                for p in pieces {
                    let (l, c) = (pending_line + p.location.line - 1, p.location.column);
                    let flow = self.statement(&p.text, l, c, source, text);
                    if flow != Flow::Continue {
                        return flow;
                    }
                }
                Flow::Continue
            }
            Err(e) => {
                let e = kappa::Error::Sql(e);
                let at = e.location().map(|l| (pending_line + l.line - 1, l.column));
                report::error(&e, at, source, text, self.settings.color);
                self.failed += 1;
                if self.settings.bail { Flow::Bail } else { Flow::Continue }
            }
        }
    }

    /// Run one statement found at (`line`, `column`) of `script`.
    fn statement(
        &mut self,
        text: &str,
        line: u64,
        column: u64,
        source: Option<&str>,
        script: &str,
    ) -> Flow {
        let seen = *self.interrupts.borrow();
        let start = Instant::now();
        let sql = placed(text, line, column);
        let progress = self.settings.progress.then(|| crate::progress::Progress::start(self, text));
        let engine = self.engine.clone();
        let mut interrupts = self.fresh_interrupts();
        let cancellable = read_only(text);
        let outcome = self.runtime.block_on(async {
            let run = engine.execute(&sql);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => return Some(r),
                    changed = interrupts.changed() => {
                        if changed.is_err() || cancellable {
                            return None;
                        }
                        eprintln!("the statement may be writing; it is left to finish rather than be cut off");
                    }
                }
            }
        });
        drop(progress);
        let result = match outcome {
            None => {
                eprintln!("cancelled");
                return if self.settings.interactive { Flow::Continue } else { Flow::Interrupted };
            }
            Some(r) => r,
        };
        let flow = match result {
            Ok(outputs) => self.show(outputs, seen),
            Err(e) => {
                let at = e.location().map(|l| (l.line, l.column));
                report::error(&e, at, source, script, self.settings.color);
                self.failed += 1;
                if self.settings.bail { Flow::Bail } else { Flow::Continue }
            }
        };
        if self.settings.timing && flow != Flow::Quit {
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if self.notice(&format!("Time: {ms:.3} ms")).is_err() {
                return Flow::Quit;
            }
        }
        if flow == Flow::Continue && self.interrupted_since(seen) && !self.settings.interactive {
            return Flow::Interrupted;
        }
        flow
    }

    /// Print the outputs of a statement.
    fn show(&mut self, outputs: Vec<Output>, seen: u64) -> Flow {
        for out in outputs {
            let written = match out {
                Output::Done { tag, rows } => {
                    let text = match rows {
                        Some(n) => format!("{tag} {n}"),
                        None => tag,
                    };
                    self.notice(&text)
                }
                Output::Rows { schema, batches } => {
                    let style = self.settings.style.clone();
                    let r = print::rows(self.out(), &style, &schema, &batches);
                    r.and_then(|()| self.out().flush())
                }
                Output::Subscription(sub) => match self.push(sub, seen) {
                    Ok(flow) => {
                        if flow != Flow::Continue {
                            return flow;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = written {
                if broken(&e) {
                    return Flow::Quit;
                }
                eprintln!("ERROR [IO] cannot write the result: {e}");
                self.failed += 1;
                return if self.settings.bail { Flow::Bail } else { Flow::Continue };
            }
        }
        Flow::Continue
    }

    /// Print a push query's rows as they arrive, until it ends, fails or Ctrl-C.
    fn push(&mut self, mut sub: kappa::Subscription, seen: u64) -> std::io::Result<Flow> {
        if !self.settings.interactive && !sub.ends() {
            let e = kappa::Error::Sql(kappa::sql::Error::plan(
                "a push query (EMIT CHANGES) outside the interactive shell needs LIMIT n, or \
                 inputs that are sealed: it would never end",
                None,
            ));
            report::error(&e, None, None, "", self.settings.color);
            self.failed += 1;
            return Ok(if self.settings.bail { Flow::Bail } else { Flow::Continue });
        }
        let start = Instant::now();
        let mut printer = print::Streaming::new(self.settings.push_format, sub.schema().clone());
        let mut interrupts = self.fresh_interrupts();
        let mut status = StatusLine::new(self.settings.progress);
        let ended = loop {
            let next = self.runtime.block_on(async {
                tokio::select! {
                    b = sub.next() => Some(b),
                    _ = interrupts.changed() => None,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => Some(Some(Ok(
                        kappa::datafusion::arrow::array::RecordBatch::new_empty(sub.schema().clone())
                    ))),
                }
            });
            match next {
                None => break "cancelled",
                Some(None) => break "ended",
                Some(Some(Err(e))) => {
                    status.clear();
                    printer.end(self.out())?;
                    report::error(&e, None, None, "", self.settings.color);
                    self.failed += 1;
                    return Ok(if self.settings.bail { Flow::Bail } else { Flow::Continue });
                }
                Some(Some(Ok(batch))) => {
                    if batch.num_rows() > 0 {
                        status.clear();
                        printer.batch(self.out(), &batch)?;
                    }
                    status.show(printer.rows, start.elapsed());
                }
            }
        };
        drop(sub);
        status.clear();
        printer.end(self.out())?;
        let rows = printer.rows;
        let secs = start.elapsed().as_secs_f64();
        let word = if rows == 1 { "row" } else { "rows" };
        if !self.settings.quiet {
            eprintln!("({rows} {word}, {ended} after {secs:.1} s)");
        }
        if ended == "cancelled" && !self.settings.interactive && self.interrupted_since(seen) {
            return Ok(Flow::Interrupted);
        }
        Ok(Flow::Continue)
    }

    /// Run a meta command found on line `line` of a script.
    fn meta(&mut self, text: &str, source: Option<&str>, line: u64) -> Flow {
        match meta::run(self, text) {
            Ok(flow) => flow,
            Err(message) => {
                let place = source.map_or(String::new(), |s| format!("{s}:{line}: "));
                report::message("META", &format!("{place}{message}"), self.settings.color);
                self.failed += 1;
                if self.settings.bail { Flow::Bail } else { Flow::Continue }
            }
        }
    }
}

/// Only blanks and comments.
fn blank(text: &str) -> bool {
    match kappa::sql::split(text) {
        Ok(pieces) => pieces.is_empty(),
        Err(_) => false,
    }
}

/// The text after the last top-level `;` of `text` (which tokenizes).
fn after_last_terminator(text: &str) -> String {
    use kappa::sql::sqlparser::dialect::GenericDialect;
    use kappa::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize_with_location() else {
        return String::new();
    };
    let mut depth = 0i64;
    let mut last = None;
    for t in &tokens {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => last = Some(t.span.end),
            _ => {}
        }
    }
    let Some(end) = last else { return text.to_string() };
    // The byte offset of (line, column) in `text`.
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == end.line {
            offset += l.char_indices().nth(end.column as usize - 1).map_or(l.len(), |(b, _)| b);
            break;
        }
        offset += l.len();
    }
    text[offset.min(text.len())..].to_string()
}

/// The status line of a push query on stderr (a terminal only): rows and time so far.
struct StatusLine {
    on: bool,
    shown: bool,
}

impl StatusLine {
    fn new(on: bool) -> StatusLine {
        StatusLine { on, shown: false }
    }

    fn show(&mut self, rows: u64, elapsed: Duration) {
        if self.on {
            let word = if rows == 1 { "row" } else { "rows" };
            eprint!(
                "\r\x1b[2K-- {rows} {word}, {:.0} s (Ctrl-C ends the query)",
                elapsed.as_secs_f64()
            );
            self.shown = true;
        }
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_only_read() {
        assert!(read_only("SELECT 1"));
        assert!(read_only("  with x as (select 1) select * from x"));
        assert!(read_only("SHOW STREAMS"));
        assert!(!read_only("INSERT INTO s VALUES (1)"));
        assert!(!read_only("COPY s FROM 'f.csv'"));
        assert!(!read_only("CREATE STREAM d AS SELECT * FROM s"));
    }

    #[test]
    fn meta_lines_and_the_rest_after_a_semicolon() {
        assert!(is_meta("\\d bids"));
        assert!(is_meta(".mode csv"));
        assert!(!is_meta("SELECT 1.5"));
        assert!(!is_meta(".5"));
        assert_eq!(after_last_terminator("SELECT 1; SELECT ';'; SEL"), " SEL");
        assert_eq!(after_last_terminator("SELECT 1;\n-- c\nSELECT"), "\n-- c\nSELECT");
        assert_eq!(after_last_terminator("SELECT (1;"), "SELECT (1;");
        assert_eq!(placed("SELECT", 3, 4), "\n\n   SELECT");
    }
}
