//! Seal, commit, truncate and retention of a partition.

use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::frame::{EncodedFrame, decode_body};
use crate::fsutil::{sync_dir, tmp_path};
use crate::io::Io;
use crate::partition::{Partition, Writer};
use crate::segment::{RawFrame, Segment, remove_index_files, remove_segment_files};

impl Partition {
    /// Seal: persist the end of the stream. Appends are refused from now on.
    pub(crate) fn seal(&self) -> Result<u64> {
        let mut w = self.lock_writer();
        self.check_open(&w)?;
        if let Some(end) = w.meta.sealed_at {
            return Ok(end);
        }
        self.sync_now(&mut w)?;
        let end = w.next_offset;
        w.meta.sealed_at = Some(end);
        w.meta.recovery_point = end;
        if let Err(e) = self.persist_meta(&mut w) {
            w.meta.sealed_at = None;
            return Err(e);
        }
        self.watch.update(|p| p.sealed = Some(end));
        // Nothing will be written to the active segment again: close it (mapped reads) and
        // compact it like a rolled one.
        w.active.close();
        let last = Arc::clone(&w.active);
        self.schedule_compaction(&last);
        Ok(end)
    }

    /// Sync everything written; see [`crate::Stream::sync`].
    pub(crate) fn sync(&self) -> Result<u64> {
        let mut w = self.lock_writer();
        self.check_open(&w)?;
        if self.lock_sync_synced() < w.next_offset {
            self.sync_now(&mut w)?;
        }
        Ok(w.next_offset)
    }

    /// Set the committed offset of a derived log (monotonic; rows below it are synced first).
    pub(crate) fn commit(&self, offset: u64) -> Result<()> {
        let mut w = self.lock_writer();
        self.check_open(&w)?;
        if offset > w.next_offset {
            return Err(Error::OffsetOutOfRange {
                stream: self.stream.clone(),
                requested: offset,
                start: w.meta.start_offset,
                end: w.next_offset,
            });
        }
        let current = w.meta.committed.unwrap_or(w.meta.start_offset);
        if offset < current {
            return Err(Error::InvalidArgument(format!(
                "cannot commit offset {offset} of stream '{}': offset {current} is already committed",
                self.stream
            )));
        }
        if self.lock_sync_synced() < offset {
            self.sync_now(&mut w)?;
        }
        let previous = (w.meta.committed, w.meta.recovery_point);
        w.meta.committed = Some(offset);
        // Everything synced so far is below the recovery point from now on.
        w.meta.recovery_point = w.meta.recovery_point.max(self.lock_sync_synced());
        if let Err(e) = self.persist_meta(&mut w) {
            (w.meta.committed, w.meta.recovery_point) = previous;
            return Err(e);
        }
        self.watch.update(|p| p.committed = Some(offset));
        Ok(())
    }

    /// See [`crate::Stream::producer_positions`].
    pub(crate) fn producer_positions(
        &self,
        from: u64,
    ) -> Result<std::collections::HashMap<u32, u64>> {
        let mut out = std::collections::HashMap::new();
        for seg in self.segments_snapshot().iter().filter(|s| s.end() > from) {
            let start = from.max(seg.base);
            let corrupt = |position: u64, detail: String| Error::Corruption {
                segment: seg.path.clone(),
                offset: start,
                position,
                detail,
            };
            let (mut pos, _) = seg.locate(start).map_err(|d| corrupt(0, d))?;
            let size = seg.size();
            while pos < size {
                let (h, _) = seg.read_header(pos).map_err(|d| corrupt(pos, d))?;
                if let Some(t) = h.tag {
                    let e = out.entry(t.producer).or_insert(t.seq);
                    *e = (*e).max(t.seq);
                }
                pos += h.frame_len();
            }
        }
        Ok(out)
    }

    fn lock_sync_synced(&self) -> u64 {
        self.sync.lock().map(|s| s.synced).unwrap_or(0)
    }

