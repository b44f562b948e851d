//! A job's acknowledger: it takes the outcome of every batch, in order, waits until the
//! batch's output is durable, publishes the job's input positions, and takes the job's
//! checkpoints when the job loop asks ([`crate::recovery`]).
//!
//! It runs on a thread of its own, apart from the job loop: waiting for a sync (a group commit
//! that covers every append written so far) then overlaps the computation and writing of later
//! batches instead of stalling them. The queue between the two is bounded, so a slow disk slows
//! the job down rather than letting unacknowledged output pile up.
//!
//! A checkpoint records the acknowledged positions and the end of the output they cover (not
//! the log's end: the job's workers keep writing meanwhile; a restart truncates what they
//! wrote after it, or, for an `INSERT INTO` job, finds it by its tags). A stateless job has no
//! operator state: its manifest has no state file.

use kappa_storage::{Store, Stream};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

use crate::checkpoint::{Checkpoints, Manifest};
use crate::compute::Computed;
use crate::error::Result;
use crate::job::{Progress, record_name};
use crate::recovery::Taken;

/// Messages queued for acknowledgement.
pub(crate) const ACK_QUEUE: usize = 256;

/// What the job loop sends its acknowledger.
pub(crate) enum AckMsg {
    /// A batch's outcome.
    Batch(Computed),
    /// Take a checkpoint (if anything moved since the last).
    Checkpoint,
}

/// What the acknowledger of one job holds.
pub(crate) struct Acker {
    pub id: u32,
    /// The output log (`None` for a blackhole sink).
    pub output: Option<Arc<Stream>>,
    /// Whether the job owns its output (a derived stream): checkpoints commit it.
    pub owned: bool,
    pub store: Arc<Store>,
    pub checkpoints: Checkpoints,
    /// The input streams, in the order of `positions`.
    pub inputs: Vec<Arc<Stream>>,
    /// Per input: the offset below which every row's output is acknowledged.
    pub positions: Vec<u64>,
    pub progress: watch::Sender<Progress>,
    pub rows_in: u64,
    pub rows_out: u64,
    /// The output offset after this job's last acknowledged append (at start, the output's
    /// end: what came before is covered by the resumed positions).
    pub acked_end: u64,
    /// The last epoch used.
    pub epoch: u64,
    /// The last checkpoint (`None` before the first).
    pub last: Option<Taken>,
    /// Whether a progress record of an older version may remain (removed after the first
    /// checkpoint).
    pub legacy_record: bool,
}

impl Acker {
    /// Acknowledge outcomes until the queue closes or an acknowledgement or checkpoint fails.
    /// Returns itself (for the final checkpoint) and how it ended. Blocks: run it on a thread
    /// of its own.
    pub fn run(mut self, mut queue: mpsc::Receiver<AckMsg>) -> (Acker, Result<()>) {
        let mut taken = Vec::with_capacity(ACK_QUEUE);
        while let Some(msg) = queue.blocking_recv() {
            // Everything queued already is acknowledged together: one wait (appends become
            // durable in the order they were written) and one publication.
            let mut checkpoint = false;
            let mut next = Some(msg);
            while let Some(msg) = next.take() {
                match msg {
                    AckMsg::Batch(c) => taken.push(c),
                    AckMsg::Checkpoint => checkpoint = true,
                }
                if taken.len() < ACK_QUEUE {
                    next = queue.try_recv().ok();
                }
            }
            let mut done = self.take(&mut taken).map(|()| self.publish());
            if checkpoint && done.is_ok() {
                done = self.checkpoint();
            }
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

    /// Publish the acknowledged positions.
    pub fn publish(&mut self) {
        let positions = self.positions.clone();
        let (rows_in, rows_out) = (self.rows_in, self.rows_out);
        let caught_up = crate::recovery::caught_up(&self.inputs, &positions);
        self.progress.send_modify(|p| {
            p.positions = positions;
            p.rows_in = rows_in;
            p.rows_out = rows_out;
            p.behind_since = crate::recovery::behind_since(caught_up, p.behind_since);
        });
    }

    /// Take a checkpoint of the acknowledged positions, unless the last one has them. Blocks.
    ///
    /// # Errors
    /// When the output cannot be synced or committed, or the manifest cannot be written (the
    /// previous checkpoint then stays the last).
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.last.as_ref().is_some_and(|t| t.positions == self.positions) {
            return Ok(());
        }
        // The manifest must never be ahead of durable output (a relaxed output is synced
        // here; a durable one already is).
        if let Some(output) = &self.output {
            output.sync()?;
        }
        crate::recovery::sync_inputs(&self.inputs)?;
        let epoch = self.epoch + 1;
        let manifest = Manifest::new(
            self.id,
            epoch,
            &self.inputs,
            &self.positions,
            self.output.iter().map(|o| (o.as_ref(), self.acked_end)).collect(),
            vec![None; self.inputs.len()],
            Vec::new(),
        );
        self.checkpoints.commit(&manifest)?;
        self.epoch = epoch;
        if self.owned
            && let Some(output) = &self.output
        {
            output.commit(self.acked_end)?;
        }
        if self.legacy_record {
            // Superseded by the manifest (a restart reads the manifest first).
            let _ = self.store.remove_meta(&record_name(self.id));
            self.legacy_record = false;
        }
        let taken = Taken::of(&manifest);
        self.last = Some(taken.clone());
        self.progress.send_modify(|p| p.checkpoint = Some(taken));
        Ok(())
    }
}
