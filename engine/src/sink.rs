//! Sink tables: `CREATE TABLE t (...) WITH ('connector' = 'blackhole')`, Flink's sink that
//! discards what it is given (the Nexmark queries measure with it).
//!
//! A sink is a catalog entry (its `CREATE TABLE` statement, parsed again on open for its
//! columns) and a DataFusion table of that schema, so that `INSERT INTO t SELECT ...` is
//! planned and cast to its columns as for a stream. The job that feeds it runs the pipeline and
//! counts the rows (`SHOW JOBS`), but writes nothing. Reading a sink is an error.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::DataFusionError;
use datafusion::datasource::TableProvider;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use kappa_sql::Location;
use kappa_sql::ast::CreateStream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The connectors a sink table may have.
pub(crate) const SINK_CONNECTORS: &[&str] = &["blackhole"];

/// A sink's catalog entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SinkEntry {
    /// `blackhole`.
    pub connector: String,
    /// The `CREATE TABLE` statement (its columns give the schema).
    pub statement: String,
}

/// The schema a sink declaration gives.
///
/// # Errors
/// When a column's type is not supported, or the declaration has a watermark or no columns.
pub(crate) fn schema_of(c: &CreateStream, at: Option<Location>) -> Result<SchemaRef> {
    if c.columns.is_empty() {
        return Err(Error::plan(
            format!(
                "the sink table '{}' needs its columns: CREATE TABLE {} (col type, ...)",
                c.name, c.name
            ),
            at,
        ));
    }
    if c.watermark.is_some() || c.query.is_some() {
        return Err(Error::plan(
            "a sink table takes columns only (no WATERMARK, no AS SELECT)",
            at,
        ));
    }
    Ok(Arc::new(kappa_sql::types::schema_of(&c.columns, &c.column_locations, at)?))
}

/// The schema of a sink from its catalog entry.
///
/// # Errors
/// When the stored statement no longer parses as a sink declaration.
pub(crate) fn schema_of_entry(name: &str, entry: &SinkEntry) -> Result<SchemaRef> {
    match kappa_sql::parse_one(&entry.statement)?.statement {
        kappa_sql::Statement::CreateTable(c) => schema_of(&c, None),
        _ => Err(Error::plan(
            format!("the catalog entry of sink '{name}' is not a CREATE TABLE"),
            None,
        )),
    }
}

/// A sink as a DataFusion table: it has a schema (for `INSERT` planning) and cannot be read.
#[derive(Debug)]
pub(crate) struct SinkTable {
    pub name: String,
    pub connector: String,
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SinkTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Plan(format!(
            "table '{}' is a sink (connector '{}'): it keeps no rows to read",
            self.name, self.connector
        )))
    }
}
