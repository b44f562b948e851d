//! Reprocessing (the Kappa architecture): `ALTER STREAM | MATERIALIZED VIEW x REBUILD [FROM
//! OFFSET n | FROM TIMESTAMP 't']` runs `x`'s query again, `CREATE OR REPLACE STREAM |
//! MATERIALIZED VIEW x AS ...` a new one, as a new version beside the old:
//!
//! 1. The new version is a job `x__v<n>` writing its own log `x__v<n>` (a stream, or a view
//!    with its published rows), from the first retained rows of its inputs (or the offset, or
//!    the first rows at or after the time); its catalog entry says which stream it `replaces`.
//!    Readers of `x` keep reading the old version.
//! 2. A watcher task switches once the new version has caught up: it has read all its inputs
//!    hold, a checkpoint has committed its output there, and its watermark has reached the old
//!    version's (or it finished).
//! 3. The switch, under the DDL lock: both jobs stop (the new one checkpoints); one catalog
//!    write makes `x` the new version (its log is `x__v<n>`, its job is named `x`, its late
//!    streams are `x`'s) and forgets the old; the tables are registered again and the new job
//!    resumes as `x` from its checkpoint; the old job's checkpoints and, after a grace period
//!    for scans under way, its logs are removed.
//!
//! A crash before the catalog write leaves the old version serving and the new one resuming
//! (the watcher starts again on open); after it, the old logs are no longer the catalog's and
//! go on open. `DROP JOB x__v<n>` cancels a rebuild; dropping `x` drops its new version too.
//! The jobs reading `x` are rebuilt with it and switch together ([`crate::cascade`], the
//! switch itself in [`crate::switch`]).

use std::sync::Arc;
use std::time::Duration;

use kappa_sql::Location;
use kappa_sql::ast::{ObjectKind, RebuildFrom};

use crate::cascade::VersionOf;
use crate::catalog::{JobEntry, StreamEntry};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Output;

/// What marks a version's name: `x__v2`.
const VERSION_MARK: &str = "__v";

/// How often the watcher looks at a new version.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The name of version `n` of `name`.
pub(crate) fn version_name(name: &str, n: u32) -> String {
    format!("{name}{VERSION_MARK}{n}")
}

/// Whether `name` is reserved for versions (ends with `__v` and digits).
pub(crate) fn is_version_name(name: &str) -> bool {
    name.rsplit_once(VERSION_MARK)
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuse `name` for a new stream (or view) when it has the shape of a version's name.
///
/// # Errors
/// When `name` ends with `__v` and digits.
pub(crate) fn check_not_version_name(name: &str, view: bool, at: Option<Location>) -> Result<()> {
    if !is_version_name(name) {
        return Ok(());
    }
    let message = if view {
        format!("names ending with {VERSION_MARK}<n> are kept for the versions of rebuilt views")
    } else {
        format!(
            "stream names ending with {VERSION_MARK}<n> are kept for the versions of rebuilt streams"
        )
    };
    Err(Error::plan(message, at))
}

/// Where the rebuild of a stream or view stands ([`Engine::rebuild_progress`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildProgress {
    /// The new version's job (and log).
    pub job: String,
    /// The share of its inputs' rows (from where it started) it has read, in percent (in a
    /// cascade, the least of its versions').
    pub percent: f64,
    /// The rows its inputs hold that it has not read yet (summed over a cascade's versions).
    pub lag_rows: u64,
    /// Why it stopped, if it failed (the old version keeps serving).
    pub failed: Option<String>,
    /// The new versions that switch together: 1, or more in a cascade (the jobs reading the
    /// stream, rebuilt with it).
    pub versions: usize,
}

/// A statement that defines a stream or a view by a query.
struct Definition {
    query: Box<kappa_sql::sqlparser::ast::Query>,
    emit: Option<kappa_sql::ast::Emit>,
    options: Vec<(String, String)>,
    view: bool,
}

