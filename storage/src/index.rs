//! Sparse indexes of a segment and their files.
//!
//! Every segment has two sparse indexes, Kafka style:
//! - the **offset index**, `(offset, byte position)` of a frame every `index_interval_bytes`;
//! - the **time index**, `(running maximum event time, offset)`: an entry whenever the running
//!   maximum grows after another `index_interval_bytes`. The running maximum never decreases, so
//!   the first frame whose maximum reaches `t` is found by a binary search and a short scan.
//!
//! Both live in memory and are written to `<base>.index` and `<base>.timeindex` when the segment
//! is closed (rolled, or the store closed). They are derived data: a file that is missing, torn,
//! fails its checksum or covers fewer bytes than the segment holds is rebuilt (or extended) from
//! the frame headers. They are written without fsync for the same reason.
//!
//! File format: a 32-byte header (magic, version, covered segment length, entry count, one extra
//! `u64`, CRC-32C of the entries then the header's first 28 bytes), then 16-byte entries.

use std::path::Path;

use crate::error::{Error, Result};

const HEADER: usize = 32;
const VERSION: u16 = 1;
/// Magic of offset index files.
pub(crate) const OFFSET_MAGIC: u32 = u32::from_le_bytes(*b"KPOI");
/// Magic of time index files.
pub(crate) const TIME_MAGIC: u32 = u32::from_le_bytes(*b"KPTI");

/// The content of an index file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct IndexFile {
    /// Bytes of the segment this index describes.
    pub covered_len: u64,
    /// Offset index: the end offset of the covered frames. Time index: the segment's maximum event
    /// time as `i64` bits, or `i64::MIN` when none.
    pub extra: u64,
    /// The entries, as two `u64` each.
    pub entries: Vec<(u64, u64)>,
}

impl IndexFile {
    /// Serialize with `magic`.
    pub fn to_bytes(&self, magic: u32) -> Vec<u8> {
        let mut out = vec![0u8; HEADER + 16 * self.entries.len()];
        for (i, (a, b)) in self.entries.iter().enumerate() {
            let at = HEADER + 16 * i;
            out[at..at + 8].copy_from_slice(&a.to_le_bytes());
            out[at + 8..at + 16].copy_from_slice(&b.to_le_bytes());
        }
        out[0..4].copy_from_slice(&magic.to_le_bytes());
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.covered_len.to_le_bytes());
        out[16..20].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        out[20..28].copy_from_slice(&self.extra.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[HEADER..]), &out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parse, or `None` when the bytes are not a whole, valid index of kind `magic`.
    pub fn from_bytes(bytes: &[u8], magic: u32) -> Option<IndexFile> {
        if bytes.len() < HEADER {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        if u32_at(0) != magic || u16::from_le_bytes([bytes[4], bytes[5]]) != VERSION {
            return None;
        }
        let count = u32_at(16) as usize;
        if bytes.len() != HEADER + 16 * count {
            return None;
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[HEADER..]), &bytes[..28]);
        if crc != u32_at(28) {
            return None;
        }
        let entries =
            (0..count).map(|i| (u64_at(HEADER + 16 * i), u64_at(HEADER + 16 * i + 8))).collect();
        Some(IndexFile { covered_len: u64_at(8), extra: u64_at(20), entries })
    }

    /// Read `path`; `None` when missing or invalid (the caller rebuilds).
    pub fn load(path: &Path, magic: u32) -> Option<IndexFile> {
        let bytes = std::fs::read(path).ok()?;
        IndexFile::from_bytes(&bytes, magic)
    }

    /// Write `path` (temporary file and rename; no fsync: the index is derived data, checked on
    /// load, so it does not go through the fault-injection seam either).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn save(&self, path: &Path, magic: u32) -> Result<()> {
        let tmp = crate::fsutil::tmp_path(path);
        std::fs::write(&tmp, self.to_bytes(magic)).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
    }
}

/// Position of the last entry whose key is `<= key` (by `key_of`), if any.
pub(crate) fn floor<T>(entries: &[T], key_le: impl Fn(&T) -> bool) -> Option<usize> {
    let n = entries.partition_point(key_le);
    n.checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let idx = IndexFile { covered_len: 4096, extra: 77, entries: vec![(0, 0), (10, 640)] };
        let b = idx.to_bytes(OFFSET_MAGIC);
        assert_eq!(IndexFile::from_bytes(&b, OFFSET_MAGIC), Some(idx.clone()));
        assert_eq!(IndexFile::from_bytes(&b, TIME_MAGIC), None);
        assert_eq!(IndexFile::from_bytes(&b[..b.len() - 1], OFFSET_MAGIC), None);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            assert_eq!(IndexFile::from_bytes(&d, OFFSET_MAGIC), None, "byte {i}");
        }
    }

    #[test]
    fn floor_finds_last_le() {
        let e = [1i64, 5, 9];
        assert_eq!(floor(&e, |x| *x <= 0), None);
        assert_eq!(floor(&e, |x| *x <= 5), Some(1));
        assert_eq!(floor(&e, |x| *x <= 100), Some(2));
    }
}
