-- Nexmark q13: bounded side input join. Each bid with the value its auction maps to in a
-- side table read from a file: a lookup join (FOR SYSTEM_TIME AS OF PROCTIME()) against a
-- filesystem table. The table is sealed (its file's rows), so the bids wait until it is read
-- whole and then each looks it up once: no state for the bids, append-only output.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q13.sql): the side
-- table is queries/data/side_input.csv (10,000 keys, written for kappa; the reference ships
-- its own file), declared with kappa's filesystem connector options ('path', 'format'); the
-- bids look it up FOR SYSTEM_TIME AS OF PROCTIME() directly (the reference adds a PROCTIME()
-- column to the bids first). Run from the repository's root (the path is relative). Needs the
-- streams of ddl.sql.

CREATE TABLE side_input (
  key BIGINT,
  `value` VARCHAR
) WITH (
  'connector' = 'filesystem',
  'path' = 'queries/data/side_input.csv',
  'format' = 'csv'
);

CREATE TABLE nexmark_q13 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  dateTime  TIMESTAMP(3),
  `value`  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q13
SELECT B.auction, B.bidder, B.price, B.dateTime, S.`value`
FROM bid B
JOIN side_input FOR SYSTEM_TIME AS OF PROCTIME() AS S
ON mod(B.auction, 10000) = S.key;
