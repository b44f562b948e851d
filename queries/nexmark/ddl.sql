-- The three Nexmark streams, filled by kappa's deterministic generator (Beam's rules; see
-- ../shared/NEXMARK.md in the design, docs/ARCHITECTURE.md "Nexmark"). Run a query on them:
--
--   kappa -d "$(mktemp -d)" -f queries/nexmark/ddl.sql -f queries/nexmark/q1.sql
--
-- (A query file creates its sink table and its job: run each in a directory of its own, or
-- DROP JOB and DROP TABLE before running it again.)
--
-- 'events' is the number of events of all three kinds (2% people, 6% auctions, 92% bids);
-- after the last one the streams are sealed. 'rate' is events per second of event time (the
-- 1,000,000 events span 100 s from 2015-07-15 00:00:00). Add 'realtime' = 'true' to append at
-- that rate by the wall clock (and leave out 'events' to run without end).
--
-- Differences from the reference (nexmark-flink's ddl_gen.sql and ddl_views.sql): Flink declares
-- one `datagen` table with a nested row per kind and three views over it; kappa declares the
-- three streams directly. Their columns and watermarks are the views' (column names are in
-- lower case, as SQL folds unquoted names: `dateTime` in a query finds `datetime`).

CREATE STREAM IF NOT EXISTS person
  WITH ('connector' = 'nexmark', 'events' = '1000000', 'rate' = '10000');
CREATE STREAM IF NOT EXISTS auction
  WITH ('connector' = 'nexmark', 'events' = '1000000', 'rate' = '10000');
CREATE STREAM IF NOT EXISTS bid
  WITH ('connector' = 'nexmark', 'events' = '1000000', 'rate' = '10000');
