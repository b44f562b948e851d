-- Nexmark q15: bidding statistics per day. How many bids, distinct bidders and distinct
-- auctions each day, in all and per price range? Several COUNT(DISTINCT) aggregates with
-- FILTER clauses, over a GROUP BY without windows: a materialized view kept up to date.
--
-- Differences from the reference text (nexmark-flink q15.sql): the result is a materialized
-- view (Flink writes the same updates into an upsert blackhole sink); the day is taken from
-- dateTime (the reference reads customTime, a column of its own generator's table); names are
-- quoted with double quotes. Needs the streams of ddl.sql.

CREATE MATERIALIZED VIEW nexmark_q15 AS
SELECT
     DATE_FORMAT(dateTime, 'yyyy-MM-dd') as "day",
     count(*) AS total_bids,
     count(*) filter (where price < 10000) AS rank1_bids,
     count(*) filter (where price >= 10000 and price < 1000000) AS rank2_bids,
     count(*) filter (where price >= 1000000) AS rank3_bids,
     count(distinct bidder) AS total_bidders,
     count(distinct bidder) filter (where price < 10000) AS rank1_bidders,
     count(distinct bidder) filter (where price >= 10000 and price < 1000000) AS rank2_bidders,
     count(distinct bidder) filter (where price >= 1000000) AS rank3_bidders,
     count(distinct auction) AS total_auctions,
     count(distinct auction) filter (where price < 10000) AS rank1_auctions,
     count(distinct auction) filter (where price >= 10000 and price < 1000000) AS rank2_auctions,
     count(distinct auction) filter (where price >= 1000000) AS rank3_auctions
FROM bid
GROUP BY DATE_FORMAT(dateTime, 'yyyy-MM-dd');
