-- Nexmark q11: user sessions. How many bids did each bidder make in each session they were
-- active? Bids of one bidder less than 10 seconds apart form one session (a session window).
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q11.sql): none. Flink
-- also chains two bids exactly 10 seconds apart into one session; kappa starts a new session
-- then (see docs/ARCHITECTURE.md, Windows), which can split a session where Flink would not.
-- Needs the streams of ddl.sql.

CREATE TABLE nexmark_q11 (
  bidder BIGINT,
  bid_count BIGINT,
  starttime TIMESTAMP(3),
  endtime TIMESTAMP(3)
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q11
SELECT
    B.bidder,
    count(*) as bid_count,
    SESSION_START(B.dateTime, INTERVAL '10' SECOND) as starttime,
    SESSION_END(B.dateTime, INTERVAL '10' SECOND) as endtime
FROM bid B
GROUP BY B.bidder, SESSION(B.dateTime, INTERVAL '10' SECOND);
