//! `kappa-storage`: durable, segmented logs of Arrow record batches.
//!
//! Kappa puts the log at the centre: every stream is an ordered, append-only log that any number
//! of readers consume at their own pace. This crate is that log. It knows Arrow, not SQL.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Int64Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use kappa_storage::{ReadFrom, Store, StoreOptions, StreamOptions};
//!
//! # fn main() -> kappa_storage::Result<()> {
//! # let tmp = tempfile::tempdir().map_err(|e| kappa_storage::Error::InvalidArgument(e.to_string()))?;
//! let store = Store::open(tmp.path(), StoreOptions::default())?;
//! let schema = Arc::new(Schema::new(vec![Field::new("price", DataType::Int64, false)]));
//! let bids = store.create_stream("bids", schema.clone(), StreamOptions::default())?;
//!
//! let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![10, 20, 30]))])?;
//! let ack = bids.append(&batch)?; // durable once this returns
//! assert_eq!((ack.base_offset, ack.rows), (0, 3));
//!
//! let mut reader = bids.reader(ReadFrom::Offset(1))?; // inside the batch: it is sliced
//! let read = reader.next_batch()?.expect("two rows");
//! assert_eq!((read.offset, read.batch.num_rows()), (1, 2));
//! assert!(reader.next_batch()?.is_none()); // nothing more for now; `next_async` would wait
//! # Ok(())
//! # }
//! ```
//!
//! # Layout on disk
//!
//! ```text
//! <data dir>/LOCK                               flock: one process owns the directory
//! <data dir>/streams/<name>/stream.json         options (atomic replace)
//! <data dir>/streams/<name>/schema.arrow        the Arrow schema, as an IPC stream
//! <data dir>/streams/<name>/p0/partition.json   start offset, recovery point, commit, seal
//! <data dir>/streams/<name>/p0/00000000000000000000.log        frames
//! <data dir>/streams/<name>/p0/00000000000000000000.index      sparse offset index
//! <data dir>/streams/<name>/p0/00000000000000000000.timeindex  sparse time index
//! ```
//!
//! A [`Store`] owns a data directory; a [`Stream`] is a folder of partitions (one today); a
//! partition is a folder of segments named by the 20-digit offset of their first row. Each
//! appended batch is one frame (see the `frame` module): a 64-byte header with a CRC-32C, then
//! the Arrow IPC encoding of the batch. Offsets are `u64` per partition; a batch of `n` rows at
//! base offset `b` holds `b..b+n`.
//!
//! # Writing
//!
//! [`Stream::append`] checks the batch against the stream's schema, encodes the frame outside
//! any lock, writes it under the writer lock and, in [`Durability::Durable`] mode, waits for an
//! `fdatasync` that covers it. Syncs are shared (group commit): while one sync runs, other
//! appenders write and then wait for the next one, which covers them all; with concurrent
//! appenders the leader of a sync first gives them a moment to join (a commit delay). Readers see a row only
//! once it is durable (or written, in relaxed mode). A segment is rolled when the next frame would
//! take it past `segment_bytes`: it is synced, its index files are written, and it becomes
//! immutable. [`Stream::submit`] writes without waiting for the sync, so that one appender can
//! keep several appends in flight; [`PendingAppend::wait`] acknowledges. [`Stream::encode`] and
//! [`Stream::submit_encoded`] split an append: several threads encode (copy and checksum, no
//! lock), one writes in the order it chooses.
//!
//! # Compaction
//!
//! When a segment closes (roll or seal) and its frames are small on average
//! ([`StreamOptions::compact_frames_below`]), the store's background compactor rewrites it with
//! consecutive small frames merged into frames of about 1 MiB, then renames it over the original
//! (see the `compact` module). Offsets, rows and event times do not change, only batch
//! boundaries, which carry no meaning: [`Stream::truncate`] accepts any offset.
//!
//! # Reading
//!
//! A [`Reader`] starts at an offset (inside a batch, the batch is sliced), at the earliest or
//! latest offset, or at an event time (through the time index). It returns batches without
//! blocking, or waits for more without polling ([`Reader::next_async`], [`Reader::wait`]).
//! Batches are built on memory-mapped pages without copying: closed segments are mapped
//! whole, the active one through a window that reaches past its end (see the `segment`
//! module). A segment file never shrinks in place, so mappings stay valid. Every frame's
//! checksum is verified on every read: a damaged frame is an [`Error::Corruption`] naming the
//! segment and offset, never a changed row. A derived log ([`StreamOptions::derived`]) is only
//! readable up to its committed offset.
//!
//! # Recovery
//!
//! Each partition keeps a *recovery point*: every frame below it was synced. It is advanced when
//! a segment rolls, on seal, commit, truncate and close, and after recovery. On open, segments
//! wholly below the recovery point are trusted (their indexes are loaded, or rebuilt from the
//! frame headers); from the segment holding the recovery point on, every frame is read and
//! verified. A bad frame below the recovery point is reported as [`Error::Corruption`] and
//! nothing is truncated; so is a bad frame above it that a later valid frame attests was synced
//! (every frame header records the offset below which the log was durable when it was written).
//! Any other bad frame is a torn, unsynced write: the log is cut there. A truncation interrupted
//! by a crash is finished (its intent is persisted first). Metadata files are replaced atomically
//! (write, fsync, rename, fsync the directory).
//!
//! After a failed write or sync the partition refuses appends ([`Error::Failed`]): the state of
//! the file is unknown until a reopen recovers it. All writes and syncs go through the [`Io`]
//! seam, where tests inject faults ([`FaultyIo`]).

mod compact;
mod error;
mod frame;
mod fsutil;
mod index;
mod io;
mod maintenance;
mod options;
mod partition;
mod progress;
mod reader;
mod schema;
mod segment;
mod store;
mod stream;

pub use error::{Error, Result};
pub use frame::{MAX_FRAME_BODY, Tag};
pub use io::{Fault, FaultyIo, Io, StdIo};
pub use options::{Durability, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, Retention, StreamOptions};
pub use partition::{AppendAck, EncodedBatch, PendingAppend};
pub use progress::Wait;
pub use reader::{ReadBatch, ReadFrom, Reader};
pub use store::{MAX_NAME_LEN, MAX_STREAMS, Store, StoreOptions};
pub use stream::{Stream, StreamInfo};
