//! The frame: one appended batch on disk.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "KPF1"
//!      4     2  format version (1)
//!      6     2  flags (bit 0: the batch has event times; min/max below are valid;
//!               bit 1: the frame carries a producer tag)
//!      8     4  body length in bytes, before padding
//!     12     4  row count
//!     16     8  base offset (the log offset of the first row)
//!     24     8  minimum event time (raw i64 of the event-time column)
//!     32     8  maximum event time
//!     40     8  synced-before: every row below this offset was durable when the frame was
//!               written (lets recovery tell a torn unsynced write from damage to synced data)
//!     48     4  producer id (flag bit 1), else zero: see [`Tag`]
//!     52     8  producer sequence (flag bit 1), else zero
//!     60     4  CRC-32C of the padded body followed by bytes 0..60 of this header
//!     64     …  body: Arrow IPC encapsulated messages (dictionaries, then the record batch),
//!               zero-padded to a multiple of 64 bytes
//! ```
//!
//! Frames start at multiples of 64 bytes in their segment, so the Arrow buffers inside a body are
//! 64-byte aligned when the segment is memory-mapped and can be used in place, without a copy.
//! The checksum covers every byte of the frame, padding included: any flipped bit is detected.
//! Arrow IPC alone has no checksum and cannot tell a torn tail from a clean end; the header can.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow_ipc::MetadataVersion;
use arrow_ipc::reader::FileDecoder;
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};

use crate::error::{Error, Result};

/// "KPF1", little-endian.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"KPF1");
/// The frame format version written by this build.
pub(crate) const VERSION: u16 = 1;
/// Header length; also the alignment of frames and bodies.
pub(crate) const HEADER_LEN: usize = 64;
/// Frames and bodies are aligned to this many bytes.
pub(crate) const ALIGN: usize = 64;
/// Largest body a frame may carry (the header stores a `u32`; we stay well below).
pub const MAX_FRAME_BODY: usize = 1 << 30;

const FLAG_HAS_TIME: u16 = 1;
const FLAG_HAS_TAG: u16 = 2;

/// A producer's mark on a frame: who appended it and how far that producer had got (for a job,
/// the input offset its output covers). Lets a producer that restarts find what it already
/// wrote (see [`crate::Stream::producer_positions`]), so that its output is exactly-once
/// without rolling the log back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag {
    /// The producer (non-zero by convention; the log does not interpret it).
    pub producer: u32,
    /// The producer's position after this frame; increases with every tagged append.
    pub seq: u64,
}

/// Round `n` up to the frame alignment.
pub(crate) fn pad(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The decoded header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Body length before padding.
    pub body_len: u32,
    /// Rows in the batch.
    pub rows: u32,
    /// Log offset of the first row.
    pub base_offset: u64,
    /// Event-time range, when the stream has an event-time column and the batch a non-null value.
    pub time: Option<(i64, i64)>,
    /// Every row below this offset was durable when the frame was written.
    pub synced_before: u64,
    /// The producer's tag, if any.
    pub tag: Option<Tag>,
    /// The stored checksum.
    pub crc: u32,
}