    /// Remove every row at `offset` and after. `offset` may be inside a batch; it must be at or above
    /// the committed offset and within the retained range.
    pub(crate) fn truncate(&self, offset: u64) -> Result<()> {
        let mut w = self.lock_writer();
        self.check_writable(&w)?;
        let start = w.meta.start_offset;
        if offset < start || offset > w.next_offset {
            return Err(Error::OffsetOutOfRange {
                stream: self.stream.clone(),
                requested: offset,
                start,
                end: w.next_offset,
            });
        }
        if let Some(c) = w.meta.committed
            && offset < c
        {
            return Err(Error::InvalidArgument(format!(
                "cannot truncate stream '{}' to offset {offset}: offsets up to {c} are committed and may have been read",
                self.stream
            )));
        }
        if offset == w.next_offset {
            return Ok(());
        }
        let segments = self.segments_snapshot();
        let idx = segments.iter().rposition(|s| s.base <= offset).unwrap_or(0);
        let seg = Arc::clone(&segments[idx]);
        let (position, header) = seg.locate(offset).map_err(|d| Error::Corruption {
            segment: seg.path.clone(),
            offset,
            position: 0,
            detail: d,
        })?;
        // An offset inside a frame (batch boundaries change when segments are compacted): the
        // frame's first rows are re-encoded as the new last frame.
        let head = match header {
            Some(h) if h.base_offset < offset && h.end_offset() > self.lock_sync_synced() => {
                // Its append still waits for its sync: keeping part of it would leave rows
                // that the appender is told are not in the log.
                return Err(Error::InvalidArgument(format!(
                    "cannot truncate stream '{}' to offset {offset}: it is inside the batch at offsets {}..{}, whose append is not acknowledged yet",
                    self.stream,
                    h.base_offset,
                    h.end_offset()
                )));
            }
            Some(h) if h.base_offset < offset => {
                let frame = seg.read_frame(position).map_err(|detail| Error::Corruption {
                    segment: seg.path.clone(),
                    offset: h.base_offset,
                    position,
                    detail,
                })?;
                Some(head_frame(&self.schema, &frame, offset).map_err(|detail| {
                    Error::Corruption {
                        segment: seg.path.clone(),
                        offset: h.base_offset,
                        position,
                        detail,
                    }
                })?)
            }
            _ => None,
        };
        match self.truncate_locked(&mut w, &segments, idx, position, offset, head) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(&mut w, e)),
        }
    }

    fn truncate_locked(
        &self,
        w: &mut Writer,
        segments: &[Arc<Segment>],
        idx: usize,
        position: u64,
        offset: u64,
        head: Option<EncodedFrame>,
    ) -> Result<()> {
        let io = self.io.as_ref();
        // Persist the intent first: a crash from here on leaves a log that recovery cuts at
        // `offset`, whatever state the files are in.
        w.meta.truncating_to = Some(offset);
        w.meta.recovery_point = w.meta.recovery_point.min(offset);
        crate::partition::write_meta(io, &self.dir, &w.meta)?;
        // Tell readers and waiting appenders before any file changes: a reader that meets the
        // changing files then retries and sees the truncation, never a false corruption.
        {
            let mut s = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            s.synced = s.synced.min(offset);
            s.epoch += 1;
            self.watch.update(|p| {
                p.end = offset;
                p.epoch += 1;
                p.truncations.push_back((p.epoch, offset));
                if p.truncations.len() > crate::progress::MAX_TRUNCATIONS {
                    p.truncations.pop_front();
                }
            });
        }
        let seg = &segments[idx];
        // The new active segment: a copy of the kept prefix renamed over the old file (readers
        // may have the old one mapped, and a mapped file must never shrink).
        let tail = head.as_ref().map(EncodedFrame::to_vec);
        let interval = self.options.index_interval_bytes;
        let new_active = Arc::new(cut_segment(io, seg, position, tail.as_deref(), interval)?);
        for later in &segments[idx + 1..] {
            remove_segment_files(&later.path);
        }
        sync_dir(io, &self.dir)?;
        if let Ok(mut segs) = self.segments.write() {
            segs.truncate(idx);
            segs.push(Arc::clone(&new_active));
        }
        w.active = new_active;
        w.next_offset = offset;
        w.meta.recovery_point = offset;
        w.meta.truncating_to = None;
        crate::partition::write_meta(io, &self.dir, &w.meta)?;
        // Everything below `offset` is durable now (the cut segment was synced).
        {
            let mut s = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            s.synced = offset;
            self.sync_cv.notify_all();
        }
        Ok(())
    }

    /// Apply the retention policy now; see [`crate::Stream::enforce_retention`].
    pub(crate) fn enforce_retention(&self, now: SystemTime) -> Result<usize> {
        let mut w = self.lock_writer();
        self.check_open(&w)?;
        let before = self.segments_snapshot().len();
        self.enforce_retention_locked(&mut w, now)?;
        Ok(before - self.segments_snapshot().len())
    }

    pub(crate) fn enforce_retention_locked(&self, w: &mut Writer, now: SystemTime) -> Result<()> {
        let retention = self.options.retention;
        if retention.max_age.is_none() && retention.max_bytes.is_none() {
            return Ok(());
        }
        let segments = self.segments_snapshot();
        let mut total: u64 = segments.iter().map(|s| s.size()).sum();
        let mut remove = 0usize;
        // Never the active (last) segment.
        for seg in &segments[..segments.len().saturating_sub(1)] {
            let too_big = retention.max_bytes.is_some_and(|m| total > m);
            let too_old = retention.max_age.is_some_and(|age| {
                seg.file
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|d| d > age)
            });
            if !(too_big || too_old) {
                break;
            }
            total -= seg.size();
            remove += 1;
        }
        if remove == 0 {
            return Ok(());
        }
        let new_start = segments[remove].base;
        w.meta.start_offset = new_start;
        if w.meta.committed.is_some_and(|c| c < new_start) {
            w.meta.committed = Some(new_start);
        }
        // The metadata goes first: a crash after it leaves files that recovery deletes.
        self.persist_meta(w)?;
        if let Ok(mut segs) = self.segments.write() {
            segs.drain(..remove);
        }
        for seg in &segments[..remove] {
            remove_segment_files(&seg.path);
        }
        let committed = w.meta.committed;
        self.watch.update(|p| {
            p.start = new_start;
            if committed.is_some() {
                p.committed = committed;
            }
        });
        Ok(())
    }
}

