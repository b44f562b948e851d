//! A segment: one file of consecutive frames, named by the 20-digit offset of its first row.
//!
//! The last segment of a partition is *active*: the writer appends to it. Every other segment
//! is *closed*: immutable. Both are read through memory maps, so that record batches are built
//! on the mapped pages without copying: a closed segment is mapped whole on first read; the
//! active one through a *window*, a mapping that reaches past the file's end (in steps of
//! [`WINDOW_STEP`]) so that the frames appended later show through it without a new mapping.
//! Only bytes of complete frames (below [`Segment::size`]) are ever read through a map; bytes
//! beyond it (a scan during recovery) are read with `pread`.
//!
//! A segment file never shrinks in place: truncation and recovery write the kept prefix to a
//! new file and rename it over. Touching a mapped page past a file's end would kill the
//! process (`SIGBUS`); since files only grow, a mapping stays valid for as long as a reader
//! holds it, even after retention has unlinked the file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use arrow::buffer::{Buffer, MutableBuffer};

use crate::error::{Error, Result};
use crate::frame::{FrameHeader, HEADER_LEN};
use crate::index::{IndexFile, OFFSET_MAGIC, TIME_MAGIC, floor};

/// The active segment's read window grows in steps of this many bytes.
pub(crate) const WINDOW_STEP: usize = 64 << 20;

/// File name of the segment starting at `base`.
pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// Parse a segment file name back into its base offset.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Bookkeeping of the index builder, touched only by the writer (or by a scan before the
/// segment is shared).
#[derive(Debug, Default)]
struct IndexBuilder {
    bytes_since_offset_entry: u64,
    bytes_since_time_entry: u64,
    running_max: Option<i64>,
}

/// One segment file and its in-memory indexes.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first row.
    pub base: u64,
    /// The `.log` file (a compaction builds the new segment under a temporary name, then
    /// renames the file and sets this).
    pub path: PathBuf,
    /// Read and write handle.
    pub file: File,
    /// Bytes of complete frames.
    size: AtomicU64,
    /// Offset after the last complete frame.
    end: AtomicU64,
    /// Largest event time in the segment, `i64::MIN` if none.
    max_time: AtomicI64,
    /// Frames recorded since open or the last index reset (0 when the indexes were loaded
    /// from files, which do not count frames).
    frames: AtomicU64,
    closed: AtomicBool,
    /// The whole file, mapped once the segment is closed.
    map: OnceLock<Buffer>,
    /// A mapping of the active segment that may reach past the file's end (see the module
    /// docs); replaced by a longer one when a frame ends beyond it.
    window: RwLock<Option<Buffer>>,
    index: RwLock<Vec<(u64, u64)>>,
    time_index: RwLock<Vec<(i64, u64)>>,
    builder: Mutex<IndexBuilder>,
    interval: u64,
}

/// Why a scan of frames stopped before the end of the file.
#[derive(Debug)]
pub(crate) struct BadFrame {
    /// Byte position of the frame that could not be read.
    pub position: u64,
    /// Offset the frame should have started at.
    pub offset: u64,
    /// What is wrong.
    pub detail: String,
}

impl BadFrame {
    /// The corruption error for this frame of `segment`.
    pub fn into_error(self, segment: &Path) -> Error {
        Error::Corruption {
            segment: segment.to_path_buf(),
            offset: self.offset,
            position: self.position,
            detail: self.detail,
        }
    }
}

/// A frame read from a segment.
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub header: FrameHeader,
    /// The padded body.
    pub body: Buffer,
}

impl Segment {
    fn new(base: u64, path: PathBuf, file: File, interval: u64) -> Segment {
        Segment {
            base,
            path,
            file,
            size: AtomicU64::new(0),
            end: AtomicU64::new(base),
            max_time: AtomicI64::new(i64::MIN),
            frames: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            map: OnceLock::new(),
            window: RwLock::new(None),
            index: RwLock::new(Vec::new()),
            time_index: RwLock::new(Vec::new()),
            builder: Mutex::new(IndexBuilder::default()),
            interval: interval.max(1),
        }
    }

