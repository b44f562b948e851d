//! A job's acknowledger: it takes the outcome of every batch, in order, waits until the
//! batch's output is durable, then publishes the job's input positions and, from time to time,
//! records them in the job's progress file.
//!
//! It runs on a thread of its own, apart from the job loop: waiting for a sync (a group commit
//! that covers every append written so far) then overlaps the computation and writing of later
//! batches instead of stalling them. The queue between the two is bounded, so a slow disk slows
//! the job down rather than letting unacknowledged output pile up.
//!
//! The progress record names the end of the output this job had acknowledged, not the log's
//! end: the job's workers keep writing while it records, and a restart must find the
//! tags of everything written after the recorded positions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_storage::{Store, Stream};
use tokio::sync::{mpsc, watch};

use crate::compute::Computed;
use crate::error::{Error, Result};
use crate::job::{Progress, Record, record_name};

/// Batch outcomes queued for acknowledgement.
pub(crate) const ACK_QUEUE: usize = 256;
/// Least time between two progress records.
const RECORD_INTERVAL: Duration = Duration::from_secs(1);

/// What the acknowledger of one job holds.
pub(crate) struct Acker {
    pub id: u32,
    /// The output log (`None` for a blackhole sink).
    pub output: Option<Arc<Stream>>,
    pub store: Arc<Store>,
    /// The input streams' names, in the order of `positions`.
    pub inputs: Vec<String>,
    /// Per input: the offset below which every row's output is acknowledged.
    pub positions: Vec<u64>,
    pub progress: watch::Sender<Progress>,
    pub rows_in: u64,
    pub rows_out: u64,
    pub last_record: Instant,
    /// The output offset after this job's last acknowledged append (at start, the output's
    /// end: what came before is covered by the resumed positions).
    pub acked_end: u64,
}

impl Acker {
    /// Acknowledge outcomes until the queue closes or an acknowledgement fails. Returns itself
    /// (for the final record) and how it ended. Blocks: run it on a thread of its own.
    pub fn run(mut self, mut queue: mpsc::Receiver<Computed>) -> (Acker, Result<()>) {
        let mut taken = Vec::with_capacity(ACK_QUEUE);
        while let Some(c) = queue.blocking_recv() {
            // Everything queued already is acknowledged together: one wait (appends become
            // durable in the order they were written) and one publication.
            taken.push(c);
            while taken.len() < ACK_QUEUE
                && let Ok(c) = queue.try_recv()
            {
                taken.push(c);
            }
            let done = self.take(&mut taken).and_then(|()| self.publish(false));
            if let Err(e) = done {
                return (self, Err(e));
            }
        }
        (self, Ok(()))
    }

    /// Wait until the output of `taken` (in order) is durable and count it in.
    fn take(&mut self, taken: &mut Vec<Computed>) -> Result<()> {
        let rows_out: u64 = taken.iter().map(|c| c.rows_out).sum();
        if let Some(last) = taken.iter_mut().rev().find_map(|c| c.written.take()) {
            let written = last.offsets();
            last.wait()?;
            self.acked_end = self.acked_end.max(written.base_offset + written.rows);
        }
        self.rows_out += rows_out;
        for c in taken.drain(..) {
            self.positions[c.input] = c.end;
            self.rows_in += c.rows_in;
        }
        Ok(())
    }

    /// Publish the positions, and record them if due (or if `force_record`). Blocks.
    ///
    /// # Errors
    /// When the output cannot be synced or the record cannot be written.
    pub fn publish(&mut self, force_record: bool) -> Result<()> {
        let positions = self.positions.clone();
        let (rows_in, rows_out) = (self.rows_in, self.rows_out);
        self.progress.send_modify(|p| {
            p.positions = positions;
            p.rows_in = rows_in;
            p.rows_out = rows_out;
        });
        if force_record || self.last_record.elapsed() >= RECORD_INTERVAL {
            // The record must never be ahead of durable output (a relaxed output is synced
            // here; a durable one already is).
            if let Some(output) = &self.output {
                output.sync()?;
            }
            let record = Record {
                positions: self.positions.clone(),
                output_end: self.acked_end,
                inputs: self.inputs.clone(),
            };
            let bytes = serde_json::to_vec(&record).map_err(|e| Error::Catalog {
                path: record_name(self.id).into(),
                message: e.to_string(),
            })?;
            self.store.write_meta(&record_name(self.id), &bytes)?;
            self.last_record = Instant::now();
        }
        Ok(())
    }
}
