//! Meta commands: backslash commands of psql, with the dot commands of DuckDB and sqlite3 as
//! aliases. Each that shows something has an SQL equivalent (`SHOW STREAMS`, `SHOW VIEWS`,
//! `DESCRIBE`, `SHOW JOBS`), so scripts need none.

use std::io::Write;

use crate::print::Format;
use crate::session::{Flow, Session};

/// The meta commands, for `\?` and for completion.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("\\?", ".help", "this help"),
    ("\\q", ".quit", "quit (also Ctrl-D)"),
    ("\\d", ".tables", "list streams and views (SHOW STREAMS; SHOW VIEWS)"),
    ("\\dv", ".views", "list materialized views (SHOW VIEWS)"),
    ("\\d NAME", ".schema NAME", "describe a stream (DESCRIBE NAME)"),
    ("\\jobs", ".jobs", "running jobs (SHOW JOBS)"),
    ("\\flow", ".flow", "how streams, jobs and views feed each other (SHOW DATAFLOW)"),
    ("\\i FILE", ".read FILE", "run the statements of FILE"),
    ("\\timing [on|off]", ".timer on|off", "print how long each statement took"),
    ("\\x [on|off]", ".expanded on|off", "expanded display: a block per row"),
    ("\\pset format FORMAT", ".mode FORMAT", "table, csv, tsv, json or ndjson"),
    ("\\pset maxrows N", ".maxrows N", "print at most N rows of a table (0: all)"),
    ("\\o [FILE]", ".output [FILE]", "send results to FILE (none: back to stdout)"),
    ("\\set ON_ERROR_STOP on|off", ".bail on|off", "stop a script at its first error"),
];

fn help() -> String {
    let mut out = String::from("Meta commands (a line of their own; dot aliases as in DuckDB):\n");
    for (cmd, alias, what) in COMMANDS {
        out.push_str(&format!("  {cmd:28} {alias:18} {what}\n"));
    }
    out.push_str(
        "SQL ends with ';'. Ctrl-C cancels a running query (a statement that writes is let \
         finish); Ctrl-D quits.",
    );
    out
}

/// `on`, `off`, or a toggle of `current` when absent.
fn switch(arg: Option<&str>, current: bool) -> Result<bool, String> {
    match arg.map(|a| a.to_ascii_lowercase()) {
        None => Ok(!current),
        Some(a) if a == "on" || a == "true" || a == "1" => Ok(true),
        Some(a) if a == "off" || a == "false" || a == "0" => Ok(false),
        Some(a) => Err(format!("expected on or off, found '{a}'")),
    }
}

/// Strip matching quotes around a file name.
fn unquote(s: &str) -> &str {
    let t = s.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = t.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    t
}

/// Run a meta command line.
///
/// # Errors
/// A message for an unknown command or a bad argument.
pub fn run(session: &mut Session, line: &str) -> Result<Flow, String> {
    let line = line.trim().trim_end_matches(';').trim();
    let (cmd, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let arg = (!rest.is_empty()).then_some(rest);
    let words: Vec<&str> = rest.split_whitespace().collect();
    let sql = |session: &mut Session, sql: String| -> Flow { session.run_script(&sql, None) };
    match cmd {
        "\\?" | "\\h" | "\\help" | ".help" => {
            let _ = writeln!(std::io::stdout(), "{}", help());
            Ok(Flow::Continue)
        }
        "\\q" | "\\quit" | ".quit" | ".exit" | ".q" => Ok(Flow::Quit),
        "\\d" | ".tables" | ".schema" if arg.is_none() => {
            Ok(sql(session, "SHOW STREAMS; SHOW VIEWS".into()))
        }
        "\\dt" => Ok(sql(session, "SHOW STREAMS".into())),
        "\\dv" | ".views" => Ok(sql(session, "SHOW VIEWS".into())),
        "\\d" | ".schema" | ".describe" => Ok(sql(session, format!("DESCRIBE {rest}"))),
        "\\jobs" | ".jobs" => Ok(sql(session, "SHOW JOBS".into())),
        "\\flow" | ".flow" => Ok(sql(session, "SHOW DATAFLOW".into())),
        "\\i" | "\\include" | ".read" => {
            let Some(path) = arg.map(unquote) else {
                return Err(format!("{cmd} needs a file"));
            };
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            Ok(session.run_script(&text, Some(path)))
        }
        "\\timing" | ".timer" => {
            session.settings.timing = switch(arg, session.settings.timing)?;
            let state = if session.settings.timing { "on" } else { "off" };
            let _ = session.notice(&format!("Timing is {state}."));
            Ok(Flow::Continue)
        }
        "\\x" | ".expanded" => {
            session.settings.style.expanded = switch(arg, session.settings.style.expanded)?;
            let state = if session.settings.style.expanded { "on" } else { "off" };
            let _ = session.notice(&format!("Expanded display is {state}."));
            Ok(Flow::Continue)
        }
        "\\pset" if words.first() == Some(&"format") && words.len() == 2 => {
            set_format(session, words[1])
        }
        ".mode" if words.len() == 1 => set_format(session, words[0]),
        "\\pset" | ".maxrows" => {
            let n = match (cmd, words.as_slice()) {
                ("\\pset", ["maxrows", n]) | (".maxrows", [n]) => n,
                _ => return Err("usage: \\pset format FORMAT, or \\pset maxrows N".into()),
            };
            let n: usize = n.parse().map_err(|_| format!("maxrows: not a number: '{n}'"))?;
            session.settings.style.max_rows = (n > 0).then_some(n);
            Ok(Flow::Continue)
        }
        "\\o" | "\\out" | ".output" => {
            let path = arg.map(unquote);
            session
                .set_output(path)
                .map_err(|e| format!("cannot write to {}: {e}", path.unwrap_or("stdout")))?;
            Ok(Flow::Continue)
        }
        "\\set" if words.len() == 2 && words[0].eq_ignore_ascii_case("ON_ERROR_STOP") => {
            session.settings.bail = switch(Some(words[1]), session.settings.bail)?;
            Ok(Flow::Continue)
        }
        ".bail" if words.len() == 1 => {
            session.settings.bail = switch(Some(words[0]), session.settings.bail)?;
            Ok(Flow::Continue)
        }
        _ => Err(format!("unknown meta command '{line}': \\? lists them")),
    }
}

fn set_format(session: &mut Session, name: &str) -> Result<Flow, String> {
    let format: Format = name.parse()?;
    session.settings.style.format = format;
    session.settings.push_format = format;
    Ok(Flow::Continue)
}
