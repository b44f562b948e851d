//! Child process of the rebuild crash test: opens an engine on a directory and, on first use,
//! creates a Nexmark `bid` stream filled in real time, a materialized view and a derived stream
//! over it, and a view over that stream; then, unless a rebuild of them runs already, replaces
//! the first two queries by the same ones stamped with version `VERSION` (`CREATE OR
//! REPLACE`; the view over the stream is rebuilt with it), and lets everything run until it
//! is killed. Checkpoints every 50 ms.
//!
//! Usage: `kappa-crash-rebuild DIR EVENTS RATE VERSION`.

use anyhow::{Context, Result};
use kappa::Engine;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: kappa-crash-rebuild DIR EVENTS RATE VERSION";
    let dir = args.next().context(usage)?;
    let events: u64 = args.next().context(usage)?.parse()?;
    let rate: u64 = args.next().context(usage)?.parse()?;
    let version: u64 = args.next().context(usage)?.parse()?;
    let engine = Engine::open(&dir).await?;
    engine.execute("SET checkpoint_interval = '50ms'").await?;
    engine
        .execute(&format!(
            "CREATE STREAM IF NOT EXISTS bid
               WITH ('connector' = 'nexmark', 'events' = '{events}', 'rate' = '{rate}', 'realtime' = 'true');
             CREATE MATERIALIZED VIEW IF NOT EXISTS per_auction AS
               SELECT auction, count(*) AS n, max(price) AS hi, CAST(0 AS BIGINT) AS version
               FROM bid GROUP BY auction;
             CREATE STREAM IF NOT EXISTS cheap AS
               SELECT auction, price, CAST(0 AS BIGINT) AS version FROM bid WHERE price % 3 = 0;
             CREATE MATERIALIZED VIEW IF NOT EXISTS cheap_per_auction AS
               SELECT auction, count(*) AS n, min(version) AS low, max(version) AS version
               FROM cheap GROUP BY auction"
        ))
        .await?;
    println!("ready");
    for statement in [
        format!(
            "CREATE OR REPLACE MATERIALIZED VIEW per_auction AS
               SELECT auction, count(*) AS n, max(price) AS hi, CAST({version} AS BIGINT) AS version
               FROM bid GROUP BY auction"
        ),
        format!(
            "CREATE OR REPLACE STREAM cheap AS
               SELECT auction, price, CAST({version} AS BIGINT) AS version FROM bid WHERE price % 3 = 0"
        ),
    ] {
        // (A rebuild an earlier run started goes on: this one is refused.)
        match engine.execute(&statement).await {
            Ok(_) => println!("replaced"),
            Err(e) => println!("not replaced: {e}"),
        }
    }
    // Say when the rebuilds have switched (the test counts the kills that came before).
    let started = std::time::Instant::now();
    loop {
        let jobs = engine.query("SHOW JOBS").await?;
        let names = kappa::datafusion::arrow::util::pretty::pretty_format_batches(&jobs)?;
        if !names.to_string().contains("__v") {
            println!("switched after {} ms", started.elapsed().as_millis());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}
