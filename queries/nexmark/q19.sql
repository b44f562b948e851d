-- Nexmark q19: the ten highest bids of each auction, with their rank. A TopN: ROW_NUMBER()
-- over each auction by price, highest first, kept up to 10: a materialized view where a new
-- high bid takes its place and moves the ones below it down a rank (bids of equal price rank
-- in the order they came).
--
-- Differences from the reference text (nexmark-flink q19.sql): the result is a materialized
-- view (Flink writes the same updates into an upsert blackhole sink). Needs the streams of
-- ddl.sql.

CREATE MATERIALIZED VIEW nexmark_q19 AS
SELECT * FROM
(SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC) AS rank_number FROM bid)
WHERE rank_number <= 10;
