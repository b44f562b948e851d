//! Compaction of closed segments: small frames merged into large ones, in the background.
//!
//! A stream fed by small appends (a row at a time, a job's per-batch output) holds many small
//! frames, and reading one Arrow batch per kilobyte costs far more than the bytes (a batch is
//! parsed and built per frame). When a segment closes (on roll or seal) and its frames average
//! fewer bytes than [`crate::StreamOptions::compact_frames_below`], the store's compactor
//! rewrites it: consecutive small frames become one frame of about [`COMPACT_TARGET_BYTES`],
//! large frames are copied as they are. Offsets, rows, event times and the order of rows do not
//! change; only batch boundaries do, and they carry no meaning.
//!
//! The rewrite goes to `<segment>.log.compact.tmp`, is synced, and is renamed over the segment
//! under the writer lock, only if the segment is still in the log and no truncation ran
//! meanwhile; otherwise it is thrown away. Readers that hold the old segment keep reading its
//! mapping (the old file lives as long as they do); new readers see the new file. A crash at
//! any point leaves either file, both complete and valid, and recovery removes the temporary.
//!
//! One thread per store runs the jobs, at a lower CPU priority than appenders, from a bounded
//! queue: a job that finds the queue full is dropped (its segment stays as it was).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::frame::{EncodedFrame, HEADER_LEN, Tag, decode_body};
use crate::fsutil::sync_dir;
use crate::partition::Partition;
use crate::segment::{Segment, remove_index_files};

/// Frames are merged until they hold about this many bytes of Arrow IPC.
pub const COMPACT_TARGET_BYTES: usize = 1 << 20;

/// Segments waiting for the compactor, at most.
const MAX_QUEUED: usize = 1024;

/// Nice value of the compactor thread (appenders run at 0).
const COMPACTOR_NICE: i32 = 10;

struct Job {
    partition: Weak<Partition>,
    segment: Arc<Segment>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    running: bool,
    stopped: bool,
}

/// The store's background compactor: a bounded queue and one thread.
pub(crate) struct Compactor {
    state: Mutex<State>,
    cv: Condvar,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Jobs dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor").field("dropped", &self.dropped).finish_non_exhaustive()
    }
}

impl Compactor {
    /// Start the compactor thread.
    ///
    /// # Errors
    /// [`Error::Io`] when the thread cannot be spawned.
    pub fn start(dir: &Path) -> Result<Arc<Compactor>> {
        let c = Arc::new(Compactor {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            dropped: AtomicU64::new(0),
        });
        let worker = Arc::clone(&c);
        let handle = std::thread::Builder::new()
            .name("kappa-compactor".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::io("spawn compactor thread for", dir, e))?;
        *c.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(c)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `segment` of `partition` for compaction (dropped when the queue is full).
    pub fn schedule(&self, partition: Weak<Partition>, segment: Arc<Segment>) {
        let mut s = self.lock();
        if s.stopped {
            return;
        }
        if s.queue.len() >= MAX_QUEUED {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        s.queue.push_back(Job { partition, segment });
        self.cv.notify_all();
    }

    /// Block until nothing is queued or running, or `timeout` passes. Returns whether idle.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let mut s = self.lock();
        while !s.queue.is_empty() || s.running {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .map(|r| r.0)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }

    /// Stop: the running job is abandoned at its next frame, queued jobs are dropped, the
    /// thread is joined. Idempotent.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let mut s = self.lock();
            s.stopped = true;
            s.queue.clear();
            self.cv.notify_all();
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }

    fn run(&self) {
        lower_priority();
        loop {
            let job = {
                let mut s = self.lock();
                loop {
                    if s.stopped {
                        return;
                    }
                    if let Some(job) = s.queue.pop_front() {
                        s.running = true;
                        break job;
                    }
                    s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            };
            if let Some(p) = job.partition.upgrade() {
                // A failed compaction changes nothing: the segment stays as it was, and the
                // error (a full disk, a damaged frame) is for the writer or a reader to report.
                let run =
                    std::panic::AssertUnwindSafe(|| p.compact_segment(&job.segment, &self.stop));
                if !matches!(std::panic::catch_unwind(run), Ok(Ok(_))) {
                    p.compaction_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            let mut s = self.lock();
            s.running = false;
            self.cv.notify_all();
        }
    }
}

/// Run this thread at a lower CPU priority: compaction must not slow appenders down.
fn lower_priority() {
    // SAFETY: `gettid` has no preconditions; `setpriority` on our own thread id only changes
    // this thread's nice value, and a failure (not permitted) is harmless.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, COMPACTOR_NICE);
    }
}

/// `00000000000000000000.log` → `00000000000000000000.log.compact.tmp` (removed by recovery,
/// like every `.tmp`).
fn compact_tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".compact.tmp");
    path.with_file_name(name)
}

/// Removes the temporary file unless disarmed.
struct TmpFile(Option<PathBuf>);

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Consecutive small frames being merged into one.
#[derive(Default)]
struct Group {
    batches: Vec<RecordBatch>,
    base: u64,
    bytes: usize,
    time: Option<(i64, i64)>,
    /// The last frame's tag (all frames of a group have the same producer, or none).
    tag: Option<Tag>,
}

impl Partition {
    /// Whether a segment that just closed is worth compacting.
    pub(crate) fn wants_compaction(&self, seg: &Segment) -> bool {
        let below = self.options.compact_frames_below;
        let frames = seg.frames();
        below > 0 && frames > 1 && seg.size() / frames < below
    }

