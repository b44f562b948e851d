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
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result as DfResult, ScalarValue, plan_err};
use datafusion::datasource::TableProvider;
use datafusion::logical_expr::{
    Expr, LogicalPlan, Projection, SubqueryAlias, TableProviderFilterPushDown, TableScan, TableType,
};
use datafusion::physical_plan::ExecutionPlan;
use kappa_sql::graph::Versioned;
use std::collections::HashMap;

use crate::engine::{Engine, Inner};
use crate::error::{Error, Result};
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
        Ok(Arc::new(AsOfTable {
            stream: table.name.clone(),
            time: time.clone(),
            source,
            versions: None,
        }))
    }
}

/// A stream read `FOR SYSTEM_TIME AS OF time`.
#[derive(Debug)]
pub(crate) struct AsOfTable {
    stream: String,
    time: String,
    source: Arc<dyn TableProvider>,
    /// When the stream stands for a deduplicating view ([`Engine::expand_versions`]).
    versions: Option<Versioned>,
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
pub(crate) fn as_of(scan: &TableScan) -> Option<kappa_sql::graph::AsOf> {
    let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
    let any: &dyn Any = provider.as_ref();
    let t = any.downcast_ref::<AsOfTable>()?;
    Some(kappa_sql::graph::AsOf {
        stream: t.stream.clone(),
        time: t.time.clone(),
        versions: t.versions.clone(),
    })
}

/// Whether `plan` reads a table `FOR SYSTEM_TIME AS OF` (a temporal join needs the event
/// times of both sides, which the query may not select).
pub(crate) fn reads_as_of(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(s) = node
            && as_of(s).is_some()
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

impl Engine {
    /// Replace the scans of deduplicating materialized views read `FOR SYSTEM_TIME AS OF` an
    /// event time by their versions ([`kappa_sql::versions`]): the views' input streams read
    /// through their filters and projections, as tables of versions. `None` when `plan` reads
    /// no view so.
    ///
    /// # Errors
    /// When such a view is not a deduplication, or its query no longer plans.
    pub(crate) async fn expand_versions(
        &self,
        plan: &LogicalPlan,
        at: Option<kappa_sql::Location>,
    ) -> Result<Option<(LogicalPlan, Vec<String>)>> {
        let mut views: Vec<String> = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(s) = node
                && let Some(a) = as_of(s)
                && !a.processing_time()
                && self.inner.catalog().is_view(&a.stream)
            {
                views.push(a.stream);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if views.is_empty() {
            return Ok(None);
        }
        views.sort();
        views.dedup();
        let mut versions = HashMap::new();
        for view in &views {
            let view = view.clone();
            let job =
                self.inner.catalog().jobs.get(&view).map(|j| (j.query.clone(), j.reads.clone()));
            let Some((query, reads)) = job else {
                return Err(Error::plan(format!("view '{view}' has no job"), at));
            };
            let kappa_sql::Statement::CreateMaterializedView { mut query, .. } =
                kappa_sql::parse_one(&query)?.statement
            else {
                return Err(Error::plan(format!("view '{view}' has no query"), at));
            };
            // (A view's version in a cascade reads the new versions of its inputs.)
            kappa_sql::rename::rename_tables(&mut query, &reads)?;
            let planned = self.plan_query(query, at).await?;
            let (optimized, state) = self.optimize_continuous(&planned, at)?;
            let streams = |name: &str| crate::view::stream_info(&self.inner, name);
            let v = kappa_sql::versions::dedup_versions(&view, &optimized, &state, at, &streams)?;
            versions.insert(view, v);
        }
        let expanded = plan
            .clone()
            .transform_up_with_subqueries(|node| {
                let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
                let Some(a) = as_of(scan).filter(|a| !a.processing_time()) else {
                    return Ok(Transformed::no(node));
                };
                let Some(v) = versions.get(&a.stream) else { return Ok(Transformed::no(node)) };
                let versioned = Versioned { view: a.stream.clone(), keys: v.keys.clone() };
                let read = self.read_versions(&v.plan, &a.time, &versioned)?;
                // The columns the scan reads, under its name.
                if !scan.filters.is_empty() || scan.fetch.is_some() {
                    return plan_err!(
                        "view {} read as of {}: a scan with filters",
                        a.stream,
                        a.time
                    );
                }
                let read = match &scan.projection {
                    Some(columns) => {
                        let all = read.schema().columns();
                        let exprs = columns
                            .iter()
                            .map(|i| match all.get(*i) {
                                Some(c) => Ok(Expr::Column(c.clone())),
                                None => plan_err!("view {} has no column {i}", a.stream),
                            })
                            .collect::<DfResult<Vec<_>>>()?;
                        LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(read))?)
                    }
                    None => read,
                };
                let alias = SubqueryAlias::try_new(Arc::new(read), scan.table_name.clone())?;
                Ok(Transformed::yes(LogicalPlan::SubqueryAlias(alias)))
            })
            .and_then(|t| {
                t.data.transform_up_with_subqueries(|n| n.recompute_schema().map(Transformed::yes))
            })
            .map_err(|e| crate::error::planning(e, at))?;
        Ok(Some((expanded.data, views)))
    }

    /// A view's versions with each stream it reads read `FOR SYSTEM_TIME AS OF time`.
    fn read_versions(
        &self,
        plan: &LogicalPlan,
        time: &str,
        versioned: &Versioned,
    ) -> DfResult<LogicalPlan> {
        let read = plan.clone().transform_up(|node| {
            let LogicalPlan::TableScan(scan) = &node else { return Ok(Transformed::no(node)) };
            let name = scan.table_name.table().to_string();
            let stream = self
                .inner
                .stream(&name, None)
                .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
            let table = AsOfTable {
                stream: name,
                time: time.to_string(),
                source: Arc::new(StreamTable::new(stream)),
                versions: Some(versioned.clone()),
            };
            let mut scan = scan.clone();
            scan.source = datafusion::datasource::provider_as_source(Arc::new(table));
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })?;
        Ok(read.data)
    }
}
