-- Nexmark q18: the last bid of each bidder on each auction. A deduplication: ROW_NUMBER() over
-- each (bidder, auction) by time, newest first, kept where it is 1: a materialized view whose
-- row of a pair is replaced by each newer bid (bids of the same millisecond: the first stays).
--
-- Differences from the reference text (nexmark-flink q18.sql): the result is a materialized
-- view (Flink writes the same updates into an upsert blackhole sink). Needs the streams of
-- ddl.sql.

CREATE MATERIALIZED VIEW nexmark_q18 AS
SELECT auction, bidder, price, channel, url, dateTime, extra
 FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY dateTime DESC) AS rank_number
       FROM bid)
 WHERE rank_number <= 1;