fn definition(text: &str, at: Option<Location>) -> Result<Definition> {
    match kappa_sql::parse_one(text)?.statement {
        kappa_sql::Statement::CreateStream(c) => match c.query {
            Some((query, emit)) => Ok(Definition { query, emit, options: c.options, view: false }),
            None => Err(Error::plan("the statement defines no query", at)),
        },
        kappa_sql::Statement::CreateMaterializedView { query, emit, options, .. } => {
            Ok(Definition { query, emit, options, view: true })
        }
        _ => Err(Error::plan("the statement defines no stream or view by a query", at)),
    }
}

/// Whether the new version is ready to take over.
enum Ready {
    /// Not yet.
    No,
    /// It is gone (cancelled, failed, or the engine closed): stop watching.
    Gone,
    /// It has caught up: switch `x` to it.
    Yes,
}

impl Engine {
    /// `ALTER STREAM | MATERIALIZED VIEW name REBUILD [FROM ...]`.
    ///
    /// # Errors
    /// When `name` is not a derived stream or view, another rebuild of it runs, jobs read it,
    /// or the start point is outside what its inputs retain.
    pub(crate) async fn rebuild(
        &self,
        kind: ObjectKind,
        name: &str,
        from: Option<RebuildFrom>,
        at: Option<Location>,
    ) -> Result<Output> {
        let text = self.inner.catalog().jobs.get(name).map(|j| j.query.clone());
        let Some(text) = text else {
            return Err(self.not_rebuildable(name, at));
        };
        self.new_version(kind, name, &text, from, at).await
    }

    /// `CREATE OR REPLACE STREAM | MATERIALIZED VIEW name AS ...` of an existing `name`.
    ///
    /// # Errors
    /// As [`Engine::rebuild`].
    pub(crate) async fn replace(
        &self,
        kind: ObjectKind,
        name: &str,
        text: &str,
        at: Option<Location>,
    ) -> Result<Output> {
        self.new_version(kind, name, text, None, at).await
    }

    /// Whether `name` can be rebuilt as `kind` now (a stream or view made by a query, of that
    /// kind, not being rebuilt, its readers rebuildable): whether it is a view, and the jobs
    /// to rebuild with it ([`crate::cascade::downstream`]).
    ///
    /// # Errors
    /// When it cannot, saying why.
    pub(crate) fn check_rebuild(
        &self,
        kind: ObjectKind,
        name: &str,
        at: Option<Location>,
    ) -> Result<(bool, Vec<String>)> {
        let (owned, is_view, running, readers) = {
            let c = self.inner.catalog();
            let owned = c.streams.contains_key(name)
                && c.jobs.get(name).is_some_and(|j| j.output == name && j.kind.owns_output());
            let running = c
                .jobs
                .iter()
                .find(|(_, j)| j.replaces.as_deref() == Some(name))
                .map(|(n, _)| n.clone());
            (owned, c.is_view(name), running, crate::cascade::downstream(&c, name, at))
        };
        if !owned {
            return Err(self.not_rebuildable(name, at));
        }
        match (kind, is_view) {
            (ObjectKind::Stream, true) => {
                return Err(Error::plan(
                    format!(
                        "'{name}' is a materialized view: ALTER MATERIALIZED VIEW {name} REBUILD, or CREATE OR REPLACE MATERIALIZED VIEW"
                    ),
                    at,
                ));
            }
            (ObjectKind::MaterializedView | ObjectKind::View, false) => {
                return Err(Error::plan(
                    format!(
                        "'{name}' is a stream: ALTER STREAM {name} REBUILD, or CREATE OR REPLACE STREAM"
                    ),
                    at,
                ));
            }
            _ => {}
        }
        if let Some(v) = running {
            return Err(Error::plan(
                format!("'{name}' is being rebuilt already, by job {v} (DROP JOB {v} cancels it)"),
                at,
            ));
        }
        Ok((is_view, readers?))
    }

