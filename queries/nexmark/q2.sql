-- Nexmark q2: selection. The bids on every 123rd auction, with their price.
--
-- The original (CQL) query picked five auction ids, which yields a few hundred rows over
-- streams of any size; the reference takes every 123rd auction instead.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q2.sql): none (`MOD` is
-- a built-in of kappa, as in Flink).
-- Needs the streams of ddl.sql.

CREATE TABLE nexmark_q2 (
  auction  BIGINT,
  price  BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q2
SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
