//! The switch of a rebuild (see [`crate::rebuild`]): under the DDL lock, every old and new
//! job of the cascade stops (the new ones checkpoint), one catalog write makes each replaced
//! stream or view its new version, and the new jobs resume under the old names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::JobEntry;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// How long the old versions' logs stay after a switch, for scans that read them.
const GRACE: Duration = Duration::from_secs(5);

/// What a switch did to one stream or view of the cascade.
struct Switched {
    name: String,
    vname: String,
    view: bool,
    /// The late streams that went (the old version's) and were renamed (the new's).
    lates: Vec<String>,
    renamed: Vec<String>,
}

impl Engine {
    /// Make each new version of the cascade `root` started its stream's or view's. Before the
    /// catalog write, any failure leaves the old versions serving (all jobs resumed); after
    /// it, errors are the new versions'.
    pub(crate) async fn switch(&self, root: &str) -> Result<()> {
        let _guard = self.inner.ddl.lock().await;
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let (members, stray) = {
            let c = self.inner.catalog();
            let members = crate::cascade::group(&c, root);
            let names: Vec<&String> = members.iter().flat_map(|(n, v)| [n, v]).collect();
            let stray: Vec<String> = members
                .iter()
                .flat_map(|(n, _)| crate::rebuild::readers_of(&c, n))
                .filter(|r| !names.contains(&r))
                .collect();
            (members, stray)
        };
        if members.is_empty() {
            return Ok(());
        }
        if !stray.is_empty() {
            return Err(Error::plan(
                format!(
                    "job {} reads {root} and has no new version: the rebuild stops (DROP JOB of a version cleans up)",
                    stray.join(", ")
                ),
                None,
            ));
        }
        // (Read-your-writes waits for the jobs while they are stopped.)
        let _switching = Switching::new(&self.inner.switching);
        self.switch_group(&members).await
    }

    /// [`Engine::switch`] of the versions `members` (name, version), the DDL lock held.
    async fn switch_group(&self, members: &[(String, String)]) -> Result<()> {
        // Every job stops; the new ones checkpoint as they do.
        let all = || members.iter().flat_map(|(n, v)| [n.clone(), v.clone()]);
        let handles: Vec<_> = {
            let mut jobs = self.inner.jobs();
            all().map(|n| (n.clone(), jobs.remove(&n))).collect()
        };
        let mut failed = None;
        for (i, (n, h)) in handles.into_iter().enumerate() {
            // (Only a new version failing keeps the old ones.)
            if let Some(crate::job::Status::Failed(m)) = stop_and_wait(h).await
                && i % 2 == 1
                && failed.is_none()
            {
                failed = Some(format!("job {n} failed as it stopped: {m}"));
            }
        }
        if let Some(m) = failed {
            for n in all() {
                self.resume(&n).await;
            }
            return Err(Error::plan(m, None));
        }
        // The next catalog, written whole before it replaces the one in memory.
        let mut c = self.inner.catalog().clone();
        let mut done = Vec::with_capacity(members.len());
        let mut old_logs = Vec::new();
        let mut old_ids = Vec::new();
        // What the new jobs read under their version names, by the names they take.
        let mut logical = BTreeMap::new();
        for (name, vname) in members {
            let old_lates = c.late_streams_of(name);
            let new_lates = c.late_streams_of(vname);
            old_logs.push(c.log_name(name));
            for late in &old_lates {
                old_logs.push(c.log_name(late));
                c.streams.remove(late);
            }
            old_ids.extend(c.jobs.remove(name).map(|j| j.id));
            let (Some(mut job), Some(mut stream)) = (c.jobs.remove(vname), c.streams.remove(vname))
            else {
                for n in all() {
                    self.resume(&n).await;
                }
                return Err(Error::plan(format!("job {vname} is gone"), None));
            };
            job.output = name.clone();
            job.replaces = None;
            job.group = None;
            job.reads.clear();
            job.start = Vec::new();
            stream.log = Some(vname.clone());
            stream.job = Some(name.clone());
            c.streams.insert(name.clone(), stream);
            logical.insert(vname.clone(), name.clone());
            let mut renamed = Vec::new();
            for late in &new_lates {
                let log = c.log_name(late);
                let Some(mut e) = c.streams.remove(late) else { continue };
                e.log = Some(log);
                e.job = Some(name.clone());
                let to = format!("{name}{}", &late[vname.len()..]);
                logical.insert(late.clone(), to.clone());
                renamed.push(to.clone());
                c.streams.insert(to, e);
            }
            c.jobs.insert(name.clone(), job);
            let view = c.is_view(name);
            let lates = [old_lates, new_lates].concat();
            done.push(Switched { name: name.clone(), vname: vname.clone(), view, lates, renamed });
        }
        // The new jobs of the cascade read each other by the names they take.
        for s in &done {
            if let Some(job) = c.jobs.get_mut(&s.name) {
                for input in job.inputs.iter_mut().chain(job.uses.iter_mut()) {
                    if let Some(to) = logical.get(input) {
                        *input = to.clone();
                    }
                }
            }
        }
        // The commit point: from here on each name is its new version.
        if let Err(e) = c.save(&self.inner.store) {
            for n in all() {
                self.resume(&n).await;
            }
            return Err(e);
        }
        *self.inner.catalog() = c;
        // (In the cascade's order: a job is compiled once the tables it reads are there.)
        let mut result = Ok(());
        for s in &done {
            let job = self.inner.catalog().jobs.get(&s.name).cloned();
            let Some(job) = job else { continue };
            if let Err(e) = self.after_switch(s, &job).await {
                self.inner
                    .restart_errors()
                    .insert(s.name.clone(), format!("after its rebuild: {e}"));
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        // The old versions: their checkpoints now, their logs once scans under way are done
        // (if the catalog has not taken the names back meanwhile).
        for id in old_ids {
            let _ = crate::job::forget(&self.inner.store, id);
        }
        self.inner.switches.send_modify(|n| *n += 1);
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(GRACE).await;
            let Some(inner) = weak.upgrade() else { return };
            let _guard = inner.ddl.lock().await;
            if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            let logs = inner.catalog().logs();
            for log in old_logs.iter().filter(|l| !logs.contains(*l)) {
                let _ = inner.store.drop_stream(log);
            }
        });
        result
    }

