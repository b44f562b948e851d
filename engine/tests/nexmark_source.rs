//! The nexmark connector: restarts resume without gap or duplicate, the real-time mode paces
//! appends by the wall clock, and `SEAL STREAM` ends a source without end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use datafusion::arrow::compute::concat_batches;
use kappa::nexmark::{Generator, Kind, NexmarkConfig};
use kappa::{Engine, NexmarkStreams};

async fn all_rows(e: &Engine, stream: &str) -> datafusion::arrow::record_batch::RecordBatch {
    let batches = e.query(&format!("SELECT * FROM {stream}")).await.unwrap();
    let schema = Kind::from_name(stream).unwrap().schema();
    let batches: Vec<_> = batches
        .into_iter()
        .map(|b| {
            datafusion::arrow::record_batch::RecordBatch::try_new(
                schema.clone(),
                b.columns().to_vec(),
            )
            .unwrap()
        })
        .collect();
    concat_batches(&schema, &batches).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stopped_at_any_point_resumes_to_exactly_the_generated_rows() {
    let dir = tempfile::tempdir().unwrap();
    let events = 300_000;
    let settings = NexmarkStreams { events: Some(events), rate: 10_000, realtime: false };
    // Close the engine while the sources run, several times, at different moments.
    let e = Engine::open(dir.path()).await.unwrap();
    e.create_nexmark(settings).await.unwrap();
    e.close().await.unwrap();
    let mut partial = Vec::new();
    for pause in [0, 1, 5, 20] {
        let e = Engine::open(dir.path()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(pause)).await;
        partial.push(e.stream_rows("bid").unwrap());
        e.close().await.unwrap();
    }
    assert!(
        partial.first() < Some(&Kind::Bid.rows_in(events)),
        "the first close came before the end: {partial:?}"
    );
    let e = Engine::open(dir.path()).await.unwrap();
    e.wait_for_jobs().await.unwrap();
    let generator = Generator::new(NexmarkConfig { events, rate: 10_000 }).unwrap();
    for kind in Kind::ALL {
        let want = generator.rows(kind, 0, events).unwrap();
        let got = all_rows(&e, kind.name()).await;
        assert_eq!(got.num_rows(), want.num_rows(), "{kind:?}");
        assert!(got == want, "{kind:?}: the stored rows differ from the generator's");
    }
    let streams = format!("{:?}", e.execute("SHOW STREAMS").await.unwrap());
    assert!(!streams.contains("false"), "every stream is sealed: {streams}");
    let err = e
        .execute("INSERT INTO bid VALUES (1, 2, 3, 'x', 'y', TIMESTAMP '2015-07-15 00:00:00', '')")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("filled by its nexmark connector"), "{err}");
    e.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_realtime_mode_paces_by_the_wall_clock_and_seal_ends_a_source_without_end() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(dir.path()).await.unwrap();
    // 2,000 events at 4,000 a second: at least half a second, whatever the machine.
    let started = Instant::now();
    e.execute(
        "CREATE STREAM bid WITH ('connector' = 'nexmark', 'events' = '2000', 'rate' = '4000', 'realtime' = 'true')",
    )
    .await
    .unwrap();
    e.wait_for_jobs().await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert_eq!(e.stream_rows("bid"), Some(Kind::Bid.rows_in(2000)));
    // The same rows as without pacing.
    let generator = Generator::new(NexmarkConfig { events: 2000, rate: 4000 }).unwrap();
    assert!(all_rows(&e, "bid").await == generator.rows(Kind::Bid, 0, 2000).unwrap());

    // Without 'events' it runs until the stream is sealed.
    e.execute("CREATE STREAM person WITH ('connector' = 'nexmark', 'rate' = '50000', 'realtime' = 'true')")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while e.stream_rows("person").unwrap() < 10 {
        assert!(Instant::now() < deadline, "no person after 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = |e: Engine| async move {
        let jobs = e.execute("SHOW JOBS").await.unwrap();
        let Some(kappa::Output::Rows { batches, .. }) = jobs.into_iter().next() else {
            panic!("SHOW JOBS gives rows")
        };
        let rows = kappa_tests_rows(&batches);
        rows.into_iter().find(|r| r[0] == "nexmark-person").map(|r| r[4].clone())
    };
    assert_eq!(state(e.clone()).await.as_deref(), Some("running"));
    e.execute("SEAL STREAM person").await.unwrap();
    // Sealed: the source ends by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(e.clone()).await.as_deref() != Some("finished") {
        assert!(Instant::now() < deadline, "the source still runs 30 s after the seal");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.close().await.unwrap();
}

/// Every row of `batches` as text cells.
fn kappa_tests_rows(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> Vec<Vec<String>> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut out = Vec::new();
    for b in batches {
        let formatters: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            out.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    out
}
