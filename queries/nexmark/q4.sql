-- Nexmark q4: average price for a category. The winning (highest) bid of each auction, made
-- while it was open, averaged per category. An interval join (a bid meets its auction only
-- between the auction's dateTime and its expires, so each side's rows are let go as the other
-- side's watermark passes: bounded state), then an aggregation per auction, whose changelog
-- (a better bid retracts the auction's old maximum) feeds an aggregation per category.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q4.sql): the result is
-- a materialized view (Flink writes the same updates into an upsert blackhole sink); the
-- average is DataFusion's AVG (a DOUBLE; Flink averages the BIGINT column into a BIGINT).
-- Needs the streams of ddl.sql.

CREATE MATERIALIZED VIEW nexmark_q4 AS
SELECT
    Q.category,
    AVG(Q.final) AS avg_final
FROM (
    SELECT MAX(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.dateTime BETWEEN A.dateTime AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