    fn not_rebuildable(&self, name: &str, at: Option<Location>) -> Error {
        let c = self.inner.catalog();
        if c.streams.contains_key(name) {
            Error::plan(
                format!(
                    "stream '{name}' has no query to run again: only streams made by CREATE STREAM ... AS and materialized views are rebuilt"
                ),
                at,
            )
        } else {
            Error::plan(format!("stream or view '{name}' does not exist"), at)
        }
    }

    async fn new_version(
        &self,
        kind: ObjectKind,
        name: &str,
        text: &str,
        from: Option<RebuildFrom>,
        at: Option<Location>,
    ) -> Result<Output> {
        let (is_view, readers) = self.check_rebuild(kind, name, at)?;
        let start = VersionOf {
            replaces: name.to_string(),
            group: None,
            reads: Default::default(),
            start: Vec::new(),
            avoid: readers.clone(),
        };
        let vname = self.create_version(text, start, from.as_ref(), at).await?;
        // The jobs reading it are rebuilt with it, each over the new versions it reads.
        let mut made = vec![(name.to_string(), vname.clone())];
        for reader in &readers {
            let query = self.inner.catalog().jobs.get(reader).map(|j| j.query.clone());
            let reads = crate::cascade::renames(&self.inner.catalog(), &made);
            let version = VersionOf {
                replaces: reader.clone(),
                group: Some(name.to_string()),
                reads,
                start: Vec::new(),
                avoid: Vec::new(),
            };
            let created = match query {
                Some(q) => self.create_version(&q, version, None, at).await,
                None => Err(Error::plan(format!("job {reader} is gone"), at)),
            };
            match created {
                Ok(v) => made.push((reader.clone(), v)),
                Err(e) => {
                    for (_, v) in made.iter().rev() {
                        let _ = self.drop_version_only(v, at).await;
                    }
                    return Err(Error::plan(
                        format!(
                            "{reader} reads {name} and is rebuilt with it, but its query fails over the new version: {e}"
                        ),
                        at,
                    ));
                }
            }
        }
        self.watch_version(&vname);
        let what = if is_view { "MATERIALIZED VIEW" } else { "STREAM" };
        let mut tag = format!("REBUILD {what} {name} AS {vname}");
        if made.len() > 1 {
            let with: Vec<String> = made[1..].iter().map(|(n, v)| format!("{n} AS {v}")).collect();
            tag = format!("{tag} WITH {}", with.join(", "));
        }
        Ok(Output::Done { tag, rows: None })
    }

