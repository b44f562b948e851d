//! Checkpoint storage: where a job's checkpoints live, written so that a crash at any moment
//! leaves the last complete one usable. ([`crate::recovery`] says when jobs take them and how
//! they restart from them.)
//!
//! A checkpoint of job `j` at epoch `e` is a set of **state files** (Arrow IPC, one per kind of
//! operator state) and one **manifest**: the input offsets, the output end offsets, the
//! watermarks and the state file names, as JSON with a CRC-32C of its body. All are metadata
//! files of the store, replaced atomically (write, fsync, rename, fsync the folder), named
//! `ckpt-<j>-<e, 20 digits>...` so that a listing sorts them by epoch. The state files are
//! written first, the manifest last: a checkpoint exists once its manifest does. Loading takes
//! the newest manifest whose checksum holds and whose state files are all there (a torn,
//! damaged or incomplete one falls back to the one before). Once a manifest is written, the
//! files of the epochs before the previous checkpoint are removed: the last two complete
//! checkpoints stay, so that a damaged newest manifest still has one to fall back to.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use kappa_storage::Store;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Manifest format version written by this build.
pub(crate) const FORMAT: u32 = 1;

/// Where an input stood at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InputPosition {
    /// The stream read.
    pub stream: String,
    /// The offset after the last row the checkpoint covers.
    pub offset: u64,
}

/// Where an output ended at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutputEnd {
    /// The stream written.
    pub stream: String,
    /// Its end offset: rows past it were written after the checkpoint.
    pub end: u64,
}

/// One complete checkpoint of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The format version.
    pub format: u32,
    /// The job's id.
    pub job: u32,
    /// The epoch (increasing per job).
    pub epoch: u64,
    /// Each input's position.
    pub inputs: Vec<InputPosition>,
    /// Each output's end.
    pub outputs: Vec<OutputEnd>,
    /// Each input's watermark (milliseconds), if it has one.
    pub watermarks: Vec<Option<i64>>,
    /// The state files, by the name given to [`Checkpoints::write_state`].
    pub state: Vec<(String, String)>,
    /// When it was taken (milliseconds since 1970).
    #[serde(default)]
    pub taken_ms: i64,
}

impl Manifest {
    /// The manifest of job `job`'s checkpoint `epoch`, taken now: `inputs` read up to
    /// `positions`, each of `outputs` written up to its end.
    pub(crate) fn new(
        job: u32,
        epoch: u64,
        inputs: &[Arc<kappa_storage::Stream>],
        positions: &[u64],
        outputs: Vec<(&kappa_storage::Stream, u64)>,
        watermarks: Vec<Option<i64>>,
        state: Vec<(String, String)>,
    ) -> Manifest {
        Manifest {
            format: FORMAT,
            job,
            epoch,
            inputs: inputs
                .iter()
                .zip(positions)
                .map(|(s, p)| InputPosition { stream: s.name().to_string(), offset: *p })
                .collect(),
            outputs: outputs
                .into_iter()
                .map(|(s, end)| OutputEnd { stream: s.name().to_string(), end })
                .collect(),
            watermarks,
            state,
            taken_ms: crate::recovery::now_ms(),
        }
    }
}

/// The checkpoints of one job.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoints {
    store: Arc<Store>,
    job: u32,
}

fn corrupt(what: String) -> Error {
    Error::plan(format!("checkpoint: {what}"), None)
}

impl Checkpoints {
    /// The checkpoints of job `job` in `store`.
    pub(crate) fn new(store: Arc<Store>, job: u32) -> Checkpoints {
        Checkpoints { store, job }
    }

    /// The folder the files are in (for messages).
    pub(crate) fn dir(&self) -> std::path::PathBuf {
        self.store.dir().join("meta")
    }

    fn prefix(&self) -> String {
        format!("ckpt-{}-", self.job)
    }

    fn manifest_name(&self, epoch: u64) -> String {
        format!("{}{epoch:020}.manifest", self.prefix())
    }

    /// Write state `name` of epoch `epoch` (Arrow IPC): the file name to record in the
    /// manifest.
    ///
    /// # Errors
    /// When the batches cannot be encoded (different schemas) or the file written.
    pub(crate) fn write_state(
        &self,
        epoch: u64,
        name: &str,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(corrupt(format!("bad state name '{name}'")));
        }
        let mut bytes = Vec::new();
        {
            let mut w = FileWriter::try_new(&mut bytes, schema)?;
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        let file = format!("{}{epoch:020}-{name}.arrow", self.prefix());
        self.store.write_meta(&file, &bytes)?;
        Ok(file)
    }

