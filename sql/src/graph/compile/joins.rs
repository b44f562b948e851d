//! Compiling a join node of the graph: its kind, keys and the bounds that let its state go
//! (interval conditions, windows, the other side's watermark), lookup joins and temporal
//! joins (against a stream, a sealed table or a deduplicating view's versions).

use datafusion::common::{Column, DFSchema, JoinType};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator};

use super::*;
use crate::join::{JoinKind, JoinSpec, Lookup, Temporal};

impl Builder<'_> {
    pub(super) fn join(
        &mut self,
        plan: &LogicalPlan,
        above: &[&LogicalPlan],
        j: &datafusion::logical_expr::Join,
    ) -> Result<usize> {
        let kind = match j.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            JoinType::LeftSemi => JoinKind::Semi(0),
            JoinType::RightSemi => JoinKind::Semi(1),
            JoinType::LeftAnti => JoinKind::Anti(0),
            JoinType::RightAnti => JoinKind::Anti(1),
            other => {
                return self.not_supported(format!("a {other} join in a continuous query"));
            }
        };
        if j.null_aware {
            return self.not_supported(
                "NOT IN over a subquery whose column may be NULL in a continuous query (NOT EXISTS is built)",
            );
        }
        if j.null_equality == datafusion::common::NullEquality::NullEqualsNull {
            return self.not_supported(
                "a join on IS NOT DISTINCT FROM (NULL keys meeting) in a continuous query",
            );
        }
        if j.on.is_empty() {
            return self.not_supported(
                "a join without an equality between its two sides in a continuous query (a cross join)",
            );
        }
        let feeds = [self.feed(&j.left)?, self.feed(&j.right)?];
        let (lookup, temporal) = self.lookup(&feeds, kind)?;
        let (ls, rs) = (j.left.schema(), j.right.schema());
        let mut keys = [Vec::new(), Vec::new()];
        let mut key_types = Vec::new();
        for (l, r) in &j.on {
            let lt = l.get_type(ls).map_err(|e| Error::plan(e.message().to_string(), self.at))?;
            let rt = r.get_type(rs).map_err(|e| Error::plan(e.message().to_string(), self.at))?;
            let t = datafusion::logical_expr::type_coercion::binary::comparison_coercion(&lt, &rt)
                .unwrap_or(lt);
            key_types.push(t);
            keys[0].push(physical(self.state, l, ls, self.at)?);
            keys[1].push(physical(self.state, r, rs, self.at)?);
        }
        // (The condition is over both sides' columns, also for a semi or anti join, whose
        // output has one side's.)
        let both = ls.join(rs).map_err(|e| Error::plan(e.message().to_string(), self.at))?;
        let filter = match &j.filter {
            Some(f) => Some(physical(self.state, f, &both, self.at)?),
            None => None,
        };
        let changelog = [self.feed_changelog(&feeds[0]), self.feed_changelog(&feeds[1])];
        let times = [self.feed_time(&feeds[0]), self.feed_time(&feeds[1])];
        let mut bound = [None, None];
        if let Some((t, time)) = &temporal {
            // Each side's event time: the versions' and the time the rows ask for.
            let p = 1 - t.table;
            let (Some(tt), Some(pt)) = (times[t.table], times[p]) else {
                return self.not_supported(
                    "a temporal join whose sides have no event time (streams with a WATERMARK, their time column selected)",
                );
            };
            let schemas = [ls, rs];
            let probe_time = schemas[p].field(pt).name();
            let asked = time.rsplit('.').next().unwrap_or(time).trim_matches('"');
            if !asked.eq_ignore_ascii_case(probe_time) {
                return Err(Error::plan(
                    format!(
                        "FOR SYSTEM_TIME AS OF {time}: a temporal join looks the table up as of the other side's event time, {probe_time}"
                    ),
                    self.at,
                ));
            }
            if let Feed::Sources(_, _, Some(a), origins) = &feeds[t.table]
                && let Some(v) = &a.versions
            {
                self.versioned_keys(v, &j.on, t.table, schemas[t.table], origins)?;
                self.uses.push(v.view.clone());
            }
            for (s, c) in [(t.table, tt), (p, pt)] {
                let col = Expr::Column(Column::from(schemas[s].qualified_field(c)));
                bound[s] = Some(physical(self.state, &col, schemas[s], self.at)?);
            }
        } else if let Some(f) = &j.filter {
            for (s, b) in bound.iter_mut().enumerate() {
                // Side s's rows meet rows of the other side o whose time is at most ...
                let o = 1 - s;
                let Some(t) = times[o] else { continue };
                let own = if s == 0 { ls } else { rs };
                let other = if o == 0 { ls } else { rs };
                let time = Column::from(other.qualified_field(t));
                if let Some(e) = upper_bound(f, &time, own) {
                    *b = Some(physical(self.state, &e, own, self.at)?);
                }
            }
        }
        // An equality of the two sides' times (windows joined on their ends) bounds both.
        for (l, r) in &j.on {
            let is_time = |e: &Expr, side: usize| match (e, times[side]) {
                (Expr::Column(c), Some(t)) => {
                    let schema = if side == 0 { ls } else { rs };
                    *c == Column::from(schema.qualified_field(t))
                }
                _ => false,
            };
            if bound[0].is_none() && is_time(r, 1) {
                bound[0] = Some(physical(self.state, l, ls, self.at)?);
            }
            if bound[1].is_none() && is_time(l, 0) {
                bound[1] = Some(physical(self.state, r, rs, self.at)?);
            }
        }
        let spec = JoinSpec {
            kind,
            keys,
            key_types,
            filter,
            pairs: Arc::clone(both.inner()),
            sides: [Arc::clone(ls.inner()), Arc::clone(rs.inner())],
            schema: Arc::clone(j.schema.inner()),
            bound,
            changelog,
            lookup,
            temporal: temporal.map(|t| t.0),
        };
        let after = above
            .iter()
            .rev()
            .map(|n| op_of(n, self.state, self.at))
            .collect::<Result<Vec<_>>>()?;
        let k = self.nodes.len();
        let out_changelog = spec.changelog_output();
        // (A deduplicating view keeps a late row, so its versions do too.)
        let late = match &spec.temporal {
            Some(t) if t.view.is_some() => {
                let mut l = [true, true];
                l[t.table] = false;
                l
            }
            Some(_) => [true, true],
            None => [spec.bounded(1), spec.bounded(0)],
        };
        self.nodes.push(GraphNode {
            op: NodeOp::Join(Box::new(spec)),
            parent: None,
            after,
            schema: Arc::clone(plan.schema().inner()),
            changelog: out_changelog,
        });
        for (s, feed) in feeds.into_iter().enumerate() {
            let port = Port { node: k, input: s };
            match feed {
                Feed::Node(c) => self.nodes[c].parent = Some(port),
                Feed::Sources(list, ..) => {
                    for i in list {
                        let src = &mut self.sources[i].0;
                        src.to = port;
                        if !late[s] {
                            src.late_by = None;
                        }
                    }
                }
            }
        }
        Ok(k)
    }

    /// The lookup of a join whose side reads a table `FOR SYSTEM_TIME AS OF PROCTIME()`.
    #[allow(clippy::type_complexity)]
    pub(super) fn lookup(
        &self,
        feeds: &[Feed; 2],
        kind: JoinKind,
    ) -> Result<(Option<Lookup>, Option<(Temporal, String)>)> {
        let of = |f: &Feed| match f {
            Feed::Sources(list, _, Some(a), _) => Some((list.clone(), a.clone())),
            _ => None,
        };
        let (table, (list, a)) = match (of(&feeds[0]), of(&feeds[1])) {
            (None, None) => return Ok((None, None)),
            (Some(x), None) => (0, x),
            (None, Some(x)) => (1, x),
            (Some(_), Some(_)) => {
                return self.not_supported("a join of two tables FOR SYSTEM_TIME AS OF");
            }
        };
        let probe = 1 - table;
        let sealed = list
            .iter()
            .all(|i| (self.streams)(&self.sources[*i].1.pipeline.stream).is_some_and(|s| s.sealed));
        // A sealed table without event time (a filesystem table): its rows hold from the
        // beginning of time, so as of any time it is all of them: a lookup of it read whole.
        let timeless = sealed
            && !self.feed_changelog(&feeds[table])
            && self.feed_time(&feeds[table]).is_none();
        if !a.processing_time() && !timeless {
            if !matches!(
                (kind, probe),
                (JoinKind::Inner, _) | (JoinKind::Left, 0) | (JoinKind::Right, 1)
            ) {
                return self.not_supported(format!(
                    "{} with a table FOR SYSTEM_TIME AS OF (a temporal join is a JOIN, or a LEFT JOIN keeping the rows that look up)",
                    kind.sql()
                ));
            }
            if self.feed_changelog(&feeds[0]) || self.feed_changelog(&feeds[1]) {
                return self.not_supported(
                    "a temporal join as of the event time of a changelog (a view's versions)",
                );
            }
            let view = a.versions.as_ref().map(|v| v.view.clone());
            return Ok((None, Some((Temporal { table, view }, a.time.clone()))));
        }
        if !matches!(
            (kind, probe),
            (JoinKind::Inner, _) | (JoinKind::Left, 0) | (JoinKind::Right, 1)
        ) {
            return self.not_supported(format!(
                "{} with a table FOR SYSTEM_TIME AS OF (a lookup join is a JOIN, or a LEFT JOIN keeping the rows that look up)",
                kind.sql()
            ));
        }
        if self.feed_changelog(&feeds[probe]) {
            return self
                .not_supported("a lookup join of a changelog (its rows look the table up once)");
        }
        Ok((Some(Lookup { table, whole: sealed }), None))
    }

    /// A temporal join with a deduplicating view joins on the view's key (it holds one row
    /// per key as of any time).
    pub(super) fn versioned_keys(
        &self,
        v: &Versioned,
        on: &[(Expr, Expr)],
        table: usize,
        schema: &DFSchema,
        origins: &[Option<String>],
    ) -> Result<()> {
        let mut joined: Vec<String> = Vec::with_capacity(on.len());
        for pair in on {
            let e = if table == 0 { &pair.0 } else { &pair.1 };
            let name = match e {
                Expr::Column(c) => {
                    schema.index_of_column(c).ok().and_then(|i| origins.get(i).cloned().flatten())
                }
                _ => None,
            };
            joined.push(name.unwrap_or_else(|| e.to_string()));
        }
        let (mut a, mut b) = (joined.clone(), v.keys.clone());
        a.sort();
        a.dedup();
        b.sort();
        b.dedup();
        if a != b {
            return Err(Error::plan(
                format!(
                    "a temporal join with view {} as of the event time joins on the view's key ({}), as it holds one row per key; this one joins on {}",
                    v.view,
                    v.keys.join(", "),
                    joined.join(", ")
                ),
                self.at,
            ));
        }
        Ok(())
    }
}

