//! Where ioBufferPro keeps its data, and the lock that lets one instance use it at a time.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// `--data-dir`, else `IOBP_DATA_DIR` (clap reads it), else the platform default:
/// `/var/lib/iobufferpro` for root on Unix, `$XDG_DATA_HOME/iobufferpro` or
/// `~/.local/share/iobufferpro` for other users, `%ProgramData%\ioBufferPro` on Windows.
pub fn resolve(arg: Option<PathBuf>) -> PathBuf {
    if let Some(d) = arg {
        return d;
    }
    #[cfg(windows)]
    {
        let base =
            std::env::var_os("ProgramData").map_or_else(|| PathBuf::from("."), PathBuf::from);
        base.join("ioBufferPro")
    }
    #[cfg(not(windows))]
    {
        if is_root() {
            return PathBuf::from("/var/lib/iobufferpro");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("iobufferpro");
        }
        match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".local/share/iobufferpro"),
            None => PathBuf::from("iobufferpro-data"),
        }
    }
}

#[cfg(not(windows))]
fn is_root() -> bool {
    // `id -u` would need a process; the owner of /proc/self is our effective user on Linux.
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::env::var("USER").is_ok_and(|u| u == "root")
    }
}

/// From now on every file this process creates is private to its user (files 0600,
/// directories 0700): the buffers hold message payloads and the store holds relay passwords.
pub fn private_from_now_on() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Takes away group and other permissions from the data directory and everything in it (a
/// directory made by an earlier version, or copied in): returns how many entries changed.
/// Symbolic links are neither followed nor changed.
// Elsewhere than on Unix nothing is changed here (the Windows service restricts its directory
// when it is installed), but the callers keep one signature.
#[cfg_attr(not(unix), allow(clippy::unnecessary_wraps))]
pub fn make_private(dir: &Path) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tighten = |path: &Path, meta: &std::fs::Metadata| -> std::io::Result<usize> {
            let mode = meta.permissions().mode() & 0o7777;
            let others = 0o077;
            if mode & others == 0 {
                return Ok(0);
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
            Ok(1)
        };
        let mut changed = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let meta = std::fs::symlink_metadata(&d)?;
            if !meta.is_dir() {
                continue;
            }
            changed += tighten(&d, &meta)?;
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                // `DirEntry::metadata` does not follow a symbolic link.
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_file() {
                    changed += tighten(&entry.path(), &meta)?;
                }
            }
        }
        Ok(changed)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(0)
    }
}

/// Held while an instance runs on a data directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

const LOCK_FILE: &str = "iobufferpro.lock";

/// Takes the data directory's lock, creating the directory if needed.
pub fn lock(dir: &Path) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another ioBufferPro is running on data directory {} (stop it first)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The data directory's format: what this binary writes and reads. A data directory records
/// its format in [`FORMAT_FILE`]; the history:
/// - **1** — every release before the file existed: the store (`iobufferpro.db`, its schema
///   versioned by `SQLite`'s `user_version` and migrated by the store itself), the buffers
///   (`logs/`, each segment with its own header version), the commit journal (`journal/`),
///   parked messages (`parked/`).
/// - **2** — adds [`FORMAT_FILE`] and the per-message trace (`trace/`, created on demand).
///   From 1 nothing is converted: the file is written once everything opened.
pub const FORMAT: u32 = 2;
/// The file that records a data directory's format.
pub const FORMAT_FILE: &str = "FORMAT";

/// What a data directory's format asks of this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Nothing there yet: it will be written in this format.
    Empty,
    /// An older format: opened (and migrated where a step needs it), then recorded as
    /// [`FORMAT`].
    Older(u32),
    /// This binary's format.
    Current,
}

/// Reads `dir`'s format before anything touches the directory. A newer format is refused —
/// with nothing written, not even the lock file — so that an older binary started by mistake
/// (a downgrade) cannot damage what a newer one wrote.
pub fn check_format(dir: &Path) -> anyhow::Result<Format> {
    let path = dir.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let used = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
            return Ok(if used { Format::Older(1) } else { Format::Empty });
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let found: u32 =
        text.split_whitespace().last().and_then(|n| n.parse().ok()).with_context(|| {
            format!("{} does not say a format: {:?}", path.display(), text.trim())
        })?;
    match found.cmp(&FORMAT) {
        std::cmp::Ordering::Greater => bail!(
            "data directory {} has format {found}, written by a newer ioBufferPro; this one \
             ({}) reads formats up to {FORMAT}. Nothing was changed: run the newer version, or \
             restore a backup taken before the upgrade",
            dir.display(),
            env!("CARGO_PKG_VERSION")
        ),
        std::cmp::Ordering::Less => Ok(Format::Older(found)),
        std::cmp::Ordering::Equal => Ok(Format::Current),
    }
}

/// Records that `dir` is in this binary's format: written to a temporary file, synced,
/// renamed over, and the directory synced, so a crash leaves the old record or the new one.
pub fn record_format(dir: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = dir.join(FORMAT_FILE);
    let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        writeln!(f, "iobufferpro data format {FORMAT}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_read_refused_when_newer_and_recorded_atomically() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).expect("dir");
        assert_eq!(check_format(&dir).expect("empty"), Format::Empty);
        std::fs::write(dir.join("iobufferpro.db"), b"x").expect("write");
        assert_eq!(check_format(&dir).expect("old"), Format::Older(1));
        record_format(&dir).expect("record");
        assert_eq!(check_format(&dir).expect("current"), Format::Current);
        assert!(!dir.join("FORMAT.tmp").exists());
        std::fs::write(dir.join(FORMAT_FILE), "iobufferpro data format 99\n").expect("write");
        let e = check_format(&dir).expect_err("newer").to_string();
        assert!(e.contains("format 99") && e.contains("Nothing was changed"), "{e}");
        std::fs::write(dir.join(FORMAT_FILE), "garbage").expect("write");
        assert!(check_format(&dir).is_err());
    }
}
