//! What statements return.

use std::pin::Pin;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::Result;

/// The result of one statement.
#[derive(Debug)]
pub enum Output {
    /// A statement that returns no rows: its tag (`CREATE STREAM`, `INSERT`, `COPY`, ...) and,
    /// for statements that write rows, how many.
    Done {
        /// What was done, as psql prints it.
        tag: String,
        /// Rows written, when the statement writes rows.
        rows: Option<u64>,
    },
    /// Rows: a snapshot query, `SHOW`, `DESCRIBE`.
    Rows {
        /// The schema (also for zero batches).
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
    /// A push query (`EMIT CHANGES`): rows as they arrive.
    Subscription(Subscription),
}

/// The rows of a push query, as they arrive: the rows present when it started, then new ones.
/// It ends after `LIMIT n` rows or when every input is sealed and read; dropping it cancels
/// the query.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) schema: SchemaRef,
    pub(crate) rx: mpsc::Receiver<Result<RecordBatch>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
    pub(crate) ends: bool,
    /// Its entry in `SHOW JOBS`, removed when this is dropped.
    pub(crate) _listed: crate::subscribe::Listed,
}

impl Subscription {
    /// The schema of every batch.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether the query ends by itself: it has a `LIMIT`, or every input was sealed when it
    /// started. Otherwise it runs until it is dropped.
    pub fn ends(&self) -> bool {
        self.ends
    }

    /// The next batch; `None` once the query ended.
    ///
    /// # Errors
    /// The error that stopped the query (it ends after it).
    ///
    /// # Cancel safety
    /// Cancel safe: a batch is never lost by a cancelled call.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        self.rx.recv().await
    }
}

impl Stream for Subscription {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}
