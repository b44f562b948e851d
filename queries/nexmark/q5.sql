-- Nexmark q5: hot items. Which auctions had the most bids in each 10-second window, every 2
-- seconds? Two HOP aggregations of the bids: the count per auction and window, and, over its
-- output, the highest count per window (a windowed aggregation of a windowed aggregation,
-- each window closed as the first one's watermark passes its end); joined on the window's
-- bounds (a window join: bounded state, append-only output).
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q5.sql): the windows
-- are HOP in table-function form (the reference uses the same in Flink's TABLE(HOP(TABLE bid,
-- DESCRIPTOR(dateTime), ...)) form). Needs the streams of ddl.sql.

CREATE TABLE nexmark_q5 (
  auction  BIGINT,
  num  BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q5
SELECT AuctionBids.auction, AuctionBids.num
 FROM (
   SELECT
     auction,
     count(*) AS num,
     window_start AS starttime,
     window_end AS endtime
   FROM HOP(bid, dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
   GROUP BY auction, window_start, window_end
 ) AS AuctionBids
 JOIN (
   SELECT
     max(CountBids.num) AS maxn,
     CountBids.starttime,
     CountBids.endtime
   FROM (
     SELECT
       count(*) AS num,
       window_start AS starttime,
       window_end AS endtime
     FROM HOP(bid, dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
     GROUP BY auction, window_start, window_end
     ) AS CountBids
   GROUP BY CountBids.starttime, CountBids.endtime
 ) AS MaxBids
 ON AuctionBids.starttime = MaxBids.starttime AND
    AuctionBids.endtime = MaxBids.endtime AND
    AuctionBids.num >= MaxBids.maxn;
