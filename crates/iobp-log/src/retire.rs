//! Deleting a log for good, crash-safely.
//!
//! A log's directory cannot be removed atomically: a crash half-way through
//! `remove_dir_all` would leave a log with some segments gone, which the next start would
//! open as a damaged log. So deletion has two steps:
//!
//! 1. [`crate::Log::retire`] closes the log and **renames** its directory, in the same
//!    parent, to `.deleted-<name>-<nanoseconds>`, then syncs the parent directory. From the
//!    moment it returns, no start opens the log again (the name is not a pair's any more);
//!    the owner can drop its own record of the log (a configuration row, say).
//! 2. [`Retired::remove`] removes the renamed directory and syncs the parent. A crash before
//!    or during this step leaves a `.deleted-…` directory that [`remove_retired`] clears at
//!    the next start — before any log under that root opens, and before a commit group
//!    replays its journal (which never replays into a `.deleted-` directory).
//!
//! Both go through the [`FileSystem`] trait, so the simulated file system exercises the
//! production path, power cuts included.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::fs::FileSystem;

/// The name prefix of a directory being deleted.
pub const RETIRED_PREFIX: &str = ".deleted-";

/// A log directory moved aside for deletion (see the module docs).
#[derive(Debug)]
#[must_use = "a retired log's directory stays on disk until removed (or until the next start)"]
pub struct Retired {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
}

impl Retired {
    /// Where the directory is now.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and every file in it, and syncs its parent.
    pub fn remove(self) -> Result<()> {
        self.fs
            .remove_dir_all(&self.path)
            .map_err(|e| Error::io("remove a deleted log's directory", &self.path, e))?;
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.fs.sync_dir(parent).map_err(|e| Error::io("sync directory", parent, e))?;
        }
        Ok(())
    }
}

/// Renames `dir` aside (durably) for deletion. The log living there must be closed.
pub(crate) fn move_aside(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Retired> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let nanos =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let path = parent.join(format!("{RETIRED_PREFIX}{name}-{nanos}"));
    fs.rename(dir, &path).map_err(|e| Error::io("move a deleted log's directory aside", dir, e))?;
    fs.sync_dir(parent).map_err(|e| Error::io("sync directory", parent, e))?;
    Ok(Retired { fs, path })
}

/// Moves the directory of a log that is not open (no process has it: an offline tool holding
/// the data directory's lock) aside for deletion, like [`crate::Log::retire`] does for an open
/// one; `None` if there is no such directory.
pub fn retire_closed(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Option<Retired>> {
    if !fs.dir_exists(dir) {
        return Ok(None);
    }
    move_aside(fs, dir).map(Some)
}

/// Whether a directory name under a logs root is a deletion in progress.
pub(crate) fn is_retired(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with(RETIRED_PREFIX)
}

/// Removes the directories under `root` whose deletion a crash interrupted; returns how many.
/// A root that does not exist holds none.
pub fn remove_retired(fs: &dyn FileSystem, root: &Path) -> Result<usize> {
    if !fs.dir_exists(root) {
        return Ok(0);
    }
    let names = fs.list_dir(root).map_err(|e| Error::io("list directory", root, e))?;
    let mut removed = 0;
    for name in names.into_iter().filter(|n| is_retired(n)) {
        let path = root.join(&name);
        fs.remove_dir_all(&path)
            .map_err(|e| Error::io("remove a deleted log's directory", &path, e))?;
        removed += 1;
    }
    if removed > 0 {
        fs.sync_dir(root).map_err(|e| Error::io("sync directory", root, e))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;

    #[test]
    fn a_closed_log_directory_is_moved_aside_then_removed_and_a_missing_one_is_none() {
        let tmp = tempfile::tempdir().expect("tmp");
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let dir = tmp.path().join("pair-a");
        assert!(retire_closed(fs.clone(), &dir).expect("no directory").is_none());
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("00000000000000000000.seg"), b"x").expect("write");
        let retired = retire_closed(fs.clone(), &dir).expect("retire").expect("moved");
        assert!(!dir.exists());
        let name = retired.path().file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with(".deleted-pair-a-"), "{name}");
        // Not removed yet: what a crash here leaves, the next start clears.
        assert_eq!(remove_retired(&StdFs, tmp.path()).expect("clear"), 1);
        assert!(!retired.path().exists());
    }
}
