//! The statements of kappa's SQL, as parsed (see `docs/ARCHITECTURE.md`, SQL surface).
//!
//! Queries and expressions stay sqlparser ASTs, so that DataFusion's `SqlToRel` plans them.

use sqlparser::ast::{ColumnDef, Expr, Query};

use crate::error::Location;

/// A statement with where it came from.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    /// The statement.
    pub statement: Statement,
    /// Where its first token is in the parsed text.
    pub location: Location,
    /// Its text, without the terminating semicolon.
    pub text: String,
}

/// One statement of kappa's SQL.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE STREAM s (...) [WITH (...)]`, or `CREATE STREAM s [WITH (...)] AS SELECT ...`.
    CreateStream(CreateStream),
    /// Flink's `CREATE TABLE t (...) WITH ('connector' = ...)`: a source or sink declaration.
    CreateTable(CreateStream),
    /// `CREATE [OR REPLACE] MATERIALIZED VIEW [IF NOT EXISTS] v [WITH (...)] AS SELECT ...`.
    CreateMaterializedView {
        /// The view's name.
        name: String,
        /// `OR REPLACE`.
        or_replace: bool,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// `WITH (key = 'value', ...)`, as written.
        options: Vec<(String, String)>,
        /// The query.
        query: Box<Query>,
        /// Its `EMIT` clause, if any.
        emit: Option<Emit>,
    },
    /// `ALTER STREAM|MATERIALIZED VIEW x REBUILD [FROM OFFSET n | FROM TIMESTAMP t]`.
    Rebuild {
        /// What is rebuilt.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// The starting point, if not the earliest retained input.
        from: Option<RebuildFrom>,
    },
    /// `INSERT INTO s [(cols)] VALUES ...` or `INSERT INTO s [(cols)] SELECT ...`.
    Insert {
        /// The target stream.
        stream: String,
        /// Where the target's name is.
        stream_location: Option<Location>,
        /// The listed columns (empty: all, in order).
        columns: Vec<String>,
        /// `VALUES` or a query.
        source: Box<Query>,
        /// The whole statement as sqlparser parsed it (DataFusion plans it: it types `VALUES`
        /// by the target's columns).
        statement: Box<sqlparser::ast::Statement>,
    },
    /// `COPY s FROM 'path' [WITH] (...)`.
    CopyFrom {
        /// The target stream.
        stream: String,
        /// The file.
        path: String,
        /// Format options.
        options: CopyOptions,
    },
    /// `COPY s TO 'path' ...` or `COPY (query) TO 'path' ...`.
    CopyTo {
        /// A stream or a query.
        source: CopySource,
        /// The file.
        path: String,
        /// Format options.
        options: CopyOptions,
    },
    /// `RESUME JOB j`: restart a failed job from its last checkpoint.
    Resume {
        /// The job.
        job: String,
    },
    /// `SEAL STREAM s`.
    Seal {
        /// The stream.
        stream: String,
    },
    /// A query: a snapshot without `EMIT`, a push query with it.
    Query {
        /// The query (without its `EMIT` clause).
        query: Box<Query>,
        /// The `EMIT` clause.
        emit: Option<Emit>,
    },
    /// `SHOW STREAMS | TABLES | VIEWS | JOBS | DATAFLOW`.
    Show(ShowObject),
    /// `DESCRIBE x`.
    Describe {
        /// The stream, table or view.
        name: String,
    },
    /// `EXPLAIN statement` or `EXPLAIN DATAFLOW x`.
    Explain {
        /// What is explained.
        target: ExplainTarget,
    },
    /// `DROP STREAM | TABLE | MATERIALIZED VIEW | VIEW | JOB [IF EXISTS] x`.
    Drop {
        /// What kind of object.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SET name = value`.
    Set {
        /// The setting.
        name: String,
        /// Its value, as written (strings unquoted).
        value: String,
    },
}

/// The declaration of a stream (or of a Flink-style table).
#[derive(Debug, Clone, Default)]
pub struct CreateStream {
    /// The name.
    pub name: String,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// Declared columns (empty for `AS SELECT`).
    pub columns: Vec<ColumnDef>,
    /// Where each declared column starts.
    pub column_locations: Vec<Option<Location>>,
    /// `WATERMARK FOR col AS expr`.
    pub watermark: Option<Watermark>,
    /// `WITH (k = v, ...)`: keys lower-cased, values unquoted.
    pub options: Vec<(String, String)>,
    /// `AS SELECT ...` with its `EMIT` clause.
    pub query: Option<(Box<Query>, Option<Emit>)>,
}

