//! Small file-system helpers: atomic replace of metadata files, directory syncs, the data
//! directory lock.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::io::Io;

/// Replace `path` with `bytes` atomically: write a temporary file, fsync it, rename it over
/// `path`, fsync the directory. A crash leaves either the old or the new content, never a mix.
///
/// # Errors
/// [`Error::Io`] naming the step and file that failed.
pub(crate) fn atomic_write(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    io.write_at(&file, 0, bytes).map_err(|e| Error::io("write", &tmp, e))?;
    io.sync_all(&file).map_err(|e| Error::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    sync_parent(io, path)
}

/// Write a new file and sync it, without a rename or a sync of its directory: for files inside
/// a directory that is synced, then renamed into place, as a whole (a stream being created).
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn write_new_file(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("create", path, e))?;
    io.write_at(&file, 0, bytes).map_err(|e| Error::io("write", path, e))?;
    io.sync_all(&file).map_err(|e| Error::io("fsync", path, e))
}

/// The temporary name used by [`atomic_write`] (`name.tmp` beside the file).
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// fsync a directory, so that the creation, rename or removal of its entries is durable.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn sync_dir(io: &dyn Io, dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    io.sync_all(&d).map_err(|e| Error::io("fsync directory", dir, e))
}

/// fsync the directory that holds `path`.
pub(crate) fn sync_parent(io: &dyn Io, path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(io, p),
        _ => sync_dir(io, Path::new(".")),
    }
}

/// Create a directory (and its parents) and make its entry durable.
pub(crate) fn create_dir_durable(io: &dyn Io, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    sync_parent(io, dir)
}

/// Read a whole file, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(|e| Error::io("read", path, e))?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("open", path, e)),
    }
}

/// An exclusive lock on a data directory, held for as long as this value lives.
///
/// The lock is an advisory `flock` on `<dir>/LOCK`; the kernel releases it when the process dies,
/// so a crashed owner never leaves a stale lock behind.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Take the lock of `dir`, or fail with [`Error::Locked`].
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = owner.trim();
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    owner: (!owner.is_empty()).then(|| owner.to_string()),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        // Informational only: who holds the lock.
        let _ = file.set_len(0);
        let _ = file.write_all(format!("pid {}", std::process::id()).as_bytes());
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::StdIo;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.json");
        atomic_write(&StdIo, &p, b"one").unwrap();
        atomic_write(&StdIo, &p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn second_lock_is_refused_with_owner() {
        let dir = tempfile::tempdir().unwrap();
        let _l = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Locked { .. }), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
    }
}
