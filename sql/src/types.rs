//! SQL column declarations to Arrow schemas, with DataFusion's type mapping.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{TableReference, plan_err};
use datafusion::logical_expr::planner::ContextProvider;
use datafusion::logical_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion::sql::planner::SqlToRel;
use sqlparser::ast::{ColumnDef, ColumnOption};

use crate::error::{Error, Location, Result};

/// A context that knows no tables or functions: enough to map column types.
struct TypesOnly {
    options: ConfigOptions,
}

impl ContextProvider for TypesOnly {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion::common::Result<Arc<dyn TableSource>> {
        plan_err!("no table {name} here")
    }
    fn get_function_meta(&self, _: &str) -> Option<Arc<ScalarUDF>> {
        None
    }
    fn get_higher_order_meta(&self, _: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }
    fn get_aggregate_meta(&self, _: &str) -> Option<Arc<AggregateUDF>> {
        None
    }
    fn get_window_meta(&self, _: &str) -> Option<Arc<WindowUDF>> {
        None
    }
    fn get_variable_type(&self, _: &[String]) -> Option<DataType> {
        None
    }
    fn options(&self) -> &ConfigOptions {
        &self.options
    }
    fn udf_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udaf_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The Arrow schema of declared columns: DataFusion's SQL type mapping (`BIGINT` is `Int64`,
/// `VARCHAR` is `Utf8`, ...), names normalized (unquoted: lower case), `NOT NULL` kept.
/// `TIMESTAMP(p)` maps to the unit of its precision (0: seconds, 3: milliseconds, 6:
/// microseconds, 9 or none: nanoseconds).
///
/// # Errors
/// [`Error::Plan`] for a type DataFusion does not know, a duplicate column, or a column option
/// other than `NULL` / `NOT NULL`.
pub fn schema_of(
    columns: &[ColumnDef],
    locations: &[Option<Location>],
    at: Option<Location>,
) -> Result<Schema> {
    let at_column = |i: usize| locations.get(i).copied().flatten().or(at);
    for (i, c) in columns.iter().enumerate() {
        let at = at_column(i);
        for o in &c.options {
            if !matches!(o.option, ColumnOption::Null | ColumnOption::NotNull) {
                return Err(Error::not_supported(
                    format!("the column option {} (on column {})", o.option, c.name),
                    at,
                ));
            }
        }
    }
    let mut options = ConfigOptions::default();
    // Streams store `Utf8` (what CSV, JSON and most Parquet files hold); the engine's session
    // uses the same setting, so that casts agree.
    options.sql_parser.map_string_types_to_utf8view = false;
    let provider = TypesOnly { options };
    let planner = SqlToRel::new(&provider);
    let schema = planner.build_schema(columns.to_vec()).map_err(|e| {
        // Locate the column at fault.
        let culprit = (0..columns.len())
            .find(|i| planner.build_schema(vec![columns[*i].clone()]).is_err())
            .and_then(at_column);
        Error::plan(e.message().to_string(), culprit.or(at))
    })?;
    let mut seen = std::collections::HashSet::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if !seen.insert(f.name().clone()) {
            return Err(Error::plan(
                format!("column {} is declared twice", f.name()),
                at_column(i),
            ));
        }
    }
    Ok(schema)
}

/// Whether a type can be an event-time column.
pub fn is_timestamp(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Statement;

    fn columns(sql: &str) -> Vec<ColumnDef> {
        match crate::parse_one(sql).unwrap().statement {
            Statement::CreateStream(c) => c.columns,
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn sql_types_map_to_arrow() {
        let s = schema_of(
            &columns("CREATE STREAM s (Id BIGINT NOT NULL, name VARCHAR, p DOUBLE, ts TIMESTAMP(3), \"Q\" INT)"),
            &[],
            None,
        )
        .unwrap();
        let got: Vec<(String, DataType, bool)> = s
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect();
        assert_eq!(got[0], ("id".into(), DataType::Int64, false));
        assert_eq!(got[1].1, DataType::Utf8);
        assert_eq!(got[2].1, DataType::Float64);
        assert_eq!(
            got[3].1,
            DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None)
        );
        assert_eq!(got[4], ("Q".into(), DataType::Int32, true));
        let e = schema_of(&columns("CREATE STREAM s (a INT, A BIGINT)"), &[], None).unwrap_err();
        assert!(e.to_string().contains("declared twice"), "{e}");
        let e = schema_of(&columns("CREATE STREAM s (a INT DEFAULT 3)"), &[], None).unwrap_err();
        assert!(matches!(e, Error::NotSupported { .. }), "{e}");
    }
}
