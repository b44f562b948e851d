//! A stream: a named, typed log made of partitions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::frame::Tag;
use crate::options::StreamOptions;
use crate::partition::{AppendAck, EncodedBatch, Partition, PendingAppend};
use crate::progress::Wait;
use crate::reader::{ReadFrom, Reader};

/// A snapshot of a stream's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// First retained offset.
    pub start: u64,
    /// Offset after the last readable row.
    pub end: u64,
    /// Committed offset (derived logs).
    pub committed: Option<u64>,
    /// Final end, once sealed.
    pub sealed: Option<u64>,
    /// Number of segment files.
    pub segments: usize,
    /// Bytes of frames on disk.
    pub bytes: u64,
    /// Batches appended since the store was opened.
    pub appended_batches: u64,
    /// Group-commit `fdatasync` calls since the store was opened: `appended_batches / syncs` is
    /// how many durable appends share a sync.
    pub syncs: u64,
    /// Segments compacted (small frames merged) since the store was opened.
    pub compactions: u64,
    /// Compactions that failed since the store was opened (the segment stayed as it was).
    pub compaction_errors: u64,
}

/// A durable, ordered, append-only log of Arrow record batches.
///
/// Cheap to share (`Arc<Stream>`); every method takes `&self` and may be called from any thread.
/// Partition 0 is the only partition today; the methods act on it.
#[derive(Debug)]
pub struct Stream {
    name: String,
    dir: PathBuf,
    schema: SchemaRef,
    options: Arc<StreamOptions>,
    partitions: Vec<Arc<Partition>>,
}

impl Stream {
    pub(crate) fn new(
        name: String,
        dir: PathBuf,
        schema: SchemaRef,
        options: Arc<StreamOptions>,
        partitions: Vec<Arc<Partition>>,
    ) -> Stream {
        Stream { name, dir, schema, options, partitions }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stream's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Arrow schema every batch has.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The options the stream was created with.
    pub fn options(&self) -> &StreamOptions {
        &self.options
    }

    fn p0(&self) -> &Arc<Partition> {
        &self.partitions[0]
    }

    /// Append a batch. Returns once the rows are durable (after `fdatasync`, shared with
    /// concurrent appenders), or once written in relaxed mode. An empty batch appends nothing.
    ///
    /// Blocks the calling thread on I/O; from async code call it through `spawn_blocking`.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] naming the columns that differ; [`Error::Sealed`];
    /// [`Error::Io`] when the write or sync fails, after which the stream refuses appends with
    /// [`Error::Failed`] until the store is reopened (the outcome of that append is unknown: it
    /// may or may not be present after recovery, and is never present in part).
    pub fn append(&self, batch: &RecordBatch) -> Result<AppendAck> {
        self.p0().append(batch, None)
    }

    /// [`Stream::append`] with a producer's [`Tag`] on the frame (see
    /// [`Stream::producer_positions`]).
    ///
    /// # Errors
    /// As [`Stream::append`].
    pub fn append_tagged(&self, batch: &RecordBatch, tag: Tag) -> Result<AppendAck> {
        self.p0().append(batch, Some(tag))
    }

    /// [`Stream::submit`] with a producer's [`Tag`] on the frame.
    ///
    /// # Errors
    /// As [`Stream::submit`].
    pub fn submit_tagged(&self, batch: &RecordBatch, tag: Tag) -> Result<PendingAppend> {
        self.p0().submit(batch, Some(tag))
    }

    /// Check `batch` against the stream's schema and encode it as a frame of this stream's log,
    /// without taking any lock: threads can encode batches in parallel and one of them write
    /// them in order with [`Stream::submit_encoded`].
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] naming the columns that differ; [`Error::LimitExceeded`] for a
    /// batch larger than a frame may be.
    pub fn encode(&self, batch: &RecordBatch) -> Result<EncodedBatch> {
        self.p0().encode(batch)
    }

    /// [`Stream::submit`] of batches encoded by [`Stream::encode`], each with an optional
    /// producer [`Tag`], in this order at consecutive offsets, written together (one `pwritev`
    /// unless a segment rolls in between). The returned append covers them all.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a batch encoded for another stream (or for an earlier
    /// stream of the same name), and then nothing is written; otherwise as [`Stream::submit`].
    pub fn submit_encoded(
        &self,
        batches: Vec<(EncodedBatch, Option<Tag>)>,
    ) -> Result<PendingAppend> {
        self.p0().submit_encoded(batches)
    }

