-- Nexmark q16: channel statistics per day. As q15, per channel and day, with the last minute
-- of the day that saw a bid of the channel (a MAX of text).
--
-- Differences from the reference text (nexmark-flink q16.sql): the result is a materialized
-- view (Flink writes the same updates into an upsert blackhole sink); names are quoted with
-- double quotes. Needs the streams of ddl.sql.

CREATE MATERIALIZED VIEW nexmark_q16 AS
SELECT
    channel,
    DATE_FORMAT(dateTime, 'yyyy-MM-dd') as "day",
    max(DATE_FORMAT(dateTime, 'HH:mm')) as "minute",
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
GROUP BY channel, DATE_FORMAT(dateTime, 'yyyy-MM-dd');
