//! The interactive shell on rustyline: multi-line input that ends at a `;` outside strings
//! and comments (a validator on the SQL tokenizer), syntax errors shown before the statement
//! runs (the text stays to be fixed), completion, highlighting and a history file.

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Config, Context, Editor, Helper};

use crate::complete;
use crate::session::{Flow, Session, incomplete, is_meta};

/// Names for completion: streams and their columns, refreshed after every statement.
pub type Names = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// The line editor's helper.
pub struct ShellHelper {
    pub names: Names,
    pub color: bool,
    files: FilenameCompleter,
}

impl ShellHelper {
    pub fn new(names: Names, color: bool) -> ShellHelper {
        ShellHelper { names, color, files: FilenameCompleter::new() }
    }
}

/// Whether `input` is ready to run: `Some(Ok(()))` yes, `Some(Err(message))` a syntax error to
/// fix, `None` not finished (no `;` yet, or an open string or comment).
pub fn check(input: &str) -> Option<Result<(), String>> {
    if input.trim().is_empty() || is_meta(input) {
        return Some(Ok(()));
    }
    let pieces = match kappa::sql::split(input) {
        Ok(p) => p,
        Err(e) if incomplete(&e) => return None,
        Err(e) => return Some(Err(format!("syntax error: {e}"))),
    };
    if pieces.last().is_some_and(|p| !p.terminated) {
        return None;
    }
    if let Err(e) = kappa::sql::parse(input) {
        let at = e
            .location()
            .map_or(String::new(), |l| format!(" (line {}, column {})", l.line, l.column));
        return Some(Err(format!("syntax error{at}: {e}")));
    }
    Some(Ok(()))
}

impl Validator for ShellHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(match check(ctx.input()) {
            None => ValidationResult::Incomplete,
            Some(Ok(())) => ValidationResult::Valid(None),
            Some(Err(message)) => ValidationResult::Invalid(Some(format!("\n  {message}"))),
        })
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        if complete::in_string(&line[..pos]) {
            return self.files.complete(line, pos, ctx);
        }
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        Ok(complete::candidates(line, pos, &names))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.color {
            return Cow::Borrowed(line);
        }
        complete::highlight(line).map_or(Cow::Borrowed(line), Cow::Owned)
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.color
    }
}

impl Helper for ShellHelper {}

/// The history file: `KAPPA_HISTORY`, else `kappa/history` in the user's data directory
/// (`XDG_DATA_HOME`, else `~/.local/share`); never the current directory.
pub fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KAPPA_HISTORY") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(base.join("kappa").join("history"))
}

/// The history entries of an input: one per statement (or the input as typed, when it is a
/// meta command or does not split).
fn history_entries(input: &str) -> Vec<String> {
    if is_meta(input) {
        return vec![input.trim().to_string()];
    }
    match kappa::sql::split(input) {
        Ok(pieces) if pieces.len() > 1 => pieces
            .into_iter()
            .map(|p| if p.terminated { format!("{};", p.text) } else { p.text })
            .collect(),
        _ => vec![input.to_string()],
    }
}

/// Refresh the names for completion from the catalog (streams and views).
fn refresh(session: &Session, names: &Names) {
    let fresh: Vec<(String, Vec<String>)> = session
        .engine
        .streams()
        .into_iter()
        .chain(session.engine.views())
        .map(|(n, s)| (n, s.fields().iter().map(|f| f.name().clone()).collect()))
        .collect();
    if let Ok(mut n) = names.lock() {
        *n = fresh;
    }
}

/// Run the shell until `\q`, Ctrl-D or a broken output.
///
/// # Errors
/// When the terminal cannot be used.
pub fn run(session: &mut Session) -> rustyline::Result<()> {
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .completion_type(rustyline::CompletionType::List)
        .build();
    let names: Names = Arc::default();
    let mut editor: Editor<ShellHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ShellHelper::new(Arc::clone(&names), session.settings.color)));
    let history = history_path();
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.load_history(path);
    }
    refresh(session, &names);
    if !session.settings.quiet {
        let _ = writeln!(
            std::io::stdout(),
            "kappa {} on {}: end statements with ';', \\? for help, Ctrl-D to quit.",
            env!("CARGO_PKG_VERSION"),
            session.data_dir.display()
        );
    }
    loop {
        match editor.readline("kappa> ") {
            Ok(input) => {
                if input.trim().is_empty() {
                    continue;
                }
                // One history entry per statement.
                for entry in history_entries(&input) {
                    let _ = editor.add_history_entry(entry);
                }
                if let Some(path) = &history
                    && let Err(e) = editor.append_history(path)
                {
                    crate::session::say!("cannot save the history to {}: {e}", path.display());
                }
                // A Ctrl-C (`Flow::Cancelled`) drops the rest of the input: back to the prompt.
                let flow = session.run_script(&input, None);
                refresh(session, &names);
                if flow == Flow::Quit {
                    break;
                }
            }
            // Ctrl-C at the prompt clears the line.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
