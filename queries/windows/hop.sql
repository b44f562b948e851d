-- Windowed aggregation benchmark (issue 6): bids per auction in 10-second windows every 2 seconds.
-- Run: kappa bench nexmark --queries-dir queries/windows --queries tumble,hop --baseline
CREATE TABLE w_hop (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, hi BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO w_hop
SELECT auction, window_start, window_end, count(*) AS n, max(price) AS hi
FROM HOP(bid, dateTime, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;
