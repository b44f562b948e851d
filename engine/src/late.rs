//! Late-data streams: every windowed job `j` appends the input rows it leaves out as late (their
//! windows had closed when they arrived, or their time is NULL) to the stream `j__late` (for
//! the inputs after the first of a UNION ALL: `j__late2`, `j__late3`, ...), with all the
//! input's columns. The stream is
//! created with the job (or when a job made before late streams existed starts), written only
//! by it (appends and `SEAL STREAM` are refused, as for a derived stream; its catalog entry
//! names the job), sealed when the job finishes, and dropped with the job. It is queried like
//! any stream.

use std::sync::Arc;

use kappa_storage::{Stream, StreamOptions};

use crate::catalog::StreamEntry;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// What names late-data streams (names holding it are reserved).
pub(crate) const SUFFIX: &str = "__late";

/// The late-data stream of input `input` of job `job`.
pub(crate) fn name_of(job: &str, input: usize) -> String {
    if input == 0 { format!("{job}{SUFFIX}") } else { format!("{job}{SUFFIX}{}", input + 1) }
}

impl Engine {
    /// The late-data stream of input `i` of windowed job `job`, which reads stream `input`
    /// (its schema), created if missing.
    ///
    /// # Errors
    /// When a stream of that name exists that is not the job's, or it cannot be created.
    pub(crate) fn late_stream(&self, job: &str, i: usize, input: &str) -> Result<Arc<Stream>> {
        let name = name_of(job, i);
        let existing = self.inner.catalog().streams.get(&name).cloned();
        if let Some(entry) = existing {
            if entry.job.as_deref() != Some(job) {
                return Err(Error::plan(
                    format!("stream '{name}' exists: job {job} keeps its late rows there"),
                    None,
                ));
            }
            return self.inner.log(&name);
        }
        let schema = Arc::clone(self.inner.log(input)?.schema());
        // Readers see its rows once a checkpoint of the job commits them.
        let options = StreamOptions { derived: true, ..StreamOptions::default() };
        let stream = self.inner.create_log(&name, schema, options)?;
        let entry = StreamEntry { job: Some(job.to_string()), ..Default::default() };
        let saved = {
            let mut c = self.inner.catalog();
            c.streams.insert(name.clone(), entry);
            c.save(&self.inner.store)
        };
        if let Err(e) = saved {
            self.inner.catalog().streams.remove(&name);
            let _ = self.inner.store.drop_stream(&name);
            return Err(e);
        }
        self.inner.register_table(&name, Arc::clone(&stream))?;
        Ok(stream)
    }

    /// Refuse to drop job `job` while another job reads its late rows.
    ///
    /// # Errors
    /// Naming the readers.
    pub(crate) fn check_late_unread(
        &self,
        job: &str,
        at: Option<kappa_sql::Location>,
    ) -> Result<()> {
        for name in self.late_streams_of(job) {
            let readers = self.inner.catalog().readers_of(&name);
            if !readers.is_empty() {
                return Err(Error::plan(
                    format!(
                        "the late rows of job {job} ({name}) are read by job {}: drop that first",
                        readers.join(", ")
                    ),
                    at,
                ));
            }
        }
        Ok(())
    }

    /// The late-data streams of job `job`.
    fn late_streams_of(&self, job: &str) -> Vec<String> {
        self.inner.catalog().late_streams_of(job)
    }

    /// Drop the late-data streams of job `job` (the job is stopped).
    ///
    /// # Errors
    /// When the catalog cannot be saved or a stream's files removed.
    pub(crate) fn drop_late_stream(&self, job: &str) -> Result<()> {
        for name in self.late_streams_of(job) {
            let log = {
                let mut c = self.inner.catalog();
                let log = c.log_name(&name);
                c.streams.remove(&name);
                c.save(&self.inner.store)?;
                log
            };
            let _ = self.inner.ctx.deregister_table(&name);
            self.inner.store.drop_stream(&log)?;
        }
        Ok(())
    }
}
