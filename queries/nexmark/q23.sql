-- Nexmark q23: bids with their auction and its seller. Every bid of an auction in category 10,
-- with the auction's item and the seller's name and city: a three-way regular join (bid with
-- auction, then with person), append-only, holding the three streams' rows.
--
-- The reference suite has no q23 text (nexmark-flink stops at q22); this query is kappa's own,
-- in the style of q3 and q20, for the three-way join the benchmark asks for. Needs the
-- streams of ddl.sql.

CREATE TABLE nexmark_q23 (
  auction  BIGINT,
  bidder  BIGINT,
  price  BIGINT,
  bid_dateTime  TIMESTAMP(3),
  itemName  VARCHAR,
  category  BIGINT,
  seller  BIGINT,
  name  VARCHAR,
  city  VARCHAR
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q23
SELECT
    B.auction, B.bidder, B.price, B.dateTime, A.itemName, A.category, A.seller, P.name, P.city
FROM bid AS B
    INNER JOIN auction AS A ON B.auction = A.id
    INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10;
