//! Connectors: the `nexmark` source (a stream filled by the generator, see
//! [`crate::nexmark::source`]) and the `blackhole` sink ([`crate::sink`]), as the engine
//! declares, starts, stops and drops them.
//!
//! A connector stream is an ordinary log with a catalog option `connector`; its source runs
//! while the engine is open and the stream is not sealed, and restarts on open from the
//! stream's row count. A sink is a catalog entry and a DataFusion table, with no log.

use std::collections::BTreeMap;
use std::sync::Arc;

use kappa_sql::Location;
use kappa_sql::ast::CreateStream;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::nexmark::source::{self, NexmarkSource, SourceState};
use crate::output::Output;
use crate::sink::{SINK_CONNECTORS, SinkEntry, SinkTable};

type At = Option<Location>;

/// The stream's source, if its options declare a connector, and the options left for the
/// log itself.
///
/// # Errors
/// An unknown connector, a sink connector on a stream, or malformed connector options.
pub(crate) fn split_connector(
    name: &str,
    declared: &BTreeMap<String, String>,
    at: At,
) -> Result<(Option<NexmarkSource>, BTreeMap<String, String>)> {
    let Some(connector) = declared.get("connector").map(|c| c.to_ascii_lowercase()) else {
        return Ok((None, declared.clone()));
    };
    match connector.as_str() {
        "nexmark" => {
            let settings = NexmarkSource::from_options(name, declared, at)?;
            let rest = declared
                .iter()
                .filter(|(k, _)| *k != "connector" && !source::OPTIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Ok((Some(settings), rest))
        }
        c if SINK_CONNECTORS.contains(&c) => Err(Error::plan(
            format!(
                "'{c}' is a sink connector: declare it with CREATE TABLE {name} (col type, ...) WITH ('connector' = '{c}')"
            ),
            at,
        )),
        "filesystem" => Err(Error::plan(
            format!(
                "a filesystem table is a table: CREATE TABLE {name} (col type, ...) WITH ('connector' = 'filesystem', 'path' = 'file.csv')"
            ),
            at,
        )),
        other => Err(Error::not_supported(
            format!("the connector '{other}' (there are 'nexmark', 'filesystem' and 'blackhole')"),
            at,
        )),
    }
}

/// Settings of [`Engine::create_nexmark`]: the three Nexmark streams `person`, `auction` and
/// `bid`, filled by one deterministic generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkStreams {
    /// Events in all (about 2% people, 6% auctions, 92% bids); then the streams are sealed.
    /// `None`: no end (real-time mode only).
    pub events: Option<u64>,
    /// Events per second of event time.
    pub rate: u64,
    /// Pace the appends by the wall clock, at `rate`.
    pub realtime: bool,
}

impl Default for NexmarkStreams {
    fn default() -> Self {
        NexmarkStreams { events: Some(100_000), rate: 10_000, realtime: false }
    }
}

impl Engine {
    /// Create the streams `person`, `auction` and `bid` with the `nexmark` connector (what
    /// `CREATE STREAM bid WITH ('connector' = 'nexmark', ...)` does for each), and start
    /// filling them. [`Engine::wait_for_jobs`] waits until they are complete.
    ///
    /// # Errors
    /// When one of the streams exists already (the ones created before it stay), or the
    /// settings are invalid (a rate of 0; no event count outside the real-time mode).
    pub async fn create_nexmark(&self, streams: NexmarkStreams) -> Result<()> {
        for kind in crate::nexmark::Kind::ALL {
            let mut sql = format!(
                "CREATE STREAM {} WITH ('connector' = 'nexmark', 'rate' = '{}', 'realtime' = '{}'",
                kind.name(),
                streams.rate,
                streams.realtime
            );
            if let Some(n) = streams.events {
                sql.push_str(&format!(", 'events' = '{n}'"));
            }
            sql.push(')');
            self.execute(&sql).await?;
        }
        Ok(())
    }

