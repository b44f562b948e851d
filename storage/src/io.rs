//! The seam through which every write and sync of the storage layer goes.
//!
//! Production code uses [`StdIo`]. Tests use [`FaultyIo`] to fail or tear the Nth write, or fail
//! the Nth sync, and then check that a reopen recovers a consistent log.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes and syncs of files. Reads are not behind the seam: they cannot damage anything.
pub trait Io: Send + Sync + fmt::Debug {
    /// Write all of `buf` at byte `pos` of `file`.
    ///
    /// # Errors
    /// The operating system's error.
    fn write_at(&self, file: &File, pos: u64, buf: &[u8]) -> io::Result<()>;

    /// Write `parts`, one after the other, at byte `pos` of `file`, as one write. The default
    /// copies them into one buffer; [`StdIo`] writes them with `pwritev`.
    ///
    /// # Errors
    /// The operating system's error.
    fn write_parts_at(&self, file: &File, pos: u64, parts: &[&[u8]]) -> io::Result<()> {
        self.write_at(file, pos, &parts.concat())
    }

    /// `fdatasync`: make the file's data durable.
    ///
    /// # Errors
    /// The operating system's error.
    fn sync_data(&self, file: &File) -> io::Result<()>;

    /// `fsync`: make the file's data and metadata durable (also used on directories).
    ///
    /// # Errors
    /// The operating system's error.
    fn sync_all(&self, file: &File) -> io::Result<()>;
}

/// The real thing.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

impl Io for StdIo {
    fn write_at(&self, file: &File, pos: u64, buf: &[u8]) -> io::Result<()> {
        file.write_all_at(buf, pos)
    }
    fn write_parts_at(&self, file: &File, pos: u64, parts: &[&[u8]]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        let (mut first, mut pos) = (0, pos);
        while first < parts.len() {
            let iov: Vec<libc::iovec> = parts[first..]
                .iter()
                .map(|p| libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                })
                .collect();
            let count = libc::c_int::try_from(iov.len()).unwrap_or(libc::c_int::MAX).min(1024);
            // SAFETY: every iovec points to a live slice of `parts` of the stated length, which
            // the kernel only reads; the fd is valid for the call.
            let n =
                unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), count, pos as libc::off_t) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let mut n = n as usize;
            pos += n as u64;
            // Skip what was written; a part written in part continues from where it stopped.
            while n > 0 {
                if n >= parts[first].len() {
                    n -= parts[first].len();
                    first += 1;
                } else {
                    parts[first] = &parts[first][n..];
                    n = 0;
                }
            }
        }
        Ok(())
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        file.sync_data()
    }
    fn sync_all(&self, file: &File) -> io::Result<()> {
        file.sync_all()
    }
}

/// A fault to inject. Writes and syncs are counted from 1 across every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Inject nothing; only count.
    None,
    /// The Nth write fails without writing anything.
    FailWrite(u64),
    /// The Nth write writes the first half of its buffer, then fails.
    TearWrite(u64),
    /// The Nth sync (data or full) fails.
    FailSync(u64),
}

/// An [`Io`] that counts writes and syncs and injects one [`Fault`].
///
/// With `sticky`, every operation after the fault fails too (a disk that went away); without,
/// only the one operation fails.
#[derive(Debug)]
pub struct FaultyIo {
    fault: Mutex<Fault>,
    sticky: bool,
    writes: AtomicU64,
    syncs: AtomicU64,
    tripped: Mutex<bool>,
}

impl FaultyIo {
    /// A new injector.
    pub fn new(fault: Fault, sticky: bool) -> Self {
        FaultyIo {
            fault: Mutex::new(fault),
            sticky,
            writes: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            tripped: Mutex::new(false),
        }
    }

    /// Replace the fault to inject (counts continue), e.g. to arm it once a workload reached
    /// the step under test.
    pub fn arm(&self, fault: Fault) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
    }

    fn fault(&self) -> Fault {
        self.fault.lock().map(|f| *f).unwrap_or(Fault::None)
    }

    /// Writes seen so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Syncs seen so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// Whether the fault has been injected.
    pub fn tripped(&self) -> bool {
        self.tripped.lock().map(|t| *t).unwrap_or(true)
    }

    fn trip(&self) -> io::Error {
        if let Ok(mut t) = self.tripped.lock() {
            *t = true;
        }
        io::Error::other("injected fault")
    }

    fn dead(&self) -> bool {
        self.sticky && self.tripped()
    }

    /// Count a sync (data or full) and fail it if it is the chosen one.
    fn sync_with(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.dead() {
            return Err(io::Error::other("injected fault (disk gone)"));
        }
        match self.fault() {
            Fault::FailSync(k) if k == n => Err(self.trip()),
            _ => sync(),
        }
    }
}

impl Io for FaultyIo {
    fn write_at(&self, file: &File, pos: u64, buf: &[u8]) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.dead() {
            return Err(io::Error::other("injected fault (disk gone)"));
        }
        match self.fault() {
            Fault::FailWrite(k) if k == n => Err(self.trip()),
            Fault::TearWrite(k) if k == n => {
                file.write_all_at(&buf[..buf.len() / 2], pos)?;
                Err(self.trip())
            }
            _ => file.write_all_at(buf, pos),
        }
    }

    fn sync_data(&self, file: &File) -> io::Result<()> {
        self.sync_with(|| file.sync_data())
    }

    fn sync_all(&self, file: &File) -> io::Result<()> {
        self.sync_with(|| file.sync_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_written_in_order_at_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let big = vec![7u8; 3 << 20];
        for io in [&StdIo as &dyn Io, &FaultyIo::new(Fault::None, false)] {
            io.write_at(&file, 0, b"head").unwrap();
            io.write_parts_at(&file, 4, &[b"ab", b"", &big, b"z"]).unwrap();
            let mut back = Vec::new();
            std::io::Read::read_to_end(&mut &file, &mut back).unwrap();
            let _ = std::io::Seek::seek(&mut &file, std::io::SeekFrom::Start(0));
            assert_eq!(back.len(), 4 + 2 + big.len() + 1);
            assert_eq!(&back[..6], b"headab");
            assert!(back[6..6 + big.len()].iter().all(|b| *b == 7));
            assert_eq!(back[back.len() - 1], b'z');
        }
    }
}
