-- Windowed aggregation benchmark (issue 6): bids per auction in 10-second tumbling windows.
-- Run: kappa bench nexmark --queries-dir queries/windows --queries tumble,hop --baseline
CREATE TABLE w_tumble (auction BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, hi BIGINT)
WITH ('connector' = 'blackhole');
INSERT INTO w_tumble
SELECT auction, window_start, window_end, count(*) AS n, max(price) AS hi
FROM TUMBLE(bid, dateTime, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;