    /// On open: register the sinks, and restart the source of every connector stream that is
    /// not sealed yet. What fails is reported in `SHOW JOBS` (as jobs that cannot restart are),
    /// and the engine opens anyway.
    pub(crate) fn open_connectors(&self) {
        let sinks: Vec<(String, SinkEntry)> =
            self.inner.catalog().sinks.iter().map(|(n, e)| (n.clone(), e.clone())).collect();
        for (name, entry) in sinks {
            let registered = crate::sink::schema_of_entry(&name, &entry)
                .and_then(|schema| self.register_sink(&name, &entry.connector, schema));
            if let Err(e) = registered {
                self.inner
                    .restart_errors()
                    .insert(name, format!("the sink cannot be declared: {e}"));
            }
        }
        let sources: Vec<(String, BTreeMap<String, String>)> = self
            .inner
            .catalog()
            .streams
            .iter()
            .filter(|(_, e)| e.options.contains_key("connector"))
            .map(|(n, e)| (n.clone(), e.options.clone()))
            .collect();
        for (name, options) in sources {
            let started = split_connector(&name, &options, None)
                .and_then(|(settings, _)| settings.map_or(Ok(()), |s| self.start_source(&name, s)));
            if let Err(e) = started {
                self.inner
                    .restart_errors()
                    .insert(format!("nexmark-{name}"), format!("the source cannot restart: {e}"));
            }
        }
    }

