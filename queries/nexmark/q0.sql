-- Nexmark q0: pass-through (not in the original suite). Every bid, unchanged: measures the
-- cost of reading and writing, source included.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q0.sql): none.
-- Needs the streams of ddl.sql.

CREATE TABLE nexmark_q0 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  dateTime  TIMESTAMP(3),
  extra  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q0
SELECT auction, bidder, price, dateTime, extra FROM bid;
