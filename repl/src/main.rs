//! The `kappa` binary: the interactive shell, `-f FILE` and `-c SQL`, SQL from stdin, and
//! `kappa bench nexmark` (`bench`).
//!
//! - `args`: the command line. `session`: runs scripts (statements and meta commands, `meta`)
//!   on the engine, prints results (`print`), reports errors with their place (`report`),
//!   shows progress (`progress`) and handles Ctrl-C. `interactive`: the line editor
//!   (rustyline) with its validator, completion and highlighting (`complete`) and history.
//!
//! Ctrl-C is counted by a task that listens for SIGINT from the start; a running statement
//! watches the count. At the prompt, rustyline reads Ctrl-C as a key (it clears the line).

mod args;
mod bench;
mod complete;
mod interactive;
mod meta;
mod print;
mod progress;
mod report;
mod session;

use std::io::{IsTerminal, Read, Write};

use args::{Input, Parsed};
use print::{Format, Style};
use session::{Flow, Session, Settings};

/// Exit codes (REPL.md).
const OK: i32 = 0;
const FAILED: i32 = 1;
const USAGE_OR_IO: i32 = 2;
const BAILED: i32 = 3;
const INTERRUPTED: i32 = 130;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "bench") {
        return bench::main(&argv[1..]);
    }
    let parsed = args::parse(argv, std::env::var("KAPPA_DATA_DIR").ok());
    let args = match parsed {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            let _ = write!(std::io::stdout(), "{}", args::USAGE);
            return OK;
        }
        Ok(Parsed::Version) => {
            let _ = writeln!(std::io::stdout(), "kappa {}", env!("CARGO_PKG_VERSION"));
            return OK;
        }
        Err(message) => {
            crate::session::say!("kappa: {message}");
            return USAGE_OR_IO;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            crate::session::say!("kappa: cannot start the runtime: {e}");
            return USAGE_OR_IO;
        }
    };
    // Ctrl-C presses, counted from the start: SIGINT never kills the shell mid-statement.
    let (interrupt_tx, interrupts) = tokio::sync::watch::channel(0u64);
    runtime.spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            interrupt_tx.send_modify(|n| *n += 1);
        }
    });
    let engine = match runtime.block_on(kappa::Engine::open(&args.data_dir)) {
        Ok(e) => e,
        Err(e) => {
            crate::session::say!(
                "kappa: cannot open the data directory {}: {e}",
                args.data_dir.display()
            );
            return USAGE_OR_IO;
        }
    };
    let (stdin_tty, stdout_tty, stderr_tty) = (
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
        std::io::stderr().is_terminal(),
    );
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let interactive = args.inputs.is_empty() && stdin_tty;
    let settings = Settings {
        style: Style {
            format: args.format.unwrap_or(if stdout_tty { Format::Table } else { Format::Csv }),
            expanded: false,
            max_rows: interactive.then_some(1000),
        },
        push_format: args.format.unwrap_or(if stdout_tty { Format::Table } else { Format::Ndjson }),
        timing: false,
        quiet: args.quiet,
        bail: args.bail,
        interactive,
        progress: stderr_tty,
        color: stderr_tty && !no_color,
    };
    let mut session =
        Session::new(engine, runtime.handle().clone(), settings, interrupts, args.data_dir.clone());
    let code = if interactive {
        session.settings.color = stdout_tty && stderr_tty && !no_color;
        match interactive::run(&mut session) {
            Ok(()) => OK,
            Err(e) => {
                crate::session::say!("kappa: the terminal failed: {e}");
                USAGE_OR_IO
            }
        }
    } else {
        scripts(&mut session, &args.inputs)
    };
    let closed = runtime.block_on(session.engine.close());
    if let Err(e) = closed {
        crate::session::say!("kappa: the data directory was not closed cleanly: {e}");
        return code.max(FAILED);
    }
    code
}

/// Run `-f` and `-c` inputs (or stdin), then wait for the jobs to catch up.
fn scripts(session: &mut Session, inputs: &[Input]) -> i32 {
    let stdin = [Input::Command(String::new())];
    let from_stdin = inputs.is_empty();
    let inputs = if from_stdin { &stdin[..] } else { inputs };
    for input in inputs {
        let flow = match input {
            Input::Command(sql) if from_stdin => {
                let _ = sql;
                let mut text = String::new();
                if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                    crate::session::say!("kappa: cannot read stdin: {e}");
                    return USAGE_OR_IO;
                }
                if session.interrupted() {
                    return INTERRUPTED;
                }
                session.run_script(&text, Some("<stdin>"))
            }
            Input::Command(sql) => session.run_script(sql, None),
            Input::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => session.run_script(&text, Some(&path.display().to_string())),
                Err(e) => {
                    crate::session::say!("kappa: cannot read {}: {e}", path.display());
                    return USAGE_OR_IO;
                }
            },
        };
        match flow {
            Flow::Continue | Flow::Cancelled => {}
            Flow::Bail => return BAILED,
            Flow::Interrupted => return INTERRUPTED,
            // `\q`, or stdout closed: no more statements; the jobs still catch up.
            Flow::Quit => break,
        }
    }
    if session.interrupted() {
        return INTERRUPTED;
    }
    // Every job catches up with what its inputs hold before kappa exits.
    let engine = session.engine.clone();
    let (mut interrupts, _) = session.fresh_interrupts();
    let waited = session.runtime.block_on(async {
        tokio::select! {
            r = engine.wait_for_jobs() => Some(r),
            () = session::pressed(&mut interrupts) => None,
        }
    });
    match waited {
        None => return INTERRUPTED,
        Some(Err(e)) => {
            report::error(&e, None, None, "", session.settings.color);
            session.failed += 1;
        }
        Some(Ok(())) => {}
    }
    exit_code(session)
}

fn exit_code(session: &Session) -> i32 {
    if session.failed > 0 { FAILED } else { OK }
}
