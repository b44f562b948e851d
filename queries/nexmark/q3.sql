-- Nexmark q3: local item suggestion. Who is selling in category 10 in Oregon, Idaho or
-- California? A regular (unbounded) join of two append-only streams: every auction meets
-- the people seen so far and every person the auctions seen so far, so the output is
-- append-only and the join holds both streams' rows (EXPLAIN says so).
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q3.sql): none. Needs
-- the streams of ddl.sql.

CREATE TABLE nexmark_q3 (
  name VARCHAR,
  city VARCHAR,
  state VARCHAR,
  id BIGINT
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q3
SELECT
    P.name, P.city, P.state, A.id
FROM
    auction AS A INNER JOIN person AS P on A.seller = P.id
WHERE
    A.category = 10 and (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
