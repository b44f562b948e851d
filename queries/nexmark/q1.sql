-- Nexmark q1: currency conversion. Every bid's price from dollars to euros.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q1.sql): none. (An
-- older version of the reference selected a column `customTime` that the bid view does not
-- have; this is the current text, with `dateTime`.) `0.908` is an exact DECIMAL in kappa as in
-- Flink, so the price is exact.
-- Needs the streams of ddl.sql.

CREATE TABLE nexmark_q1 (
  auction  BIGINT,
  bidder  BIGINT,
  price  DECIMAL(23, 3),
  dateTime  TIMESTAMP(3),
  extra  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q1
SELECT
    auction,
    bidder,
    0.908 * price as price, -- convert dollar to euro
    dateTime,
    extra
FROM bid;