/// `WATERMARK FOR column AS expression`.
#[derive(Debug, Clone)]
pub struct Watermark {
    /// The event-time column.
    pub column: String,
    /// The watermark expression (over the row's columns).
    pub expr: Expr,
    /// The expression's text.
    pub expr_text: String,
    /// Where the column name after `WATERMARK FOR` is.
    pub location: Option<Location>,
}

/// The `EMIT` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Emit {
    /// `EMIT FINAL`.
    Final,
    /// `EMIT CHANGES [EVERY interval]`.
    Changes {
        /// `EVERY INTERVAL '5' SECOND`.
        every: Option<Box<Expr>>,
    },
}

/// What `SHOW` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowObject {
    /// `SHOW STREAMS`.
    Streams,
    /// `SHOW TABLES`.
    Tables,
    /// `SHOW VIEWS`.
    Views,
    /// `SHOW JOBS`.
    Jobs,
    /// `SHOW DATAFLOW [FORMAT TEXT | DOT]`.
    Dataflow {
        /// `FORMAT DOT`: Graphviz.
        dot: bool,
    },
}

/// Kinds of catalog objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A stream.
    Stream,
    /// A Flink-style table (source or sink).
    Table,
    /// A materialized view.
    MaterializedView,
    /// A (non-materialized) view.
    View,
    /// A job.
    Job,
}

impl ObjectKind {
    /// The SQL words for the kind.
    pub fn sql(&self) -> &'static str {
        match self {
            ObjectKind::Stream => "STREAM",
            ObjectKind::Table => "TABLE",
            ObjectKind::MaterializedView => "MATERIALIZED VIEW",
            ObjectKind::View => "VIEW",
            ObjectKind::Job => "JOB",
        }
    }
}

/// Where a rebuild starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildFrom {
    /// `FROM OFFSET n`.
    Offset(u64),
    /// `FROM TIMESTAMP 'text'`.
    Timestamp(String),
}

/// What `EXPLAIN` explains.
#[derive(Debug, Clone)]
pub enum ExplainTarget {
    /// A statement.
    Statement(Box<ParsedStatement>),
    /// `EXPLAIN WINDOW job`: why its windows have not closed.
    Window(String),
    /// `EXPLAIN DATAFLOW x [FORMAT TEXT | DOT]`.
    Dataflow {
        /// The stream, view, table or job.
        name: String,
        /// `FORMAT DOT`: Graphviz.
        dot: bool,
    },
}

/// The source of `COPY ... TO`.
#[derive(Debug, Clone)]
pub enum CopySource {
    /// A stream, whole.
    Stream(String),
    /// A query.
    Query(Box<Query>),
}

/// File formats of `COPY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values.
    Csv,
    /// JSON lines (one object per line).
    Json,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The format a file name's extension implies.
    pub fn from_path(path: &str) -> Option<FileFormat> {
        let lower = path.to_ascii_lowercase();
        let ext = lower.rsplit('.').next()?;
        match ext {
            "csv" | "tsv" => Some(FileFormat::Csv),
            "json" | "jsonl" | "ndjson" => Some(FileFormat::Json),
            "parquet" | "pq" => Some(FileFormat::Parquet),
            _ => None,
        }
    }

    /// Parse a `FORMAT` option value.
    pub fn from_name(name: &str) -> Option<FileFormat> {
        match name.to_ascii_lowercase().as_str() {
            "csv" => Some(FileFormat::Csv),
            "json" | "jsonl" | "ndjson" => Some(FileFormat::Json),
            "parquet" => Some(FileFormat::Parquet),
            _ => None,
        }
    }

    /// The format's name.
    pub fn name(&self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// Options of `COPY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `FORMAT`; from the file extension when absent.
    pub format: Option<FileFormat>,
    /// `HEADER` (CSV): whether the first line names the columns. Default true.
    pub header: Option<bool>,
    /// `DELIMITER` (CSV). Default `,`.
    pub delimiter: Option<u8>,
}
