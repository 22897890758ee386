//! The file operations the log needs, behind a trait so tests can substitute a file system
//! that injects faults or simulates a power cut (`sim::SimFs`, with the feature `sim`).
//!
//! The trait is deliberately small: positional reads and writes, `fdatasync`, truncation,
//! create/rename/remove, directory sync and an exclusive directory lock. Durability rules
//! (which syncs happen when) live in the log, not here.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::Path;

/// An open file.
pub trait FileHandle: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `offset`; may write fewer (a short write).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync`: the file's data, and the metadata needed to read it back, are durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length.
    fn size(&self) -> io::Result<u64>;
}

/// Size and free space of the file system holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes the file system holds in all.
    pub total: u64,
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
}

/// A held exclusive lock on a log directory; released on drop.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// The directory and file operations the log uses.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Whether a directory exists.
    fn dir_exists(&self, path: &Path) -> bool;
    /// Names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>>;
    /// Opens an existing file for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Opens an existing file for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Creates a new file for reading and writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Creates or truncates a file for reading and writing.
    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn FileHandle>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on a directory, failing with `WouldBlock` if another holder has it.
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>>;
    /// Size and free space of the file system holding `path`; `None` where unknown. Cheap
    /// (no disk I/O): called at most every few milliseconds by appenders.
    fn space(&self, path: &Path) -> io::Result<Option<Space>> {
        let _ = path;
        Ok(None)
    }
}

/// Writes all of `buf` at `offset`, retrying short writes and interruptions.
pub fn write_all_at(file: &dyn FileHandle, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads until `buf` is full or end of file; returns the number of bytes read.
pub fn read_full_at(file: &dyn FileHandle, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

/// `fdatasync`, `fsync` and directory syncs issued through [`StdFs`] by this process.
static STD_SYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl StdFs {
    /// Every file and directory sync this process asked the operating system for through
    /// [`StdFs`] (segments, commit journal, checkpoints, directories), successful or not: what
    /// the disk is asked to flush, for the metrics and the benchmark.
    pub fn syncs_total() -> u64 {
        STD_SYNCS.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct StdFile(std::fs::File);

impl FileHandle for StdFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_at(&self.0, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_read(&self.0, buf, offset)
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::write_at(&self.0, buf, offset)
        }
        #[cfg(windows)]
        {
            std::os::windows::fs::FileExt::seek_write(&self.0, buf, offset)
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        STD_SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

#[derive(Debug)]
struct StdDirLock {
    // Held open for its lock; the OS releases the lock when the file is closed.
    _file: std::fs::File,
}

impl DirLock for StdDirLock {}

impl FileSystem for StdFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn dir_exists(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        std::fs::read_dir(path)?.map(|e| e.map(|e| e.file_name())).collect()
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        Ok(Box::new(StdFile(std::fs::File::open(path)?)))
    }

    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // On Unix a directory's entries become durable by fsyncing the directory itself.
        // Windows (NTFS) journals metadata and offers no directory handle to std; nothing to do.
        #[cfg(unix)]
        {
            STD_SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::fs::File::open(path)?.sync_all()
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Ok(())
        }
    }

    fn space(&self, path: &Path) -> io::Result<Option<Space>> {
        #[cfg(unix)]
        {
            let s = rustix::fs::statvfs(path)?;
            Ok(Some(Space {
                total: s.f_blocks.saturating_mul(s.f_frsize),
                available: s.f_bavail.saturating_mul(s.f_frsize),
            }))
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Ok(None)
        }
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(crate::LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdDirLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "log directory is locked by another process",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