    /// Create a new, empty segment file (the caller syncs the directory).
    pub fn create(dir: &Path, base: u64, interval: u64) -> Result<Segment> {
        let path = dir.join(segment_file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        Ok(Segment::new(base, path, file, interval))
    }

    /// Open an existing segment file; indexes are empty until [`Segment::load_or_scan`].
    pub fn open(path: PathBuf, base: u64, interval: u64) -> Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        Ok(Segment::new(base, path, file, interval))
    }

    /// Bytes of complete frames.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Offset after the last complete frame.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Largest event time, if any frame has one.
    pub fn max_time(&self) -> Option<i64> {
        let t = self.max_time.load(Ordering::Acquire);
        (t != i64::MIN).then_some(t)
    }

    /// The file's length on disk.
    pub fn file_len(&self) -> Result<u64> {
        self.file.metadata().map(|m| m.len()).map_err(|e| Error::io("stat", &self.path, e))
    }

    fn index_path(&self) -> PathBuf {
        self.path.with_extension("index")
    }

    fn time_index_path(&self) -> PathBuf {
        self.path.with_extension("timeindex")
    }

    /// Record a complete frame written at `position` (writer only, or a scan).
    pub fn record_frame(&self, position: u64, header: &FrameHeader) {
        let frame_len = header.frame_len();
        let mut b = self.builder.lock().unwrap_or_else(|p| p.into_inner());
        if position == 0 || b.bytes_since_offset_entry >= self.interval {
            if let Ok(mut idx) = self.index.write() {
                idx.push((header.base_offset, position));
            }
            b.bytes_since_offset_entry = 0;
        }
        b.bytes_since_offset_entry += frame_len;
        b.bytes_since_time_entry += frame_len;
        if let Some((_, hi)) = header.time {
            let grew = b.running_max.is_none_or(|m| hi > m);
            if grew {
                b.running_max = Some(hi);
                self.max_time.store(hi, Ordering::Release);
                let due = b.bytes_since_time_entry >= self.interval;
                if let Ok(mut ti) = self.time_index.write() {
                    if ti.is_empty() || due {
                        ti.push((hi, header.base_offset));
                        b.bytes_since_time_entry = 0;
                    } else if let Some(last) = ti.last_mut() {
                        // Within the interval: keep the entry's offset, raise its time, so the
                        // index stays a lower bound of where time `t` can first be reached.
                        last.0 = hi;
                    }
                }
            }
        }
        self.end.store(header.end_offset(), Ordering::Release);
        self.size.store(position + frame_len, Ordering::Release);
        self.frames.fetch_add(1, Ordering::AcqRel);
    }

