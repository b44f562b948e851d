//! Reading a table under another name: a job rebuilt in a cascade (`ALTER ... REBUILD` of a
//! stream it reads) runs its own query over the new versions of its inputs until they take
//! over. Its text stays as written; before planning, each `FROM x` of a renamed `x` becomes
//! `FROM x__v2 AS x`, so that the query's qualified columns (`x.a`) keep their meaning.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectNamePart, Query, TableAlias, TableFactor,
    VisitMut, VisitorMut,
};

use crate::error::{Error, Result};

/// The table function the parser makes of `FOR SYSTEM_TIME AS OF` an event time.
const AS_OF: &str = "__as_of";

/// A table's name as the planner resolves it: unquoted names are lower case.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

struct Renamer<'a> {
    map: &'a BTreeMap<String, String>,
}

impl VisitorMut for Renamer<'_> {
    type Break = Error;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<Error> {
        // A common table expression of a renamed name would be renamed with it.
        let shadowing = query.with.as_ref().and_then(|w| {
            w.cte_tables.iter().find(|c| self.map.contains_key(&normalized(&c.alias.name)))
        });
        match shadowing {
            Some(c) => ControlFlow::Break(Error::NotSupported {
                feature: format!(
                    "rebuilding a query whose WITH clause names '{}' like the stream it reads",
                    c.alias.name.value
                ),
                location: None,
            }),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Error> {
        let TableFactor::Table { name, alias, args, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return ControlFlow::Continue(());
        };
        // A table function reading a stream names it first: `TUMBLE(x, ts, ...)`, and the
        // parser's `__as_of(x, 'e')` for `x FOR SYSTEM_TIME AS OF e`.
        if let Some(args) = args {
            let function = normalized(ident);
            let reads_table =
                function == AS_OF || crate::window::WINDOW_FUNCTIONS.contains(&function.as_str());
            if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(table)))) =
                args.args.first_mut().filter(|_| reads_table)
                && let Some(to) = self.map.get(&normalized(table))
            {
                *table = Ident::with_quote('"', to.clone());
            }
            return ControlFlow::Continue(());
        }
        let written = normalized(ident);
        let Some(to) = self.map.get(&written) else { return ControlFlow::Continue(()) };
        if alias.is_none() {
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::with_quote('"', written.clone()),
                columns: Vec::new(),
                at: None,
            });
        }
        name.0 = vec![ObjectNamePart::Identifier(Ident::with_quote('"', to.clone()))];
        ControlFlow::Continue(())
    }
}

/// Make `query` read each table `from` of `map` as table `to`, under its old name.
///
/// # Errors
/// [`Error::NotSupported`] when a `WITH` clause names a common table expression like a
/// renamed table.
pub fn rename_tables(query: &mut Query, map: &BTreeMap<String, String>) -> Result<()> {
    if map.is_empty() {
        return Ok(());
    }
    match query.visit(&mut Renamer { map }) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(sql: &str) -> Result<String> {
        let mut stmt = crate::parse_one(sql)?.statement;
        let map = BTreeMap::from([("x".to_string(), "x__v2".to_string())]);
        match &mut stmt {
            crate::Statement::Query { query, .. } => {
                rename_tables(query, &map)?;
                Ok(query.to_string())
            }
            _ => panic!("not a query"),
        }
    }

    #[test]
    fn tables_are_read_under_their_old_names() {
        assert_eq!(
            renamed("SELECT x.a, count(*) FROM x GROUP BY x.a").unwrap(),
            r#"SELECT x.a, count(*) FROM "x__v2" AS "x" GROUP BY x.a"#
        );
        assert_eq!(
            renamed("SELECT * FROM X AS t JOIN y ON t.a = y.a").unwrap(),
            r#"SELECT * FROM "x__v2" AS t JOIN y ON t.a = y.a"#
        );
        assert_eq!(
            renamed("SELECT * FROM (SELECT * FROM x) WHERE a IN (SELECT a FROM x)").unwrap(),
            r#"SELECT * FROM (SELECT * FROM "x__v2" AS "x") WHERE a IN (SELECT a FROM "x__v2" AS "x")"#
        );
        assert_eq!(
            renamed("SELECT window_end, count(*) FROM TUMBLE(x, ts, INTERVAL '1' SECOND) GROUP BY window_end").unwrap(),
            r#"SELECT window_end, count(*) FROM tumble("x__v2", ts, INTERVAL '1' SECOND) GROUP BY window_end"#
        );
        assert!(
            renamed("SELECT * FROM o JOIN x FOR SYSTEM_TIME AS OF o.ts AS r ON o.k = r.k")
                .unwrap()
                .contains(r#""x__v2""#)
        );
        // A quoted name keeps its case: "X" is another table.
        assert_eq!(renamed(r#"SELECT * FROM "X""#).unwrap(), r#"SELECT * FROM "X""#);
    }

    #[test]
    fn a_common_table_expression_of_the_name_is_refused() {
        let e = renamed("WITH x AS (SELECT 1 AS a) SELECT * FROM x").unwrap_err();
        assert!(e.to_string().contains("WITH clause names 'x'"), "{e}");
    }
}
