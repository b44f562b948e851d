-- Nexmark q22: get the first three directories of each bid's url (not in the original
-- suite): string splitting.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q22.sql): none
-- (`SPLIT_INDEX` is a built-in of kappa with Flink's meaning: pieces counted from 0, NULL past
-- the last one).
-- Needs the streams of ddl.sql.

CREATE TABLE nexmark_q22 (
      auction  BIGINT,
      bidder  BIGINT,
      price  BIGINT,
      channel  VARCHAR,
      dir1  VARCHAR,
      dir2  VARCHAR,
      dir3  VARCHAR
) WITH (
    'connector' = 'blackhole'
);

INSERT INTO nexmark_q22
SELECT
    auction, bidder, price, channel,
    SPLIT_INDEX(url, '/', 3) as dir1,
    SPLIT_INDEX(url, '/', 4) as dir2,
    SPLIT_INDEX(url, '/', 5) as dir3 FROM bid;