    /// Start a new version of `version.replaces` running `text` (from `from`, or its inputs'
    /// first retained rows) into its own log; returns its name.
    async fn create_version(
        &self,
        text: &str,
        version: VersionOf,
        from: Option<&RebuildFrom>,
        at: Option<Location>,
    ) -> Result<String> {
        let name = version.replaces.clone();
        let name = name.as_str();
        let (entry, job, is_view) = {
            let c = self.inner.catalog();
            let entry = c.streams.get(name).cloned();
            let job =
                c.jobs.get(name).filter(|j| j.output == name && j.kind.owns_output()).cloned();
            (entry, job, c.is_view(name))
        };
        let (Some(entry), Some(job)) = (entry, job) else {
            return Err(self.not_rebuildable(name, at));
        };
        let mut def = definition(text, at)?;
        if def.view != is_view {
            return Err(Error::plan(
                format!("'{name}' is {}", if is_view { "a materialized view" } else { "a stream" }),
                at,
            ));
        }
        kappa_sql::rename::rename_tables(&mut def.query, &version.reads)?;
        let number = entry.version.unwrap_or(1) + 1;
        let vname = version_name(name, number);
        if self.inner.catalog().streams.contains_key(&vname) {
            return Err(Error::plan(format!("stream '{vname}' exists already"), at));
        }
        let plan = self.plan_query(def.query, at).await?;
        let compiled = self.compile_job(&plan, def.emit.as_ref(), at).await?;
        if compiled.inputs().iter().chain(compiled.uses().iter()).any(|s| s == name) {
            return Err(Error::plan(
                format!("the new query of '{name}' reads '{name}' itself"),
                at,
            ));
        }
        // Nor what is derived from it (the versions would feed each other).
        let derived = {
            let c = self.inner.catalog();
            compiled.inputs().into_iter().chain(compiled.uses()).find(|s| {
                let owner = c.streams.get(s).and_then(|e| e.job.clone());
                version.avoid.iter().any(|r| r == s || owner.as_ref() == Some(r))
            })
        };
        if let Some(s) = derived {
            return Err(Error::plan(
                format!("the new query of '{name}' reads '{s}', which is derived from '{name}'"),
                at,
            ));
        }
        let schema = Arc::clone(compiled.schema());
        crate::statements::check_unique_names(&schema, at)?;
        // The options: the statement's (a rebuild's are the old version's), `state_ttl` apart.
        let mut declared: std::collections::BTreeMap<String, String> =
            def.options.iter().cloned().collect();
        let mut ttl = match declared.remove("state_ttl") {
            Some(v) => crate::view::parse_ttl(&v, at)?,
            None => None,
        };
        if ttl.is_none() {
            // A rebuild keeps the old version's (`SET state_ttl` when it was created); a
            // replacement takes the session's, as a creation does.
            ttl =
                if text == job.query { self.inner.job_ttl(name)? } else { self.inner.state_ttl() };
        }
        let (options, mut sentry) = if is_view {
            crate::view::check_ttl(&compiled, ttl, at)?;
            crate::view::check_view_plan(&compiled, at)?;
            let mut options = crate::options::stream_options(&Default::default(), at)?;
            options.derived = true;
            let mut e = StreamEntry { job: Some(vname.clone()), ..Default::default() };
            if let Some(ttl) = ttl {
                e.options.insert("state_ttl".into(), format!("{}ms", ttl.as_millis()));
            }
            (options, e)
        } else {
            let (_, own) = crate::connectors::split_connector(name, &declared, at)?;
            let mut options = crate::options::stream_options(&own, at)?;
            let e = self.derived_entry(&compiled, declared, &mut options, &vname, ttl, at)?;
            (options, e)
        };
        sentry.version = Some(number);
        let start = self.start_positions(&compiled.inputs(), from, at)?;
        self.inner.create_log(&vname, Arc::clone(&schema), options)?;
        let stream = self.inner.store.stream(&vname)?;
        {
            let mut c = self.inner.catalog();
            c.streams.insert(vname.clone(), sentry);
            c.save(&self.inner.store)?;
        }
        let registered = if is_view {
            let rows = kappa_sql::window_agg::changes::rows_schema(&schema);
            self.inner.register_view(&vname, crate::view::ViewState::new(rows))
        } else {
            self.inner.register_table(&vname, stream)
        };
        let version = VersionOf { start, ..version };
        let created = registered.and_then(|()| {
            self.create_job_version(&vname, job.kind, &vname, text, compiled, Some(version))
        });
        if let Err(e) = created {
            let mut c = self.inner.catalog();
            c.streams.remove(&vname);
            let _ = c.save(&self.inner.store);
            drop(c);
            self.inner.views.lock().unwrap_or_else(|p| p.into_inner()).remove(&vname);
            let _ = self.inner.ctx.deregister_table(vname.as_str());
            let _ = self.inner.store.drop_stream(&vname);
            return Err(e);
        }
        Ok(vname)
    }

