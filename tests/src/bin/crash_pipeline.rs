//! Child process of the pipeline crash test: opens an engine on a directory and, on first use,
//! creates a Nexmark `bid` stream filled in real time, a stateless derived stream over it,
//! windowed aggregations over it, materialized views (an aggregation, a view of it, a TopN),
//! joins (an interval join of the bids with a windowed aggregation of them; a view over a
//! regular join of the bids with a view's changelog);
//! then lets them run until it is killed. Checkpoints are
//! taken every `KAPPA_CHECKPOINT_INTERVAL` (default 50 ms), so that kills land before, during
//! and after them.
//!
//! Usage: `kappa-crash-pipeline DIR EVENTS RATE`.

use anyhow::{Context, Result};
use kappa::Engine;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: kappa-crash-pipeline DIR EVENTS RATE";
    let dir = args.next().context(usage)?;
    let events: u64 = args.next().context(usage)?.parse()?;
    let rate: u64 = args.next().context(usage)?.parse()?;
    let interval =
        std::env::var("KAPPA_CHECKPOINT_INTERVAL").unwrap_or_else(|_| "50ms".to_string());
    let engine = Engine::open(&dir).await?;
    engine.execute(&format!("SET checkpoint_interval = '{interval}'")).await?;
    engine
        .execute(&format!(
            "CREATE STREAM IF NOT EXISTS bid
               WITH ('connector' = 'nexmark', 'events' = '{events}', 'rate' = '{rate}', 'realtime' = 'true');
             CREATE STREAM IF NOT EXISTS cheap AS
               SELECT auction, bidder, price, dateTime FROM bid WHERE price % 3 = 0;
             CREATE STREAM IF NOT EXISTS per_second AS
               SELECT auction, window_start, window_end, count(*) AS n, max(price) AS hi,
                      sum(price) AS total
               FROM TUMBLE(bid, dateTime, INTERVAL '1' SECOND)
               GROUP BY auction, window_start, window_end;
             CREATE STREAM IF NOT EXISTS visits AS
               SELECT bidder, window_start, window_end, count(*) AS n, sum(price) AS total
               FROM SESSION(bid, dateTime, INTERVAL '50' MILLISECOND, bidder)
               GROUP BY bidder, window_start, window_end;
             CREATE STREAM IF NOT EXISTS running AS
               SELECT channel, window_start, window_end, count(*) AS n, max(price) AS hi
               FROM TUMBLE(bid, dateTime, INTERVAL '2' SECOND)
               GROUP BY channel, window_start, window_end EMIT CHANGES;
             CREATE MATERIALIZED VIEW IF NOT EXISTS per_auction AS
               SELECT auction, count(*) AS n, max(price) AS hi, sum(price) AS total,
                      count(DISTINCT bidder) AS bidders
               FROM bid GROUP BY auction;
             CREATE MATERIALIZED VIEW IF NOT EXISTS by_count AS
               SELECT n, count(*) AS auctions, max(hi) AS hi FROM per_auction GROUP BY n;
             CREATE MATERIALIZED VIEW IF NOT EXISTS top3 AS
               SELECT * FROM (SELECT auction, bidder, price,
                                ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rn
                              FROM bid) WHERE rn <= 3;
             CREATE STREAM IF NOT EXISTS top_bids AS
               SELECT B.auction, B.price, B.bidder, B.dateTime FROM bid B
               JOIN (SELECT max(price) AS maxprice, window_end
                     FROM TUMBLE(bid, dateTime, INTERVAL '100' MILLISECOND)
                     GROUP BY window_start, window_end) M
               ON B.price = M.maxprice
                  AND B.dateTime BETWEEN M.window_end - INTERVAL '100' MILLISECOND AND M.window_end;
             CREATE MATERIALIZED VIEW IF NOT EXISTS by_auction_size AS
               SELECT p.n, count(*) AS bids, max(b.price) AS hi
               FROM bid b JOIN per_auction p ON b.auction = p.auction GROUP BY p.n"
        ))
        .await?;
    println!("ready");
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}
