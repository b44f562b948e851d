//! The engine's error type.

use std::path::PathBuf;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
pub use kappa_sql::Location;

/// What went wrong. [`Error::location`] gives the line and column in the SQL text when the
/// problem is in a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is invalid, names something unknown, or uses something not supported yet.
    #[error(transparent)]
    Sql(#[from] kappa_sql::Error),
    /// The log refused or failed.
    #[error(transparent)]
    Storage(#[from] kappa_storage::Error),
    /// DataFusion failed while executing a query.
    #[error("{}", .0.message())]
    DataFusion(#[from] DataFusionError),
    /// Arrow failed (a cast, an encoding).
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// A file of `COPY` is bad: names the file and, when known, the row and column.
    #[error("{}", copy_message(.path, *.row, .column.as_deref(), .message))]
    Copy {
        /// The file.
        path: PathBuf,
        /// The row (from 1, not counting a header line), when known.
        row: Option<u64>,
        /// The column, when known.
        column: Option<String>,
        /// The problem.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The catalog file is unreadable.
    #[error("the catalog {} is damaged: {message}", .path.display())]
    Catalog {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A job could not go on: its computation panicked, or an earlier batch failed.
    #[error("{0}")]
    Job(String),
    /// The engine was closed.
    #[error("the engine is closed")]
    Closed,
}

fn copy_message(
    path: &std::path::Path,
    row: Option<u64>,
    column: Option<&str>,
    message: &str,
) -> String {
    let mut out = format!("{}", path.display());
    if let Some(r) = row {
        out.push_str(&format!(", row {r}"));
    }
    if let Some(c) = column {
        out.push_str(&format!(", column {c}"));
    }
    out.push_str(": ");
    out.push_str(message);
    out
}

impl Error {
    /// Where in the SQL text the problem is, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Sql(e) => e.location(),
            _ => None,
        }
    }

    /// A short category for display: `syntax`, `plan`, `not supported`, `storage`,
    /// `execution`, `copy`, `io`, `catalog`, `job`, `closed`.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Sql(kappa_sql::Error::Syntax { .. }) => "syntax",
            Error::Sql(kappa_sql::Error::Plan { .. }) => "plan",
            Error::Sql(kappa_sql::Error::NotSupported { .. }) => "not supported",
            Error::Storage(_) => "storage",
            Error::DataFusion(_) | Error::Arrow(_) => "execution",
            Error::Copy { .. } => "copy",
            Error::Io { .. } => "io",
            Error::Catalog { .. } => "catalog",
            Error::Job(_) => "job",
            Error::Closed => "closed",
        }
    }

    /// A planning error (unknown name, bad type, ...).
    pub(crate) fn plan(message: impl Into<String>, at: Option<Location>) -> Error {
        Error::Sql(kappa_sql::Error::plan(message, at))
    }

    /// A "not supported yet" error.
    pub(crate) fn not_supported(feature: impl Into<String>, at: Option<Location>) -> Error {
        Error::Sql(kappa_sql::Error::not_supported(feature, at))
    }

    /// The same error, located at `at` if it is a SQL error without a location.
    pub(crate) fn or_at(self, at: Option<Location>) -> Error {
        match self {
            Error::Sql(e) => Error::Sql(e.or_at(at)),
            other => other,
        }
    }
}

/// Turn a DataFusion error met while planning a statement into a located planning error (the
/// diagnostic's span when DataFusion has one, else the statement's start).
pub(crate) fn planning(e: DataFusionError, at: Option<Location>) -> Error {
    let span =
        e.diagnostic().and_then(|d| d.span).map(|s| Location::new(s.start.line, s.start.column));
    let root = e.find_root();
    let message = match root {
        DataFusionError::NotImplemented(m) => {
            return Error::not_supported(m.trim_end_matches('.').to_string(), span.or(at));
        }
        DataFusionError::SQL(p, _) => p.to_string(),
        other => other.message().to_string(),
    };
    // "table 'datafusion.public.x' not found": name the stream as the user wrote it.
    if let Some(name) = message.strip_prefix("table '").and_then(|r| r.strip_suffix("' not found"))
    {
        let short = name.rsplit('.').next().unwrap_or(name);
        return Error::plan(format!("stream '{short}' does not exist"), span.or(at));
    }
    Error::plan(message, span.or(at))
}

/// Result of engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