/// Replace the segment file at `path` (open as `src`) with its first `position` bytes followed
/// by `tail`, atomically: a new file is written and synced, then renamed over (segments may be
/// mapped by readers and must never shrink under them). Returns the new length. The
/// caller syncs the directory.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn rewrite_prefix(
    io: &dyn Io,
    src: &std::fs::File,
    path: &std::path::Path,
    position: u64,
    tail: Option<&[u8]>,
) -> Result<u64> {
    let tmp = tmp_path(path);
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < position {
        let n = ((position - done) as usize).min(buf.len());
        std::os::unix::fs::FileExt::read_exact_at(src, &mut buf[..n], done)
            .map_err(|e| Error::io("read", path, e))?;
        io.write_at(&out, done, &buf[..n]).map_err(|e| Error::io("write", &tmp, e))?;
        done += n as u64;
    }
    if let Some(t) = tail {
        io.write_at(&out, done, t).map_err(|e| Error::io("write", &tmp, e))?;
        done += t.len() as u64;
    }
    io.sync_data(&out).map_err(|e| Error::io("fdatasync", &tmp, e))?;
    drop(out);
    remove_index_files(path);
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    Ok(done)
}

/// Cut `seg` at byte `position` (followed by `tail`) through [`rewrite_prefix`], and open the
/// new file with its index rebuilt from the frame headers. The caller syncs the directory.
///
/// # Errors
/// [`Error::Io`]; [`Error::Corruption`] when a frame header of the kept prefix is damaged.
pub(crate) fn cut_segment(
    io: &dyn Io,
    seg: &Segment,
    position: u64,
    tail: Option<&[u8]>,
    interval: u64,
) -> Result<Segment> {
    let len = rewrite_prefix(io, &seg.file, &seg.path, position, tail)?;
    let fresh = Segment::open(seg.path.clone(), seg.base, interval)?;
    if let Some(bad) = fresh.scan(len, false) {
        return Err(bad.into_error(&fresh.path));
    }
    Ok(fresh)
}

/// The first rows of `frame`, up to (not including) `offset`, encoded as a frame of their own
/// at the same base offset (what is left of a frame that a truncation cuts inside).
///
/// # Errors
/// A description of what is wrong with the frame.
pub(crate) fn head_frame(
    schema: &arrow::datatypes::SchemaRef,
    frame: &RawFrame,
    offset: u64,
) -> std::result::Result<EncodedFrame, String> {
    let h = frame.header;
    let batch = decode_body(schema, &frame.body, h.body_len as usize, h.rows as usize, None)?;
    let keep = offset.saturating_sub(h.base_offset).min(batch.num_rows() as u64) as usize;
    // The original time range still bounds the kept rows, which is all the time index needs.
    let mut head =
        EncodedFrame::encode(&batch.slice(0, keep), h.time).map_err(|e| e.to_string())?;
    head.seal(h.base_offset, h.synced_before);
    Ok(head)
}
