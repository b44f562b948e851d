//! A partition: a folder of segments, its recovery, and the write path with group commit.
//!
//! Locks are always taken in the order `writer -> sync -> segments -> watch`, and never the other
//! way round. The writer lock serialises appends, rolls, seals, commits, truncations and
//! retention. The sync lock coordinates group commit: the first appender that finds no sync
//! running starts one for everything written so far, the others wait on it.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::compact::Compactor;
use crate::error::{Error, Result};
use crate::frame::{EncodedFrame, Tag};
use crate::fsutil::{atomic_write, read_optional, sync_dir, write_new_file};
use crate::io::Io;
use crate::maintenance::{cut_segment, head_frame, rewrite_prefix};
use crate::options::{Durability, StreamOptions};
use crate::progress::{Progress, Watch};
use crate::schema::{conform, time_range};
use crate::segment::{Segment, parse_segment_file_name, remove_segment_files, segment_file_name};

/// The persisted state of a partition (`partition.json`, replaced atomically).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionMeta {
    /// Format version.
    pub version: u32,
    /// First retained offset.
    pub start_offset: u64,
    /// Every frame that ends at or below this offset was synced.
    pub recovery_point: u64,
    /// Committed offset of a derived log.
    pub committed: Option<u64>,
    /// Final end offset, once sealed.
    pub sealed_at: Option<u64>,
    /// A truncation to this offset was started; recovery finishes it.
    #[serde(default)]
    pub truncating_to: Option<u64>,
}

const META_FILE: &str = "partition.json";

/// What `append` returns once the batch is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// Offset of the first row.
    pub base_offset: u64,
    /// Rows appended (`base_offset..base_offset + rows`).
    pub rows: u64,
}

/// A batch checked and encoded for one stream's log, ready to be written
/// ([`crate::Stream::encode`], [`crate::Stream::submit_encoded`]). Encoding (the copy into the
/// frame's layout and its checksum) is most of an append's CPU; it needs no lock, so several
/// threads can encode while one writes.
#[derive(Debug)]
pub struct EncodedBatch {
    frame: Option<EncodedFrame>,
    /// The schema of the log it was encoded for (its identity is checked on write).
    schema: SchemaRef,
}

impl EncodedBatch {
    /// Rows in the batch.
    pub fn num_rows(&self) -> usize {
        self.frame.as_ref().map_or(0, |f| f.rows as usize)
    }

    /// Its frame (none for an empty batch), tagged.
    fn into_frame(self, tag: Option<Tag>) -> Option<EncodedFrame> {
        self.frame.map(|mut f| {
            f.tag = tag;
            f
        })
    }
}

/// An append that is written but may not be durable yet: see [`crate::Stream::submit`].
///
/// Dropping it does not withdraw the rows: they are in the log and become durable with the
/// next sync, unacknowledged.
#[derive(Debug)]
#[must_use = "an append is acknowledged only by `wait`"]
pub struct PendingAppend {
    partition: Arc<Partition>,
    ack: AppendAck,
    durable_at: Option<(u64, u64)>,
}

impl PendingAppend {
    /// Where the rows were written. They are not acknowledged (readable, or kept by a crash)
    /// until [`PendingAppend::wait`] returns `Ok`.
    pub fn offsets(&self) -> AppendAck {
        self.ack
    }

