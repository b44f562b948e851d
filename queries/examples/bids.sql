-- A first pipeline: load bids from a CSV file, derive a stream of large bids with a
-- continuous query, keep a materialized view of each auction's bids, name each bid's item
-- with a lookup join against a table read from a file, and look at them. Run: cargo run -p kappa-cli -- -f queries/examples/bids.sql
-- (or on the embedded engine: cargo run -p kappa --example pipeline).

-- Start afresh, so that the file can run again on the same data directory.
DROP STREAM IF EXISTS named_bids;
DROP STREAM IF EXISTS auctions;
DROP MATERIALIZED VIEW IF EXISTS per_auction;
DROP STREAM IF EXISTS large_bids;
DROP STREAM IF EXISTS bids;

CREATE STREAM bids (
  auction BIGINT NOT NULL,
  bidder  BIGINT,
  price   BIGINT,
  channel VARCHAR,
  ts      TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '4' SECOND
);

COPY bids FROM 'queries/data/bids.csv' (FORMAT csv, HEADER true);

-- A continuous job: every bid appended to `bids` from now on flows through it too.
CREATE STREAM large_bids AS
  SELECT auction, bidder, price, upper(channel) AS channel, ts
  FROM bids
  WHERE price >= 150;

-- A materialized view: every auction's count and top price, kept up to date as bids come.
CREATE MATERIALIZED VIEW per_auction AS
  SELECT auction, count(*) AS bids, max(price) AS top FROM bids GROUP BY auction;

-- A table read from a file, and a lookup join: each bid with its auction's item.
CREATE TABLE auctions (id BIGINT, item VARCHAR)
  WITH ('connector' = 'filesystem', 'path' = 'queries/data/auctions.csv', 'header' = 'true');
CREATE STREAM named_bids AS
  SELECT b.auction, a.item, b.price
  FROM bids b JOIN auctions FOR SYSTEM_TIME AS OF PROCTIME() AS a ON b.auction = a.id;

INSERT INTO bids VALUES (1004, 7, 9000, 'app', TIMESTAMP '2026-01-01 00:00:09');

-- Snapshot queries see every row appended before they start, through the job.
SELECT * FROM large_bids;

-- The view is a table: it holds the new bid too.
SELECT * FROM per_auction ORDER BY auction;

-- The joined stream.
SELECT * FROM named_bids ORDER BY auction, price;

-- A push query: the rows so far, then new ones as they arrive (here: the first 3).
SELECT auction, price FROM large_bids EMIT CHANGES LIMIT 3;

SHOW STREAMS;
SHOW VIEWS;
SHOW JOBS;
