//! The catalog: what the engine knows beyond the logs (watermarks, declared options, jobs),
//! persisted as one JSON file through the store's atomic metadata files.
//!
//! The logs themselves (schemas, event-time columns, retention, durability) live in the store.
//! Creating a stream writes the log first and the catalog second; dropping one removes it
//! from the catalog first. On open, a log the catalog does not know was never acknowledged
//! and is removed, and a catalog entry without its log is forgotten.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The catalog file's name in the store's metadata folder.
pub(crate) const CATALOG_FILE: &str = "catalog.json";

/// Catalog format version written by this build.
const FORMAT: u32 = 1;

/// A stream's catalog entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct StreamEntry {
    /// `WATERMARK FOR column AS expr`.
    #[serde(default)]
    pub watermark: Option<WatermarkEntry>,
    /// Options as declared (for `SHOW` and `DESCRIBE`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The job that writes this stream, for a derived stream.
    #[serde(default)]
    pub job: Option<String>,
    /// The log holding it, when not the one of its name: a rebuilt stream's or view's
    /// (`x__v2`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Its version: 1, then one more at each rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// A declared watermark.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct WatermarkEntry {
    /// The event-time column.
    pub column: String,
    /// The watermark expression, as SQL text.
    pub expr: String,
}

/// What a job writes into.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// `CREATE STREAM d AS SELECT`: the job owns its output and seals it when done.
    DerivedStream,
    /// `INSERT INTO s SELECT`: appends to an existing stream.
    InsertInto,
    /// `CREATE MATERIALIZED VIEW v AS SELECT`: owns the view's changelog, as a derived stream
    /// owns its log.
    MaterializedView,
}

impl JobKind {
    /// Whether the job owns its output log (truncates it on restart, commits it at
    /// checkpoints, seals it when done).
    pub fn owns_output(self) -> bool {
        matches!(self, JobKind::DerivedStream | JobKind::MaterializedView)
    }
}

/// A job's state as persisted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Runs (restarted on open).
    Running,
    /// Every input sealed and drained.
    Finished,
    /// Stopped by an error.
    Failed(String),
}

/// A job's catalog entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct JobEntry {
    /// Unique id (the producer id of its output frames).
    pub id: u32,
    /// What it writes into.
    pub kind: JobKind,
    /// The output stream.
    pub output: String,
    /// The query, as SQL text.
    pub query: String,
    /// The input streams, in the order of the plan's pipelines.
    pub inputs: Vec<String>,
    /// The materialized views its query reads through their inputs (a temporal join with a
    /// deduplicating view): they are not dropped while it exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<String>,
    /// For a new version of a stream or view being rebuilt (`ALTER ... REBUILD`, `CREATE OR
    /// REPLACE`): the stream or view it takes over once caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// Where each input starts when there is no checkpoint yet (empty: the first retained
    /// row; `REBUILD FROM OFFSET | TIMESTAMP` sets it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start: Vec<u64>,
    /// For a version rebuilt because it reads a stream being rebuilt (a cascade): that
    /// stream, whose rebuild started it; the versions of a cascade switch together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Tables its query reads under another name until the switch: in a cascade, each stream
    /// being rebuilt with it, by its new version (`x` → `x__v2`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reads: BTreeMap<String, String>,
    /// Running, finished or failed.
    pub state: JobState,
}

/// The whole catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Catalog {
    format: u32,
    /// The next job id to give.
    pub next_job_id: u32,
    /// Streams by name.
    pub streams: BTreeMap<String, StreamEntry>,
    /// Jobs by name.
    pub jobs: BTreeMap<String, JobEntry>,
    /// Sink tables (`CREATE TABLE ... WITH ('connector' = 'blackhole')`) by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, crate::sink::SinkEntry>,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog {
            format: FORMAT,
            next_job_id: 1,
            streams: BTreeMap::new(),
            jobs: BTreeMap::new(),
            sinks: BTreeMap::new(),
        }
    }
}

