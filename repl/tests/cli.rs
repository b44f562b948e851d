//! Snapshot tests of the `kappa` binary run as a user would: each output format, each exit
//! code, a file with an error in the middle, SQL from stdin, a push query with LIMIT.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use insta_cmd::assert_cmd_snapshot;

const SETUP: &str = "CREATE STREAM bids (auction BIGINT NOT NULL, price BIGINT, channel VARCHAR);\n\
                     INSERT INTO bids VALUES (1, 100, 'web'), (2, NULL, 'app'), (3, 300, 'a,b');";

/// `kappa` in `dir` (its data in `dir/data`), without colour.
fn kappa(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kappa"));
    c.current_dir(dir).env("NO_COLOR", "1").env_remove("KAPPA_DATA_DIR").args(["-d", "data"]);
    c
}

/// Times change from run to run.
macro_rules! timeless {
    ($body:expr) => {
        insta::with_settings!({filters => vec![(r"\d+\.\d+ s\b", "[TIME] s")]}, { $body })
    };
}

#[test]
fn each_output_format() {
    let dir = tempfile::tempdir().unwrap();
    assert_cmd_snapshot!("setup", kappa(dir.path()).args(["-c", SETUP]));
    for format in ["table", "csv", "tsv", "json", "ndjson"] {
        assert_cmd_snapshot!(
            format!("format_{format}"),
            kappa(dir.path()).args([
                "--format",
                format,
                "-c",
                "SELECT * FROM bids ORDER BY auction",
                "-c",
                "SELECT auction FROM bids WHERE price > 1000"
            ])
        );
    }
}

#[test]
fn a_file_with_an_error_in_the_middle_goes_on_or_bails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pipeline.sql"),
        "-- a pipeline; with a bad statement in the middle\n\
         CREATE STREAM s (x BIGINT, name VARCHAR);\n\
         INSERT INTO s VALUES (1, 'a;b'), (2, 'c');\n\
         SELECT x,\n       nope\n  FROM s;\n\
         CREATE STREAM d AS SELECT x * 10 AS y FROM s;\n\
         SELECT * FROM d ORDER BY y\n",
    )
    .unwrap();
    // Goes on after the error, exits 1.
    assert_cmd_snapshot!(
        "error_in_the_middle",
        kappa(dir.path()).args(["--format", "table", "-f", "pipeline.sql"])
    );
    // With --bail: stops at the error, exits 3 (a fresh data directory).
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    assert_cmd_snapshot!(
        "bail",
        kappa(dir.path()).args(["--bail", "--format", "table", "-f", "pipeline.sql"])
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_cmd_snapshot!("missing_file", kappa(dir.path()).args(["-f", "missing.sql"]));
    assert_cmd_snapshot!("unknown_argument", kappa(dir.path()).args(["--frobnicate"]));
    assert_cmd_snapshot!(
        "bad_format",
        kappa(dir.path()).args(["--format", "xml", "-c", "SELECT 1"])
    );
}

#[test]
fn sql_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    assert_cmd_snapshot!(
        "stdin",
        kappa(dir.path()).pass_stdin(format!(
            "{SETUP}\nSELECT auction, price FROM bids WHERE price IS NOT NULL ORDER BY auction;\n\
             SELECT * FROM nope;\n"
        ))
    );
}

#[test]
fn a_push_query_with_limit_ends_by_itself_and_one_without_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    kappa(dir.path()).args(["-c", SETUP]).output().unwrap();
    timeless!(assert_cmd_snapshot!(
        "push_limit",
        kappa(dir.path()).args([
            "--format",
            "table",
            "-c",
            "SELECT auction, price * 2 AS doubled FROM bids EMIT CHANGES LIMIT 2"
        ])
    ));
    timeless!(assert_cmd_snapshot!(
        "push_ndjson_default",
        kappa(dir.path()).args(["-c", "SELECT auction FROM bids EMIT CHANGES LIMIT 3"])
    ));
    assert_cmd_snapshot!(
        "push_unbounded",
        kappa(dir.path()).args(["-c", "SELECT auction FROM bids EMIT CHANGES"])
    );
}

