//! Read-your-writes: a snapshot query (or `COPY ... TO`) first waits until every job
//! upstream of what it reads has processed what its inputs held when it started, upstream
//! jobs first; a query planned while a rebuild switched a name is planned again.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::logical_expr::LogicalPlan;

use crate::catalog::JobState;
use crate::engine::Engine;
use crate::error::Result;
use crate::job;

/// How long read-your-writes waits for a job the catalog runs but that is not running (a
/// rebuild's switch stops it for a few milliseconds).
const SWITCH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Engine {
    /// The jobs that write `stream` (its deriving job, `INSERT INTO` jobs, the job whose
    /// late rows it keeps).
    pub(crate) fn writers_of(&self, stream: &str) -> Vec<(String, Vec<String>)> {
        let c = self.inner.catalog();
        let owner = c.streams.get(stream).and_then(|e| e.job.clone());
        c.jobs
            .iter()
            .filter(|(n, j)| {
                (j.output == stream || owner.as_deref() == Some(n.as_str()))
                    && j.state == JobState::Running
            })
            .map(|(n, j)| (n.clone(), j.inputs.clone()))
            .collect()
    }

    /// Plan a snapshot query over what every job upstream of it has processed of its inputs
    /// now ([`Engine::catch_up`]), its views pinned. When a rebuild switched a name meanwhile,
    /// the plan (which may read the old version, whose job stopped) is made again.
    pub(crate) async fn plan_caught_up(
        &self,
        query: Box<kappa_sql::sqlparser::ast::Query>,
        at: Option<kappa_sql::Location>,
    ) -> Result<LogicalPlan> {
        let mut tries = 0;
        loop {
            let before = *self.inner.switches.borrow();
            let plan = self.plan_query(query.clone(), at).await?;
            self.catch_up(&crate::statements::scanned_streams(&plan)).await?;
            tries += 1;
            if *self.inner.switches.borrow() == before || tries == 3 {
                return crate::view::pin_views(plan);
            }
        }
    }

    /// Read-your-writes: for every job upstream of `streams`, wait until it has processed what
    /// its inputs held when this was called (upstream jobs first).
    pub(crate) async fn catch_up(&self, streams: &[String]) -> Result<()> {
        let order = self.upstream_order(streams);
        self.catch_up_jobs(&order).await
    }

    /// The running jobs that feed `streams`, directly or not, each after every job it reads
    /// from (a post-order walk: upstream first).
    pub(crate) fn upstream_order(&self, streams: &[String]) -> Vec<String> {
        enum Step {
            Stream(String),
            Done(String),
        }
        let mut order: Vec<String> = Vec::new();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<Step> = streams.iter().rev().map(|s| Step::Stream(s.clone())).collect();
        while let Some(step) = stack.pop() {
            match step {
                Step::Done(job) => order.push(job),
                Step::Stream(s) => {
                    for (job, inputs) in self.writers_of(&s) {
                        if seen.insert(job.clone()) {
                            stack.push(Step::Done(job));
                            stack.extend(inputs.into_iter().map(Step::Stream));
                        }
                    }
                }
            }
        }
        order
    }

    pub(crate) async fn catch_up_jobs(&self, jobs: &[String]) -> Result<()> {
        for name in jobs {
            // A job the catalog runs is stopped for the few milliseconds of a rebuild's switch
            // (its new version then resumes under the name): wait for it, a while.
            let deadline = tokio::time::Instant::now() + SWITCH_WAIT;
            loop {
                let entry = self
                    .inner
                    .catalog()
                    .jobs
                    .get(name)
                    .map(|j| (j.inputs.clone(), j.state.clone()));
                let Some((inputs, state)) = entry else { break };
                let targets: Vec<u64> = inputs
                    .iter()
                    .map(|s| self.inner.log(s).map(|s| s.readable_end()).unwrap_or(0))
                    .collect();
                // A job whose inputs are all sealed runs to its end (and seals its output).
                let sealed = inputs
                    .iter()
                    .all(|s| self.inner.log(s).is_ok_and(|s| s.info().sealed.is_some()));
                let rx = self
                    .inner
                    .jobs()
                    .get(name)
                    .map(|j| (j.progress.clone(), Arc::clone(&j.request)));
                if let Some((mut rx, request)) = rx {
                    job::wait_for(&mut rx, &request, &targets, sealed).await;
                    break;
                }
                let stopped = state != JobState::Running
                    || self.inner.switching.load(std::sync::atomic::Ordering::Acquire) == 0
                    || tokio::time::Instant::now() > deadline;
                if stopped {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }
}