    /// Where each input starts: `None` the first retained rows (empty); an offset (one
    /// input); the first row at or after a time (inputs with an event time).
    fn start_positions(
        &self,
        inputs: &[String],
        from: Option<&RebuildFrom>,
        at: Option<Location>,
    ) -> Result<Vec<u64>> {
        let Some(from) = from else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(inputs.len());
        for input in inputs {
            let s = self.inner.log(input)?;
            let info = s.info();
            let retained = |what: String| {
                Error::plan(
                    format!(
                        "stream {input} retains offsets {}..{} (its retention removed what came before): {what} is not retained",
                        info.start,
                        s.end_offset()
                    ),
                    at,
                )
            };
            match from {
                RebuildFrom::Offset(n) => {
                    if inputs.len() != 1 {
                        return Err(Error::plan(
                            format!(
                                "FROM OFFSET takes one input's offset; the query reads {}: FROM TIMESTAMP starts each at a time",
                                inputs.join(", ")
                            ),
                            at,
                        ));
                    }
                    if *n > s.end_offset() {
                        return Err(Error::plan(
                            format!(
                                "stream {input} holds offsets up to {}: FROM OFFSET {n} is past its end",
                                s.end_offset()
                            ),
                            at,
                        ));
                    }
                    if *n < info.start {
                        return Err(retained(format!("offset {n}")));
                    }
                    out.push(*n);
                }
                RebuildFrom::Timestamp(t) => {
                    let Some(column) = s.options().event_time_column.clone() else {
                        return Err(Error::plan(
                            format!(
                                "FROM TIMESTAMP needs inputs with an event time; stream {input} has none"
                            ),
                            at,
                        ));
                    };
                    let raw = event_time(&s, &column, t, at)?;
                    let position = s.reader(kappa_storage::ReadFrom::EventTime(raw))?.position();
                    // Rows before the first retained may have been at or after the time.
                    if info.start > 0 && position == info.start {
                        return Err(retained(format!("TIMESTAMP '{t}'")));
                    }
                    out.push(position);
                }
            }
        }
        Ok(out)
    }

