//! The interactive shell through a pseudo-terminal, as a person uses it: multi-line entry,
//! completion, a syntax error kept for fixing, Ctrl-C during a push query, Ctrl-D, and the
//! history kept for the next session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use rexpect::session::PtySession;

const PROMPT: &str = "kappa> ";

fn shell(dir: &Path) -> PtySession {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kappa"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm")
        .env("KAPPA_HISTORY", dir.join("history"))
        .env_remove("KAPPA_DATA_DIR")
        .args(["-d", "data"]);
    let mut p = rexpect::session::spawn_command(c, Some(20_000)).unwrap();
    p.exp_string(PROMPT).unwrap();
    p
}

/// Type a line and press Enter.
fn line(p: &mut PtySession, text: &str) {
    p.send(text).unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
}

#[test]
fn a_session_at_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = shell(dir.path());
    // A statement over two lines: the first Enter does not run it (no `;` yet).
    line(&mut p, "CREATE STREAM s (x BIGINT,");
    line(&mut p, "  name VARCHAR);");
    // (The typed text is echoed: the tag is matched with its line end.)
    p.exp_string("CREATE STREAM\r\n").unwrap();
    p.exp_string(PROMPT).unwrap();
    // A `;` inside a string does not end the statement.
    line(&mut p, "INSERT INTO s VALUES (1, 'a;b'),");
    line(&mut p, "(2, 'c');");
    p.exp_string("INSERT 2").unwrap();
    p.exp_string(PROMPT).unwrap();
    // Completion: `FR` + Tab becomes `FROM`, `na` + Tab the column `name` (else the statement
    // would fail to parse).
    p.send("SELECT x, na").unwrap();
    p.send("\t").unwrap();
    p.send(" FR").unwrap();
    p.send("\t").unwrap();
    line(&mut p, " s ORDER BY x;");
    p.exp_string("| a;b  |").unwrap();
    p.exp_string("(2 rows)").unwrap();
    p.exp_string(PROMPT).unwrap();
    // A syntax error is shown before anything runs, and the text stays to be fixed: Ctrl-C
    // clears it.
    line(&mut p, "SELEC 1;");
    // (The validator's message, not the engine's: nothing ran.)
    p.exp_string("syntax error (line 1, column 1): Expected: an SQL statement, found: SELEC")
        .unwrap();
    p.send_control('c').unwrap();
    p.exp_string(PROMPT).unwrap();
    // A push query prints the rows so far and waits; Ctrl-C ends it and the prompt returns.
    line(&mut p, "SELECT x FROM s WHERE x > 1 EMIT CHANGES;");
    p.exp_string("| 2 |").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send_control('c').unwrap();
    p.exp_string("cancelled").unwrap();
    p.exp_string(PROMPT).unwrap();
    // Nothing of it keeps running.
    line(&mut p, "SHOW JOBS;");
    p.exp_string("(0 rows)").unwrap();
    p.exp_string(PROMPT).unwrap();
    // Meta commands.
    line(&mut p, "\\d");
    p.exp_string("| s    |").unwrap();
    p.exp_string(PROMPT).unwrap();
    // Ctrl-D quits, with status 0.
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let status = p.process_mut().wait().unwrap();
    assert!(matches!(status, rexpect::process::WaitStatus::Exited(_, 0)), "{status:?}");

    // The next session has the history: Up brings back the last entry, then the one before.
    let mut p = shell(dir.path());
    p.send("\x1b[A").unwrap();
    p.flush().unwrap();
    p.exp_string("\\d").unwrap();
    p.send("\x1b[A").unwrap();
    p.flush().unwrap();
    p.exp_string("SHOW JOBS;").unwrap();
    line(&mut p, "");
    p.exp_string("(0 rows)").unwrap();
    p.exp_string(PROMPT).unwrap();
    line(&mut p, "\\q");
    p.exp_eof().unwrap();
    let history = std::fs::read_to_string(dir.path().join("history")).unwrap();
    assert!(history.contains("SHOW JOBS;"), "{history}");
    assert!(!dir.path().join(".kappa_history").exists());
}