    /// The highest sequence of each producer's tags in frames that end after offset `from`
    /// (frame headers only are read). A producer that records `(its progress, the log's end)`
    /// from time to time resumes, after a crash, from the larger of its record and what this
    /// finds beyond the recorded end: what it wrote is then neither lost nor written twice.
    /// Tags survive compaction (frames of different producers are never merged; a merged frame
    /// keeps its last tag); a truncation that cuts inside a tagged frame drops that frame's tag.
    ///
    /// # Errors
    /// [`Error::Corruption`] when a frame header is damaged.
    pub fn producer_positions(&self, from: u64) -> Result<std::collections::HashMap<u32, u64>> {
        self.p0().producer_positions(from)
    }

    /// Write a batch and return without waiting for its sync, so that one appender can have
    /// several appends in flight (as a Kafka producer does) and share a group commit with them.
    /// The rows are acknowledged, readable and kept by a crash only once
    /// [`PendingAppend::wait`] returns `Ok`; appends are durable in the order they were
    /// submitted. In relaxed mode the rows are acknowledged when this returns.
    ///
    /// # Errors
    /// As [`Stream::append`] for everything up to the write; the sync's outcome comes from
    /// [`PendingAppend::wait`].
    pub fn submit(&self, batch: &RecordBatch) -> Result<PendingAppend> {
        self.p0().submit(batch, None)
    }

    /// A reader starting at `from`.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] for an offset outside the retained, readable range;
    /// [`Error::InvalidArgument`] for [`ReadFrom::EventTime`] on a stream without event time.
    pub fn reader(&self, from: ReadFrom) -> Result<Reader> {
        Reader::new(Arc::clone(self.p0()), from)
    }

    /// Current offsets and sizes.
    pub fn info(&self) -> StreamInfo {
        let p = self.p0().watch.get();
        let segments = self.p0().segments_snapshot();
        StreamInfo {
            start: p.start,
            end: p.end,
            committed: p.committed,
            sealed: p.sealed,
            segments: segments.len(),
            bytes: segments.iter().map(|s| s.size()).sum(),
            appended_batches: self.p0().frames_written.load(std::sync::atomic::Ordering::Relaxed),
            syncs: self.p0().group_syncs.load(std::sync::atomic::Ordering::Relaxed),
            compactions: self.p0().compactions.load(std::sync::atomic::Ordering::Relaxed),
            compaction_errors: self
                .p0()
                .compaction_errors
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Offset after the last row written (durable, or written in relaxed mode).
    pub fn end_offset(&self) -> u64 {
        self.p0().watch.get().end
    }

    /// Offset readers may read up to: [`Stream::end_offset`], or for a derived log its
    /// committed offset (see [`Stream::commit`]).
    pub fn readable_end(&self) -> u64 {
        self.p0().watch.get().limit()
    }

    /// Block until rows at or beyond `offset` are readable, the stream ends, or `timeout` passes.
    pub fn wait_for(&self, offset: u64, timeout: Option<Duration>) -> Wait {
        let watch = &self.p0().watch;
        watch.wait_blocking(offset, watch.lock().epoch, timeout)
    }

    /// Seal the stream: its current end becomes final and is persisted; appends are refused.
    /// Idempotent. Returns the final end offset.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Failed`].
    pub fn seal(&self) -> Result<u64> {
        self.p0().seal()
    }

    /// Make every row written so far durable (`fdatasync`), and return the end offset it
    /// covers. For a relaxed stream, whose appends do not sync; a durable stream's acknowledged
    /// rows already are.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Failed`] / [`Error::Closed`].
    pub fn sync(&self) -> Result<u64> {
        self.p0().sync()
    }

    /// Commit `offset` of a derived log: readers may read up to it. Rows below it are synced
    /// first. Commits only move forward.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] below the current commit; [`Error::OffsetOutOfRange`] beyond
    /// the end; [`Error::Io`].
    pub fn commit(&self, offset: u64) -> Result<()> {
        self.p0().commit(offset)
    }

    /// Remove every row at `offset` and after (exactly-once recovery rolls a derived log back to
    /// its last checkpoint). `offset` may fall inside a batch (its first rows are kept); it may not
    /// be below the committed offset.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an offset below the commit;
    /// [`Error::OffsetOutOfRange`]; [`Error::Sealed`]; [`Error::Io`].
    pub fn truncate(&self, offset: u64) -> Result<()> {
        self.p0().truncate(offset)
    }

    /// Apply the retention policy as of `now`: remove whole closed segments that are too old or
    /// beyond the size limit (never the active one). Also runs on every segment roll. Returns the
    /// number of segments removed.
    ///
    /// # Errors
    /// [`Error::Io`] when the metadata cannot be written.
    pub fn enforce_retention(&self, now: SystemTime) -> Result<usize> {
        self.p0().enforce_retention(now)
    }

    pub(crate) fn close(&self) -> Result<()> {
        let mut first = None;
        for p in &self.partitions {
            if let Err(e) = p.close()
                && first.is_none()
            {
                first = Some(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
