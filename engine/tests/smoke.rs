//! End-to-end checks of the embedded API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use datafusion::arrow::util::pretty::pretty_format_batches;
use kappa::{Engine, Output};

fn table(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_insert_query_derive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = Engine::open(dir.path()).await.unwrap();
        e.execute(
            "CREATE STREAM bids (auction BIGINT NOT NULL, price BIGINT, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)",
        )
        .await
        .unwrap();
        let out = e
            .execute("INSERT INTO bids VALUES (1, 100, TIMESTAMP '2026-01-01 00:00:01'), (2, 20, TIMESTAMP '2026-01-01 00:00:02')")
            .await
            .unwrap();
        assert!(matches!(&out[0], Output::Done { rows: Some(2), .. }), "{out:?}");
        e.execute("CREATE STREAM big AS SELECT auction, price * 2 AS doubled, ts FROM bids WHERE price > 50")
            .await
            .unwrap();
        let rows = e.query("SELECT auction, doubled FROM big").await.unwrap();
        let t = table(&rows);
        assert!(t.contains("| 1       | 200     |"), "{t}");
        e.execute("INSERT INTO bids VALUES (3, 300, TIMESTAMP '2026-01-01 00:00:03')")
            .await
            .unwrap();
        let rows = e.query("SELECT count(*) AS n FROM big").await.unwrap();
        assert!(table(&rows).contains("| 2 |"), "{}", table(&rows));
        let shown = e.query("SELECT 1").await.unwrap();
        assert_eq!(shown[0].num_rows(), 1);
        let out = e.execute("SHOW STREAMS; SHOW JOBS; DESCRIBE big").await.unwrap();
        for o in &out {
            let Output::Rows { batches, .. } = o else { panic!("{o:?}") };
            println!("{}", table(batches));
        }
        e.close().await.unwrap();
    }
    let e = Engine::open(dir.path()).await.unwrap();
    e.execute("INSERT INTO bids VALUES (4, 400, TIMESTAMP '2026-01-01 00:00:04')").await.unwrap();
    let rows = e.query("SELECT auction FROM big ORDER BY auction").await.unwrap();
    let t = table(&rows);
    assert!(
        t.contains("| 4       |") && t.contains("| 3       |") && t.contains("| 1       |"),
        "{t}"
    );
    assert!(!t.contains("| 2       |"), "{t}");
    // Push query with LIMIT.
    let mut sub = e.subscribe("SELECT auction FROM big EMIT CHANGES LIMIT 2").await.unwrap();
    let mut n = 0;
    while let Some(b) = sub.next().await {
        n += b.unwrap().num_rows();
    }
    assert_eq!(n, 2);
    e.execute("SEAL STREAM bids").await.unwrap();
    e.wait_for_jobs().await.unwrap();
    let out = e.execute("SHOW JOBS").await.unwrap();
    let Output::Rows { batches, .. } = &out[0] else { panic!() };
    println!("{}", table(batches));
    e.close().await.unwrap();
}
