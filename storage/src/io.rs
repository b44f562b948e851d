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
