//! `kappa-sql`: the SQL front end of kappa.
//!
//! - [`parse`] turns SQL text into kappa's [`Statement`]s: sqlparser's tokenizer and parser
//!   (`GenericDialect`) with kappa's statements (`CREATE STREAM ... WATERMARK FOR`, `SEAL
//!   STREAM`, `SHOW STREAMS`, `EMIT ...`) parsed on top (see the `parser` module). Queries stay
//!   sqlparser ASTs, which DataFusion's `SqlToRel` plans.
//! - [`stream_plan`] checks a DataFusion `LogicalPlan` for what kappa can run continuously and
//!   compiles it into a [`stream_plan::StatelessPlan`]: per input stream, a chain of filters
//!   and projections as DataFusion physical expressions, which the engine runs on every batch.
//!
//! Errors carry the line and column of the problem in the statement when known
//! ([`Error::location`]). See `docs/ARCHITECTURE.md`, sections Planning and SQL surface.

pub mod ast;
mod error;
pub mod graph;
mod group_window;
pub mod join;
mod parser;
pub mod rename;
pub mod session;
pub mod session_agg;
pub mod stream_plan;
pub mod topn;
pub mod topn_plan;
pub mod types;
pub mod updating_agg;
pub mod updating_plan;
pub mod versions;
pub mod window;
pub mod window_agg;
pub mod windowed_plan;
mod windowed_run;

pub use ast::{ParsedStatement, Statement};
pub use error::{Error, Location, Result};
pub use parser::{Piece, ident_name, parse, parse_one, split};

/// The sqlparser crate kappa's ASTs come from (the version DataFusion uses).
pub use sqlparser;
