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
    /// Ctrl-C outside the interactive shell: kappa exits with 130.
    Interrupted,
    /// Ctrl-C in the interactive shell: the rest of the input is dropped, the prompt returns.
    Cancelled,
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

/// A location in a statement that starts at (`line`, `column`) of its script, as a location
/// in the script.
fn in_script(at: kappa::Location, line: u64, column: u64) -> (u64, u64) {
    if at.line <= 1 {
        (line, column + at.column.saturating_sub(1))
    } else {
        (line + at.line - 1, at.column)
    }
}

/// A tokenizer error that more input may resolve (an open string, quoted name or comment).
pub fn incomplete(e: &kappa::sql::Error) -> bool {
    let m = e.to_string();
    m.starts_with("Unterminated") || m.contains("EOF")
}

/// Write a line on stderr; a closed stderr is ignored (never a panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = std::io::Write::write_fmt(
            &mut std::io::stderr(),
            format_args!("{}\n", format_args!($($arg)*)),
        );
    }};
}
pub(crate) use say;

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

    /// A receiver of Ctrl-C presses that reports only those to come, and the count so far.
    pub fn fresh_interrupts(&self) -> (watch::Receiver<u64>, u64) {
        let mut r = self.interrupts.clone();
        let seen = *r.borrow_and_update();
        (r, seen)
    }

    /// Ctrl-C presses so far.
    fn interrupted_since(&self, seen: u64) -> bool {
        *self.interrupts.borrow() > seen
    }

    /// Outside the interactive shell, any Ctrl-C since kappa started ends it.
    pub fn interrupted(&self) -> bool {
        !self.settings.interactive && *self.interrupts.borrow() > 0
    }

    /// What a Ctrl-C that ended a statement does.
    fn on_interrupt(&self) -> Flow {
        if self.settings.interactive { Flow::Cancelled } else { Flow::Interrupted }
    }

    /// What a failed statement does.
    fn on_error(&mut self) -> Flow {
        self.failed += 1;
        if self.settings.bail { Flow::Bail } else { Flow::Continue }
    }

    /// Run a script: SQL statements and meta commands. `source` names it in errors (a file);
    /// `None` for what was typed or given with `-c`.
    pub fn run_script(&mut self, text: &str, source: Option<&str>) -> Flow {
        // Lines are gathered into `pending` until it holds complete statements; a meta command
        // stands on a line of its own between statements. `pending` is tokenized again only
        // when a line brings a `;`.
        let mut pending = String::new();
        let mut pending_line = 1u64;
        // `pending` holds nothing but blanks and `--` comments.
        let mut pending_blank = true;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let no = i as u64 + 1;
            if is_meta(line) && (pending_blank || blank(&pending)) {
                pending.clear();
                pending_blank = true;
                let flow = self.meta(line.trim(), source, no);
                if flow != Flow::Continue {
                    return flow;
                }
                pending_line = no + 1;
                continue;
            }
            if pending_blank {
                pending.clear();
                pending_line = no;
            }
            pending.push_str(line);
            let t = line.trim();
            pending_blank &= t.is_empty() || t.starts_with("--");
            if pending_blank || !line.contains(';') {
                continue;
            }
            match kappa::sql::split(&pending) {
                Err(e) if incomplete(&e) => {}
                Err(e) => {
                    // Not SQL that more lines can mend: report it, and go on after this line.
                    let at = e.location().map(|l| (pending_line + l.line - 1, l.column));
                    report::error(&kappa::Error::Sql(e), at, source, text, self.settings.color);
                    let flow = self.on_error();
                    if flow != Flow::Continue {
                        return flow;
                    }
                    pending.clear();
                    pending_blank = true;
                }
                Ok(pieces) => {
                    let complete = pieces.iter().filter(|p| p.terminated).count();
                    let Some(next) = pieces.iter().rev().find(|p| p.terminated).map(|p| p.next)
                    else {
                        continue;
                    };
                    for p in pieces.into_iter().take(complete) {
                        let (l, c) = (pending_line + p.location.line - 1, p.location.column);
                        let flow = self.statement(&p.text, l, c, source, text);
                        if flow != Flow::Continue {
                            return flow;
                        }
                    }
                    // Keep what follows the last `;` (the start of the next statement), with
                    // blanks for what came before it on its line, so columns stay true.
                    let (consumed, rest) = pending.split_at(next);
                    pending_line += consumed.matches('\n').count() as u64;
                    let line_start = consumed.rfind('\n').map_or(0, |i| i + 1);
                    let mut kept = " ".repeat(consumed[line_start..].chars().count());
                    kept.push_str(rest);
                    pending = kept;
                    pending_blank = blank(&pending);
                }
            }
        }
        if pending_blank || blank(&pending) {
            return Flow::Continue;
        }
        self.run_end(&pending, pending_line, source, text)
    }

    /// The end of a script in `pending` (from line `pending_line`): its statements, the last
    /// without `;`. If it does not tokenize (an open string), the statements before the
    /// problem run, then the problem is reported.
    fn run_end(
        &mut self,
        pending: &str,
        pending_line: u64,
        source: Option<&str>,
        text: &str,
    ) -> Flow {
        let (pieces, problem) = match kappa::sql::split(pending) {
            Ok(pieces) => (pieces, None),
            Err(e) => {
                let before = e.location().map_or(0, |l| byte_offset(pending, l.line, l.column));
                let pieces = kappa::sql::split(&pending[..before]).unwrap_or_default();
                (pieces.into_iter().filter(|p| p.terminated).collect(), Some(e))
            }
        };
        for p in pieces {
            let (l, c) = (pending_line + p.location.line - 1, p.location.column);
            let flow = self.statement(&p.text, l, c, source, text);
            if flow != Flow::Continue {
                return flow;
            }
        }
        match problem {
            None => Flow::Continue,
            Some(e) => {
                let at = e.location().map(|l| (pending_line + l.line - 1, l.column));
                report::error(&kappa::Error::Sql(e), at, source, text, self.settings.color);
                self.on_error()
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
        if self.interrupted() {
            return Flow::Interrupted;
        }
        // The presses counted from here on are this statement's.
        let (mut interrupts, seen) = self.fresh_interrupts();
        let start = Instant::now();
        let progress = self.settings.progress.then(|| crate::progress::Progress::start(self, text));
        let engine = self.engine.clone();
        let cancellable = read_only(text);
        let outcome = self.runtime.block_on(async {
            let run = engine.execute(text);
            tokio::pin!(run);
            let mut presses = 0;
            loop {
                tokio::select! {
                    r = &mut run => return Some(r),
                    () = pressed(&mut interrupts) => {
                        if cancellable {
                            return None;
                        }
                        presses += 1;
                        if presses >= 3 {
                            say!("Ctrl-C three times: quitting now (the logs recover what was written)");
                            std::process::exit(130);
                        }
                        say!("the statement may be writing: it is let finish rather than cut off (Ctrl-C {} more times quits)", 3 - presses);
                    }
                }
            }
        });
        drop(progress);
        let result = match outcome {
            None => {
                say!("cancelled");
                return self.on_interrupt();
            }
            Some(r) => r,
        };
        let flow = match result {
            Ok(outputs) => self.show(outputs, seen, (line, column), text),
            Err(e) => {
                let at = e.location().map(|l| in_script(l, line, column));
                report::error(&e, at, source, script, self.settings.color);
                self.on_error()
            }
        };
        if self.settings.timing && flow != Flow::Quit {
            let ms = start.elapsed().as_secs_f64() * 1e3;
            if self.notice(&format!("Time: {ms:.3} ms")).is_err() {
                return Flow::Quit;
            }
        }
        if flow == Flow::Continue && self.interrupted_since(seen) {
            return self.on_interrupt();
        }
        flow
    }

    /// Print the outputs of a statement.
    fn show(&mut self, outputs: Vec<Output>, seen: u64, at: (u64, u64), text: &str) -> Flow {
        for out in outputs {
            let written = match out {
                Output::Done { tag, rows } => {
                    let rebuilt = crate::progress::rebuilt(&tag);
                    let backfill = crate::progress::backfill(text, &tag);
                    let text = match rows {
                        Some(n) => format!("{tag} {n}"),
                        None => tag,
                    };
                    let watch = self.settings.interactive && self.settings.progress;
                    match (rebuilt, backfill) {
                        // A rebuild in the shell: a bar until the new version takes over.
                        (Some(name), _) if watch => {
                            let notice = self.notice(&text);
                            let end = crate::progress::follow(self, &name);
                            notice.and_then(|()| self.notice(&end))
                        }
                        // A new job over a long history: a bar while it reads it.
                        (None, Some(job)) if watch => {
                            let notice = self.notice(&text);
                            match crate::progress::catch_up(self, &job) {
                                Some(end) => notice.and_then(|()| self.notice(&end)),
                                None => notice,
                            }
                        }
                        _ => self.notice(&text),
                    }
                }
                Output::Rows { schema, batches } => {
                    let style = self.settings.style.clone();
                    let r = print::rows(self.out(), &style, &schema, &batches);
                    r.and_then(|()| self.out().flush())
                }
                Output::Subscription(sub) => match self.push(sub, seen, at) {
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
                report::message(
                    "IO",
                    &format!("cannot write the result: {e}"),
                    self.settings.color,
                );
                return self.on_error();
            }
        }
        Flow::Continue
    }

    /// Print a push query's rows as they arrive, until it ends, fails or Ctrl-C.
    fn push(
        &mut self,
        mut sub: kappa::Subscription,
        seen: u64,
        at: (u64, u64),
    ) -> std::io::Result<Flow> {
        if !self.settings.interactive && !sub.ends() {
            let e = kappa::Error::Sql(kappa::sql::Error::plan(
                "a push query (EMIT CHANGES) outside the interactive shell needs LIMIT n, or \
                 inputs that are sealed: it would never end",
                None,
            ));
            report::error(&e, Some(at), None, "", self.settings.color);
            return Ok(self.on_error());
        }
        let start = Instant::now();
        let mut printer = print::Streaming::new(self.settings.push_format, sub.schema().clone());
        let (mut interrupts, _) = self.fresh_interrupts();
        let mut status = StatusLine::new(self.settings.progress);
        let ended = loop {
            // A press since the statement started (also before this loop) ends it.
            if self.interrupted_since(seen) {
                break "cancelled";
            }
            let next = self.runtime.block_on(async {
                tokio::select! {
                    b = sub.next() => Some(b),
                    () = pressed(&mut interrupts) => None,
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
                    return Ok(self.on_error());
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
            say!("({rows} {word}, {ended} after {secs:.1} s)");
        }
        if ended == "cancelled" {
            return Ok(self.on_interrupt());
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
                self.on_error()
            }
        }
    }
}

/// Resolves at the next Ctrl-C; never, if the signal listener is gone.
pub async fn pressed(interrupts: &mut watch::Receiver<u64>) {
    if interrupts.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The byte offset of (`line`, `column`) (from 1, column in characters) in `text`.
fn byte_offset(text: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let col = column.saturating_sub(1) as usize;
            return offset + l.char_indices().nth(col).map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    text.len()
}

/// Only blanks and comments.
fn blank(text: &str) -> bool {
    match kappa::sql::split(text) {
        Ok(pieces) => pieces.is_empty(),
        Err(_) => false,
    }
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
            let _ = write!(
                std::io::stderr(),
                "\r\x1b[2K-- {rows} {word}, {:.0} s (Ctrl-C ends the query)",
                elapsed.as_secs_f64()
            );
            self.shown = true;
        }
    }

    fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
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
        // What follows the last complete statement.
        let after_last = |text: &str| {
            let pieces = kappa::sql::split(text).unwrap();
            let next = pieces.iter().rev().find(|p| p.terminated).map_or(0, |p| p.next);
            text[next..].to_string()
        };
        assert_eq!(after_last("SELECT 1; SELECT ';'; SEL"), " SEL");
        assert_eq!(after_last("SELECT 1;\n-- c\nSELECT"), "\n-- c\nSELECT");
        assert_eq!(after_last("SELECT (1;"), "SELECT (1;");
        assert_eq!(in_script(kappa::Location::new(1, 8), 3, 4), (3, 11));
        assert_eq!(in_script(kappa::Location::new(2, 3), 3, 4), (4, 3));
    }
}