#[test]
fn ctrl_c_interrupts_a_waiting_statement_with_exit_130() {
    let dir = tempfile::tempdir().unwrap();
    kappa(dir.path()).args(["-c", SETUP]).output().unwrap();
    // Three rows exist and the stream is not sealed: LIMIT 10 waits for rows that never come.
    let child = kappa(dir.path())
        .args(["-c", "SELECT auction FROM bids EMIT CHANGES LIMIT 10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "the rows so far were printed: {stdout}");
    // The data directory was closed cleanly: it opens again.
    let again = kappa(dir.path()).args(["-c", "SELECT count(*) AS n FROM bids"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), "n\n3\n");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    kappa(dir.path()).args(["-c", SETUP]).output().unwrap();
    let mut child = kappa(dir.path())
        .args([
            "-c",
            "SELECT * FROM bids, bids b2, bids b3, bids b4, bids b5, bids b6, bids b7, bids b8, bids b9",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe (as `| head -1` does).
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_readme_demo_pipeline_runs_and_runs_again() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let data = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
            .current_dir(&root)
            .args(["-d", &data.path().display().to_string(), "-f", "queries/examples/bids.sql"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("1004,7,9000,APP"), "{stdout}");
    }
}

#[test]
fn meta_commands_and_statements_sharing_a_line_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.sql"),
        "CREATE STREAM s (x BIGINT); INSERT INTO s VALUES (1), (2);\n\
         .mode csv\n\
         SELECT x FROM s ORDER BY x; SELECT nope FROM s;\n\
         \\i more.sql\n\
         SELECT 'after' AS here;\n\
         SELECT 1 AS one; SELECT 'open\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("more.sql"), "SELECT count(*) AS n FROM s;\n\\nope\n").unwrap();
    assert_cmd_snapshot!(
        "meta_and_shared_lines",
        kappa(dir.path()).args(["--format", "table", "-f", "main.sql"])
    );
}

#[test]
fn the_nexmark_files_run_in_the_shell_and_in_the_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    let queries = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries/nexmark");
    // The README's command: the streams of ddl.sql, then a query file; kappa waits for the
    // sources and the job before it exits.
    let out = kappa(dir.path())
        .args(["-f", queries.join("ddl.sql").to_str().unwrap()])
        .args(["-f", queries.join("q2.sql").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kappa(dir.path())
        .args(["-c", "SELECT count(*) AS bids FROM bid", "-c", "SHOW JOBS"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bids\n920000\n"), "{stdout}");
    assert!(
        stdout.contains("insert_into_nexmark_q2_1,insert into,nexmark_q2,bid,finished"),
        "{stdout}"
    );
    // ddl.sql runs again on the same directory.
    let again = kappa(dir.path()).args(["-f", queries.join("ddl.sql").to_str().unwrap()]).output();
    assert!(again.unwrap().status.success());

    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .current_dir(dir.path())
        .args(["bench", "nexmark", "--events", "20000", "--queries", "q0,q2", "--baseline"])
        .args(["--queries-dir", queries.to_str().unwrap(), "-d", "bench-data"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("query") && lines[0].contains("ratio"), "{stdout}");
    // q0 passes every bid through; q2 keeps the bids on every 123rd auction.
    assert!(lines[1].starts_with("q0") && lines[1].contains(" 18400 "), "{stdout}");
    assert!(lines[2].starts_with("q2"), "{stdout}");
    // Run again on the same directory: the streams are reused. With --rebuild, a view (q4)
    // is rebuilt and timed (its rows the same); a sink (q0) is not.
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .current_dir(dir.path())
        .args(["bench", "nexmark", "--events", "20000", "--queries", "q0,q4", "--rebuild"])
        .args(["--queries-dir", queries.to_str().unwrap(), "-d", "bench-data"])
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stderr.contains("reusing"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("warning"), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].ends_with("rebuild s"), "{stdout}");
    assert!(lines[1].starts_with("q0") && lines[1].ends_with(" -"), "{stdout}");
    let rebuild = lines[2].split_whitespace().last().and_then(|s| s.parse::<f64>().ok());
    assert!(lines[2].starts_with("q4") && rebuild.is_some_and(|s| s > 0.0), "{stdout}");
    // A different rate on the same directory is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_kappa"))
        .current_dir(dir.path())
        .args(["bench", "nexmark", "--events", "20000", "--rate", "5", "--queries", "q0"])
        .args(["--queries-dir", queries.to_str().unwrap(), "-d", "bench-data"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another size or rate"), "{out:?}");
}