    /// Frames recorded since open or the last index reset (0 if unknown).
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }

    /// The bytes `position..position + len` of a mapped (closed) segment, as a shared slice.
    pub fn raw_bytes(&self, position: u64, len: u64) -> std::result::Result<Buffer, String> {
        let map = self.map.get().ok_or_else(|| "segment is not mapped".to_string())?;
        let (p, n) = (position as usize, len as usize);
        if p + n > map.len() {
            return Err("frame beyond the end of the segment".into());
        }
        Ok(map.slice_with_length(p, n))
    }

    fn reset_indexes(&self) {
        if let Ok(mut i) = self.index.write() {
            i.clear();
        }
        if let Ok(mut t) = self.time_index.write() {
            t.clear();
        }
        *self.builder.lock().unwrap_or_else(|p| p.into_inner()) = IndexBuilder::default();
        self.max_time.store(i64::MIN, Ordering::Release);
        self.frames.store(0, Ordering::Release);
        self.size.store(0, Ordering::Release);
        self.end.store(self.base, Ordering::Release);
    }

    /// Read the header at `position` (not checksummed).
    pub fn read_header(
        &self,
        position: u64,
    ) -> std::result::Result<(FrameHeader, [u8; 64]), String> {
        let mut h = [0u8; HEADER_LEN];
        if let Some(map) = self.map.get() {
            let p = position as usize;
            if p + HEADER_LEN > map.len() {
                return Err("frame header beyond the end of the segment".into());
            }
            h.copy_from_slice(&map.as_slice()[p..p + HEADER_LEN]);
        } else if let Some(w) = self.window_slice(position, HEADER_LEN) {
            h.copy_from_slice(w.as_slice());
        } else {
            read_exact_at(&self.file, &mut h, position)?;
        }
        Ok((FrameHeader::decode(&h)?, h))
    }

    /// Read and verify the whole frame at `position`.
    pub fn read_frame(&self, position: u64) -> std::result::Result<RawFrame, String> {
        let (header, hbytes) = self.read_header(position)?;
        let body_len = header.padded_body_len();
        let start = position as usize + HEADER_LEN;
        let body = if let Some(map) = self.map.get() {
            if start + body_len > map.len() {
                return Err("frame body beyond the end of the segment".into());
            }
            map.slice_with_length(start, body_len)
        } else if let Some(w) = self.window_slice(start as u64, body_len) {
            w
        } else {
            if body_len > 64 << 20 {
                // Do not trust a large length before knowing the file holds it.
                let len = self.file.metadata().map_err(|e| format!("stat failed: {e}"))?.len();
                if start as u64 + body_len as u64 > len {
                    return Err("frame body beyond the end of the segment".into());
                }
            }
            read_uninit_at(&self.file, body_len, start as u64)?
        };
        if !header.verify(&hbytes, body.as_slice()) {
            return Err("checksum mismatch".into());
        }
        Ok(RawFrame { header, body })
    }

    /// The bytes `position..position + len` of the active segment through its window, if they
    /// belong to complete frames; `None` sends the caller to `pread` (bytes beyond the complete
    /// frames, or a mapping that failed).
    fn window_slice(&self, position: u64, len: usize) -> Option<Buffer> {
        let end = position.checked_add(len as u64)?;
        if end > self.size() {
            return None;
        }
        let (p, end) = (usize::try_from(position).ok()?, usize::try_from(end).ok()?);
        if let Ok(w) = self.window.read()
            && let Some(w) = w.as_ref()
            && end <= w.len()
        {
            return Some(w.slice_with_length(p, len));
        }
        let mut w = self.window.write().ok()?;
        if let Some(w) = w.as_ref()
            && end <= w.len()
        {
            return Some(w.slice_with_length(p, len));
        }
        let reach = end.div_ceil(WINDOW_STEP).checked_mul(WINDOW_STEP)?;
        // SAFETY: segment files only grow in place (see the module docs), and only bytes below
        // `size()`, which the file holds, are read through the mapping; the pages beyond the
        // file's end are never touched.
        let map = unsafe { memmap2::MmapOptions::new().len(reach).map(&self.file) }.ok()?;
        let ptr = NonNull::new(map.as_ptr() as *mut u8)?;
        // SAFETY: `ptr` points to `reach` bytes of address space owned by `map`, which the
        // buffer keeps alive through the `Arc`; only the file's bytes among them are read.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, reach, Arc::new(map)) };
        let slice = buffer.slice_with_length(p, len);
        *w = Some(buffer);
        Some(slice)
    }

    /// Mark closed; map the file for zero-copy reads; write the index files (best effort: they
    /// are derived data and rebuilt when missing).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.save_indexes();
    }

    /// Whether the segment is closed (immutable).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Write both index files for the current content.
    pub fn save_indexes(&self) {
        let size = self.size();
        let offsets = IndexFile {
            covered_len: size,
            extra: self.end(),
            entries: self.index.read().map(|i| i.clone()).unwrap_or_default(),
        };
        let times = IndexFile {
            covered_len: size,
            extra: self.max_time.load(Ordering::Acquire) as u64,
            entries: self
                .time_index
                .read()
                .map(|t| t.iter().map(|(ts, o)| (*ts as u64, *o)).collect())
                .unwrap_or_default(),
        };
        let _ = offsets.save(&self.index_path(), OFFSET_MAGIC);
        let _ = times.save(&self.time_index_path(), TIME_MAGIC);
    }

    /// Map a closed segment into memory (once). Reads then share the mapped pages.
    pub fn ensure_mapped(&self) -> Result<()> {
        if !self.is_closed() || self.map.get().is_some() {
            return Ok(());
        }
        let size = self.size();
        if size == 0 {
            return Ok(());
        }
        if let Ok(mut w) = self.window.write()
            && let Some(window) = w.take()
            && size as usize <= window.len()
        {
            let _ = self.map.set(window.slice_with_length(0, size as usize));
            return Ok(());
        }
        // SAFETY: closed segments are never written, truncated in place or extended: truncation
        // writes a new file and renames it over; retention only unlinks. The mapping therefore
        // always shows the bytes that were complete when the segment closed.
        let map = unsafe { memmap2::MmapOptions::new().len(size as usize).map(&self.file) }
            .map_err(|e| Error::io("mmap", &self.path, e))?;
        let ptr = NonNull::new(map.as_ptr() as *mut u8)
            .ok_or_else(|| Error::io("mmap", &self.path, std::io::Error::other("null mapping")))?;
        // SAFETY: `ptr` points to `size` readable bytes owned by `map`, which the buffer keeps
        // alive through the `Arc`.
        let buffer = unsafe { Buffer::from_custom_allocation(ptr, size as usize, Arc::new(map)) };
        let _ = self.map.set(buffer);
        Ok(())
    }

    /// Try the index files. They are used only if they describe exactly `file_len` bytes and
    /// their end offset is `expected_end` (when known).
    pub fn load_indexes(&self, file_len: u64) -> bool {
        let Some(off) = IndexFile::load(&self.index_path(), OFFSET_MAGIC) else { return false };
        let Some(tim) = IndexFile::load(&self.time_index_path(), TIME_MAGIC) else { return false };
        if off.covered_len != file_len || tim.covered_len != file_len {
            return false;
        }
        if file_len > 0 && off.entries.first() != Some(&(self.base, 0)) {
            return false;
        }
        if let Ok(mut i) = self.index.write() {
            *i = off.entries;
        }
        if let Ok(mut t) = self.time_index.write() {
            *t = tim.entries.iter().map(|(ts, o)| (*ts as i64, *o)).collect();
        }
        {
            let mut b = self.builder.lock().unwrap_or_else(|p| p.into_inner());
            let max = tim.extra as i64;
            b.running_max = (max != i64::MIN).then_some(max);
            // Conservative: the next frame gets an offset-index entry.
            b.bytes_since_offset_entry = self.interval;
            b.bytes_since_time_entry = self.interval;
        }
        self.max_time.store(tim.extra as i64, Ordering::Release);
        self.end.store(off.extra, Ordering::Release);
        self.size.store(file_len, Ordering::Release);
        true
    }

    /// Scan frames from the start of the file, rebuilding the indexes. With `verify`, each
    /// frame's checksum is checked (reads the whole file); without, only headers are read.
    /// Returns the first frame that could not be read, if the scan stopped before `file_len`.
    pub fn scan(&self, file_len: u64, verify: bool) -> Option<BadFrame> {
        self.reset_indexes();
        let mut pos = 0u64;
        let mut expected = self.base;
        while pos < file_len {
            let bad = |detail: String| BadFrame { position: pos, offset: expected, detail };
            if file_len - pos < HEADER_LEN as u64 {
                return Some(bad(format!(
                    "{} trailing bytes, shorter than a frame header",
                    file_len - pos
                )));
            }
            let header = if verify {
                match self.read_frame(pos) {
                    Ok(f) => f.header,
                    Err(e) => return Some(bad(e)),
                }
            } else {
                match self.read_header(pos) {
                    Ok((h, _)) => h,
                    Err(e) => return Some(bad(e)),
                }
            };
            if header.base_offset != expected {
                return Some(bad(format!(
                    "frame starts at offset {}, expected {expected}",
                    header.base_offset
                )));
            }
            if pos + header.frame_len() > file_len {
                return Some(bad(format!(
                    "frame of {} bytes cut short by the end of the file",
                    header.frame_len()
                )));
            }
            self.record_frame(pos, &header);
            pos += header.frame_len();
            expected = header.end_offset();
        }
        None
    }

    /// The highest "synced before" offset that any valid frame (checksum included) after
    /// `position`, starting at `offset` or later, records, in this file and in the `later` segment files. Frames after a bad one
    /// are found by trying every aligned position, since the bad frame's length is not trusted.
    pub fn max_synced_before_after(
        &self,
        position: u64,
        offset: u64,
        file_len: u64,
        later: &[PathBuf],
    ) -> u64 {
        let mut best = 0;
        let mut scan = |seg: &Segment, from: u64, len: u64, after: u64| {
            let mut pos = from;
            while pos + HEADER_LEN as u64 <= len {
                // Only frames that continue the log after the bad one count, and a valid frame
                // is skipped whole, so bytes inside its body are never taken for a frame.
                if let Ok((h, _)) = seg.read_header(pos)
                    && h.base_offset >= after
                    && pos + h.frame_len() <= len
                    && seg.read_frame(pos).is_ok()
                {
                    best = best.max(h.synced_before);
                    pos += h.frame_len();
                    continue;
                }
                pos += crate::frame::ALIGN as u64;
            }
        };
        scan(self, position + crate::frame::ALIGN as u64, file_len, offset);
        for path in later {
            if let Ok(seg) = Segment::open(path.clone(), 0, self.interval)
                && let Ok(len) = seg.file_len()
            {
                scan(&seg, 0, len, offset);
            }
        }
        best
    }

    /// Position of the frame that holds `offset` (or the end position if `offset == end`).
    /// Walks headers from the nearest offset-index entry.
    pub fn locate(&self, offset: u64) -> std::result::Result<(u64, Option<FrameHeader>), String> {
        let mut pos = {
            let idx = self.index.read().map_err(|_| "index lock poisoned".to_string())?;
            floor(&idx, |(o, _)| *o <= offset).map(|i| idx[i].1).unwrap_or(0)
        };
        let size = self.size();
        while pos < size {
            let (h, _) = self.read_header(pos)?;
            if h.end_offset() > offset {
                return Ok((pos, Some(h)));
            }
            pos += h.frame_len();
        }
        Ok((pos, None))
    }

    /// Offset from which to scan for the first frame whose maximum event time reaches `t`.
    pub fn time_lookup_start(&self, t: i64) -> u64 {
        let Ok(ti) = self.time_index.read() else { return self.base };
        // Entries before the first one with time >= t cannot qualify… but the entry that reaches
        // t may have been raised in place, so start at its offset.
        match ti.iter().position(|(ts, _)| *ts >= t) {
            Some(i) => ti[i].1,
            None => self.end(),
        }
    }
}