    /// Block until the rows are durable (shared group commit); immediate in relaxed mode.
    ///
    /// # Errors
    /// As [`crate::Stream::append`]: [`Error::Io`] or [`Error::Failed`] when the sync fails,
    /// [`Error::InvalidArgument`] when a truncation removed the rows while they waited.
    pub fn wait(self) -> Result<AppendAck> {
        match self.durable_at {
            Some((target, epoch)) => self.partition.wait_durable(target, epoch).map(|()| self.ack),
            None => Ok(self.ack),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Writer {
    pub active: Arc<Segment>,
    pub next_offset: u64,
    pub meta: PartitionMeta,
    pub failed: Option<String>,
    pub closed: bool,
}

#[derive(Debug, Default)]
pub(crate) struct SyncState {
    pub synced: u64,
    pub syncing: bool,
    pub epoch: u64,
    /// Frames the last group commit covered, and how long its sync took.
    pub last_group: u64,
    pub last_sync: std::time::Duration,
    /// Frames written when the last group commit started.
    pub frames_at_last_sync: u64,
}

/// The longest a group-commit leader waits for more appenders to join its sync.
const MAX_GROUP_DELAY: std::time::Duration = std::time::Duration::from_micros(400);

/// One partition of a stream.
#[derive(Debug)]
pub(crate) struct Partition {
    pub(crate) stream: String,
    pub(crate) dir: PathBuf,
    pub(crate) schema: SchemaRef,
    pub(crate) options: Arc<StreamOptions>,
    pub(crate) event_column: Option<usize>,
    pub(crate) io: Arc<dyn Io>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) sync: Mutex<SyncState>,
    pub(crate) sync_cv: Condvar,
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) watch: Watch,
    /// Appenders inside `append` (encoding, writing, or waiting for their sync), and inside
    /// `submit` (encoding or writing).
    pub(crate) appenders: std::sync::atomic::AtomicUsize,
    /// Frames written since open (changed under the writer lock, read without it).
    pub(crate) frames_written: AtomicU64,
    /// Group-commit syncs since open.
    pub(crate) group_syncs: AtomicU64,
    /// The store's background compactor.
    pub(crate) compactor: Arc<Compactor>,
    /// This partition, for compaction jobs (set when it is put in its `Arc`).
    pub(crate) me: Weak<Partition>,
    /// Segments compacted, and compactions that failed, since open.
    pub(crate) compactions: AtomicU64,
    pub(crate) compaction_errors: AtomicU64,
}

impl Partition {
    /// Create the files of a new, empty partition in `dir` (which must not exist yet).
    pub(crate) fn create_files(io: &dyn Io, dir: &Path, options: &StreamOptions) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        let seg = Segment::create(dir, 0, options.index_interval_bytes)?;
        drop(seg);
        let meta = PartitionMeta { version: 1, ..PartitionMeta::default() };
        let bytes = serde_json::to_vec_pretty(&meta).map_err(|e| {
            Error::InvalidArgument(format!("cannot encode partition metadata: {e}"))
        })?;
        write_new_file(io, &dir.join(META_FILE), &bytes)?;
        sync_dir(io, dir)
    }

    /// Open and recover the partition in `dir`.
    ///
    /// # Errors
    /// [`Error::Corruption`] when data below the recovery point is damaged or missing;
    /// [`Error::Io`] and [`Error::BadMetadata`].
    pub(crate) fn open(
        stream: &str,
        dir: PathBuf,
        schema: SchemaRef,
        options: Arc<StreamOptions>,
        event_column: Option<usize>,
        io: Arc<dyn Io>,
        compactor: Arc<Compactor>,
    ) -> Result<Partition> {
        let meta_path = dir.join(META_FILE);
        let bytes = read_optional(&meta_path)?.ok_or_else(|| Error::BadMetadata {
            path: meta_path.clone(),
            detail: "missing".into(),
        })?;
        let mut meta: PartitionMeta = serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadMetadata { path: meta_path.clone(), detail: e.to_string() })?;

