//! The store: a data directory of streams, owned by one process at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::datatypes::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::compact::Compactor;
use crate::error::{Error, Result};
use crate::fsutil::{
    DirLock, atomic_write, create_dir_durable, read_optional, sync_dir, write_new_file,
};
use crate::io::{Io, StdIo};
use crate::options::StreamOptions;
use crate::partition::Partition;
use crate::schema::is_event_time_type;
use crate::stream::Stream;

const STREAMS: &str = "streams";
/// Folder of metadata files written for the engine (`Store::write_meta`).
const META_DIR: &str = "meta";
const STREAM_FILE: &str = "stream.json";
const SCHEMA_FILE: &str = "schema.arrow";
/// Longest stream name.
pub const MAX_NAME_LEN: usize = 128;
/// Most streams one store holds.
pub const MAX_STREAMS: usize = 10_000;

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The I/O seam (tests inject faults here).
    pub io: Arc<dyn Io>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { io: Arc::new(StdIo) }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StreamFile {
    format: u32,
    name: String,
    options: StreamOptions,
}

/// A data directory of streams.
///
/// Holds the directory's lock while it lives; a second `Store` on the same directory, in this
/// process or another, gets [`Error::Locked`]. Dropping the store closes it (see
/// [`Store::close`], which reports errors).
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    io: Arc<dyn Io>,
    streams: Mutex<BTreeMap<String, Arc<Stream>>>,
    closed: Mutex<bool>,
    compactor: Arc<Compactor>,
    /// Held until `close`: then another `Store` (in this process or another) may open the
    /// directory.
    lock: Mutex<Option<DirLock>>,
}