    pub(crate) fn register_sink(
        &self,
        name: &str,
        connector: &str,
        schema: datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<()> {
        let table = SinkTable { name: name.to_string(), connector: connector.to_string(), schema };
        let _ = self.inner.ctx.deregister_table(name)?;
        self.inner.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Start filling stream `name` (unless it is sealed: its source is done).
    pub(crate) fn start_source(&self, name: &str, settings: NexmarkSource) -> Result<()> {
        let stream = self.inner.log(name)?;
        if stream.info().sealed.is_some() {
            return Ok(());
        }
        let handle = source::start(stream, settings)?;
        self.inner.sources().insert(name.to_string(), handle);
        Ok(())
    }

    /// Stop the source of stream `only`, or every source; wait for them.
    pub(crate) async fn stop_sources(&self, only: Option<&str>) {
        let handles: Vec<_> = {
            let mut sources = self.inner.sources();
            match only {
                Some(name) => sources.remove(name).into_iter().collect(),
                None => sources.drain().map(|(_, h)| h).collect(),
            }
        };
        for h in handles {
            let _ = tokio::task::spawn_blocking(move || h.stop()).await;
        }
    }

    /// Wait until every source that ends by itself has ended.
    ///
    /// # Errors
    /// The error of a source that failed.
    pub(crate) async fn wait_for_sources(&self) -> Result<()> {
        let waiting: Vec<(String, tokio::sync::watch::Receiver<SourceState>)> = self
            .inner
            .sources()
            .iter()
            .filter(|(_, h)| h.bounded)
            .map(|(n, h)| (n.clone(), h.state.clone()))
            .collect();
        for (name, mut state) in waiting {
            let ended = state.wait_for(|s| *s != SourceState::Running).await.map(|s| s.clone());
            if let Ok(SourceState::Failed(m)) = ended {
                return Err(Error::plan(format!("the source of stream {name} failed: {m}"), None));
            }
        }
        Ok(())
    }

    /// `CREATE TABLE t (...) WITH ('connector' = ...)`: a sink, or a nexmark stream.
    pub(crate) async fn create_table(&self, c: CreateStream, text: &str, at: At) -> Result<Output> {
        let connector =
            c.options.iter().find(|(k, _)| k == "connector").map(|(_, v)| v.to_ascii_lowercase());
        match connector.as_deref() {
            Some(s) if SINK_CONNECTORS.contains(&s) => self.create_sink(c, s, text, at),
            Some("filesystem") => self.create_file_table(c, text, at).await,
            Some(_) => self.create_stream(c, text, at).await,
            None => Err(Error::plan(
                format!(
                    "CREATE TABLE declares a connector: add WITH ('connector' = 'blackhole' | 'nexmark' | 'filesystem'); a log of your own is CREATE STREAM {} (...)",
                    c.name
                ),
                at,
            )),
        }
    }

    /// `CREATE TABLE t (...) WITH ('connector' = 'filesystem', 'path' = 'f.csv' [, 'format' =
    /// 'csv' | 'json' | 'parquet'] [, 'header' = 'true'])`: a stream loaded from the file (as
    /// `COPY` loads it: checked whole first, a bad row names its file and line) and sealed, a
    /// table to look up (a lookup join) or to query. The file is read when the statement runs;
    /// a bad file leaves nothing behind.
    async fn create_file_table(&self, mut c: CreateStream, text: &str, at: At) -> Result<Output> {
        let mut path = None;
        let mut copy = kappa_sql::ast::CopyOptions { header: Some(false), ..Default::default() };
        for (k, v) in &c.options {
            match k.as_str() {
                "connector" => {}
                "path" => path = Some(v.strip_prefix("file://").unwrap_or(v).to_string()),
                "format" => {
                    copy.format = Some(match v.to_ascii_lowercase().as_str() {
                        "csv" => kappa_sql::ast::FileFormat::Csv,
                        "json" => kappa_sql::ast::FileFormat::Json,
                        "parquet" => kappa_sql::ast::FileFormat::Parquet,
                        other => {
                            return Err(Error::plan(
                                format!(
                                    "format '{other}' of a filesystem table: csv, json or parquet"
                                ),
                                at,
                            ));
                        }
                    })
                }
                "header" => copy.header = Some(v.eq_ignore_ascii_case("true")),
                other => {
                    return Err(Error::plan(
                        format!(
                            "the filesystem connector takes 'path', 'format' and 'header', not '{other}'"
                        ),
                        at,
                    ));
                }
            }
        }
        let Some(path) = path else {
            return Err(Error::plan("a filesystem table needs 'path' = 'file.csv'", at));
        };
        if c.query.is_some() || c.watermark.is_some() {
            return Err(Error::plan(
                "a filesystem table is its file's rows: no AS SELECT, no WATERMARK",
                at,
            ));
        }
        if c.if_not_exists && self.inner.catalog().streams.contains_key(&c.name) {
            return Ok(Output::Done { tag: "CREATE TABLE".into(), rows: None });
        }
        let name = c.name.clone();
        c.options.clear();
        self.create_stream(c, text, at).await?;
        let loaded = async {
            crate::copy::copy_from(self, &name, &path, &copy, at).await?;
            self.inner.stream(&name, at)?.seal()?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = loaded {
            let _ = self.drop_log_and_job(&name, at).await;
            return Err(e);
        }
        Ok(Output::Done { tag: "CREATE TABLE".into(), rows: None })
    }

    fn create_sink(&self, c: CreateStream, connector: &str, text: &str, at: At) -> Result<Output> {
        if c.or_replace {
            return Err(Error::not_supported("CREATE OR REPLACE TABLE", at));
        }
        if let Some((k, _)) = c.options.iter().find(|(k, _)| k != "connector") {
            return Err(Error::plan(format!("the {connector} sink takes no option '{k}'"), at));
        }
        let exists = {
            let cat = self.inner.catalog();
            cat.sinks.contains_key(&c.name) || cat.streams.contains_key(&c.name)
        };
        if exists {
            if c.if_not_exists {
                return Ok(Output::Done { tag: "CREATE TABLE".into(), rows: None });
            }
            return Err(Error::plan(format!("'{}' already exists", c.name), at));
        }
        let schema = crate::sink::schema_of(&c, at)?;
        let entry = SinkEntry { connector: connector.to_string(), statement: text.to_string() };
        self.register_sink(&c.name, connector, schema)?;
        let mut cat = self.inner.catalog();
        cat.sinks.insert(c.name.clone(), entry);
        if let Err(e) = cat.save(&self.inner.store) {
            cat.sinks.remove(&c.name);
            drop(cat);
            let _ = self.inner.ctx.deregister_table(c.name.as_str());
            return Err(e);
        }
        Ok(Output::Done { tag: "CREATE TABLE".into(), rows: None })
    }

    /// `DROP TABLE t`: a sink (refused while a job writes it).
    pub(crate) fn drop_sink(&self, name: &str, if_exists: bool, at: At) -> Result<Output> {
        let done = Output::Done { tag: "DROP TABLE".into(), rows: None };
        let mut cat = self.inner.catalog();
        if !cat.sinks.contains_key(name) {
            if cat.streams.contains_key(name) {
                return Err(Error::plan(format!("'{name}' is a stream: DROP STREAM {name}"), at));
            }
            return if if_exists {
                Ok(done)
            } else {
                Err(Error::plan(format!("table '{name}' does not exist"), at))
            };
        }
        let writers: Vec<String> =
            cat.jobs.iter().filter(|(_, j)| j.output == name).map(|(n, _)| n.clone()).collect();
        if !writers.is_empty() {
            return Err(Error::plan(
                format!("table '{name}' is written by job {}: DROP JOB first", writers.join(", ")),
                at,
            ));
        }
        let entry = cat.sinks.remove(name);
        if let Err(e) = cat.save(&self.inner.store) {
            if let Some(entry) = entry {
                cat.sinks.insert(name.to_string(), entry);
            }
            return Err(e);
        }
        drop(cat);
        let _ = self.inner.ctx.deregister_table(name);
        Ok(done)
    }
}
