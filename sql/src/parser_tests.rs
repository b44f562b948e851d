//! Parser tests: every statement of the design's SQL surface, and the errors.

use super::*;

fn one(sql: &str) -> Statement {
    match parse_one(sql) {
        Ok(s) => s.statement,
        Err(e) => panic!("{sql}: {e} at {:?}", e.location()),
    }
}

fn err(sql: &str) -> Error {
    match parse(sql) {
        Ok(s) => panic!("{sql} parsed: {s:?}"),
        Err(e) => e,
    }
}

#[test]
fn create_stream_with_watermark_and_options() {
    let s = one(
        "CREATE STREAM IF NOT EXISTS Bid (auction BIGINT, price BIGINT, \"dateTime\" TIMESTAMP(3),
           WATERMARK FOR \"dateTime\" AS \"dateTime\" - INTERVAL '4' SECOND)
         WITH (retention = '30 days', 'durability' = 'relaxed')",
    );
    let Statement::CreateStream(c) = s else { panic!("{s:?}") };
    assert_eq!(c.name, "bid");
    assert!(c.if_not_exists);
    assert_eq!(c.columns.len(), 3);
    let w = c.watermark.unwrap();
    assert_eq!(w.column, "dateTime");
    assert_eq!(w.expr_text, "\"dateTime\" - INTERVAL '4' SECOND");
    assert_eq!(
        c.options,
        vec![("retention".into(), "30 days".into()), ("durability".into(), "relaxed".into())]
    );
}

#[test]
fn create_stream_as_select_with_emit() {
    let s = one(
        "CREATE STREAM big WITH (durability = relaxed) AS SELECT * FROM bid WHERE price > 10 EMIT CHANGES",
    );
    let Statement::CreateStream(c) = s else { panic!() };
    let (q, emit) = c.query.unwrap();
    assert_eq!(q.to_string(), "SELECT * FROM bid WHERE price > 10");
    assert_eq!(emit, Some(Emit::Changes { every: None }));
    assert_eq!(c.options.len(), 1);
}

#[test]
fn queries_snapshot_and_push() {
    let Statement::Query { query, emit } = one("select a from s where a > (select 1)") else {
        panic!()
    };
    assert!(emit.is_none());
    assert_eq!(query.to_string(), "SELECT a FROM s WHERE a > (SELECT 1)");
    let Statement::Query { query, emit } = one("SELECT a FROM s EMIT CHANGES LIMIT 5") else {
        panic!()
    };
    assert_eq!(query.to_string(), "SELECT a FROM s LIMIT 5");
    assert_eq!(emit, Some(Emit::Changes { every: None }));
    let Statement::Query { emit, .. } =
        one("SELECT a FROM s EMIT CHANGES EVERY INTERVAL '5' SECOND")
    else {
        panic!()
    };
    assert!(matches!(emit, Some(Emit::Changes { every: Some(_) })));
    let Statement::Query { emit, .. } = one("SELECT a FROM s EMIT FINAL") else { panic!() };
    assert_eq!(emit, Some(Emit::Final));
}

#[test]
fn every_statement_of_the_design_parses() {
    let cases = [
        "CREATE TABLE t (a INT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH ('connector' = 'nexmark')",
        "CREATE MATERIALIZED VIEW v AS SELECT a, count(*) FROM s GROUP BY a",
        "CREATE OR REPLACE MATERIALIZED VIEW v AS SELECT a FROM s",
        "CREATE OR REPLACE STREAM d AS SELECT a FROM s",
        "ALTER STREAM d REBUILD",
        "ALTER MATERIALIZED VIEW v REBUILD FROM OFFSET 100",
        "ALTER STREAM d REBUILD FROM TIMESTAMP '2024-01-01 00:00:00'",
        "INSERT INTO s VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO s (a, b) SELECT a, b FROM t",
        "COPY s FROM 'data/bids.csv' WITH (FORMAT csv, HEADER true)",
        "COPY s FROM 'x.parquet'",
        "COPY s TO 'out.json' (FORMAT json)",
        "COPY (SELECT * FROM s WHERE a > 1) TO 'out.parquet'",
        "SEAL STREAM s",
        "SHOW STREAMS",
        "SHOW TABLES",
        "SHOW VIEWS",
        "SHOW JOBS",
        "SHOW DATAFLOW",
        "DESCRIBE s",
        "EXPLAIN DATAFLOW s",
        "EXPLAIN SELECT a FROM s WHERE a > 1",
        "DROP STREAM IF EXISTS s",
        "DROP MATERIALIZED VIEW v",
        "DROP JOB j",
        "SET checkpoint_interval = '5s'",
        "SET 'state.ttl' TO 100",
    ];
    for sql in cases {
        one(sql);
    }
}

#[test]
fn statements_split_at_top_level_semicolons() {
    let all = parse("SELECT ';' ; \n\n  SEAL STREAM s;\nSHOW STREAMS;;").unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].text, "SELECT ';'");
    assert_eq!(all[1].text, "SEAL STREAM s");
    assert_eq!(all[1].location, Location::new(3, 3));
    assert_eq!(all[2].location, Location::new(4, 1));
}

