//! Cascading rebuilds: rebuilding a stream or view `x` that jobs read rebuilds them too, or
//! their results would mix the two versions of `x`. Each job `y` reading `x` (or its late
//! rows), and each reading those, gets a new version `y__v<n>` that runs `y`'s own query
//! with `x` read as `x__v<m>` (its catalog entry keeps the rename, [`JobEntry::reads`], so a
//! restart plans the same). The versions form a group, named by `x` ([`JobEntry::group`]):
//! they are created in an order where each comes after those it reads, the watcher switches
//! them together once each has caught up, in one catalog write, and cancelling or failing
//! one abandons them all. A job that appends to a stream (`INSERT INTO`) cannot be replayed
//! without writing its rows twice: a stream it reads is not rebuilt.

use std::collections::{BTreeMap, BTreeSet};

use kappa_sql::Location;

use crate::catalog::{Catalog, JobEntry};
use crate::engine::Engine;
use crate::error::{Error, Result};

/// What makes a job a new version of a stream or view.
#[derive(Debug, Clone)]
pub(crate) struct VersionOf {
    /// The stream or view it takes over.
    pub replaces: String,
    /// The stream whose rebuild started it, when that is another (a cascade).
    pub group: Option<String>,
    /// Tables its query reads under another name until the switch.
    pub reads: BTreeMap<String, String>,
    /// Where each input starts (empty: the first retained rows).
    pub start: Vec<u64>,
    /// What it may not read: the streams derived from the one rebuilt (its version would
    /// feed itself).
    pub avoid: Vec<String>,
}

/// The stream whose rebuild job `j` belongs to, if it is a new version.
pub(crate) fn root_of(j: &JobEntry) -> Option<&str> {
    j.replaces.as_ref().map(|r| j.group.as_deref().unwrap_or(r))
}

/// The versions of the rebuild of `root`, as (the name each takes over, its job), in the order
/// they were created (each after those it reads).
pub(crate) fn group(c: &Catalog, root: &str) -> Vec<(String, String)> {
    let mut out: Vec<(u32, String, String)> = c
        .jobs
        .iter()
        .filter(|(_, j)| root_of(j) == Some(root))
        .filter_map(|(v, j)| j.replaces.clone().map(|r| (j.id, r, v.clone())))
        .collect();
    out.sort();
    out.into_iter().map(|(_, r, v)| (r, v)).collect()
}

/// The jobs that read `root`, directly or through others' outputs (old versions only).
fn closure(c: &Catalog, root: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut queue = vec![root.to_string()];
    while let Some(n) = queue.pop() {
        for r in crate::rebuild::readers_of(c, &n) {
            let new = c.jobs.get(&r).is_some_and(|j| j.replaces.is_some());
            if r != root && !new && !found.iter().any(|(f, _)| *f == r) {
                found.push((r.clone(), n.clone()));
                queue.push(r);
            }
        }
    }
    found
}

/// The jobs to rebuild with `root`, each after those of them it reads.
///
/// # Errors
/// When one appends to a stream (`INSERT INTO`), is being rebuilt already, or they read
/// each other in a cycle.
pub(crate) fn downstream(c: &Catalog, root: &str, at: Option<Location>) -> Result<Vec<String>> {
    let found = closure(c, root);
    // (A new version of another rebuild reading any of them would be left reading the old
    // version.)
    for n in std::iter::once(root).chain(found.iter().map(|(r, _)| r.as_str())) {
        let versions = crate::rebuild::readers_of(c, n)
            .into_iter()
            .filter(|r| c.jobs.get(r).is_some_and(|j| j.replaces.is_some()));
        if let Some(v) = versions.into_iter().next() {
            return Err(Error::plan(
                format!(
                    "job {v}, a new version being built, reads '{n}': wait for its switch, or DROP JOB {v}"
                ),
                at,
            ));
        }
    }
    for (r, read) in &found {
        let Some(j) = c.jobs.get(r) else { continue };
        if !(j.kind.owns_output() && j.output == *r) {
            return Err(Error::not_supported(
                format!(
                    "rebuilding '{root}' while job {r} reads {read} and appends to {}: replayed, its rows would be written twice (drop the job first, and create it again after)",
                    j.output
                ),
                at,
            ));
        }
        if let Some((v, _)) = c.jobs.iter().find(|(_, v)| v.replaces.as_deref() == Some(r)) {
            return Err(Error::plan(
                format!(
                    "{r} reads {read} and is being rebuilt already, by job {v}: wait for its switch, or DROP JOB {v}"
                ),
                at,
            ));
        }
    }
    let members: BTreeSet<&str> = found.iter().map(|(r, _)| r.as_str()).collect();
    // The member of the cascade (or root) that writes `stream`, if any.
    let owner = |stream: &str| -> Option<String> {
        if stream == root || members.contains(stream) {
            return Some(stream.to_string());
        }
        let job = c.streams.get(stream).and_then(|e| e.job.clone())?;
        (job == root || members.contains(job.as_str())).then_some(job)
    };
    let mut placed: BTreeSet<String> = BTreeSet::from([root.to_string()]);
    let mut order = Vec::with_capacity(found.len());
    while order.len() < found.len() {
        let next = found.iter().map(|(r, _)| r).find(|r| {
            !placed.contains(*r)
                && c.jobs.get(*r).is_some_and(|j| {
                    j.inputs
                        .iter()
                        .chain(&j.uses)
                        .filter_map(|s| owner(s))
                        .all(|o| placed.contains(&o) || o == **r)
                })
        });
        let Some(next) = next else {
            return Err(Error::plan(
                format!("the jobs reading '{root}' read each other in a cycle"),
                at,
            ));
        };
        placed.insert(next.clone());
        order.push(next.clone());
    }
    Ok(order)
}