        let segments =
            recover_segments(io.as_ref(), &dir, &mut meta, options.index_interval_bytes, &schema)?;
        let active = segments.last().cloned().ok_or_else(|| Error::BadMetadata {
            path: dir.clone(),
            detail: "partition has no segment".into(),
        })?;
        if meta.sealed_at.is_some() {
            // A sealed stream is immutable: its last segment is read from a mapping too.
            active.close();
        }
        let end = active.end();
        if let Some(c) = meta.committed
            && c > end
        {
            return Err(Error::Corruption {
                segment: active.path.clone(),
                offset: end,
                position: active.size(),
                detail: format!("offsets up to {c} were committed but the log ends at {end}"),
            });
        }
        if let Some(s) = meta.sealed_at
            && s != end
        {
            return Err(Error::Corruption {
                segment: active.path.clone(),
                offset: end,
                position: active.size(),
                detail: format!("stream was sealed at offset {s} but the log ends at {end}"),
            });
        }
        if meta.recovery_point != end {
            meta.recovery_point = end;
            write_meta(io.as_ref(), &dir, &meta)?;
        }
        let progress = Progress {
            start: meta.start_offset,
            end,
            committed: meta.committed.or(options.derived.then_some(meta.start_offset)),
            sealed: meta.sealed_at,
            ..Progress::default()
        };
        Ok(Partition {
            stream: stream.to_string(),
            dir,
            schema,
            options,
            event_column,
            io,
            writer: Mutex::new(Writer {
                active,
                next_offset: end,
                meta,
                failed: None,
                closed: false,
            }),
            sync: Mutex::new(SyncState { synced: end, ..SyncState::default() }),
            sync_cv: Condvar::new(),
            segments: RwLock::new(segments),
            watch: Watch::new(progress),
            appenders: std::sync::atomic::AtomicUsize::new(0),
            frames_written: AtomicU64::new(0),
            group_syncs: AtomicU64::new(0),
            compactor,
            me: Weak::new(),
            compactions: AtomicU64::new(0),
            compaction_errors: AtomicU64::new(0),
        })
    }

    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_sync(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn segments_snapshot(&self) -> Vec<Arc<Segment>> {
        self.segments.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Mark the partition failed after an I/O error: appends are refused until reopen.
    pub(crate) fn fail(&self, w: &mut Writer, error: Error) -> Error {
        self.mark_failed(w, error.to_string());
        error
    }

    fn mark_failed(&self, w: &mut Writer, cause: String) {
        if w.failed.is_none() {
            w.failed = Some(cause.clone());
            self.watch.update(|p| p.failed = Some(cause));
        }
    }

    /// Refuse when the store closed or the partition failed.
    pub(crate) fn check_open(&self, w: &Writer) -> Result<()> {
        if w.closed {
            return Err(Error::Closed { stream: self.stream.clone() });
        }
        if let Some(cause) = &w.failed {
            return Err(Error::Failed { stream: self.stream.clone(), cause: cause.clone() });
        }
        Ok(())
    }

    /// Refuse when closed, failed or sealed.
    pub(crate) fn check_writable(&self, w: &Writer) -> Result<()> {
        self.check_open(w)?;
        if let Some(end) = w.meta.sealed_at {
            return Err(Error::Sealed { stream: self.stream.clone(), end });
        }
        Ok(())
    }

    /// Append a batch; see [`crate::Stream::append`].
    pub(crate) fn append(&self, batch: &RecordBatch, tag: Option<Tag>) -> Result<AppendAck> {
        use std::sync::atomic::Ordering;
        self.appenders.fetch_add(1, Ordering::AcqRel);
        let result = self.write_frame(batch, tag).and_then(|(ack, durable_at)| match durable_at {
            Some((target, epoch)) => self.wait_durable(target, epoch).map(|()| ack),
            None => Ok(ack),
        });
        self.appenders.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// Write a batch without waiting for its sync; see [`crate::Stream::submit`].
    ///
    /// A submitted append counts as an appender (for the group commit's gathering) only while
    /// it encodes and writes: its frame is then pending, and a leader need not wait for it.
    pub(crate) fn submit(
        self: &Arc<Self>,
        batch: &RecordBatch,
        tag: Option<Tag>,
    ) -> Result<PendingAppend> {
        self.pending(|| self.write_frame(batch, tag))
    }

    /// Run `write` counted as an appender, and return what it wrote as a pending append.
    fn pending(
        self: &Arc<Self>,
        write: impl FnOnce() -> Result<(AppendAck, Option<(u64, u64)>)>,
    ) -> Result<PendingAppend> {
        use std::sync::atomic::Ordering;
        self.appenders.fetch_add(1, Ordering::AcqRel);
        let written = write();
        self.appenders.fetch_sub(1, Ordering::AcqRel);
        let (ack, durable_at) = written?;
        Ok(PendingAppend { partition: Arc::clone(self), ack, durable_at })
    }

    /// Check and encode a batch for this log; see [`crate::Stream::encode`].
    pub(crate) fn encode(&self, batch: &RecordBatch) -> Result<EncodedBatch> {
        let batch = conform(&self.stream, &self.schema, batch)?;
        let time = self.event_column.and_then(|i| time_range(batch.column(i)));
        let frame =
            if batch.num_rows() > 0 { Some(EncodedFrame::encode(&batch, time)?) } else { None };
        Ok(EncodedBatch { frame, schema: Arc::clone(&self.schema) })
    }

    /// Write an encoded batch without waiting for its sync; see
    /// [`crate::Stream::submit_encoded`].
    pub(crate) fn submit_encoded(
        self: &Arc<Self>,
        batches: Vec<(EncodedBatch, Option<Tag>)>,
    ) -> Result<PendingAppend> {
        if batches.iter().any(|(b, _)| !Arc::ptr_eq(&b.schema, &self.schema)) {
            return Err(Error::InvalidArgument(format!(
                "a batch encoded for another stream cannot be appended to '{}'",
                self.stream
            )));
        }
        let frames = batches.into_iter().filter_map(|(b, tag)| b.into_frame(tag)).collect();
        self.pending(|| self.write_run(frames))
    }

    /// Write consecutive frames, with as few writes as segment rolls allow (one `pwritev` per
    /// segment). Returns the ack of them all and, in durable mode, the offset and sync epoch
    /// to wait for.
    fn write_run(&self, mut frames: Vec<EncodedFrame>) -> Result<(AppendAck, Option<(u64, u64)>)> {
        let mut w = self.lock_writer();
        self.check_writable(&w)?;
        let first = w.next_offset;
        if frames.is_empty() {
            return Ok((AppendAck { base_offset: first, rows: 0 }, None));
        }
        let (synced, epoch) = {
            let s = self.lock_sync();
            (s.synced, s.epoch)
        };
        let limit = self.options.segment_bytes;
        let mut i = 0;
        while i < frames.len() {
            if w.active.size() > 0 && w.active.size() + frames[i].len() as u64 > limit {
                self.roll(&mut w)?;
            }
            // The frames from `i` that fit in the active segment (at least one).
            let start = w.active.size();
            let (mut pos, mut base, mut j) = (start, w.next_offset, i);
            let mut headers = Vec::new();
            while j < frames.len() && (j == i || pos + frames[j].len() as u64 <= limit) {
                let h = frames[j].seal(base, synced);
                headers.push((pos, h));
                pos += frames[j].len() as u64;
                base = h.end_offset();
                j += 1;
            }
            let parts: Vec<&[u8]> = frames[i..j].iter().flat_map(|f| f.parts()).collect();
            if let Err(e) = self.io.write_parts_at(&w.active.file, start, &parts) {
                let path = w.active.path.clone();
                return Err(self.fail(&mut w, Error::io("write", path, e)));
            }
            for (p, h) in &headers {
                w.active.record_frame(*p, h);
            }
            w.next_offset = base;
            self.frames_written.fetch_add((j - i) as u64, std::sync::atomic::Ordering::AcqRel);
            i = j;
        }
        let ack = AppendAck { base_offset: first, rows: w.next_offset - first };
        if self.options.durability == Durability::Relaxed {
            let end = w.next_offset;
            self.watch.update(|p| p.end = end);
            return Ok((ack, None));
        }
        Ok((ack, Some((w.next_offset, epoch))))
    }

    /// Check, encode and write a batch. Returns the ack and, in durable mode, the offset and
    /// sync epoch to wait for.
    fn write_frame(
        &self,
        batch: &RecordBatch,
        tag: Option<Tag>,
    ) -> Result<(AppendAck, Option<(u64, u64)>)> {
        let frame = self.encode(batch)?.into_frame(tag);
        self.write_run(frame.into_iter().collect())
    }

    /// Group commit: return once every row below `target` is synced.
    fn wait_durable(&self, target: u64, epoch: u64) -> Result<()> {
        let mut s = self.lock_sync();
        loop {
            if s.epoch != epoch {
                // A truncation ran while this append waited: it survives if the log was not cut
                // below its end (and then the truncation's own sync makes it durable).
                let cut = self.watch.lock().truncated_since(epoch);
                if cut.is_none_or(|c| target > c) {
                    return Err(Error::InvalidArgument(format!(
                        "stream '{}' was truncated below this append while it waited for its sync; it is not in the log",
                        self.stream
                    )));
                }
            }
            if s.synced >= target {
                return Ok(());
            }
            if !s.syncing {
                s.syncing = true;
                let epoch = s.epoch;
                let (last_group, last_sync, covered) =
                    (s.last_group, s.last_sync, s.frames_at_last_sync);
                drop(s);
                self.gather_group(last_group, last_sync, covered);
                let (to, seg, failed, frames) = {
                    let w = self.lock_writer();
                    let frames = self.frames_written.load(std::sync::atomic::Ordering::Acquire);
                    (w.next_offset, Arc::clone(&w.active), w.failed.clone(), frames)
                };
                let sync_start = std::time::Instant::now();
                self.group_syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let result = match failed {
                    Some(cause) => Err(Error::Failed { stream: self.stream.clone(), cause }),
                    None => self
                        .io
                        .sync_data(&seg.file)
                        .map_err(|e| Error::io("fdatasync", seg.path.clone(), e)),
                };
                if let Err(e) = &result
                    && !matches!(e, Error::Failed { .. })
                {
                    let mut w = self.lock_writer();
                    self.mark_failed(&mut w, e.to_string());
                }
                s = self.lock_sync();
                s.syncing = false;
                s.last_sync = sync_start.elapsed();
                s.last_group = frames.saturating_sub(s.frames_at_last_sync);
                s.frames_at_last_sync = frames;
                if result.is_ok() && s.epoch == epoch && to > s.synced {
                    s.synced = to;
                    self.watch.update(|p| p.end = p.end.max(to));
                }
                self.sync_cv.notify_all();
                result?;
            } else {
                s = self.sync_cv.wait(s).unwrap_or_else(|p| p.into_inner());
                if s.synced < target
                    && let Some(cause) = self.lock_watch_failed()
                {
                    return Err(Error::Failed { stream: self.stream.clone(), cause });
                }
            }
        }
    }

    /// Before a group commit: when appenders are concurrent, give those still encoding, or just
    /// woken by the last sync, a moment to write their frame and join this sync (as PostgreSQL's
    /// `commit_delay` does). Waits until every appender inside `append` has a frame pending, or
    /// at most half the last sync's duration (capped).
    fn gather_group(&self, last_group: u64, last_sync: std::time::Duration, covered: u64) {
        use std::sync::atomic::Ordering;
        if last_group <= 1 && self.appenders.load(Ordering::Acquire) <= 1 {
            return;
        }
        let max = (last_sync / 2).min(MAX_GROUP_DELAY);
        let min = (last_sync / 8).min(MAX_GROUP_DELAY / 8);
        let start = std::time::Instant::now();
        loop {
            std::thread::yield_now();
            let waited = start.elapsed();
            let pending = self.frames_written.load(Ordering::Acquire).saturating_sub(covered);
            let appenders = self.appenders.load(Ordering::Acquire) as u64;
            if waited >= max || (waited >= min && pending >= appenders) {
                return;
            }
        }
    }

    fn lock_watch_failed(&self) -> Option<String> {
        self.watch.lock().failed.clone()
    }

    /// Sync the active segment now, with the writer lock held, and publish the new durable end.
    pub(crate) fn sync_now(&self, w: &mut Writer) -> Result<()> {
        if let Err(e) = self.io.sync_data(&w.active.file) {
            let path = w.active.path.clone();
            return Err(self.fail(w, Error::io("fdatasync", path, e)));
        }
        let end = w.next_offset;
        let mut s = self.lock_sync();
        if end > s.synced {
            s.synced = end;
        }
        self.watch.update(|p| p.end = p.end.max(end));
        self.sync_cv.notify_all();
        Ok(())
    }

    /// Close the active segment and start a new one at the next offset.
    pub(crate) fn roll(&self, w: &mut Writer) -> Result<()> {
        // Relaxed logs sync here too: a closed segment is always complete on disk, so a power
        // loss can only cut the active segment, and the recovery point moves at every roll.
        self.sync_now(w)?;
        w.active.close();
        let closed = Arc::clone(&w.active);
        let seg = match Segment::create(&self.dir, w.next_offset, self.options.index_interval_bytes)
            .and_then(|s| sync_dir(self.io.as_ref(), &self.dir).map(|()| s))
        {
            Ok(s) => Arc::new(s),
            Err(e) => return Err(self.fail(w, e)),
        };
        if let Ok(mut segs) = self.segments.write() {
            segs.push(Arc::clone(&seg));
        }
        w.active = seg;
        w.meta.recovery_point = w.next_offset;
        self.persist_meta(w)?;
        self.enforce_retention_locked(w, std::time::SystemTime::now())?;
        self.schedule_compaction(&closed);
        Ok(())
    }

    /// Queue a segment that just closed for compaction, if its frames are small.
    pub(crate) fn schedule_compaction(&self, seg: &Arc<Segment>) {
        if self.wants_compaction(seg) {
            self.compactor.schedule(self.me.clone(), Arc::clone(seg));
        }
    }

    /// Persist the writer's metadata, failing the partition on error.
    pub(crate) fn persist_meta(&self, w: &mut Writer) -> Result<()> {
        let meta = w.meta.clone();
        write_meta(self.io.as_ref(), &self.dir, &meta).map_err(|e| self.fail(w, e))
    }

    /// Flush indexes and the recovery point (clean close). Best effort on a failed partition.
    pub(crate) fn close(&self) -> Result<()> {
        self.watch.update(|p| p.closed = true);
        let mut w = self.lock_writer();
        if w.failed.is_some() || w.closed {
            return Ok(());
        }
        w.closed = true;
        self.sync_now(&mut w)?;
        w.active.save_indexes();
        if w.meta.recovery_point != w.next_offset {
            w.meta.recovery_point = w.next_offset;
            self.persist_meta(&mut w)?;
        }
        Ok(())
    }
}

/// Write `partition.json` atomically.
pub(crate) fn write_meta(io: &dyn Io, dir: &Path, meta: &PartitionMeta) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(meta)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode partition metadata: {e}")))?;
    atomic_write(io, &dir.join(META_FILE), &bytes)
}

/// Finish a truncation that a crash interrupted: cut the log at `offset`. Walks the frames of
/// the segment that holds `offset` with their checksums; returns `false`, changing nothing, when
/// a damaged frame stops the walk before `offset` (normal recovery then judges that frame).
fn finish_truncation(
    io: &dyn Io,
    dir: &Path,
    bases: &mut Vec<u64>,
    offset: u64,
    interval: u64,
    schema: &SchemaRef,
) -> Result<bool> {
    let keep = bases.iter().rposition(|b| *b <= offset).unwrap_or(0);
    let base = bases[keep];
    let path = dir.join(segment_file_name(base));
    let seg = Segment::open(path.clone(), base, interval)?;
    let len = seg.file_len()?;
    let (mut pos, mut next) = (0, base);
    let mut head = None;
    while pos < len && next < offset {
        match seg.read_frame(pos) {
            Ok(f) if f.header.base_offset == next && pos + f.header.frame_len() <= len => {
                if f.header.end_offset() > offset {
                    // The cut is inside this frame: keep its first rows as a frame of their own.
                    let Ok(h) = head_frame(schema, &f, offset) else { return Ok(false) };
                    head = Some(h);
                    next = offset;
                    break;
                }
                pos += f.header.frame_len();
                next = f.header.end_offset();
            }
            _ => return Ok(false),
        }
    }
    if next != offset && pos < len {
        return Ok(false);
    }
    for later in bases.drain(keep + 1..) {
        remove_segment_files(&dir.join(segment_file_name(later)));
    }
    // Never `set_len`: a reader of an earlier handle of this store may still map the file.
    let tail = head.as_ref().map(EncodedFrame::to_vec);
    rewrite_prefix(io, &seg.file, &path, pos, tail.as_deref())?;
    sync_dir(io, dir)?;
    Ok(true)
}

/// List, load and recover the segments of a partition. See the crate docs, "Recovery".
fn recover_segments(
    io: &dyn Io,
    dir: &Path,
    meta: &mut PartitionMeta,
    interval: u64,
    schema: &SchemaRef,
) -> Result<Vec<Arc<Segment>>> {
    let mut bases = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = parse_segment_file_name(&name) {
            bases.push(base);
        } else if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    bases.sort_unstable();
    if bases.is_empty() {
        return Err(Error::BadMetadata {
            path: dir.to_path_buf(),
            detail: "partition has no segment file".into(),
        });
    }
    if let Some(offset) = meta.truncating_to {
        meta.recovery_point = meta.recovery_point.min(offset);
        if finish_truncation(io, dir, &mut bases, offset, interval, schema)? {
            meta.truncating_to = None;
            write_meta(io, dir, meta)?;
        }
    }
    // Segments that retention removed from the metadata but not yet from the disk.
    while bases.len() > 1 && bases[1] <= meta.start_offset {
        remove_segment_files(&dir.join(segment_file_name(bases[0])));
        bases.remove(0);
    }
    if bases[0] > meta.start_offset {
        return Err(Error::Corruption {
            segment: dir.join(segment_file_name(meta.start_offset)),
            offset: meta.start_offset,
            position: 0,
            detail: format!(
                "the first segment starts at offset {}, but offsets from {} are retained (a segment is missing)",
                bases[0], meta.start_offset
            ),
        });
    }
    let rp = meta.recovery_point;
    // The first segment that may hold frames above the recovery point.
    let tail_from = bases.iter().rposition(|b| *b <= rp).unwrap_or(0);
    let mut out: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    let mut expected = bases[0];
    let mut i = 0;
    while i < bases.len() {
        let base = bases[i];
        let path = dir.join(segment_file_name(base));
        if base != expected {
            return Err(Error::Corruption {
                segment: path,
                offset: expected,
                position: 0,
                detail: format!(
                    "segment starts at offset {base}, expected {expected} (a segment is missing)"
                ),
            });
        }
        let mut seg = Segment::open(path.clone(), base, interval)?;
        let len = seg.file_len()?;
        if i < tail_from {
            // Entirely below the recovery point: trusted; headers only, any damage is corruption.
            if !seg.load_indexes(len)
                && let Some(bad) = seg.scan(len, false)
            {
                return Err(bad.into_error(&seg.path));
            }
            seg.close();
        } else {
            // A clean close left indexes that describe the whole file up to the recovery point.
            let trusted = seg.load_indexes(len) && seg.end() == rp;
            if !trusted && let Some(bad) = seg.scan(len, true) {
                if bad.offset < rp {
                    return Err(bad.into_error(&seg.path));
                }
                // Above the recovery point a bad frame is a torn, unsynced write, unless a later
                // frame attests that it had been synced: then it is damage to durable data.
                let later: Vec<PathBuf> =
                    bases[i + 1..].iter().map(|b| dir.join(segment_file_name(*b))).collect();
                let attested = seg.max_synced_before_after(bad.position, bad.offset, len, &later);
                if attested > bad.offset {
                    let mut err = bad.into_error(&seg.path);
                    if let Error::Corruption { detail, .. } = &mut err {
                        detail.push_str(&format!(
                            " (a later frame records offsets up to {attested} as synced, so this is not a torn tail)"
                        ));
                    }
                    return Err(err);
                }
                // A torn tail: cut it (into a new file: see `finish_truncation`), and drop every
                // later segment (none can be valid after it).
                seg = cut_segment(io, &seg, bad.position, None, interval)?;
                for later in &bases[i + 1..] {
                    remove_segment_files(&dir.join(segment_file_name(*later)));
                }
                bases.truncate(i + 1);
                sync_dir(io, dir)?;
            }
            // What survives recovery is made durable before it becomes visible.
            if seg.size() > 0 {
                io.sync_data(&seg.file).map_err(|e| Error::io("fdatasync", &path, e))?;
            }
            if i + 1 < bases.len() {
                seg.close();
            }
        }
        expected = seg.end();
        out.push(Arc::new(seg));
        i += 1;
    }
    if let Some(offset) = meta.truncating_to {
        // The truncation could not be finished before recovery; it is done if recovery cut the
        // log at or below its target, and otherwise the damage that stopped it is reported.
        let last = &out[out.len() - 1];
        if expected > offset {
            return Err(Error::Corruption {
                segment: last.path.clone(),
                offset,
                position: 0,
                detail: format!(
                    "an interrupted truncation to offset {offset} cannot be finished: a frame below it is damaged"
                ),
            });
        }
        meta.truncating_to = None;
        write_meta(io, dir, meta)?;
    }
    if expected < rp {
        let last = &out[out.len() - 1];
        return Err(Error::Corruption {
            segment: last.path.clone(),
            offset: expected,
            position: last.size(),
            detail: format!("the log ends at offset {expected} but offsets up to {rp} were synced"),
        });
    }
    Ok(out)
}
