//! Flink's group window functions, rewritten into window table functions:
//! `SELECT TUMBLE_START(ts, INTERVAL '10' SECOND), count(*) FROM bid GROUP BY TUMBLE(ts,
//! INTERVAL '10' SECOND)` becomes `SELECT window_start, count(*) FROM TUMBLE(bid, ts, INTERVAL
//! '10' SECOND) GROUP BY window_start, window_end`. `HOP(ts, slide, size)` likewise, and
//! `SESSION(ts, gap)`, whose sessions are partitioned by the other group keys (columns);
//! `*_START`, `*_END` and `*_ROWTIME` become `window_start`, `window_end` and `window_time`.
//! The table keeps its name (or alias) as the alias of the window function, so qualified
//! columns still resolve.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    ObjectName, Query, SetExpr, TableAlias, TableFactor, TableFunctionArgs, visit_expressions_mut,
};

use crate::error::{Error, Location, Result};

fn args(f: &Function) -> Vec<Expr> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn name_of(f: &Function) -> String {
    f.name.to_string().to_ascii_lowercase()
}

/// Rewrite the group window of `query`, if it has one.
///
/// # Errors
/// A SESSION group window with a key that is not a column, or a group window over something
/// other than one table.
pub(crate) fn rewrite(query: &mut Query, at: Option<Location>) -> Result<()> {
    let SetExpr::Select(select) = query.body.as_mut() else { return Ok(()) };
    let GroupByExpr::Expressions(keys, _) = &mut select.group_by else { return Ok(()) };
    let Some(i) = keys.iter().position(|e| {
        matches!(e, Expr::Function(f) if matches!(name_of(f).as_str(), "tumble" | "hop" | "session"))
    }) else {
        return Ok(());
    };
    let Expr::Function(f) = &keys[i] else { return Ok(()) };
    let (kind, window_args) = (name_of(f), args(f));
    let sizes = if kind == "hop" { 2 } else { 1 };
    if window_args.len() != sizes + 1 {
        return Err(Error::plan(
            format!(
                "the group window is {}",
                match kind.as_str() {
                    "tumble" => "TUMBLE(time, size)",
                    "hop" => "HOP(time, slide, size)",
                    _ => "SESSION(time, gap)",
                }
            ),
            at,
        ));
    }
    // A session per value of the other group keys: they partition the sessions.
    let mut partition = Vec::new();
    if kind == "session" {
        for (k, e) in keys.iter().enumerate() {
            match e {
                _ if k == i => {}
                Expr::Identifier(id) => partition.push(Expr::Identifier(id.clone())),
                Expr::CompoundIdentifier(parts) if !parts.is_empty() => {
                    partition.push(Expr::Identifier(parts[parts.len() - 1].clone()));
                }
                other => {
                    return Err(Error::not_supported(
                        format!(
                            "a SESSION group window with a group key that is not a column ({other})"
                        ),
                        at,
                    ));
                }
            }
        }
    }
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return Err(Error::not_supported("a group window over more than one table", at));
    }
    let TableFactor::Table { name, alias, args: table_args @ None, .. } =
        &mut select.from[0].relation
    else {
        return Err(Error::not_supported("a group window over a subquery or a function", at));
    };
    let parts: Vec<Ident> = name.0.iter().filter_map(|p| p.as_ident().cloned()).collect();
    let table = match parts.as_slice() {
        [one] => Expr::Identifier(one.clone()),
        _ => Expr::CompoundIdentifier(parts),
    };
    if alias.is_none()
        && let Some(last) = name.0.last().and_then(|p| p.as_ident().cloned())
    {
        *alias = Some(TableAlias { explicit: false, name: last, columns: Vec::new(), at: None });
    }
    let mut call = vec![table];
    // The time column unqualified: the window function reads it from its table.
    let mut window_args = window_args;
    if let Some(Expr::CompoundIdentifier(parts)) = window_args.first()
        && let Some(last) = parts.last()
    {
        window_args[0] = Expr::Identifier(last.clone());
    }
    call.extend(window_args);
    call.extend(partition);
    *table_args = Some(TableFunctionArgs {
        args: call.into_iter().map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e))).collect(),
        settings: None,
    });
    *name = ObjectName::from(vec![Ident::new(kind.clone())]);
    keys.splice(
        i..=i,
        [Expr::Identifier(Ident::new("window_start")), Expr::Identifier(Ident::new("window_end"))],
    );
    // The window's auxiliary functions, wherever they are.
    let _ = visit_expressions_mut(query, |e| {
        if let Expr::Function(f) = e {
            let n = name_of(f);
            let column = match n.strip_prefix(&format!("{kind}_")) {
                Some("start") => Some("window_start"),
                Some("end") => Some("window_end"),
                Some("rowtime") => Some("window_time"),
                _ => None,
            };
            if let Some(c) = column {
                *e = Expr::Identifier(Ident::new(c));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(())
}
