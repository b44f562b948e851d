//! Readers: each at its own position, any number at once, while the writer appends.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::frame::decode_body;
use crate::partition::Partition;
use crate::progress::Wait;
use crate::schema::first_row_at_or_after;
use crate::segment::Segment;

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The first retained offset.
    Earliest,
    /// The current end: only rows appended from now on.
    Latest,
    /// This offset; an offset inside a batch starts in the middle of it.
    Offset(u64),
    /// The first row whose event time is at least this value (raw `i64` in the unit of the
    /// stream's event-time column), found through the time index. Needs an event-time column.
    EventTime(i64),
}

/// A batch read from a log, with the offset of its first row.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    /// Offset of the first row of `batch`.
    pub offset: u64,
    /// The rows.
    pub batch: RecordBatch,
}

/// A reader of one partition. Not shared: every consumer makes its own.
///
/// Batches come back as they were appended, sliced where the start position or the visible
/// limit falls inside one. The reader sees only durable rows (all written rows in relaxed mode)
/// and, on a derived log, only rows below the committed offset.
#[derive(Debug)]
pub struct Reader {
    partition: Arc<Partition>,
    next: u64,
    segment: Option<Arc<Segment>>,
    frame_pos: u64,
    epoch: u64,
    projection: Option<Vec<usize>>,
    /// Skip frames whose event times all fall outside this inclusive range.
    time_range: Option<(i64, i64)>,
}

impl Reader {
    pub(crate) fn new(partition: Arc<Partition>, from: ReadFrom) -> Result<Reader> {
        let progress = partition.watch.get();
        let next = match from {
            ReadFrom::Earliest => progress.start,
            ReadFrom::Latest => progress.limit(),
            ReadFrom::Offset(o) => {
                if o < progress.start || o > progress.limit() {
                    return Err(Error::OffsetOutOfRange {
                        stream: partition.stream.clone(),
                        requested: o,
                        start: progress.start,
                        end: progress.limit(),
                    });
                }
                o
            }
            ReadFrom::EventTime(t) => {
                if partition.event_column.is_none() {
                    return Err(Error::InvalidArgument(format!(
                        "stream '{}' has no event-time column to read from a time",
                        partition.stream
                    )));
                }
                find_time(&partition, t, progress.start, progress.limit())?
            }
        };
        Ok(Reader {
            partition,
            next,
            segment: None,
            frame_pos: 0,
            epoch: progress.epoch,
            projection: None,
            time_range: None,
        })
    }

    /// Read only these columns (indexes into the stream's schema).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an index beyond the schema.
    pub fn with_projection(mut self, columns: Vec<usize>) -> Result<Reader> {
        let n = self.partition.schema.fields().len();
        if let Some(bad) = columns.iter().find(|c| **c >= n) {
            return Err(Error::InvalidArgument(format!(
                "column index {bad} is beyond the {n} columns of stream '{}'",
                self.partition.stream
            )));
        }
        self.projection = Some(columns);
        Ok(self)
    }

    /// Skip whole frames whose event times all fall outside `lo..=hi` (raw values of the
    /// event-time column), judged from frame headers without decoding them: a scan for a time
    /// range reads only the frames that may hold it. Rows of the frames read are not filtered,
    /// and frames without event times (all null) are skipped. Offsets of the returned batches
    /// stay exact; the skipped rows are simply not returned.
    pub fn with_time_range(mut self, lo: i64, hi: i64) -> Reader {
        self.time_range = Some((lo, hi));
        self
    }

    /// The offset of the next row this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The offset up to which rows are readable right now.
    pub fn limit(&self) -> u64 {
        self.partition.watch.get().limit()
    }