    /// What follows the catalog write of a switch: tables, and the new job under the name.
    async fn after_switch(&self, s: &Switched, job: &JobEntry) -> Result<()> {
        let (name, vname) = (s.name.as_str(), s.vname.as_str());
        if s.view {
            let state = self.inner.views.lock().unwrap_or_else(|p| p.into_inner()).remove(vname);
            if let Some(state) = state {
                self.inner.register_view(name, state)?;
            }
        } else {
            self.inner.register_table(name, self.inner.log(name)?)?;
        }
        let _ = self.inner.ctx.deregister_table(vname);
        for late in &s.lates {
            let _ = self.inner.ctx.deregister_table(late.as_str());
        }
        for late in &s.renamed {
            self.inner.register_table(late, self.inner.log(late)?)?;
        }
        // The new job goes on as `name`, from its checkpoint (unless it has finished).
        if job.state == crate::catalog::JobState::Running {
            let plan = self.compile_entry(job).await?;
            self.launch_job(name, job, plan)?;
        }
        Ok(())
    }

    /// Start job `name` again from its checkpoint, if the catalog says it runs (after a
    /// switch that did not happen); a failure is shown in `SHOW JOBS`.
    async fn resume(&self, name: &str) {
        let entry = self.inner.catalog().jobs.get(name).cloned();
        let running = self.inner.jobs().contains_key(name);
        if !running
            && let Some(entry) = entry.filter(|e| e.state == crate::catalog::JobState::Running)
            && let Err(e) = self.restart_job(name, &entry).await
        {
            self.inner.restart_errors().insert(name.to_string(), format!("could not resume: {e}"));
        }
    }
}

/// Counts a switch under way while it lives.
struct Switching<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Switching<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Switching<'a> {
        count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Switching(count)
    }
}

impl Drop for Switching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Stop a job and wait for it; how it ended (`None`: it was not running).
async fn stop_and_wait(h: Option<crate::job::JobHandle>) -> Option<crate::job::Status> {
    let h = h?;
    let _ = h.stop.send(true);
    let progress = h.progress.clone();
    let _ = h.task.await;
    let status = progress.borrow().status.clone();
    Some(status)
}
