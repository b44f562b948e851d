-- Nexmark q21: add a channel id (not in the original suite). The id of the four named
-- channels, or the `channel_id` parameter of the bid's url: CASE and REGEXP_EXTRACT.
--
-- Differences from the reference text (nexmark/nexmark, nexmark-flink q21.sql): none
-- (`REGEXP_EXTRACT` is a built-in of kappa with Flink's meaning: NULL when nothing matches).
-- Needs the streams of ddl.sql.

CREATE TABLE nexmark_q21 (
    auction  BIGINT,
    bidder  BIGINT,
    price  BIGINT,
    channel  VARCHAR,
    channel_id  VARCHAR
) WITH (
    'connector' = 'blackhole'
);

INSERT INTO nexmark_q21
SELECT
    auction, bidder, price, channel,
    CASE
        WHEN lower(channel) = 'apple' THEN '0'
        WHEN lower(channel) = 'google' THEN '1'
        WHEN lower(channel) = 'facebook' THEN '2'
        WHEN lower(channel) = 'baidu' THEN '3'
        ELSE REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2)
        END
    AS channel_id FROM bid
    where REGEXP_EXTRACT(url, '(&|^)channel_id=([^&]*)', 2) is not null or
          lower(channel) in ('apple', 'google', 'facebook', 'baidu');
