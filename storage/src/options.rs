//! Options of a stream, persisted in its `stream.json`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After `fdatasync` (group commit: concurrent appenders share syncs). Survives power loss.
    #[default]
    Durable,
    /// After the write reached the operating system. Survives a crash of the process, not of the
    /// machine: the tail appended since the last segment roll, seal, commit or close may be lost.
    Relaxed,
}

/// What a stream keeps. Whole closed segments are removed; the active segment never is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Retention {
    /// Remove closed segments last written longer ago than this.
    pub max_age: Option<Duration>,
    /// Remove the oldest closed segments while the partition holds more bytes than this.
    pub max_bytes: Option<u64>,
}

/// Options of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    /// Number of partitions (only 1 is supported today; the format names them).
    pub partitions: u32,
    /// The event-time column (a `Timestamp` column), which feeds the time index.
    pub event_time_column: Option<String>,
    /// When appends are acknowledged.
    pub durability: Durability,
    /// What to keep (default: everything; the input is the source of truth).
    pub retention: Retention,
    /// A segment is rolled when the next frame would take it beyond this many bytes.
    pub segment_bytes: u64,
    /// Bytes of frames between two sparse index entries.
    pub index_interval_bytes: u64,
    /// A derived log: readers never pass its committed offset
    /// (see [`crate::Stream::commit`]). Its writer is a job that commits at checkpoints.
    pub derived: bool,
    /// When a segment closes and its frames average fewer bytes than this, a background job
    /// merges its small frames into frames of about 1 MiB (offsets and rows unchanged), so
    /// that replays read large batches. 0 turns compaction off. Default 64 KiB.
    pub compact_frames_below: u64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            partitions: 1,
            event_time_column: None,
            durability: Durability::Durable,
            retention: Retention::default(),
            segment_bytes: 64 << 20,
            index_interval_bytes: 4096,
            derived: false,
            compact_frames_below: 64 << 10,
        }
    }
}

/// Smallest segment size accepted.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest segment size accepted.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 32;

impl StreamOptions {
    /// Check the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the option.
    pub fn validate(&self) -> Result<()> {
        if self.partitions != 1 {
            return Err(Error::InvalidArgument(format!(
                "partitions = {}: only 1 partition per stream is supported yet",
                self.partitions
            )));
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return Err(Error::InvalidArgument(format!(
                "segment_bytes = {} is outside {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}",
                self.segment_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidArgument("index_interval_bytes must be positive".into()));
        }
        if self.retention.max_bytes == Some(0) {
            return Err(Error::InvalidArgument("retention max_bytes must be positive".into()));
        }
        Ok(())
    }
}