#[test]
fn copy_options_and_errors() {
    let Statement::CopyFrom { stream, path, options } =
        one("COPY Bids FROM '/tmp/b.csv' (FORMAT CSV, HEADER false, DELIMITER ';')")
    else {
        panic!()
    };
    assert_eq!((stream.as_str(), path.as_str()), ("bids", "/tmp/b.csv"));
    assert_eq!(options.format, Some(FileFormat::Csv));
    assert_eq!(options.header, Some(false));
    assert_eq!(options.delimiter, Some(b';'));
    let e = err("COPY s FROM 'x' (FORMAT xml)");
    assert!(e.to_string().contains("unknown COPY format 'xml'"), "{e}");
    let e = err("COPY s FROM STDIN");
    assert!(matches!(e, Error::NotSupported { .. }), "{e}");
}

#[test]
fn errors_have_locations() {
    let e = err("SELECT 1;\nCREATE STREAM s (a INT,\n  b FLOAT WITH)");
    assert!(matches!(e, Error::Syntax { .. }), "{e}");
    assert_eq!(e.location().map(|l| l.line), Some(3), "{e}");
    let e = err("SEAL s");
    assert_eq!(e.to_string(), "expected STREAM, found s");
    assert_eq!(e.location(), Some(Location::new(1, 6)));
    let e = err("UPDATE s SET a = 1");
    assert_eq!(e.to_string(), "UPDATE (streams are append-only logs) is not supported yet");
    let e = err("CREATE VIEW v AS SELECT 1");
    assert!(matches!(e, Error::NotSupported { .. }), "{e}");
    let e = err("SHOW STREAMS EMIT CHANGES");
    assert!(e.to_string().contains("EMIT belongs to a query"), "{e}");
    let e = err("SELECT 'unterminated");
    assert!(matches!(e, Error::Syntax { location: Some(_), .. }), "{e}");
    let e = err("CREATE STREAM s");
    assert!(e.to_string().contains("a stream needs columns"), "{e}");
    let e = err("SELECT a FROM s EMIT CHANGES EVERY");
    assert!(matches!(e, Error::Syntax { .. }), "{e}");
    // `emit` is a name unless FINAL or CHANGES follows.
    let Statement::Query { query, emit } = one("SELECT emit FROM emit") else { panic!() };
    assert!(emit.is_none());
    assert_eq!(query.to_string(), "SELECT emit FROM emit");
    let e = err("EXPLAIN EXPLAIN SELECT 1");
    assert!(e.to_string().contains("EXPLAIN EXPLAIN"), "{e}");
}

#[test]
fn split_keeps_semicolons_in_strings_comments_and_parentheses() {
    let script = "CREATE STREAM s (x BIGINT); -- a comment; with a semicolon\n\
                  INSERT INTO s VALUES (1), (2);\n\
                  /* block; comment */ SELECT ';' AS semi,\n  x FROM s;\n\
                  -- only a comment;\n\
                  SELECT 1";
    let pieces = crate::split(script).unwrap();
    let texts: Vec<&str> = pieces.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "CREATE STREAM s (x BIGINT)",
            "INSERT INTO s VALUES (1), (2)",
            "SELECT ';' AS semi,\n  x FROM s",
            "SELECT 1",
        ]
    );
    let at: Vec<(u64, u64, bool)> =
        pieces.iter().map(|p| (p.location.line, p.location.column, p.terminated)).collect();
    assert_eq!(at, vec![(1, 1, true), (2, 1, true), (3, 22, true), (6, 1, false)]);
    // What follows each piece: after its `;`, or after its last token.
    let rest: Vec<&str> = pieces.iter().map(|p| &script[p.next..]).collect();
    assert!(rest[0].starts_with(" -- a comment; with"), "{:?}", rest[0]);
    assert!(rest[2].starts_with("\n-- only a comment;"), "{:?}", rest[2]);
    assert_eq!(rest[3], "");
}

#[test]
fn split_reports_an_unterminated_string_where_it_starts() {
    let e = crate::split("SELECT 1;\nSELECT 'abc").unwrap_err();
    assert!(matches!(e, Error::Syntax { .. }), "{e}");
    let at = e.location().unwrap();
    assert_eq!((at.line, at.column), (2, 8), "{e}");
    // An unterminated block comment too.
    assert!(crate::split("SELECT 1 /* no end").is_err());
}

#[test]
fn a_table_as_of_a_time_keeps_its_name_or_alias() {
    let text = |sql: &str| match one(sql) {
        Statement::Query { query, .. } => query.to_string(),
        s => panic!("{s:?}"),
    };
    assert_eq!(
        text("SELECT r.v FROM o JOIN r FOR SYSTEM_TIME AS OF o.ts ON o.k = r.k"),
        "SELECT r.v FROM o JOIN __as_of(r, 'o.ts') AS r ON o.k = r.k"
    );
    assert_eq!(
        text("SELECT x.v FROM o JOIN r FOR SYSTEM_TIME AS OF PROCTIME() x ON o.k = x.k"),
        "SELECT x.v FROM o JOIN __as_of(r, 'PROCTIME()') x ON o.k = x.k"
    );
    assert_eq!(
        text("SELECT * FROM r FOR SYSTEM_TIME AS OF PROCTIME()"),
        "SELECT * FROM __as_of(r, 'PROCTIME()') AS r"
    );
    assert_eq!(
        text("SELECT r.v FROM r FOR SYSTEM_TIME AS OF PROCTIME() EMIT CHANGES"),
        "SELECT r.v FROM __as_of(r, 'PROCTIME()') AS r"
    );
}
