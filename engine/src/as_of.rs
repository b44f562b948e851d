//! `t FOR SYSTEM_TIME AS OF e`: sqlparser's generic dialect does not parse the clause, so the
//! parser rewrites it into a call of the table function `__as_of(t, 'e')`
//! ([`kappa_sql::parse`]), planned here as a scan of stream `t` that remembers `e`. A snapshot
//! query reads the table as it is; a continuous query's join with it is a lookup join
//! ([`kappa_sql::graph::AsOf`]).

use std::any::Any;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::TableProvider;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use crate::engine::Inner;
use crate::table::StreamTable;

/// The table function `__as_of`.
#[derive(Debug)]
pub(crate) struct AsOfFunction {
    pub inner: Weak<Inner>,
}

impl TableFunctionImpl for AsOfFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let (Some(Expr::Column(table)), Some(Expr::Literal(ScalarValue::Utf8(Some(time)), _))) =
            (exprs.first(), exprs.get(1))
        else {
            return plan_err!(
                "FOR SYSTEM_TIME AS OF follows a table's name: t FOR SYSTEM_TIME AS OF PROCTIME()"
            );
        };
        let Some(inner) = self.inner.upgrade() else {
            return plan_err!("the engine is closed");
        };
        // A view's rows as published (its changelog is what a job reads); a stream's rows.
        let view = inner.views.lock().unwrap_or_else(|p| p.into_inner()).get(&table.name).cloned();
        let source: Arc<dyn TableProvider> = match view {
            Some(state) => Arc::new(crate::view::ViewTable { state }),
            None => {
                let stream = inner
                    .stream(&table.name, None)
                    .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
                Arc::new(StreamTable::new(stream))
            }
        };
        Ok(Arc::new(AsOfTable { stream: table.name.clone(), time: time.clone(), source }))
    }
}

/// A stream read `FOR SYSTEM_TIME AS OF time`.
#[derive(Debug)]
pub(crate) struct AsOfTable {
    stream: String,
    time: String,
    source: Arc<dyn TableProvider>,
}

#[async_trait]
impl TableProvider for AsOfTable {
    fn schema(&self) -> SchemaRef {
        self.source.schema()
    }

    fn table_type(&self) -> TableType {
        self.source.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.source.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.source.scan(state, projection, filters, limit).await
    }
}

/// The table a scan reads `FOR SYSTEM_TIME AS OF`, if it is one.
pub(crate) fn as_of(scan: &datafusion::logical_expr::TableScan) -> Option<kappa_sql::graph::AsOf> {
    let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
    let any: &dyn Any = provider.as_ref();
    let t = any.downcast_ref::<AsOfTable>()?;
    Some(kappa_sql::graph::AsOf { stream: t.stream.clone(), time: t.time.clone() })
}