/// Remove a segment's `.log` file and its index files (best effort: missing files are fine).
pub(crate) fn remove_segment_files(log: &Path) {
    let _ = std::fs::remove_file(log);
    remove_index_files(log);
}

/// Remove the index files of the segment whose `.log` file is `log` (they are rebuilt on need).
pub(crate) fn remove_index_files(log: &Path) {
    let _ = std::fs::remove_file(log.with_extension("index"));
    let _ = std::fs::remove_file(log.with_extension("timeindex"));
}

/// Read `len` bytes at `position` into a new buffer, without zeroing it first (the reads of
/// the active segment are a copy already; zeroing cost as much again).
fn read_uninit_at(file: &File, len: usize, position: u64) -> std::result::Result<Buffer, String> {
    use std::os::fd::AsRawFd;
    let mut buf = MutableBuffer::with_capacity(len);
    let mut done = 0usize;
    while done < len {
        // SAFETY: `buf` has capacity for `len` bytes; the kernel writes at most `len - done`
        // bytes at offset `done` of that capacity, and only the bytes it reports as read are
        // counted; the fd is valid for the call.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done).cast::<libc::c_void>(),
                len - done,
                (position + done as u64) as libc::off_t,
            )
        };
        match n {
            0 => return Err("frame cut short by the end of the file".to_string()),
            n if n < 0 => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("read failed: {e}"));
            }
            n => done += n as usize,
        }
    }
    // SAFETY: the loop above initialized all `len` bytes.
    unsafe { buf.set_len(len) };
    Ok(buf.into())
}

fn read_exact_at(file: &File, buf: &mut [u8], position: u64) -> std::result::Result<(), String> {
    file.read_exact_at(buf, position).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "frame cut short by the end of the file".to_string()
        } else {
            format!("read failed: {e}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_roundtrip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(parse_segment_file_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.index"), None);
    }
}
