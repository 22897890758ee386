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
