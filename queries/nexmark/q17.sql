-- Nexmark q17: auction statistics per day. How many bids did each auction get each day, in
-- all and per price range, and at what prices? A GROUP BY without windows with many groups
-- (one per auction and day): a materialized view kept up to date.
--
-- Differences from the reference text (nexmark-flink q17.sql): the result is a materialized
-- view (Flink writes the same updates into an upsert blackhole sink); avg_price is cast to
-- BIGINT, as the reference's sink column does (Flink averages a BIGINT into a BIGINT,
-- truncated; SQL's AVG is a DOUBLE); names are quoted with double quotes. Needs the streams
-- of ddl.sql.

CREATE MATERIALIZED VIEW nexmark_q17 AS
SELECT
     auction,
     DATE_FORMAT(dateTime, 'yyyy-MM-dd') as "day",
     count(*) AS total_bids,
     count(*) filter (where price < 10000) AS rank1_bids,
     count(*) filter (where price >= 10000 and price < 1000000) AS rank2_bids,
     count(*) filter (where price >= 1000000) AS rank3_bids,
     min(price) AS min_price,
     max(price) AS max_price,
     CAST(avg(price) AS BIGINT) AS avg_price,
     sum(price) AS sum_price
FROM bid
GROUP BY auction, DATE_FORMAT(dateTime, 'yyyy-MM-dd');