impl FrameHeader {
    /// Offset after the last row.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.rows)
    }

    /// Bytes the whole frame takes in the segment.
    pub fn frame_len(&self) -> u64 {
        (HEADER_LEN + pad(self.body_len as usize)) as u64
    }

    /// Bytes of the padded body.
    pub fn padded_body_len(&self) -> usize {
        pad(self.body_len as usize)
    }

    /// Encode into the first [`HEADER_LEN`] bytes of `out`, without the checksum.
    fn encode_without_crc(&self, out: &mut [u8]) {
        out[..HEADER_LEN].fill(0);
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        let mut flags = if self.time.is_some() { FLAG_HAS_TIME } else { 0 };
        if self.tag.is_some() {
            flags |= FLAG_HAS_TAG;
        }
        out[6..8].copy_from_slice(&flags.to_le_bytes());
        out[8..12].copy_from_slice(&self.body_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.rows.to_le_bytes());
        out[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        let (lo, hi) = self.time.unwrap_or((0, 0));
        out[24..32].copy_from_slice(&lo.to_le_bytes());
        out[32..40].copy_from_slice(&hi.to_le_bytes());
        out[40..48].copy_from_slice(&self.synced_before.to_le_bytes());
        if let Some(t) = self.tag {
            out[48..52].copy_from_slice(&t.producer.to_le_bytes());
            out[52..60].copy_from_slice(&t.seq.to_le_bytes());
        }
    }

    /// Decode and sanity-check a header. Does not verify the checksum (that needs the body).
    ///
    /// # Errors
    /// A description of what is wrong, for a [`Error::Corruption`] (or a torn tail).
    pub fn decode(buf: &[u8]) -> std::result::Result<FrameHeader, String> {
        if buf.len() < HEADER_LEN {
            return Err(format!("frame header cut short ({} of {HEADER_LEN} bytes)", buf.len()));
        }
        let u16_at = |i: usize| u16::from_le_bytes([buf[i], buf[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(format!("bad frame magic {magic:#010x}"));
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(format!("unknown frame format version {version}"));
        }
        let flags = u16_at(6);
        if flags & !(FLAG_HAS_TIME | FLAG_HAS_TAG) != 0 {
            return Err(format!("unknown frame flags {flags:#06x}"));
        }
        let tag = if flags & FLAG_HAS_TAG != 0 {
            Some(Tag { producer: u32_at(48), seq: u64_at(52) })
        } else {
            if buf[48..60].iter().any(|b| *b != 0) {
                return Err("reserved header bytes are not zero".to_string());
            }
            None
        };
        let body_len = u32_at(8);
        if body_len as usize > MAX_FRAME_BODY {
            return Err(format!("frame body length {body_len} exceeds the limit"));
        }
        let rows = u32_at(12);
        if rows == 0 {
            return Err("frame with zero rows".to_string());
        }
        let base_offset = u64_at(16);
        if base_offset.checked_add(u64::from(rows)).is_none() {
            return Err(format!("frame offsets {base_offset} + {rows} overflow"));
        }
        let synced_before = u64_at(40);
        if synced_before > base_offset {
            return Err(format!(
                "synced-before {synced_before} is above the frame's offset {base_offset}"
            ));
        }
        let time = (flags & FLAG_HAS_TIME != 0).then(|| (u64_at(24) as i64, u64_at(32) as i64));
        Ok(FrameHeader { body_len, rows, base_offset, time, synced_before, tag, crc: u32_at(60) })
    }

    /// Check the stored checksum against the header bytes and the padded body.
    pub fn verify(&self, header_bytes: &[u8], padded_body: &[u8]) -> bool {
        let crc = crc32c::crc32c_append(crc32c::crc32c(padded_body), &header_bytes[..60]);
        crc == self.crc
    }
}

thread_local! {
    /// Per-thread IPC encoding context, reused across appends.
    static CONTEXT: std::cell::RefCell<IpcWriteContext> =
        std::cell::RefCell::new(IpcWriteContext::default());
}

/// Zeros for padding a frame to [`ALIGN`] bytes.
static ZEROS: [u8; ALIGN] = [0; ALIGN];

/// A batch encoded as a frame, waiting for its base offset.
///
/// The frame is written from three parts, without copying them together: `buf` (header space,
/// the frame's dictionaries, the record batch's IPC metadata), `data` (the record batch's
/// buffers, as Arrow's IPC encoder produced them) and `padding` zeros.
#[derive(Debug)]
pub(crate) struct EncodedFrame {
    /// Header space, then the first part of the body.
    pub buf: Vec<u8>,
    /// The record batch's buffers.
    data: Vec<u8>,
    /// Zeros after `data`, to a multiple of [`ALIGN`].
    padding: usize,
    body_crc: u32,
    body_len: u32,
    /// Rows in the batch.
    pub rows: u32,
    /// Event-time range of the batch.
    pub time: Option<(i64, i64)>,
    /// The producer's tag, written by [`EncodedFrame::seal`].
    pub tag: Option<Tag>,
}

impl EncodedFrame {
    /// Encode `batch` (which has already been checked against the stream's schema).
    ///
    /// # Errors
    /// [`Error::Arrow`] if Arrow cannot encode it; [`Error::LimitExceeded`] if it is too big.
    pub fn encode(batch: &RecordBatch, time: Option<(i64, i64)>) -> Result<EncodedFrame> {
        let rows = u32::try_from(batch.num_rows()).map_err(|_| {
            Error::LimitExceeded(format!("a batch may hold at most {} rows", u32::MAX))
        })?;
        let options = IpcWriteOptions::default();
        let generator = IpcDataGenerator::default();
        // A fresh tracker per frame: every frame carries its own dictionaries and can be decoded
        // alone, from any offset.
        let mut tracker = DictionaryTracker::new(false);
        let schema = batch.schema();
        if schema.fields().iter().any(|f| has_dictionary(f.data_type())) {
            // Assigns the dictionary ids, in the order the decoder expects them.
            let _ =
                generator.schema_to_bytes_with_dictionary_tracker(&schema, &mut tracker, &options);
        }
        // The context's flatbuffer builder keeps its buffer between encodes (growing it anew for
        // every append was a tenth of the CPU of a small append).
        let (dictionaries, mut encoded) = CONTEXT.with(|c| match c.try_borrow_mut() {
            Ok(mut context) => generator.encode(batch, &mut tracker, &options, &mut context),
            Err(_) => generator.encode(batch, &mut tracker, &options, &mut Default::default()),
        })?;
        let mut buf = Vec::with_capacity(HEADER_LEN + encoded.ipc_message.len() + 64);
        buf.resize(HEADER_LEN, 0);
        for d in dictionaries {
            arrow_ipc::writer::write_message(&mut buf, d, &options)?;
        }
        // The message's metadata states its body length: written without its buffers, it is
        // the prefix of the full message, and the buffers follow as a part of their own.
        let data = std::mem::take(&mut encoded.arrow_data);
        arrow_ipc::writer::write_message(&mut buf, encoded, &options)?;
        // The metadata is padded to the IPC alignment (64), so the buffers start aligned in
        // the segment file, as the mapped reads need.
        debug_assert_eq!(buf.len() % ALIGN, 0);
        let body_len = buf.len() - HEADER_LEN + data.len();
        if body_len > MAX_FRAME_BODY {
            return Err(Error::LimitExceeded(format!(
                "an encoded batch may take at most {MAX_FRAME_BODY} bytes; this one takes {body_len}"
            )));
        }
        let padding = pad(body_len) - body_len;
        let body_crc = crc32c::crc32c(&buf[HEADER_LEN..]);
        let body_crc = crc32c::crc32c_append(body_crc, &data);
        let body_crc = crc32c::crc32c_append(body_crc, &ZEROS[..padding]);
        Ok(EncodedFrame {
            buf,
            data,
            padding,
            body_crc,
            body_len: body_len as u32,
            rows,
            time,
            tag: None,
        })
    }

    /// The frame's bytes, in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.buf, &self.data, &ZEROS[..self.padding]]
    }

    /// The frame's length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len() + self.data.len() + self.padding
    }

    /// The frame's bytes in one buffer (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }

    /// Write the header for `base_offset` (checksum included). Returns the header.
    pub fn seal(&mut self, base_offset: u64, synced_before: u64) -> FrameHeader {
        let mut header = FrameHeader {
            body_len: self.body_len,
            rows: self.rows,
            base_offset,
            time: self.time,
            synced_before: synced_before.min(base_offset),
            tag: self.tag,
            crc: 0,
        };
        header.encode_without_crc(&mut self.buf);
        header.crc = crc32c::crc32c_append(self.body_crc, &self.buf[..60]);
        self.buf[60..64].copy_from_slice(&header.crc.to_le_bytes());
        header
    }
}