/// What a version in a cascade reads under another name: each stream made so far (and its
/// late rows) by its new version (`made`: name, version).
pub(crate) fn renames(c: &Catalog, made: &[(String, String)]) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (name, v) in made {
        map.insert(name.clone(), v.clone());
        for late in c.late_streams_of(v) {
            map.insert(format!("{name}{}", &late[v.len()..]), late);
        }
    }
    map
}

impl Engine {
    /// Abandon, on open, rebuilds a crash left incomplete: a cascade whose versions were not
    /// all created, or versions whose group has lost its first (a cancellation cut short).
    /// The old versions keep serving; the reason is shown in `SHOW JOBS`.
    pub(crate) async fn abandon_incomplete(&self) {
        let orphans = {
            let c = self.inner.catalog();
            let roots: BTreeSet<String> =
                c.jobs.values().filter_map(root_of).map(String::from).collect();
            let mut abandon = Vec::new();
            for root in &roots {
                let versions = group(&c, root);
                let first = versions.first().is_some_and(|(n, _)| n == root);
                let covered =
                    closure(&c, root).iter().all(|(r, _)| versions.iter().any(|(n, _)| n == r));
                if !first || !covered {
                    abandon.push(root.clone());
                }
            }
            abandon
        };
        for root in orphans {
            let versions = group(&self.inner.catalog(), &root);
            for (_, v) in versions.iter().rev() {
                if let Err(e) = self.drop_version_only(v, None).await {
                    self.inner.restart_errors().insert(v.clone(), format!("could not drop: {e}"));
                }
            }
            self.inner.restart_errors().insert(
                root.clone(),
                "its rebuild was abandoned: a crash interrupted its start (run it again)".into(),
            );
        }
    }
}

impl Engine {
    /// What rebuilding `name` (from `from`) would run, for `EXPLAIN`: its new version, then
    /// the jobs rebuilt with it, in the order they are created, each with what it reads
    /// under another name; the same refusals as the statement.
    ///
    /// # Errors
    /// As [`Engine::check_rebuild`].
    pub(crate) fn explain_rebuild(
        &self,
        kind: kappa_sql::ast::ObjectKind,
        name: &str,
        from: Option<&kappa_sql::ast::RebuildFrom>,
        at: Option<Location>,
    ) -> Result<Vec<String>> {
        let (_, readers) = self.check_rebuild(kind, name, at)?;
        let c = self.inner.catalog();
        let version = |n: &str| {
            let number = c.streams.get(n).and_then(|e| e.version).unwrap_or(1) + 1;
            crate::rebuild::version_name(n, number)
        };
        let what = |n: &str| if c.is_view(n) { "view" } else { "stream" };
        let start = match from {
            None => "the first retained rows of its inputs".to_string(),
            Some(kappa_sql::ast::RebuildFrom::Offset(o)) => format!("offset {o} of its input"),
            Some(kappa_sql::ast::RebuildFrom::Timestamp(t)) => {
                format!("the first rows of its inputs at or after {t}")
            }
        };
        let mut lines = vec![format!(
            "rebuild of {} {name}: a new version {} runs its query from {start}, beside the old one",
            what(name),
            version(name)
        )];
        let mut renamed = vec![(name.to_string(), version(name))];
        for r in &readers {
            let reads: Vec<String> = c
                .jobs
                .get(r)
                .map(|j| j.inputs.iter().chain(&j.uses).cloned().collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|i| {
                    let owner = c.streams.get(&i).and_then(|e| e.job.clone());
                    renamed.iter().find(|(n, _)| *n == i || owner.as_ref() == Some(n)).map(
                        |(n, v)| match i.strip_prefix(n.as_str()) {
                            Some(late) if !late.is_empty() => format!("{i} as {v}{late}"),
                            _ => format!("{i} as {v}"),
                        },
                    )
                })
                .collect();
            lines.push(format!(
                "  rebuilt with it: {} {r} as {}, reading {}",
                what(r),
                version(r),
                reads.join(", ")
            ));
            renamed.push((r.clone(), version(r)));
        }
        lines.push(if readers.is_empty() {
            "  it takes over in one catalog write once it has read its inputs, committed, and reached the old version's watermark; until then readers see the old version".to_string()
        } else {
            "  they take over together, in one catalog write, once each has read its inputs, committed, and reached its old version's watermark; until then readers see the old versions".to_string()
        });
        Ok(lines)
    }
}