    /// The next batch, or `None` when nothing more is readable right now. Never blocks on new
    /// data (it may read from disk).
    ///
    /// # Errors
    /// [`Error::Corruption`] naming segment and offset when a frame fails its checksum (no row
    /// of a damaged frame is ever returned); [`Error::OffsetOutOfRange`] when retention removed
    /// the reader's position; [`Error::ReaderTruncated`] when the log was truncated below it.
    pub fn next_batch(&mut self) -> Result<Option<ReadBatch>> {
        loop {
            let progress = self.partition.watch.get();
            if progress.epoch != self.epoch {
                if let Some(cut) = progress.truncated_since(self.epoch)
                    && self.next > cut
                {
                    return Err(Error::ReaderTruncated {
                        stream: self.partition.stream.clone(),
                        end: cut,
                        position: self.next,
                    });
                }
                self.epoch = progress.epoch;
                self.segment = None;
            }
            let saved = (self.next, self.frame_pos);
            let result = self.read_one(progress.start, progress.limit());
            // A truncation that ran while we read may have changed the bytes under us: retry,
            // and let the check above decide.
            if self.partition.watch.lock().epoch != progress.epoch {
                (self.next, self.frame_pos) = saved;
                self.segment = None;
                continue;
            }
            return result;
        }
    }

    fn read_one(&mut self, start: u64, limit: u64) -> Result<Option<ReadBatch>> {
        loop {
            if self.next >= limit {
                return Ok(None);
            }
            let seg = match &self.segment {
                Some(s) => Arc::clone(s),
                None => self.locate(start)?,
            };
            if self.frame_pos >= seg.size() {
                // End of this segment: move to the one that starts where it ends.
                let next_seg = self
                    .partition
                    .segments_snapshot()
                    .into_iter()
                    .find(|s| s.base == seg.end() && s.base > seg.base);
                match next_seg {
                    Some(s) => {
                        s.ensure_mapped()?;
                        self.segment = Some(s);
                        self.frame_pos = 0;
                        continue;
                    }
                    None => {
                        // Closed under us (a roll we have not seen): look it up again.
                        self.segment = None;
                        let again = self.locate(start)?;
                        if Arc::ptr_eq(&again, &seg) && self.frame_pos >= seg.size() {
                            return Ok(None);
                        }
                        continue;
                    }
                }
            }
            if let Some((lo, hi)) = self.time_range
                && let Ok((h, _)) = seg.read_header(self.frame_pos)
                && h.end_offset() <= limit
                && h.base_offset <= self.next
                && h.time.is_none_or(|(min, max)| max < lo || min > hi)
            {
                // No row of this frame is in the range: skip it unread.
                self.next = h.end_offset();
                self.frame_pos += h.frame_len();
                continue;
            }
            let frame = seg.read_frame(self.frame_pos).map_err(|detail| Error::Corruption {
                segment: seg.path.clone(),
                offset: self.next,
                position: self.frame_pos,
                detail,
            })?;
            let h = frame.header;
            if h.end_offset() <= self.next {
                self.frame_pos += h.frame_len();
                continue;
            }
            if h.base_offset > self.next {
                return Err(Error::Corruption {
                    segment: seg.path.clone(),
                    offset: self.next,
                    position: self.frame_pos,
                    detail: format!(
                        "expected offset {}, found frame at {}",
                        self.next, h.base_offset
                    ),
                });
            }
            let batch = decode_body(
                &self.partition.schema,
                &frame.body,
                h.body_len as usize,
                h.rows as usize,
                self.projection.as_deref(),
            )
            .map_err(|detail| Error::Corruption {
                segment: seg.path.clone(),
                offset: h.base_offset,
                position: self.frame_pos,
                detail,
            })?;
            let from = (self.next - h.base_offset) as usize;
            let to = (h.end_offset().min(limit) - h.base_offset) as usize;
            let batch = if from == 0 && to == batch.num_rows() {
                batch
            } else {
                batch.slice(from, to - from)
            };
            let offset = self.next;
            self.next = h.base_offset + to as u64;
            if self.next == h.end_offset() {
                self.frame_pos += h.frame_len();
            }
            return Ok(Some(ReadBatch { offset, batch }));
        }
    }

    /// Find the segment and frame position of `self.next`.
    fn locate(&mut self, start: u64) -> Result<Arc<Segment>> {
        if self.next < start {
            return Err(Error::OffsetOutOfRange {
                stream: self.partition.stream.clone(),
                requested: self.next,
                start,
                end: self.partition.watch.get().end,
            });
        }
        let segments = self.partition.segments_snapshot();
        let seg =
            segments.iter().rev().find(|s| s.base <= self.next).cloned().ok_or_else(|| {
                Error::OffsetOutOfRange {
                    stream: self.partition.stream.clone(),
                    requested: self.next,
                    start,
                    end: self.partition.watch.get().end,
                }
            })?;
        seg.ensure_mapped()?;
        let (position, _) = seg.locate(self.next).map_err(|detail| Error::Corruption {
            segment: seg.path.clone(),
            offset: self.next,
            position: 0,
            detail,
        })?;
        self.frame_pos = position;
        self.segment = Some(Arc::clone(&seg));
        Ok(seg)
    }

