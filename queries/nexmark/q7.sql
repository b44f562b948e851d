-- Nexmark q7: highest bid. The bids whose price is the highest of a 10-second window, made in
-- the 10 seconds up to the window's end. A windowed aggregation joined back to the bids by a
-- time interval: a bid is let go once the windows it could meet have all closed, a window's
-- maximum once the bids' watermark passes its end (bounded state, append-only output).
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q7.sql): the window
-- is TUMBLE in table-function form and its time is window_end (Flink's TUMBLE_ROWTIME is one
-- millisecond before it), so a bid exactly at a window's end also meets that window. Needs
-- the streams of ddl.sql.

CREATE TABLE nexmark_q7 (
  auction  BIGINT,
  price  BIGINT,
  bidder  BIGINT,
  dateTime  TIMESTAMP(3),
  extra  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q7
SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
from bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end as dateTime
  FROM TUMBLE(bid, dateTime, INTERVAL '10' SECOND)
  GROUP BY window_start, window_end
) B1
ON B.price = B1.maxprice
WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime;