impl Store {
    /// Open (creating if needed) the data directory `dir`, lock it, and recover every stream.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process owns it; [`Error::Corruption`] when synced data is
    /// damaged (nothing is truncated in that case); [`Error::Io`]; [`Error::BadMetadata`].
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        let io = options.io;
        create_dir_durable(io.as_ref(), &dir)?;
        let lock = DirLock::acquire(&dir)?;
        let streams_dir = dir.join(STREAMS);
        create_dir_durable(io.as_ref(), &streams_dir)?;
        let compactor = Compactor::start(&dir)?;
        // Stops the compactor unless the store gets built (an error or a panic on the way).
        struct StopOnFailure<'a>(&'a Compactor, bool);
        impl Drop for StopOnFailure<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.stop();
                }
            }
        }
        let mut guard = StopOnFailure(&compactor, false);
        let mut streams = BTreeMap::new();
        let rd = std::fs::read_dir(&streams_dir).map_err(|e| Error::io("list", &streams_dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io("list", &streams_dir, e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                // An unfinished create or drop: never visible, so remove it.
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            let stream = open_stream(&entry.path(), &io, &compactor)?;
            streams.insert(name, Arc::new(stream));
        }
        guard.1 = true;
        drop(guard);
        Ok(Store {
            dir,
            io,
            streams: Mutex::new(streams),
            closed: Mutex::new(false),
            compactor,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replace the metadata file `name` (in `<data dir>/meta/`) with `bytes`, atomically
    /// (write, fsync, rename, fsync the directory): a crash leaves the old or the new content.
    /// For the engine's catalog and job progress records.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name that is not a plain file name; [`Error::Io`].
    pub fn write_meta(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.meta_path(name)?;
        if let Some(parent) = path.parent()
            && !parent.is_dir()
        {
            create_dir_durable(self.io.as_ref(), parent)?;
        }
        atomic_write(self.io.as_ref(), &path, bytes)
    }

    /// The content of metadata file `name`, or `None` if it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; [`Error::Io`].
    pub fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        read_optional(&self.meta_path(name)?)
    }

    /// The names of the metadata files that start with `prefix`, sorted.
    ///
    /// # Errors
    /// [`Error::Io`] when the metadata folder cannot be listed.
    pub fn meta_names(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.dir.join(META_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &dir, e))?;
            if let Some(name) = entry.file_name().to_str()
                && name.starts_with(prefix)
                && !name.ends_with(".tmp")
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Remove metadata file `name` (absent is fine).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name; [`Error::Io`].
    pub fn remove_meta(&self, name: &str) -> Result<()> {
        let path = self.meta_path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(self.io.as_ref(), &self.dir.join(META_DIR)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &path, e)),
        }
    }

    fn meta_path(&self, name: &str) -> Result<PathBuf> {
        let ok = !name.is_empty()
            && name.len() <= 200
            && !name.starts_with('.')
            && !name.ends_with(".tmp")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(Error::InvalidArgument(format!("bad metadata file name '{name}'")));
        }
        Ok(self.dir.join(META_DIR).join(name))
    }

    fn lock_streams(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Stream>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Create a stream. The stream appears whole or not at all, even across a crash.
    ///
    /// # Errors
    /// [`Error::StreamExists`]; [`Error::InvalidArgument`] for a bad name, bad options, or an
    /// event-time column that is missing or not a timestamp; [`Error::LimitExceeded`].
    pub fn create_stream(
        &self,
        name: &str,
        schema: SchemaRef,
        options: StreamOptions,
    ) -> Result<Arc<Stream>> {
        self.check_open(name)?;
        validate_name(name)?;
        options.validate()?;
        if let Some(col) = &options.event_time_column {
            let field = schema.field_with_name(col).map_err(|_| {
                Error::InvalidArgument(format!("event-time column '{col}' is not in the schema"))
            })?;
            if !is_event_time_type(field.data_type()) {
                return Err(Error::InvalidArgument(format!(
                    "event-time column '{col}' has type {}, expected a TIMESTAMP",
                    field.data_type()
                )));
            }
        }
        if schema.fields().is_empty() {
            return Err(Error::InvalidArgument("a stream needs at least one column".into()));
        }
        let mut streams = self.lock_streams();
        if streams.contains_key(name) {
            return Err(Error::StreamExists(name.to_string()));
        }
        if streams.len() >= MAX_STREAMS {
            return Err(Error::LimitExceeded(format!(
                "a store holds at most {MAX_STREAMS} streams"
            )));
        }
        let io = self.io.as_ref();
        let streams_dir = self.dir.join(STREAMS);
        let final_dir = streams_dir.join(name);
        let tmp_dir = streams_dir.join(format!(".create-{name}"));
        let _ = std::fs::remove_dir_all(&tmp_dir);
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|e| Error::io("create directory", &tmp_dir, e))?;
        let file = StreamFile { format: 1, name: name.to_string(), options: options.clone() };
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::InvalidArgument(format!("cannot encode stream options: {e}")))?;
        // The directory appears whole, by the rename below: its files need no renames of
        // their own, only syncs before the directory's.
        write_new_file(io, &tmp_dir.join(STREAM_FILE), &json)?;
        write_new_file(io, &tmp_dir.join(SCHEMA_FILE), &schema_to_bytes(&schema)?)?;
        for p in 0..options.partitions {
            Partition::create_files(io, &tmp_dir.join(partition_dir_name(p)), &options)?;
        }
        sync_dir(io, &tmp_dir)?;
        std::fs::rename(&tmp_dir, &final_dir).map_err(|e| Error::io("rename", &final_dir, e))?;
        sync_dir(io, &streams_dir)?;
        let stream = Arc::new(open_stream(&final_dir, &self.io, &self.compactor)?);
        streams.insert(name.to_string(), Arc::clone(&stream));
        Ok(stream)
    }

    /// The stream called `name`.
    ///
    /// # Errors
    /// [`Error::StreamNotFound`].
    pub fn stream(&self, name: &str) -> Result<Arc<Stream>> {
        self.lock_streams()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::StreamNotFound(name.to_string()))
    }

    /// Names of all streams, sorted.
    pub fn stream_names(&self) -> Vec<String> {
        self.lock_streams().keys().cloned().collect()
    }

    /// Delete a stream and its data. Readers that still hold it keep reading what they mapped or
    /// opened; new lookups fail.
    ///
    /// # Errors
    /// [`Error::StreamNotFound`]; [`Error::Io`].
    pub fn drop_stream(&self, name: &str) -> Result<()> {
        let mut streams = self.lock_streams();
        let stream =
            streams.get(name).cloned().ok_or_else(|| Error::StreamNotFound(name.to_string()))?;
        // Handles that outlive the drop must not write into a stream created later under the
        // same name.
        stream.close()?;
        let streams_dir = self.dir.join(STREAMS);
        let doomed = streams_dir.join(format!(".drop-{name}"));
        let _ = std::fs::remove_dir_all(&doomed);
        std::fs::rename(stream.dir(), &doomed).map_err(|e| Error::io("rename", stream.dir(), e))?;
        sync_dir(self.io.as_ref(), &streams_dir)?;
        streams.remove(name);
        let _ = std::fs::remove_dir_all(&doomed);
        Ok(())
    }

    /// Block until background compaction has nothing queued or running, or `timeout` passes.
    /// Returns whether it is idle. Compaction needs no waiting for correctness (reads are the
    /// same before and after); this is for benchmarks and tests.
    pub fn wait_for_compaction(&self, timeout: std::time::Duration) -> bool {
        self.compactor.wait_idle(timeout)
    }

    /// Close every stream: sync, write indexes and recovery points, then release the
    /// directory's lock. Idempotent. A compaction in progress is abandoned (its segment stays
    /// as it was). Handles of the closed store's streams refuse writes ([`Error::Closed`]).
    ///
    /// # Errors
    /// The first error met; the other streams are still closed.
    pub fn close(&self) -> Result<()> {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        if *closed {
            return Ok(());
        }
        *closed = true;
        self.compactor.stop();
        let mut first = None;
        for s in self.lock_streams().values() {
            if let Err(e) = s.close()
                && first.is_none()
            {
                first = Some(e);
            }
        }
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        first.map_or(Ok(()), Err)
    }

    fn check_open(&self, stream: &str) -> Result<()> {
        if *self.closed.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(Error::Closed { stream: stream.to_string() });
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn partition_dir_name(p: u32) -> String {
    format!("p{p}")
}

/// Stream names are SQL identifiers: ASCII letters, digits and `_`, not starting with a digit.
fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid stream name '{name}': use 1 to {MAX_NAME_LEN} ASCII letters, digits and '_', not starting with a digit"
        )))
    }
}

fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, schema)?;
    w.finish()?;
    drop(w);
    Ok(out)
}

fn schema_from_bytes(path: &Path, bytes: &[u8]) -> Result<SchemaRef> {
    let r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| Error::BadMetadata { path: path.to_path_buf(), detail: e.to_string() })?;
    Ok(r.schema())
}

fn open_stream(dir: &Path, io: &Arc<dyn Io>, compactor: &Arc<Compactor>) -> Result<Stream> {
    let sf_path = dir.join(STREAM_FILE);
    let bytes = read_optional(&sf_path)?
        .ok_or_else(|| Error::BadMetadata { path: sf_path.clone(), detail: "missing".into() })?;
    let file: StreamFile = serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadMetadata { path: sf_path.clone(), detail: e.to_string() })?;
    let schema_path = dir.join(SCHEMA_FILE);
    let schema_bytes = read_optional(&schema_path)?.ok_or_else(|| Error::BadMetadata {
        path: schema_path.clone(),
        detail: "missing".into(),
    })?;
    let schema = schema_from_bytes(&schema_path, &schema_bytes)?;
    let event_column = match &file.options.event_time_column {
        Some(c) => Some(schema.index_of(c).map_err(|_| Error::BadMetadata {
            path: sf_path.clone(),
            detail: format!("event-time column '{c}' is not in the schema"),
        })?),
        None => None,
    };
    file.options
        .validate()
        .map_err(|e| Error::BadMetadata { path: sf_path.clone(), detail: e.to_string() })?;
    let options = Arc::new(file.options);
    let mut partitions = Vec::new();
    for p in 0..options.partitions {
        let partition = Partition::open(
            &file.name,
            dir.join(partition_dir_name(p)),
            Arc::clone(&schema),
            Arc::clone(&options),
            event_column,
            Arc::clone(io),
            Arc::clone(compactor),
        )?;
        partitions.push(Arc::new_cyclic(|me| Partition { me: me.clone(), ..partition }));
    }
    Ok(Stream::new(file.name, dir.to_path_buf(), schema, options, partitions))
}