    /// Rewrite closed segment `seg` with its small frames merged. Returns whether the segment
    /// was replaced (`false` when it is no longer in the log, a truncation ran, the partition
    /// closed, or `stop` was raised).
    ///
    /// # Errors
    /// [`Error::Corruption`] for a damaged frame; [`Error::Io`]. The log is unchanged then.
    pub(crate) fn compact_segment(&self, seg: &Arc<Segment>, stop: &AtomicBool) -> Result<bool> {
        let epoch = self.watch.lock().epoch;
        if !seg.is_closed() || !self.holds(seg) {
            return Ok(false);
        }
        seg.ensure_mapped()?;
        let tmp_path = compact_tmp_path(&seg.path);
        let tmp = TmpFile(Some(tmp_path.clone()));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| Error::io("create", &tmp_path, e))?;
        let io = self.io.as_ref();
        let mut written = 0u64;
        let mut write = |bytes: &[u8]| -> Result<()> {
            io.write_at(&out, written, bytes).map_err(|e| Error::io("write", &tmp_path, e))?;
            written += bytes.len() as u64;
            Ok(())
        };
        let mut group = Group::default();
        let mut pos = 0u64;
        let mut expected = seg.base;
        let size = seg.size();
        let corrupt = |position: u64, offset: u64, detail: String| Error::Corruption {
            segment: seg.path.clone(),
            offset,
            position,
            detail,
        };
        while pos < size {
            if stop.load(Ordering::Acquire) {
                return Ok(false);
            }
            let frame = seg.read_frame(pos).map_err(|d| corrupt(pos, expected, d))?;
            let h = frame.header;
            if h.padded_body_len() >= COMPACT_TARGET_BYTES / 2 {
                self.flush_group(&mut group, &mut write)?;
                let whole = seg
                    .raw_bytes(pos, h.frame_len())
                    .map_err(|d| corrupt(pos, h.base_offset, d))?;
                write(whole.as_slice())?;
            } else {
                let batch = decode_body(
                    &self.schema,
                    &frame.body,
                    h.body_len as usize,
                    h.rows as usize,
                    None,
                )
                .map_err(|d| corrupt(pos, h.base_offset, d))?;
                // Frames of different producers are never merged: each keeps its own tags.
                if !group.batches.is_empty()
                    && group.tag.map(|t| t.producer) != h.tag.map(|t| t.producer)
                {
                    self.flush_group(&mut group, &mut write)?;
                }
                if group.batches.is_empty() {
                    group.base = h.base_offset;
                }
                group.tag = h.tag;
                group.bytes += h.body_len as usize;
                group.time = match (group.time, h.time) {
                    (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
                    (a, b) => a.or(b),
                };
                group.batches.push(batch);
                if group.bytes >= COMPACT_TARGET_BYTES {
                    self.flush_group(&mut group, &mut write)?;
                }
            }
            pos += h.frame_len();
            expected = h.end_offset();
        }
        self.flush_group(&mut group, &mut write)?;
        if let Ok(modified) = seg.file.metadata().and_then(|m| m.modified()) {
            // Retention by age counts from the last write of the data, not of the rewrite.
            let _ = out.set_modified(modified);
        }
        io.sync_data(&out).map_err(|e| Error::io("fdatasync", &tmp_path, e))?;
        drop(out);
        // Check the new file, checksums included, before it replaces anything.
        let mut fresh =
            Segment::open(tmp_path.clone(), seg.base, self.options.index_interval_bytes)?;
        if let Some(bad) = fresh.scan(written, true) {
            return Err(bad.into_error(&tmp_path));
        }
        if fresh.end() != seg.end() {
            return Err(corrupt(
                0,
                seg.base,
                format!(
                    "compacted segment ends at offset {}, the original at {}",
                    fresh.end(),
                    seg.end()
                ),
            ));
        }
        fresh.path = seg.path.clone();

        let mut w = self.lock_writer();
        if w.closed
            || w.failed.is_some()
            || self.watch.lock().epoch != epoch
            || !self.holds(seg)
            || stop.load(Ordering::Acquire)
        {
            return Ok(false);
        }
        remove_index_files(&seg.path);
        std::fs::rename(&tmp_path, &seg.path).map_err(|e| Error::io("rename", &seg.path, e))?;
        let mut tmp = tmp;
        tmp.0 = None;
        // From here on the new file is the segment: memory follows the disk whatever happens.
        let synced = sync_dir(io, &self.dir);
        fresh.close();
        let fresh = Arc::new(fresh);
        if let Ok(mut segs) = self.segments.write()
            && let Some(slot) = segs.iter_mut().find(|s| Arc::ptr_eq(s, seg))
        {
            *slot = Arc::clone(&fresh);
        }
        if Arc::ptr_eq(&w.active, seg) {
            w.active = fresh;
        }
        self.compactions.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = synced {
            // The rename may not be durable: the log is not trusted until it is reopened.
            return Err(self.fail(&mut w, e));
        }
        Ok(true)
    }

    fn holds(&self, seg: &Arc<Segment>) -> bool {
        self.segments.read().is_ok_and(|s| s.iter().any(|x| Arc::ptr_eq(x, seg)))
    }

    /// Encode the group as one frame and write it.
    fn flush_group(
        &self,
        group: &mut Group,
        write: &mut impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        if group.batches.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut group.batches);
        let merged = arrow::compute::concat_batches(&self.schema, &batches)?;
        let mut frame = EncodedFrame::encode(&merged, group.time)?;
        frame.tag = group.tag;
        // Everything in a closed segment was synced before it closed.
        frame.seal(group.base, group.base);
        for part in frame.parts() {
            write(part)?;
        }
        debug_assert!(frame.len() >= HEADER_LEN);
        *group = Group::default();
        Ok(())
    }
}
