-- Nexmark q9: winning bids. Each auction with its best bid made while it was open (highest
-- price, earliest first). An interval join (bounded state, as in q4) feeding a TopN per
-- auction (ROW_NUMBER() <= 1), a changelog kept as a materialized view.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q9.sql): the result is
-- a materialized view (Flink writes the same updates into an upsert blackhole sink); the
-- auction's columns are listed instead of A.*. Needs the streams of ddl.sql.

CREATE MATERIALIZED VIEW nexmark_q9 AS
SELECT
    id, itemName, description, initialBid, reserve, dateTime, expires, seller, category, extra,
    auction, bidder, price, bid_dateTime, bid_extra
FROM (
   SELECT A.id, A.itemName, A.description, A.initialBid, A.reserve, A.dateTime, A.expires,
     A.seller, A.category, A.extra,
     B.auction, B.bidder, B.price, B.dateTime AS bid_dateTime, B.extra AS bid_extra,
     ROW_NUMBER() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.dateTime ASC) AS rownum
   FROM auction A, bid B
   WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
)
WHERE rownum <= 1;
