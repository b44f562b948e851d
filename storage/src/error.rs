//! The one error type of `kappa-storage`.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage layer.
///
/// Every variant names what it is about: the path of the file, the stream, the offset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error while trying to {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "fdatasync", "open", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The error the operating system reported.
        #[source]
        source: std::io::Error,
    },

    /// Data that was acknowledged as durable is damaged. Nothing was truncated.
    #[error(
        "corruption in segment {} at byte {position} (log offset {offset}): {detail}",
        segment.display()
    )]
    Corruption {
        /// The segment file.
        segment: PathBuf,
        /// The first log offset of the damaged frame (or the expected one).
        offset: u64,
        /// The byte position of the damaged frame in the segment file.
        position: u64,
        /// What exactly is wrong.
        detail: String,
    },

    /// A metadata file could not be understood.
    #[error("invalid metadata file {}: {detail}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// Another process (or another `Store` in this process) owns the data directory.
    #[error("data directory {} is in use by another kappa process{}", dir.display(), owner.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
    Locked {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about its owner, if anything.
        owner: Option<String>,
    },

    /// A batch does not have the stream's schema.
    #[error("batch does not match the schema of stream '{stream}': {detail}")]
    SchemaMismatch {
        /// The stream.
        stream: String,
        /// The columns that differ and how.
        detail: String,
    },

    /// No stream of that name.
    #[error("stream '{0}' does not exist")]
    StreamNotFound(String),

    /// A stream of that name exists already.
    #[error("stream '{0}' already exists")]
    StreamExists(String),

    /// The stream is sealed: its end is final.
    #[error("stream '{stream}' is sealed at offset {end}; appends are refused")]
    Sealed {
        /// The stream.
        stream: String,
        /// Its final end offset.
        end: u64,
    },

    /// An offset outside the retained range of a log.
    #[error("offset {requested} is outside stream '{stream}' (retained offsets {start}..{end})")]
    OffsetOutOfRange {
        /// The stream.
        stream: String,
        /// The offset asked for.
        requested: u64,
        /// The first retained offset.
        start: u64,
        /// The end (next offset to be written).
        end: u64,
    },

    /// The log was truncated below the position of a reader.
    #[error(
        "stream '{stream}' was truncated to offset {end}, below this reader's position {position}"
    )]
    ReaderTruncated {
        /// The stream.
        stream: String,
        /// The new end of the log.
        end: u64,
        /// Where the reader was.
        position: u64,
    },

    /// An earlier write or sync failed; the log refuses further appends until it is reopened,
    /// because the state of the file after a failed write or `fdatasync` is unknown.
    #[error(
        "stream '{stream}' stopped accepting writes after an I/O error ({cause}); reopen the data directory to recover"
    )]
    Failed {
        /// The stream.
        stream: String,
        /// The first error.
        cause: String,
    },

    /// The store was closed; the stream no longer takes writes.
    #[error("stream '{stream}' is closed: its store was closed")]
    Closed {
        /// The stream.
        stream: String,
    },

    /// A limit was reached.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),

    /// An argument is not valid (a name, an option, an offset below a commit).
    #[error("{0}")]
    InvalidArgument(String),

    /// Arrow could not encode or decode a batch.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl Error {
    /// Shorthand for an [`Error::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}
