//! Jobs' lifecycle: creating a job (its catalog entry, then its task), starting it again
//! from its catalog entry and last checkpoint (on open, `RESUME JOB`, after a rebuild's
//! switch), and stopping it.

use std::sync::{Arc, Weak};

use crate::catalog::{JobEntry, JobKind, JobState};
use crate::engine::{Engine, Inner, JobPlan};
use crate::error::{Error, Result};
use crate::job::{self, JobSpec, Status};
use crate::output::Output;

impl Engine {
    /// `RESUME JOB name`: restart a job that failed (or could not restart on open) from its
    /// last checkpoint.
    ///
    /// # Errors
    /// When there is no such job, it runs or finished, or it fails to start again (it then
    /// stays as it was, and `SHOW JOBS` shows that error).
    pub(crate) async fn resume_job(
        &self,
        name: &str,
        at: Option<kappa_sql::Location>,
    ) -> Result<Output> {
        let Some(entry) = self.inner.catalog().jobs.get(name).cloned() else {
            return Err(Error::plan(
                format!("there is no job named {name} (SHOW JOBS lists them)"),
                at,
            ));
        };
        let status = self.inner.jobs().get(name).map(|h| h.progress.borrow().status.clone());
        match (&entry.state, status) {
            // (A job that just failed is marked failed in the catalog first.)
            (JobState::Running, Some(Status::Running)) => {
                return Err(Error::plan(format!("job {name} is running"), at));
            }
            (JobState::Finished, _) | (_, Some(Status::Finished)) => {
                return Err(Error::plan(
                    format!("job {name} finished: its inputs are sealed and read"),
                    at,
                ));
            }
            _ => {}
        }
        self.stop_job(name).await;
        let previous = entry.state.clone();
        self.inner.set_job_state(name, JobState::Running)?;
        self.inner.restart_errors().remove(name);
        let entry = JobEntry { state: JobState::Running, ..entry };
        if let Err(e) = self.restart_job(name, &entry).await {
            // As it was (a job that could not restart on open is tried again at the next).
            self.inner.set_job_state(name, previous)?;
            self.inner.restart_errors().insert(name.to_string(), format!("could not resume: {e}"));
            return Err(e.or_at(at));
        }
        Ok(Output::Done { tag: "RESUME JOB".into(), rows: None })
    }

    /// A job's plan, planned and compiled again from the statement its catalog entry keeps.
    ///
    /// # Errors
    /// When the statement no longer parses, plans or compiles.
    pub(crate) async fn compile_entry(&self, entry: &JobEntry) -> Result<JobPlan> {
        let parsed = kappa_sql::parse_one(&entry.query)?;
        // (A version in a cascade reads the new versions of its inputs until the switch.)
        let renamed = |mut query: Box<kappa_sql::sqlparser::ast::Query>| {
            kappa_sql::rename::rename_tables(&mut query, &entry.reads).map(|()| query)
        };
        let (plan, emit) = match parsed.statement {
            kappa_sql::Statement::Query { query, emit } => {
                (self.plan_query(renamed(query)?, None).await?, emit)
            }
            kappa_sql::Statement::CreateStream(c) => match c.query {
                Some((query, emit)) => (self.plan_query(renamed(query)?, None).await?, emit),
                None => return Err(Error::plan("a job's statement has no query", None)),
            },
            kappa_sql::Statement::Insert { statement, .. } => {
                (self.plan_insert(*statement, None).await?, None)
            }
            kappa_sql::Statement::CreateMaterializedView { query, emit, .. } => {
                (self.plan_query(renamed(query)?, None).await?, emit)
            }
            _ => return Err(Error::plan("a job's query is not a query", None)),
        };
        self.compile_job(&plan, emit.as_ref(), None).await
    }

    /// Start a job from its catalog entry (on open).
    pub(crate) async fn restart_job(&self, name: &str, entry: &JobEntry) -> Result<()> {
        let compiled = self.compile_entry(entry).await?;
        if entry.kind.owns_output() {
            // Planned again, the query must still give the stream's columns (a setting or a
            // function that changed since could change a type).
            let stream = self.inner.log(&entry.output)?;
            let columns = |s: &datafusion::arrow::datatypes::Schema| -> Vec<String> {
                s.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect()
            };
            let (now, stored) = (columns(compiled.schema()), columns(stream.schema()));
            if now != stored {
                return Err(Error::plan(
                    format!(
                        "its query now gives the columns ({}), but stream {} holds ({})",
                        now.join(", "),
                        entry.output,
                        stored.join(", ")
                    ),
                    None,
                ));
            }
        }
        self.launch_job(name, entry, compiled)
    }