    /// Read a state file named in a manifest.
    ///
    /// # Errors
    /// When it is missing or not Arrow IPC.
    pub(crate) fn read_state(&self, file: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let Some(bytes) = self.store.read_meta(file)? else {
            return Err(corrupt(format!("state file {file} is missing")));
        };
        let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)?;
        let schema = reader.schema();
        Ok((schema, reader.collect::<std::result::Result<Vec<_>, _>>()?))
    }

    /// The epoch of the job's newest manifest file, whole or not (a new checkpoint takes a
    /// later one, so that it never replaces a file a fallback may need).
    ///
    /// # Errors
    /// When the metadata folder cannot be read.
    pub(crate) fn last_epoch(&self) -> Result<u64> {
        let prefix = self.prefix();
        Ok(self
            .store
            .meta_names(&prefix)?
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix)?.get(..20)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    /// Make `manifest` the job's last checkpoint (its state files written before), then remove
    /// the files of the epochs before the previous checkpoint.
    ///
    /// # Errors
    /// When the manifest cannot be written (the previous checkpoint stays the last); a failure
    /// to remove old files is not an error (they are removed at the next commit).
    pub(crate) fn commit(&self, manifest: &Manifest) -> Result<()> {
        let body = serde_json::to_string(manifest).map_err(|e| corrupt(e.to_string()))?;
        let text = format!("{body}\n{:08x}\n", crc32c::crc32c(body.as_bytes()));
        self.store.write_meta(&self.manifest_name(manifest.epoch), text.as_bytes())?;
        // Keep this checkpoint and the one before it.
        let names = self.store.meta_names(&self.prefix())?;
        let manifests: Vec<&String> = names.iter().filter(|n| n.ends_with(".manifest")).collect();
        if manifests.len() > 2 {
            let keep_from = manifests[manifests.len() - 2].trim_end_matches(".manifest");
            for name in &names {
                if name.as_str() < keep_from {
                    let _ = self.store.remove_meta(name);
                }
            }
        }
        Ok(())
    }

    /// A manifest file's content, if whole and intact.
    fn parse(text: &[u8]) -> Option<Manifest> {
        let text = std::str::from_utf8(text).ok()?;
        let (body, crc) = text.trim_end().rsplit_once('\n')?;
        if u32::from_str_radix(crc, 16).ok()? != crc32c::crc32c(body.as_bytes()) {
            return None;
        }
        let m: Manifest = serde_json::from_str(body).ok()?;
        (m.format == FORMAT).then_some(m)
    }

    /// The newest usable checkpoint: its manifest whole, its checksum right and its state
    /// files present (older ones are tried in turn).
    ///
    /// # Errors
    /// When the metadata folder cannot be read.
    pub(crate) fn latest(&self) -> Result<Option<Manifest>> {
        let mut manifests: Vec<String> = self
            .store
            .meta_names(&self.prefix())?
            .into_iter()
            .filter(|n| n.ends_with(".manifest"))
            .collect();
        manifests.reverse();
        for name in manifests {
            let Some(bytes) = self.store.read_meta(&name)? else { continue };
            let Some(m) = Self::parse(&bytes) else { continue };
            if m.job != self.job {
                continue;
            }
            let mut whole = true;
            for (_, file) in &m.state {
                whole &= self.store.read_meta(file)?.is_some();
            }
            if whole {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// Remove every checkpoint of the job (it was dropped).
    ///
    /// # Errors
    /// When a file cannot be removed.
    pub(crate) fn forget(&self) -> Result<()> {
        for name in self.store.meta_names(&self.prefix())? {
            self.store.remove_meta(&name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use kappa_storage::{Fault, FaultyIo, StoreOptions};

    fn state(v: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![v, v + 1]))]).unwrap()
    }

    /// Write a whole checkpoint of `epoch` (one state file).
    fn checkpoint(c: &Checkpoints, epoch: u64) -> Result<Manifest> {
        let file = c.write_state(epoch, "windows", &state(0).schema(), &[state(epoch as i64)])?;
        let m = Manifest {
            format: FORMAT,
            job: c.job,
            epoch,
            inputs: vec![InputPosition { stream: "bid".into(), offset: epoch * 100 }],
            outputs: vec![OutputEnd { stream: "out".into(), end: epoch * 10 }],
            watermarks: vec![Some(epoch as i64 * 1000)],
            state: vec![("windows".into(), file)],
            taken_ms: 0,
        };
        c.commit(&m)?;
        Ok(m)
    }

    #[test]
    fn the_newest_whole_checkpoint_is_loaded_and_a_damaged_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
        let c = Checkpoints::new(Arc::clone(&store), 7);
        assert_eq!(c.latest().unwrap(), None);
        checkpoint(&c, 1).unwrap();
        let two = checkpoint(&c, 2).unwrap();
        let three = checkpoint(&c, 3).unwrap();
        assert_eq!(c.latest().unwrap(), Some(three.clone()));
        assert_eq!(c.read_state(&three.state[0].1).unwrap().1, vec![state(3)]);
        // Epoch 1's files are gone; 2 and 3 stay (a manifest and a state file each).
        assert_eq!(store.meta_names("ckpt-7-").unwrap().len(), 4);
        // Another job's checkpoints are apart.
        assert_eq!(Checkpoints::new(Arc::clone(&store), 70).latest().unwrap(), None);
        // A torn newest manifest falls back to the one before; so does a missing one.
        let text = store.read_meta(&c.manifest_name(3)).unwrap().unwrap();
        store.write_meta(&c.manifest_name(3), &text[..text.len() / 2]).unwrap();
        assert_eq!(c.latest().unwrap(), Some(two.clone()));
        let mut flipped = text.clone();
        flipped[20] ^= 1;
        store.write_meta(&c.manifest_name(3), &flipped).unwrap();
        assert_eq!(c.latest().unwrap(), Some(two.clone()), "a damaged byte");
        store.remove_meta(&c.manifest_name(3)).unwrap();
        assert_eq!(c.latest().unwrap(), Some(two.clone()));
        // A manifest whose state file is missing is skipped.
        let four = checkpoint(&c, 4).unwrap();
        store.remove_meta(&four.state[0].1).unwrap();
        assert_eq!(c.latest().unwrap(), Some(two));
        c.forget().unwrap();
        assert!(store.meta_names("ckpt-7-").unwrap().is_empty());
        assert_eq!(c.latest().unwrap(), None);
    }

    #[test]
    fn a_failed_write_or_sync_during_a_checkpoint_leaves_the_previous_one() {
        // For every N: the Nth write (failed or torn) or sync of checkpoint 2 fails; the last
        // checkpoint is then 1 (or 2 when the failure came after its manifest was in place),
        // 2 if its commit succeeded, and always whole.
        for n in 1..40 {
            for fault in [Fault::FailWrite(n), Fault::TearWrite(n), Fault::FailSync(n)] {
                let dir = tempfile::tempdir().unwrap();
                let io = Arc::new(FaultyIo::new(Fault::None, false));
                let options = StoreOptions { io: Arc::clone(&io) as Arc<dyn kappa_storage::Io> };
                let store = Arc::new(Store::open(dir.path(), options).unwrap());
                let c = Checkpoints::new(Arc::clone(&store), 1);
                checkpoint(&c, 1).unwrap();
                let (writes, syncs) = (io.writes(), io.syncs());
                io.arm(match fault {
                    Fault::FailWrite(k) => Fault::FailWrite(writes + k),
                    Fault::TearWrite(k) => Fault::TearWrite(writes + k),
                    Fault::FailSync(k) => Fault::FailSync(syncs + k),
                    Fault::None => Fault::None,
                });
                let done = checkpoint(&c, 2).is_ok();
                // The files are read again after a "restart" (a new store on the folder).
                drop(c);
                drop(store);
                let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).unwrap());
                let c = Checkpoints::new(store, 1);
                let m = c.latest().unwrap().expect("a checkpoint survives");
                // (A failed sync of the folder after the manifest's rename leaves it unknown
                // whether epoch 2 is there: either is whole.)
                if done {
                    assert_eq!(m.epoch, 2, "{fault:?}");
                } else {
                    assert!(m.epoch == 1 || m.epoch == 2, "{fault:?}");
                }
                assert_eq!(c.read_state(&m.state[0].1).unwrap().1, vec![state(m.epoch as i64)]);
            }
        }
    }
}