/// From a join's condition: a bound on the time of the other side's rows (column `time` of
/// the other side) that a conjunct puts as an expression over this side's columns (`own`):
/// `time <= e`, `time < e`, `e >= time`, `time BETWEEN .. AND e`, also with `time + c` or
/// `time - c` for a constant `c`.
fn upper_bound(filter: &Expr, time: &Column, own: &DFSchema) -> Option<Expr> {
    let over_own = |e: &Expr| {
        let cols = e.column_refs();
        !cols.is_empty() && cols.iter().all(|c| own.has_column(c))
    };
    // `lo <= hi` with lo the time (plus or minus a constant): hi (minus or plus it).
    let bound_of = |lo: &Expr, hi: &Expr| -> Option<Expr> {
        if !over_own(hi) {
            return None;
        }
        match lo {
            Expr::Column(c) if c == time => Some(hi.clone()),
            Expr::BinaryExpr(BinaryExpr { left, op, right })
                if matches!(left.as_ref(), Expr::Column(c) if c == time)
                    && right.column_refs().is_empty() =>
            {
                match op {
                    Operator::Minus => Some(hi.clone() + right.as_ref().clone()),
                    Operator::Plus => Some(hi.clone() - right.as_ref().clone()),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    for c in split_conjunction(filter) {
        let found = match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::Lt | Operator::LtEq => bound_of(left, right),
                Operator::Gt | Operator::GtEq => bound_of(right, left),
                _ => None,
            },
            Expr::Between(b) if !b.negated => bound_of(&b.expr, &b.high),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}