    /// Start the task that switches `vname`'s stream to it once it has caught up.
    pub(crate) fn watch_version(&self, vname: &str) {
        let weak = Arc::downgrade(&self.inner);
        let vname = vname.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                    return;
                }
                let engine = Engine { inner };
                let root = engine.inner.catalog().jobs.get(&vname).and_then(|j| j.replaces.clone());
                let Some(root) = root else { return };
                match engine.ready_group(&root) {
                    Ready::No => {}
                    Ready::Gone => return,
                    Ready::Yes => {
                        if let Err(e) = engine.switch(&root).await {
                            engine
                                .inner
                                .restart_errors()
                                .insert(vname.clone(), format!("could not take over {root}: {e}"));
                        }
                        return;
                    }
                }
            }
        });
    }

    /// Whether every version of the cascade `root` started is ready (each is asked to
    /// checkpoint as it needs).
    fn ready_group(&self, root: &str) -> Ready {
        let members = crate::cascade::group(&self.inner.catalog(), root);
        if members.is_empty() {
            return Ready::Gone;
        }
        let mut all = Ready::Yes;
        for (_, v) in &members {
            match self.ready(v) {
                Ready::Gone => return Ready::Gone,
                Ready::No => all = Ready::No,
                Ready::Yes => {}
            }
        }
        all
    }

    fn ready(&self, vname: &str) -> Ready {
        let inner = &self.inner;
        let (entry, old) = {
            let c = inner.catalog();
            let Some(e) = c.jobs.get(vname).cloned() else { return Ready::Gone };
            let old = e.replaces.as_ref().and_then(|n| c.jobs.get(n)).cloned();
            (e, old)
        };
        let Some(name) = entry.replaces.clone() else { return Ready::Gone };
        match entry.state {
            crate::catalog::JobState::Failed(_) => return Ready::Gone,
            // (It read all its inputs will ever hold, in this run or an earlier.)
            crate::catalog::JobState::Finished => return Ready::Yes,
            crate::catalog::JobState::Running => {}
        }
        let jobs = inner.jobs();
        let Some(handle) = jobs.get(vname) else { return Ready::No };
        let p = handle.progress.borrow().clone();
        match &p.status {
            crate::job::Status::Failed(_) => return Ready::Gone,
            crate::job::Status::Finished => return Ready::Yes,
            _ => {}
        }
        // All its inputs hold, read.
        for (input, pos) in entry.inputs.iter().zip(&p.positions) {
            match inner.log(input) {
                Ok(s) if *pos >= s.readable_end() => {}
                _ => return Ready::No,
            }
        }
        // Committed: readers of the new version see it all.
        let committed = p.checkpoint.as_ref().is_some_and(|c| c.positions == p.positions);
        if !committed || p.uncommitted {
            handle.request.notify_one();
            return Ready::No;
        }
        // Its watermark has reached the old version's (when both have one: a stateless
        // query has none, and one that read everything without a time has none yet).
        if old.is_some()
            && let Some(o) = jobs.get(&name).and_then(|h| h.progress.borrow().watermark)
            && let Some(n) = p.watermark
            && n < o
        {
            return Ready::No;
        }
        Ready::Yes
    }

    /// Cancel the rebuild of `name`, if one runs (its job and log go).
    pub(crate) async fn cancel_rebuild(&self, name: &str, at: Option<Location>) -> Result<()> {
        let versions: Vec<String> = self
            .inner
            .catalog()
            .jobs
            .iter()
            .filter(|(_, j)| j.replaces.as_deref() == Some(name))
            .map(|(n, _)| n.clone())
            .collect();
        for v in versions {
            self.drop_version(&v, at).await?;
        }
        Ok(())
    }

    /// Drop version job `vname` and the other versions of its cascade, with their logs.
    pub(crate) async fn drop_version(&self, vname: &str, at: Option<Location>) -> Result<()> {
        // The whole cascade goes: its versions switch together or not at all.
        let versions = {
            let c = self.inner.catalog();
            let root = c.jobs.get(vname).and_then(crate::cascade::root_of).map(String::from);
            root.map(|r| crate::cascade::group(&c, &r)).unwrap_or_default()
        };
        for (_, v) in versions.iter().rev() {
            self.drop_version_only(v, at).await?;
        }
        Ok(())
    }

    /// Drop version job `vname` with its log (and view), alone.
    pub(crate) async fn drop_version_only(&self, vname: &str, at: Option<Location>) -> Result<()> {
        self.drop_log_and_job(vname, at).await?;
        self.inner.views.lock().unwrap_or_else(|p| p.into_inner()).remove(vname);
        Ok(())
    }

    /// Wait until every rebuild under way has switched (its job caught up).
    ///
    /// # Errors
    /// When a new version failed, or has made no progress for a minute.
    pub(crate) async fn wait_for_rebuilds(&self) -> Result<()> {
        let mut deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            let versions: Vec<(String, JobEntry)> = self
                .inner
                .catalog()
                .jobs
                .iter()
                .filter(|(_, j)| j.replaces.is_some())
                .map(|(n, j)| (n.clone(), j.clone()))
                .collect();
            if versions.is_empty() {
                // (A switch under way holds the DDL lock until the new job runs as the name.)
                drop(self.inner.ddl.lock().await);
                return Ok(());
            }
            for (v, j) in &versions {
                let failed = match &j.state {
                    crate::catalog::JobState::Failed(m) => Some(m.clone()),
                    _ => self.inner.restart_errors().get(v).cloned(),
                };
                if let Some(m) = failed {
                    return Err(Error::plan(format!("the rebuild job {v} failed: {m}"), None));
                }
            }
            let progress: Vec<Option<u64>> = {
                let jobs = self.inner.jobs();
                versions
                    .iter()
                    .map(|(v, _)| jobs.get(v).map(|h| h.progress.borrow().rows_in))
                    .collect()
            };
            if Some(&progress) != last.as_ref() {
                last = Some(progress);
                deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            }
            if tokio::time::Instant::now() > deadline {
                let names: Vec<&str> = versions.iter().map(|(v, _)| v.as_str()).collect();
                return Err(Error::plan(
                    format!("the rebuild job {} has not taken over", names.join(", ")),
                    None,
                ));
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }

    /// Where the rebuild of stream or view `name` stands; `None` when none runs (it switched,
    /// was cancelled, or never started).
    pub fn rebuild_progress(&self, name: &str) -> Option<RebuildProgress> {
        let versions = crate::cascade::group(&self.inner.catalog(), name);
        let (_, first) = versions.first()?;
        let rows = crate::show::job_rows(self);
        let rows: Vec<_> =
            rows.iter().filter(|r| versions.iter().any(|(_, v)| *v == r.name)).collect();
        // (A cascade is as far as its slowest version.)
        let percent = rows.iter().map(|r| r.progress.unwrap_or(0.0)).fold(100.0, f64::min);
        let failed = rows
            .iter()
            .find(|r| r.state == "failed")
            .map(|r| format!("{}: {}", r.name, r.error.clone().unwrap_or_else(|| "failed".into())));
        Some(RebuildProgress {
            job: first.clone(),
            percent,
            lag_rows: rows.iter().map(|r| r.lag).sum(),
            failed,
            versions: versions.len(),
        })
    }

    /// Start watching the versions being built (on open).
    pub(crate) fn watch_versions(&self) {
        let versions: Vec<String> = self
            .inner
            .catalog()
            .jobs
            .iter()
            .filter(|(_, j): &(&String, &JobEntry)| j.replaces.is_some() && j.group.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for v in versions {
            self.watch_version(&v);
        }
    }
}

/// The jobs that read stream or view `name` or its late rows (through their inputs or as a
/// temporal join's versions).
pub(crate) fn readers_of(c: &crate::catalog::Catalog, name: &str) -> Vec<String> {
    let mut readers = c.all_readers_of(name);
    for late in c.late_streams_of(name) {
        readers.extend(c.all_readers_of(&late));
    }
    readers.retain(|r| r != name);
    readers
}

/// The streams being rebuilt, their versions' logs and their late streams (by the version
/// job): no new job may read them until the switch (its reads would span two versions).
pub(crate) fn being_rebuilt(
    c: &crate::catalog::Catalog,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for (v, j) in &c.jobs {
        let Some(x) = &j.replaces else { continue };
        for (n, e) in &c.streams {
            let owner = e.job.as_deref();
            if n == x || n == v || owner == Some(x.as_str()) || owner == Some(v.as_str()) {
                out.insert(n.clone(), v.clone());
            }
        }
    }
    out
}

/// `t` as a raw value of stream `s`'s event-time column `column`.
fn event_time(
    s: &kappa_storage::Stream,
    column: &str,
    t: &str,
    at: Option<Location>,
) -> Result<i64> {
    use datafusion::arrow::array::{Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Int64Type};
    let field = s.schema().field_with_name(column).map_err(|e| Error::plan(e.to_string(), at))?;
    let value = StringArray::from(vec![t]);
    let cast = datafusion::arrow::compute::cast(&value, field.data_type())
        .and_then(|a| datafusion::arrow::compute::cast(&a, &DataType::Int64))
        .map_err(|e| Error::plan(format!("TIMESTAMP '{t}': {e}"), at))?;
    let ints = cast.as_any().downcast_ref::<datafusion::arrow::array::PrimitiveArray<Int64Type>>();
    match ints {
        Some(a) if a.is_valid(0) => Ok(a.value(0)),
        _ => Err(Error::plan(format!("TIMESTAMP '{t}' is not a time"), at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names() {
        assert_eq!(version_name("x", 2), "x__v2");
        assert!(is_version_name("x__v2"));
        assert!(is_version_name("a__v_b__v10"));
        assert!(!is_version_name("x__v"));
        assert!(!is_version_name("x__vx"));
        assert!(!is_version_name("x"));
    }
}