fn has_dictionary(t: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType;
    match t {
        DataType::Dictionary(_, _) => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            has_dictionary(f.data_type())
        }
        DataType::ListView(f) | DataType::LargeListView(f) | DataType::Map(f, _) => {
            has_dictionary(f.data_type())
        }
        DataType::Struct(fs) => fs.iter().any(|f| has_dictionary(f.data_type())),
        DataType::Union(fs, _) => fs.iter().any(|(_, f)| has_dictionary(f.data_type())),
        DataType::RunEndEncoded(_, v) => has_dictionary(v.data_type()),
        _ => false,
    }
}

/// Decode a frame body (the padded body, as a [`Buffer`] so that arrays can share it).
///
/// `projection` keeps only those columns (indexes into the stream schema).
///
/// The caller must have verified the frame's checksum ([`FrameHeader::verify`]): Arrow's
/// (expensive, full) validation of the decoded arrays is skipped, because the checksummed bytes
/// are exactly those this crate encoded with Arrow's IPC writer from valid arrays. Validation
/// halved read throughput (see BENCHMARKS.md); random damage passes CRC-32C with probability
/// 2^-32, and the row count is still checked against the header.
///
/// # Errors
/// A description of what is wrong (for a [`Error::Corruption`]).
pub(crate) fn decode_body(
    schema: &SchemaRef,
    body: &Buffer,
    body_len: usize,
    rows: usize,
    projection: Option<&[usize]>,
) -> std::result::Result<RecordBatch, String> {
    let mut decoder = FileDecoder::new(Arc::clone(schema), MetadataVersion::V5);
    // SAFETY: see `decode_body`'s docs: the caller verified the frame's CRC-32C, so the bytes
    // are the ones this crate wrote with arrow's IPC writer from valid arrays.
    decoder = unsafe { decoder.with_skip_validation(true) };
    if let Some(p) = projection {
        decoder = decoder.with_projection(p.to_vec());
    }
    let mut pos = 0usize;
    while pos < body_len {
        if pos + 8 > body_len {
            return Err(format!("IPC message prefix cut short at body byte {pos}"));
        }
        let b = body.as_slice();
        let marker = u32::from_le_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
        if marker != 0xFFFF_FFFF {
            return Err(format!("missing IPC continuation marker at body byte {pos}"));
        }
        let meta_len = i32::from_le_bytes([b[pos + 4], b[pos + 5], b[pos + 6], b[pos + 7]]);
        let meta_len = usize::try_from(meta_len)
            .map_err(|_| format!("negative IPC metadata length at body byte {pos}"))?;
        let meta_end = pos + 8 + meta_len;
        if meta_end > body_len {
            return Err(format!("IPC metadata overruns the body at body byte {pos}"));
        }
        let message = arrow_ipc::root_as_message(&b[pos + 8..meta_end])
            .map_err(|e| format!("bad IPC message at body byte {pos}: {e}"))?;
        let data_len = usize::try_from(message.bodyLength())
            .map_err(|_| format!("negative IPC body length at body byte {pos}"))?;
        let end = meta_end + data_len;
        if end > body_len {
            return Err(format!("IPC body overruns the frame at body byte {pos}"));
        }
        let block = arrow_ipc::Block::new(pos as i64, (8 + meta_len) as i32, data_len as i64);
        let data = body.slice_with_length(pos, end - pos);
        match message.header_type() {
            arrow_ipc::MessageHeader::DictionaryBatch => {
                decoder.read_dictionary(&block, &data).map_err(|e| e.to_string())?;
            }
            arrow_ipc::MessageHeader::RecordBatch => {
                if end != body_len {
                    return Err("data after the record batch in a frame".to_string());
                }
                let batch = decoder
                    .read_record_batch(&block, &data)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "empty IPC message in a frame".to_string())?;
                if batch.num_rows() != rows {
                    return Err(format!(
                        "frame header says {rows} rows, its batch holds {}",
                        batch.num_rows()
                    ));
                }
                return Ok(batch);
            }
            other => return Err(format!("unexpected IPC message {other:?} in a frame")),
        }
        pos = end;
    }
    Err("frame body holds no record batch".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int32Type, Schema};

    fn roundtrip(batch: &RecordBatch) -> RecordBatch {
        let mut f = EncodedFrame::encode(batch, Some((1, 9))).unwrap();
        let h = f.seal(42, 40);
        let bytes = f.to_vec();
        assert_eq!(bytes.len() % ALIGN, 0);
        let parsed = FrameHeader::decode(&bytes).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(parsed.time, Some((1, 9)));
        assert!(parsed.verify(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..]));
        let body = Buffer::from_vec(bytes[HEADER_LEN..].to_vec());
        decode_body(&batch.schema(), &body, h.body_len as usize, h.rows as usize, None).unwrap()
    }

    #[test]
    fn frame_roundtrip_plain_and_dictionary() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new_dictionary("d", DataType::Int32, DataType::Utf8, true),
        ]));
        let d: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
                Arc::new(d),
            ],
        )
        .unwrap();
        assert_eq!(roundtrip(&batch), batch);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![7, 8]))]).unwrap();
        let mut f = EncodedFrame::encode(&batch, None).unwrap();
        f.seal(0, 0);
        let bytes = f.to_vec();
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let ok = match FrameHeader::decode(&b) {
                Err(_) => false,
                Ok(h) => h.verify(&b[..HEADER_LEN], &b[HEADER_LEN..]),
            };
            assert!(!ok, "flip of bit {bit} went unnoticed");
        }
    }
}
