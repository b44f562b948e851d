-- Nexmark q8: monitor new users. The people who opened an auction in the same 10-second
-- window in which they registered. A window join: two windowed aggregations joined on the
-- key and the window's bounds; each window's rows are let go once both sides' watermarks pass
-- its end (bounded state, append-only output).
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q8.sql): the windows
-- are TUMBLE in table-function form (Flink's q8 uses the group-window TUMBLE with
-- TUMBLE_START and TUMBLE_END, the same windows). Needs the streams of ddl.sql.

CREATE TABLE nexmark_q8 (
  id  BIGINT,
  name  VARCHAR,
  stime  TIMESTAMP(3)
) WITH (
  'connector' = 'blackhole'
);

INSERT INTO nexmark_q8
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TUMBLE(person, dateTime, INTERVAL '10' SECOND)
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TUMBLE(auction, dateTime, INTERVAL '10' SECOND)
  GROUP BY seller, window_start, window_end
) A
ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;
