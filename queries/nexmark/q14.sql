-- Nexmark q14: calculation (not in the original suite). Classify each bid's time of day and
-- keep the bids within a price range: duplicate expressions and a user-defined function.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q14.sql): the reference
-- starts with `CREATE FUNCTION count_char AS 'com.github.nexmark.flink.udf.CountChar';`, a
-- Java class; kappa has `count_char` built in (and embedded programs can register functions of
-- their own with Engine::register_udf), so that line is left out. `HOUR` is a built-in of
-- kappa as in Flink (UTC).
-- Needs the streams of ddl.sql.

CREATE TABLE nexmark_q14 (
    auction BIGINT,
    bidder BIGINT,
    price  DECIMAL(23, 3),
    bidTimeType VARCHAR,
    dateTime TIMESTAMP(3),
    extra VARCHAR,
    c_counts BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q14
SELECT
    auction,
    bidder,
    0.908 * price as price,
    CASE
        WHEN HOUR(dateTime) >= 8 AND HOUR(dateTime) <= 18 THEN 'dayTime'
        WHEN HOUR(dateTime) <= 6 OR HOUR(dateTime) >= 20 THEN 'nightTime'
        ELSE 'otherTime'
    END AS bidTimeType,
    dateTime,
    extra,
    count_char(extra, 'c') AS c_counts
FROM bid
WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000;