/// Largest number of jobs (job ids are the high 24 bits of producer tags).
pub(crate) const MAX_JOBS: usize = 10_000;

impl Catalog {
    /// Load from the store (empty if there is none yet).
    pub fn load(store: &kappa_storage::Store) -> Result<Catalog> {
        let Some(bytes) = store.read_meta(CATALOG_FILE)? else { return Ok(Catalog::default()) };
        let path = store.dir().join("meta").join(CATALOG_FILE);
        let c: Catalog = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Catalog { path: path.clone(), message: e.to_string() })?;
        if c.format != FORMAT {
            return Err(Error::Catalog {
                path,
                message: format!("format {} is not {FORMAT}, the one this build reads", c.format),
            });
        }
        Ok(c)
    }

    /// Persist atomically.
    pub fn save(&self, store: &kappa_storage::Store) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Catalog {
            path: store.dir().join("meta").join(CATALOG_FILE),
            message: e.to_string(),
        })?;
        store.write_meta(CATALOG_FILE, &bytes)?;
        Ok(())
    }

    /// Whether `name` is a materialized view (its log is the view's changelog).
    pub fn is_view(&self, name: &str) -> bool {
        self.jobs.get(name).is_some_and(|j| j.kind == JobKind::MaterializedView && j.output == name)
    }

    /// The jobs that read `stream`.
    /// The jobs that read `stream`, in any state.
    pub fn all_readers_of(&self, stream: &str) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.inputs.iter().chain(&j.uses).any(|i| i == stream))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The log holding stream `name` ([`StreamEntry::log`]; its own name otherwise).
    pub fn log_name(&self, name: &str) -> String {
        self.streams.get(name).and_then(|e| e.log.clone()).unwrap_or_else(|| name.to_string())
    }

    /// The late-data streams of job `job` (`<job>__late`, `<job>__late2`, ...).
    pub fn late_streams_of(&self, job: &str) -> Vec<String> {
        let prefix = crate::late::name_of(job, 0);
        self.streams
            .iter()
            .filter(|(n, e)| n.starts_with(&prefix) && e.job.as_deref() == Some(job))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The logs the catalog's streams are held in.
    pub fn logs(&self) -> std::collections::BTreeSet<String> {
        self.streams.iter().map(|(n, e)| e.log.clone().unwrap_or_else(|| n.clone())).collect()
    }

    pub fn readers_of(&self, stream: &str) -> Vec<String> {
        self.jobs
            .iter()
            .filter(|(_, j)| j.inputs.iter().any(|i| i == stream) && j.state == JobState::Running)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_roundtrips_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = kappa_storage::Store::open(dir.path(), Default::default()).unwrap();
        assert!(Catalog::load(&store).unwrap().streams.is_empty());
        let mut c = Catalog::default();
        c.streams.insert(
            "s".into(),
            StreamEntry {
                watermark: Some(WatermarkEntry { column: "ts".into(), expr: "ts".into() }),
                ..Default::default()
            },
        );
        c.jobs.insert(
            "d".into(),
            JobEntry {
                id: 1,
                kind: JobKind::DerivedStream,
                output: "d".into(),
                query: "SELECT * FROM s".into(),
                inputs: vec!["s".into()],
                uses: Vec::new(),
                replaces: Some("x".into()),
                start: Vec::new(),
                group: Some("w".into()),
                reads: BTreeMap::from([("w".into(), "w__v2".into())]),
                state: JobState::Running,
            },
        );
        c.save(&store).unwrap();
        let back = Catalog::load(&store).unwrap();
        assert_eq!(back.streams, c.streams);
        assert_eq!(back.jobs, c.jobs);
        assert_eq!(back.readers_of("s"), vec!["d".to_string()]);
        store.write_meta(CATALOG_FILE, b"{oops").unwrap();
        let e = Catalog::load(&store).unwrap_err();
        assert!(e.to_string().contains("catalog"), "{e}");
    }
}