    /// Run a job whose catalog entry exists.
    pub(crate) fn launch_job(&self, name: &str, entry: &JobEntry, plan: JobPlan) -> Result<()> {
        self.inner.check_open()?;
        let inputs = plan
            .inputs()
            .iter()
            .map(|s| self.inner.log(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // A sink table takes the rows without a log.
        let output = if self.inner.catalog().sinks.contains_key(&entry.output) {
            None
        } else {
            Some(self.inner.log(&entry.output)?)
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let job_name = name.to_string();
        let on_end = Box::new(move |status: &Status| {
            let Some(inner) = weak.upgrade() else { return };
            let state = match status {
                Status::Finished => JobState::Finished,
                Status::Failed(m) => JobState::Failed(m.clone()),
                Status::Running | Status::Stopped => return,
            };
            let _ = inner.set_job_state(&job_name, state);
        });
        let handle = match plan {
            JobPlan::Stateless(plan) => job::start(JobSpec {
                name: name.to_string(),
                id: entry.id,
                kind: entry.kind,
                plan: Arc::new(plan),
                inputs,
                start: (!entry.start.is_empty()).then(|| entry.start.clone()),
                output,
                store: Arc::clone(&self.inner.store),
                interval: self.inner.checkpoint_interval.clone(),
                on_end,
            })?,
            JobPlan::Windowed(plan) => {
                let mut late = Vec::with_capacity(inputs.len());
                let mut idle = Vec::with_capacity(inputs.len());
                let names = plan.inputs.iter().map(|i| i.pipeline.stream.clone());
                // (An aggregation without windows has no late rows; a plan of several
                // operators has when one of its inputs is read by event time.)
                let has_late = plan.windows().is_some()
                    || matches!(
                        &plan.grouping,
                        kappa_sql::windowed_plan::Grouping::Graph(g)
                            if g.sources.iter().any(|s| s.late_by.is_some() || s.raw)
                    );
                for (i, (input, stream)) in inputs.iter().zip(names).enumerate() {
                    if has_late {
                        late.push(self.late_stream(name, i, input.name())?);
                    }
                    idle.push(self.idle_timeout(&stream)?);
                }
                crate::window_job::start(crate::window_job::WindowJobSpec {
                    name: name.to_string(),
                    id: entry.id,
                    kind: entry.kind,
                    plan: *plan,
                    inputs,
                    start: (!entry.start.is_empty()).then(|| entry.start.clone()),
                    idle,
                    output,
                    late,
                    view: self.inner.view(name),
                    ttl: self.inner.job_ttl(&entry.output)?,
                    store: Arc::clone(&self.inner.store),
                    interval: self.inner.checkpoint_interval.clone(),
                    on_end,
                })?
            }
        };
        self.inner.jobs().insert(name.to_string(), handle);
        Ok(())
    }

    /// Stop a job and wait for it.
    pub(crate) async fn stop_job(&self, name: &str) {
        let handle = self.inner.jobs().remove(name);
        if let Some(h) = handle {
            let _ = h.stop.send(true);
            let _ = h.task.await;
        }
    }

    /// Add a job to the catalog and start it.
    pub(crate) fn create_job(
        &self,
        name: &str,
        kind: JobKind,
        output: &str,
        query_text: &str,
        plan: JobPlan,
    ) -> Result<()> {
        self.create_job_version(name, kind, output, query_text, plan, None)
    }

    /// [`Engine::create_job`], or of a new version of a stream or view (`version`).
    pub(crate) fn create_job_version(
        &self,
        name: &str,
        kind: JobKind,
        output: &str,
        query_text: &str,
        plan: JobPlan,
        version: Option<crate::cascade::VersionOf>,
    ) -> Result<()> {
        let entry = {
            let mut c = self.inner.catalog();
            // (A new version reads the stream's inputs, and in a cascade the new versions it
            // reads under the old names; never anything else being rebuilt.)
            let rebuilding = crate::rebuild::being_rebuilt(&c);
            let renamed: Vec<&String> =
                version.as_ref().map(|v| v.reads.values().collect()).unwrap_or_default();
            if let Some((read, v)) = plan
                .inputs()
                .iter()
                .chain(plan.uses().iter())
                .filter(|s| !renamed.contains(s))
                .find_map(|s| rebuilding.get(s).map(|v| (s.clone(), v.clone())))
            {
                return Err(Error::not_supported(
                    format!(
                        "a job reading '{read}' while job {v} rebuilds it (its reads would span the two versions: wait for the switch, or DROP JOB {v})"
                    ),
                    None,
                ));
            }
            if c.jobs.len() >= crate::catalog::MAX_JOBS {
                return Err(Error::plan(
                    format!("at most {} jobs may exist", crate::catalog::MAX_JOBS),
                    None,
                ));
            }
            let id = c.next_job_id;
            if id >= 1 << 24 {
                return Err(Error::plan("job ids are exhausted (2^24 jobs were created)", None));
            }
            c.next_job_id += 1;
            let entry = JobEntry {
                id,
                kind,
                output: output.to_string(),
                query: query_text.to_string(),
                inputs: plan.inputs(),
                uses: plan.uses(),
                replaces: version.as_ref().map(|v| v.replaces.clone()),
                start: version.as_ref().map(|v| v.start.clone()).unwrap_or_default(),
                group: version.as_ref().and_then(|v| v.group.clone()),
                reads: version.map(|v| v.reads).unwrap_or_default(),
                state: JobState::Running,
            };
            c.jobs.insert(name.to_string(), entry.clone());
            c.save(&self.inner.store)?;
            entry
        };
        if let Err(e) = self.launch_job(name, &entry, plan) {
            let mut c = self.inner.catalog();
            c.jobs.remove(name);
            let _ = c.save(&self.inner.store);
            return Err(e);
        }
        Ok(())
    }
}
