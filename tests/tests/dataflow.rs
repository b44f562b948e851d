//! `SHOW DATAFLOW` and `EXPLAIN DATAFLOW` over a real engine: a stream read by a derived
//! stream (with its late-row stream), a view and a sink; rates (which depend on timing) are
//! left out of the comparison. `EXPLAIN WINDOW` of a windowed job waiting for newer rows, of
//! a finished one, and of a window join one of whose inputs went idle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use arrow::array::{Array, StringArray};
use kappa::Engine;

async fn lines(engine: &Engine, sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in engine.query(sql).await.unwrap() {
        assert_eq!(
            b.schema().metadata().get(kappa::PRINT_LINES.0).map(String::as_str),
            Some(kappa::PRINT_LINES.1)
        );
        let a = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..a.len() {
            // (Rates depend on when the background task sampled.)
            let line: Vec<&str> = a.value(i).split(", ").filter(|f| !f.ends_with("/s")).collect();
            out.push(line.join(", ").replace(" rows read/s", ""));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataflow_of_streams_jobs_views_and_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(
            "CREATE STREAM s (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
             CREATE STREAM per_window AS SELECT k, count(*) AS n, window_end
               FROM TUMBLE(s, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end;
             CREATE MATERIALIZED VIEW totals AS SELECT k, count(*) AS n FROM s GROUP BY k;
             CREATE TABLE out (k BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out SELECT k FROM s;
             INSERT INTO s VALUES (1, TIMESTAMP '2026-01-01 00:00:01'), (2, TIMESTAMP '2026-01-01 00:00:12');
             INSERT INTO s VALUES (3, TIMESTAMP '2026-01-01 00:00:02');
             SEAL STREAM s",
        )
        .await
        .unwrap();
    engine.wait_for_jobs().await.unwrap();
    let got = lines(&engine, "SHOW DATAFLOW").await;
    assert_eq!(
        got,
        [
            "dataflow: 3 jobs, 3 streams, 1 table, 1 view",
            "stream s: 3 rows, event time ts (watermark ts - INTERVAL '1' SECOND), sealed",
            "  -> (lag 0) job insert_into_out_1 (insert into): finished, lag 0 rows",
            "    -> table out (blackhole)",
            "  -> (lag 0) job per_window (derived stream): finished, lag 0 rows, 1 late row",
            "    -> stream per_window: 2 rows, sealed",
            "    -> (late) stream per_window__late (late rows of job per_window): 1 row, sealed",
            "  -> (lag 0) job totals (materialized view): finished, lag 0 rows",
            "    -> view totals: 3 rows",
        ]
    );
    // EXPLAIN DATAFLOW keeps what feeds the view and what it feeds.
    let got = lines(&engine, "EXPLAIN DATAFLOW totals").await;
    assert_eq!(got[0], "dataflow: 1 job, 1 stream, 1 view", "{got:#?}");
    assert_eq!(got.len(), 4, "{got:#?}");
    let dot = lines(&engine, "EXPLAIN DATAFLOW totals FORMAT DOT").await;
    assert_eq!(dot[0], "digraph dataflow {");
    assert!(dot.iter().any(|l| l.trim() == r#""job totals" -> "data totals";"#), "{dot:#?}");
    assert!(
        dot.iter().any(|l| l.trim() == r#""data s" -> "job totals" [label="lag 0"];"#),
        "{dot:#?}"
    );
    let e = engine.query("EXPLAIN DATAFLOW nothing").await.unwrap_err();
    assert!(e.to_string().contains("no stream, view, table or job is named 'nothing'"), "{e}");
    // A job's progress through its inputs' history (the shell's bar after a backfill).
    let p = engine.job_progress("totals").unwrap();
    assert_eq!((p.percent, p.lag_rows, p.state, p.error), (100.0, 0, "finished", None));
    assert!(engine.job_progress("s").is_none());
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_job_reports_how_much_of_the_history_it_has_read() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine.execute("CREATE STREAM s (k BIGINT)").await.unwrap();
    let batch = arrow::array::RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "k",
            arrow::datatypes::DataType::Int64,
            true,
        )])),
        vec![std::sync::Arc::new(arrow::array::Int64Array::from_iter_values(0..100_000))],
    )
    .unwrap();
    for _ in 0..20 {
        engine.append("s", batch.clone()).await.unwrap();
    }
    engine
        .execute("CREATE MATERIALIZED VIEW per_k AS SELECT k, count(*) AS n FROM s GROUP BY k")
        .await
        .unwrap();
    // From 0 % (or more: it has begun) to 100 %, never back, lag falling to 0.
    let mut last = -1.0;
    loop {
        let p = engine.job_progress("per_k").unwrap();
        assert!(p.percent >= last && p.percent <= 100.0, "{p:?} after {last}");
        assert_eq!(p.state, "running", "{p:?}");
        last = p.percent;
        if p.lag_rows == 0 {
            assert_eq!(p.percent, 100.0);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(engine.query("SELECT count(*) FROM per_k").await.unwrap()[0].num_rows(), 1);
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_window_says_what_holds_the_watermark_back() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(
            "CREATE STREAM a (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
             CREATE STREAM w AS SELECT k, count(*) AS n, window_end
               FROM TUMBLE(a, ts, INTERVAL '10' SECOND) GROUP BY k, window_start, window_end;
             INSERT INTO a VALUES (1, TIMESTAMP '2026-01-01 00:00:01'), (1, TIMESTAMP '2026-01-01 00:00:25');
             INSERT INTO a VALUES (1, TIMESTAMP '2026-01-01 00:00:03')",
        )
        .await
        .unwrap();
    // (A snapshot query waits until the job has read what its input holds.)
    engine.query("SELECT count(*) FROM w").await.unwrap();
    assert_eq!(
        lines(&engine, "EXPLAIN WINDOW w").await,
        [
            "job w: watermark 2026-01-01 00:00:24.000",
            "the watermark is the lowest of the inputs that are neither idle nor sealed",
            "  input 1 (a): watermark 2026-01-01 00:00:24.000; holds the watermark back: it has read all its stream holds and waits for newer rows (WITH (idle_timeout = '...') on the stream would stop waiting for it)",
            "next window to close: the one ending 2026-01-01 00:00:30.000, once the watermark reaches 2026-01-01 00:00:29.999 (5999 ms of event time to go); 1 open",
            "late rows: 1 (rows behind the watermark, left out of their windows; kept in w__late)",
        ]
    );
    let e = engine.query("EXPLAIN WINDOW a").await.unwrap_err();
    assert!(e.to_string().contains("there is no job 'a'"), "{e}");
    engine.execute("SEAL STREAM a").await.unwrap();
    engine.wait_for_jobs().await.unwrap();
    assert_eq!(
        lines(&engine, "EXPLAIN WINDOW w").await,
        ["job w finished: every input ended, so every window closed"]
    );
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_window_of_a_join_with_an_idle_input() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path()).await.unwrap();
    engine
        .execute(
            "CREATE STREAM a (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
             CREATE STREAM b (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (idle_timeout = '1 s');
             CREATE STREAM w AS SELECT x.k, x.n, y.m, x.window_end
               FROM (SELECT k, count(*) AS n, window_end FROM TUMBLE(a, ts, INTERVAL '10' SECOND)
                     GROUP BY k, window_start, window_end) x
               JOIN (SELECT k, count(*) AS m, window_end FROM TUMBLE(b, ts, INTERVAL '10' SECOND)
                     GROUP BY k, window_start, window_end) y
               ON x.k = y.k AND x.window_end = y.window_end;
             INSERT INTO a VALUES (1, TIMESTAMP '2026-01-01 00:00:01'), (1, TIMESTAMP '2026-01-01 00:00:25');
             INSERT INTO b VALUES (1, TIMESTAMP '2026-01-01 00:00:03')",
        )
        .await
        .unwrap();
    engine.query("SELECT count(*) FROM w").await.unwrap();
    // b goes idle after a second without rows.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let got = lines(&engine, "EXPLAIN WINDOW w").await;
    assert_eq!(got[0], "job w: watermark 2026-01-01 00:00:24.000", "{got:#?}");
    assert_eq!(
        got[3],
        "  input 2 (b): watermark 2026-01-01 00:00:02.000; idle (no rows for its idle_timeout): left out until its next row",
        "{got:#?}"
    );
    assert!(
        got[4].starts_with("next window to close: the one ending 2026-01-01 00:00:10.000"),
        "{got:#?}"
    );
    assert!(got[4].contains("reads an idle input"), "{got:#?}");
    engine.close().await.unwrap();
}