    /// Block until rows beyond the position are readable, the stream ends, or `timeout` passes.
    /// Does not poll: the writer wakes waiters.
    pub fn wait(&self, timeout: Option<Duration>) -> Wait {
        self.partition.watch.wait_blocking(self.next, self.epoch, timeout)
    }

    /// The next batch, waiting for one if needed; `None` once a sealed stream is read to its end.
    ///
    /// # Errors
    /// As [`Reader::next_batch`]; [`Error::Failed`] if the log failed, [`Error::Closed`] if the
    /// store closed, while waiting.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled call has not moved the reader.
    pub async fn next_async(&mut self) -> Result<Option<ReadBatch>> {
        loop {
            if let Some(b) = self.next_batch()? {
                return Ok(Some(b));
            }
            match self.partition.watch.wait_async(self.next, self.epoch).await {
                Wait::Data | Wait::TimedOut => {}
                Wait::Ended => return Ok(None),
                Wait::Closed => return Err(self.stopped()),
            }
        }
    }

    /// The error for a wait that ended because the log failed or the store closed.
    fn stopped(&self) -> Error {
        let stream = self.partition.stream.clone();
        match self.partition.watch.get().failed {
            Some(cause) => Error::Failed { stream, cause },
            None => Error::Closed { stream },
        }
    }

    /// Like [`Reader::next_async`], blocking the thread.
    ///
    /// # Errors
    /// As [`Reader::next_async`].
    pub fn next_blocking(&mut self, timeout: Option<Duration>) -> Result<Option<ReadBatch>> {
        loop {
            if let Some(b) = self.next_batch()? {
                return Ok(Some(b));
            }
            match self.wait(timeout) {
                Wait::Data => {}
                Wait::Ended | Wait::TimedOut => return Ok(None),
                Wait::Closed => return Err(self.stopped()),
            }
        }
    }
}

/// The offset of the first row with event time `>= t`, or `limit` if there is none yet.
fn find_time(partition: &Partition, t: i64, start: u64, limit: u64) -> Result<u64> {
    let Some(col) = partition.event_column else { return Ok(limit) };
    let segments = partition.segments_snapshot();
    for seg in segments.iter().filter(|s| s.end() > start) {
        if seg.max_time().is_none_or(|m| m < t) {
            continue;
        }
        let from = seg.time_lookup_start(t).max(start).max(seg.base);
        seg.ensure_mapped()?;
        let (mut pos, _) = seg.locate(from).map_err(|detail| Error::Corruption {
            segment: seg.path.clone(),
            offset: from,
            position: 0,
            detail,
        })?;
        while pos < seg.size() {
            let (h, _) = seg.read_header(pos).map_err(|detail| Error::Corruption {
                segment: seg.path.clone(),
                offset: from,
                position: pos,
                detail,
            })?;
            if h.base_offset >= limit {
                return Ok(limit);
            }
            if h.time.is_some_and(|(_, hi)| hi >= t) && h.end_offset() > start {
                let frame = seg.read_frame(pos).map_err(|detail| Error::Corruption {
                    segment: seg.path.clone(),
                    offset: h.base_offset,
                    position: pos,
                    detail,
                })?;
                let batch = decode_body(
                    &partition.schema,
                    &frame.body,
                    h.body_len as usize,
                    h.rows as usize,
                    Some(&[col]),
                )
                .map_err(|detail| Error::Corruption {
                    segment: seg.path.clone(),
                    offset: h.base_offset,
                    position: pos,
                    detail,
                })?;
                let skip = (start.saturating_sub(h.base_offset)) as usize;
                let column = batch.column(0).slice(skip, batch.num_rows() - skip);
                if let Some(row) = first_row_at_or_after(column.as_ref(), t) {
                    return Ok((h.base_offset + (skip + row) as u64).min(limit));
                }
            }
            pos += h.frame_len();
        }
    }
    Ok(limit)
}
