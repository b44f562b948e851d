//! `kappa`: the embeddable streaming SQL engine.
//!
//! ```no_run
//! # async fn demo() -> kappa::Result<()> {
//! let engine = kappa::Engine::open("kappa-data").await?;
//! engine.execute("CREATE STREAM bids (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
//!                  WATERMARK FOR ts AS ts - INTERVAL '4' SECOND)").await?;
//! engine.execute("INSERT INTO bids VALUES (1, 100, TIMESTAMP '2026-01-01 00:00:00')").await?;
//! engine.execute("CREATE STREAM big AS SELECT auction, price * 2 AS doubled, ts FROM bids WHERE price > 50").await?;
//! let rows = engine.query("SELECT count(*) FROM big").await?; // sees the row through the job
//! engine.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Architecture
//!
//! - **Storage**: every stream is a log of `kappa-storage` (re-exported as [`storage`]), owned
//!   by one [`kappa_storage::Store`] per data directory.
//! - **Catalog** (`catalog`): watermarks, declared options and jobs, one JSON file written
//!   atomically through the store.
//! - **SQL**: `kappa-sql` parses statements; DataFusion plans queries (`SqlToRel`) over a
//!   `SessionContext` in which every stream is a table (`table::StreamTable`).
//! - **Snapshot queries** run on DataFusion: the stream table reads each log up to its end when
//!   the scan is planned, with projection and event-time range pushdown. Before that, every job
//!   upstream of the query is waited for until it has processed what its inputs held when the
//!   query started (read-your-writes).
//! - **Jobs** (`job`): `CREATE STREAM d AS SELECT` and `INSERT INTO s SELECT` compile the
//!   query into a stateless streaming plan (filters and projections per input, `UNION ALL`)
//!   and run it as a tokio task over readers of the inputs. Batches are computed several at
//!   once by the job's worker threads and written in read order (`compute`); an acknowledger thread
//!   waits for their durability and publishes positions (`acker`). Output frames carry
//!   producer tags, which make restarts exactly-once.
//! - **Push queries** (`subscribe`): the same plan, from the first retained rows on, into a
//!   bounded channel read by a [`Subscription`].
//! - **COPY** (`copy`): CSV, JSON lines and Parquet in and out; COPY FROM is all or nothing.
//! - **Planning** (`planning`): continuous queries optimized once, then compiled; a job's
//!   lifecycle (create, restart from its checkpoint, stop) in `launch`; read-your-writes in
//!   `catch_up`.
//! - **Reprocessing** (`rebuild`, `cascade`, `switch`): `ALTER ... REBUILD` and `CREATE OR
//!   REPLACE` run new versions beside the old (with the jobs reading them, a cascade) and
//!   switch the names to them in one catalog write once they have caught up; `retention`
//!   removes expired segments in the background; `dataflow` and `explain` show the graph and
//!   why a window has not fired.
//!
//! The engine must run inside a multi-thread tokio runtime.

mod acker;
mod as_of;
mod cascade;
mod catalog;
mod catch_up;
mod checkpoint;
mod compute;
mod connectors;
mod copy;
mod dataflow;
mod engine;
mod error;
mod explain;
mod functions;
mod job;
mod late;
mod launch;
mod meter;
pub mod nexmark;
mod options;
mod output;
mod planning;
mod rebuild;
mod recovery;
mod retention;
mod show;
mod sink;
mod statements;
mod subscribe;
mod switch;
mod table;
mod view;
mod window_job;
mod window_table;

pub use connectors::NexmarkStreams;
pub use copy::COPY_BUFFER_BYTES;
pub use dataflow::LINES as PRINT_LINES;
pub use engine::{Engine, EngineOptions};
pub use error::{Error, Location, Result};
pub use output::{Output, Subscription};
pub use rebuild::RebuildProgress;
pub use show::JobProgress;

/// DataFusion, as kappa uses it (for UDFs and Arrow types).
pub use datafusion;
/// The SQL front end (`kappa-sql`).
pub use kappa_sql as sql;
/// The log (`kappa-storage`).
pub use kappa_storage as storage;
