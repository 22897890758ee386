//! An in-memory file system that models what survives a power cut, and injects faults.
//!
//! Every file has two contents: what readers see (the page cache) and what is durable (as of
//! its last `sync_data`). Every directory has two entry tables: the current one and the one
//! made durable by its last `sync_dir`. [`SimFs::power_cut`] returns a new file system built
//! only from durable state: unsynced data and unsynced creations, renames and removals are
//! gone, exactly the guarantees POSIX gives and nothing more. Optionally part of each file's
//! unsynced tail survives, possibly as garbage, as a torn write would leave it.
//!
//! After a power cut the old `SimFs` (and every handle opened from it) fails every operation
//! with `EIO`, so a log instance still running on it cannot touch the new state.
//!
//! [`Faults`] injects the failures a real disk produces: short writes, `EIO` from `fdatasync`,
//! `ENOSPC` after a byte budget or when the file system's capacity is used up, `EIO` on
//! writes, slow `fdatasync`s.
//!
//! A failed `fdatasync` behaves as Linux does since 4.13 ("fsyncgate"): the data it should have
//! written stays readable in the page cache, but it is no longer dirty, so a later successful
//! `fdatasync` does not write it either. What a power cut then keeps in its place is what was
//! durable before (zeros past the old end). A log that trusted those bytes after the error
//! would hold a hole that only a power cut reveals.
//!
//! This module is part of the public API, behind the cargo feature `sim`, so that crates
//! above the log can run their own crash tests (they enable it in their dev-dependencies);
//! nothing that ships compiles it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{DirLock, FileHandle, FileSystem};

/// Faults to inject. Counters count successful operations since the faults were set.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// After this many successful `sync_data` calls, every further one fails with `EIO`.
    pub fail_sync_after: Option<u64>,
    /// After this many successful `write_at` calls, every further one fails with `EIO`.
    pub fail_write_after: Option<u64>,
    /// Once this many bytes have been written in total, writes fail with `ENOSPC`
    /// (a write that crosses the limit is cut short first).
    pub enospc_after_bytes: Option<u64>,
    /// Every write stores at most half of its buffer (at least one byte) and returns that count.
    pub short_writes: bool,
    /// `sync_dir` fails with `EIO`.
    pub fail_sync_dir: bool,
    /// The file system holds at most this many bytes of file data (all files reachable from a
    /// directory); a write or extension beyond it fails with `ENOSPC` (cut short first).
    /// Removing files gives the space back. [`FileSystem::space`] reports it.
    pub capacity_bytes: Option<u64>,
    /// Every `sync_data` takes this long (the caller's thread sleeps; other operations go on).
    pub sync_delay: Option<std::time::Duration>,
    /// Every `read_at` fails with `EIO`.
    pub fail_reads: bool,
}

/// What happens to data written but not yet synced when the power is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornWrites {
    /// All of it is lost.
    LoseAll,
    /// A random prefix of each file's unsynced tail survives.
    KeepPrefix,
    /// A random prefix survives and the bytes after it, up to the old length, are garbage.
    Garbage,
    /// All of it survives except a random stretch in its middle, which reads as zeros: the
    /// disk wrote a later page of the unsynced tail but not an earlier one.
    Hole,
}

/// A simulated file system; clones share state.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Clone)]
enum Entry {
    File(u64),
    /// A directory, by identity: a renamed directory keeps its identity (and, after a power
    /// cut that lost the rename, its contents under the old name).
    Dir(u64),
}

#[derive(Debug, Default, Clone)]
struct Dir {
    /// Identity (an inode number); the root is 0.
    id: u64,
    entries: BTreeMap<OsString, Entry>,
    durable: BTreeMap<OsString, Entry>,
}

#[derive(Debug, Default, Clone)]
struct Node {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Byte ranges whose write-back a failed `sync_data` dropped: readable in `data`, but a
    /// later sync keeps what was durable there before (zeros past the old end).
    dropped: Vec<std::ops::Range<usize>>,
}

impl Node {
    /// What a successful sync makes durable: the data, except dropped ranges.
    fn sync(&mut self) {
        let mut new = self.data.clone();
        for r in &self.dropped {
            for (i, b) in new.iter_mut().enumerate().take(r.end).skip(r.start) {
                *b = self.durable.get(i).copied().unwrap_or(0);
            }
        }
        self.durable = new;
    }

    /// A failed sync: everything not yet durable is dropped from write-back.
    fn drop_dirty(&mut self) {
        let first_diff = self
            .data
            .iter()
            .zip(&self.durable)
            .position(|(a, b)| a != b)
            .unwrap_or(self.data.len().min(self.durable.len()));
        if first_diff < self.data.len() {
            self.dropped.push(first_diff..self.data.len());
        }
    }

    /// A write of `range` makes those bytes dirty again.
    fn rewrite(&mut self, range: std::ops::Range<usize>) {
        let mut out = Vec::new();
        for r in self.dropped.drain(..) {
            if r.end <= range.start || r.start >= range.end {
                out.push(r);
                continue;
            }
            if r.start < range.start {
                out.push(r.start..range.start);
            }
            if r.end > range.end {
                out.push(range.end..r.end);
            }
        }
        self.dropped = out;
    }

    fn truncate(&mut self, len: usize) {
        self.data.resize(len, 0);
        for r in &mut self.dropped {
            r.end = r.end.min(len);
        }
        self.dropped.retain(|r| r.start < r.end);
    }
}

#[derive(Debug, Default)]
struct State {
    dead: bool,
    dirs: BTreeMap<PathBuf, Dir>,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    locks: Vec<PathBuf>,
    faults: Faults,
    syncs: u64,
    writes: u64,
    written_bytes: u64,
    sync_data_calls: u64,
    sync_dir_calls: u64,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO: {what}"))
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", p.display()))
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn split(p: &Path) -> io::Result<(PathBuf, OsString)> {
    let p = normalize(p);
    let name = p.file_name().ok_or_else(|| not_found(&p))?.to_os_string();
    let parent = p.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    Ok((parent, name))
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    /// An empty file system with only the root directory.
    #[must_use]
    pub fn new() -> Self {
        let mut st = State::default();
        st.dirs.insert(PathBuf::from("/"), Dir::default());
        SimFs { state: Arc::new(Mutex::new(st)) }
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
        // A poisoned lock only means another test thread panicked; the state is still usable.
        let st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.dead {
            return Err(eio("power was cut"));
        }
        Ok(st)
    }

    /// Whether `other` is this file system (a clone of it), not another one.
    #[must_use]
    pub fn same_as(&self, other: &SimFs) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }

    /// Replaces the injected faults and resets their counters.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut st) = self.lock() {
            st.faults = faults;
            st.syncs = 0;
            st.writes = 0;
            st.written_bytes = 0;
        }
    }

    /// How many `sync_data` and `sync_dir` calls succeeded so far.
    pub fn sync_counts(&self) -> (u64, u64) {
        self.lock().map_or((0, 0), |st| (st.sync_data_calls, st.sync_dir_calls))
    }

    /// Cuts the power: this file system dies and the returned one holds only what was durable.
    /// `seed` drives the choice of torn prefixes and garbage.
    #[must_use = "the returned file system holds what survived"]
    pub fn power_cut(&self, torn: TornWrites, seed: u64) -> SimFs {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.dead = true;
        let mut rng = XorShift(seed | 1);
        let mut new = State { next_ino: st.next_ino, ..State::default() };
        new.dirs.insert(PathBuf::from("/"), Dir::default());
        // Walk the durable tree from the root; anything not reachable through durable entries
        // is gone. Directories are found by identity: one renamed since its parent was last
        // synced comes back under its durable name.
        let by_id: HashMap<u64, &Dir> = st.dirs.values().map(|d| (d.id, d)).collect();
        let mut stack = vec![(PathBuf::from("/"), 0)];
        while let Some((dir, id)) = stack.pop() {
            let Some(old) = by_id.get(&id) else {
                continue;
            };
            let mut d = Dir { id, ..Dir::default() };
            for (name, entry) in &old.durable {
                d.entries.insert(name.clone(), entry.clone());
                d.durable.insert(name.clone(), entry.clone());
                match entry {
                    Entry::Dir(child) => stack.push((dir.join(name), *child)),
                    Entry::File(ino) => {
                        if new.nodes.contains_key(ino) {
                            continue;
                        }
                        let node = st.nodes.get(ino).cloned().unwrap_or_default();
                        new.nodes.insert(*ino, survive(&node, torn, &mut rng));
                    }
                }
            }
            new.dirs.insert(dir, d);
        }
        SimFs { state: Arc::new(Mutex::new(new)) }
    }

    /// Reads a whole file (for test assertions).
    pub fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.lock()?;
        let ino = st.lookup_file(path)?;
        Ok(st.nodes.get(&ino).map(|n| n.data.clone()).unwrap_or_default())
    }

    /// Replaces a whole file's contents, durably (for corruption tests).
    pub fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock()?;
        let ino = if let Ok(ino) = st.lookup_file(path) {
            ino
        } else {
            let (parent, name) = split(path)?;
            let ino = st.alloc_ino();
            let dir = st.dirs.get_mut(&parent).ok_or_else(|| not_found(&parent))?;
            dir.entries.insert(name.clone(), Entry::File(ino));
            dir.durable.insert(name, Entry::File(ino));
            ino
        };
        let node = st.nodes.entry(ino).or_default();
        node.data = data.to_vec();
        node.durable = data.to_vec();
        node.dropped.clear();
        Ok(())
    }
}

/// What survives of one file.
fn survive(node: &Node, torn: TornWrites, rng: &mut XorShift) -> Node {
    let mut data = node.durable.clone();
    let unsynced_tail = node.data.len() > data.len() && node.data.starts_with(&data);
    if torn != TornWrites::LoseAll && unsynced_tail {
        let extra = node.data.len() - data.len();
        let tail = &node.data[node.durable.len()..];
        if torn == TornWrites::Hole {
            // A stretch [a, b) with something after it survives as zeros.
            let a = usize::try_from(rng.next() % extra as u64).unwrap_or(0);
            let b = a + 1 + usize::try_from(rng.next() % (extra - a) as u64).unwrap_or(0);
            let b = b.min(extra.saturating_sub(1)).max(a);
            data.extend_from_slice(&tail[..a]);
            data.extend(std::iter::repeat_n(0u8, b - a));
            data.extend_from_slice(&tail[b..]);
        } else {
            let keep = usize::try_from(rng.next() % (extra as u64 + 1)).unwrap_or(0);
            data.extend_from_slice(&tail[..keep]);
            if torn == TornWrites::Garbage && rng.next().is_multiple_of(2) {
                let garbage = usize::try_from(rng.next() % (extra - keep + 1) as u64).unwrap_or(0);
                data.extend((0..garbage).map(|_| rng.next().to_le_bytes()[0]));
            }
        }
    }
    Node { durable: data.clone(), data, dropped: Vec::new() }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

impl State {
    /// Bytes of file data reachable from some directory entry.
    fn usage(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        for d in self.dirs.values() {
            for e in d.entries.values() {
                if let Entry::File(ino) = e
                    && seen.insert(*ino)
                {
                    total += self.nodes.get(ino).map_or(0, |n| n.data.len() as u64);
                }
            }
        }
        total
    }

    /// Bytes a file may still grow by under `capacity_bytes`.
    fn room(&self) -> u64 {
        self.faults.capacity_bytes.map_or(u64::MAX, |c| c.saturating_sub(self.usage()))
    }

    fn alloc_ino(&mut self) -> u64 {
        self.next_ino += 1;
        self.next_ino
    }

    fn lookup_file(&self, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        match self.dirs.get(&parent).and_then(|d| d.entries.get(&name)) {
            Some(Entry::File(ino)) => Ok(*ino),
            Some(Entry::Dir(_)) => Err(io::Error::other("is a directory")),
            None => Err(not_found(path)),
        }
    }

    fn create(&mut self, path: &Path, exclusive: bool) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        let existing = self.dirs.get(&parent).ok_or_else(|| not_found(&parent))?.entries.get(&name);
        match existing {
            Some(Entry::File(ino)) if !exclusive => {
                let ino = *ino;
                self.nodes.entry(ino).or_default().truncate(0);
                Ok(ino)
            }
            Some(_) => Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists")),
            None => {
                let ino = self.alloc_ino();
                self.nodes.insert(ino, Node::default());
                if let Some(dir) = self.dirs.get_mut(&parent) {
                    dir.entries.insert(name, Entry::File(ino));
                }
                Ok(ino)
            }
        }
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    ino: u64,
    writable: bool,
}

impl FileHandle for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let st = self.fs.lock()?;
        if st.faults.fail_reads {
            return Err(eio("read"));
        }
        let data = st.nodes.get(&self.ino).map_or(&[][..], |n| &n.data[..]);
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only handle"));
        }
        let mut st = self.fs.lock()?;
        if st.faults.fail_write_after.is_some_and(|n| st.writes >= n) {
            return Err(eio("write"));
        }
        let mut len = buf.len();
        if st.faults.short_writes && len > 1 {
            len = len.div_ceil(2);
        }
        if let Some(limit) = st.faults.enospc_after_bytes {
            let room = limit.saturating_sub(st.written_bytes);
            if room == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
            }
            len = len.min(usize::try_from(room).unwrap_or(usize::MAX));
        }
        let off = usize::try_from(offset).map_err(|_| eio("offset"))?;
        let cur = st.nodes.get(&self.ino).map_or(0, |n| n.data.len());
        let growth = (off + len).saturating_sub(cur) as u64;
        let room = st.room();
        if growth > room {
            // Only what fits in the space left is written.
            let fits = usize::try_from((cur as u64 + room).saturating_sub(off as u64))
                .unwrap_or(usize::MAX);
            if fits == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
            }
            len = len.min(fits);
        }
        st.writes += 1;
        st.written_bytes += len as u64;
        let node = st.nodes.entry(self.ino).or_default();
        if node.data.len() < off + len {
            node.data.resize(off + len, 0);
        }
        node.data[off..off + len].copy_from_slice(&buf[..len]);
        node.rewrite(off..off + len);
        Ok(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let delay = self.fs.lock()?.faults.sync_delay;
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let mut st = self.fs.lock()?;
        if st.faults.fail_sync_after.is_some_and(|n| st.syncs >= n) {
            st.nodes.entry(self.ino).or_default().drop_dirty();
            return Err(eio("fdatasync"));
        }
        st.syncs += 1;
        st.sync_data_calls += 1;
        st.nodes.entry(self.ino).or_default().sync();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.fs.lock()?;
        let len = usize::try_from(len).map_err(|_| eio("length"))?;
        let cur = st.nodes.get(&self.ino).map_or(0, |n| n.data.len());
        if len > cur && (len - cur) as u64 > st.room() {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
        }
        st.nodes.entry(self.ino).or_default().truncate(len);
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let st = self.fs.lock()?;
        Ok(st.nodes.get(&self.ino).map_or(0, |n| n.data.len() as u64))
    }
}

#[derive(Debug)]
struct SimDirLock {
    fs: SimFs,
    path: PathBuf,
}

impl DirLock for SimDirLock {}

impl Drop for SimDirLock {
    fn drop(&mut self) {
        let mut st = self.fs.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.locks.retain(|p| p != &self.path);
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock()?;
        let path = normalize(path);
        let mut cur = PathBuf::from("/");
        for c in path.components().skip(1) {
            let Component::Normal(name) = c else { continue };
            let child = cur.join(name);
            if !st.dirs.contains_key(&child) {
                let parent = st.dirs.get_mut(&cur).ok_or_else(|| not_found(&cur))?;
                if matches!(parent.entries.get(name), Some(Entry::File(_))) {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "is a file"));
                }
                let id = st.alloc_ino();
                let parent = st.dirs.get_mut(&cur).ok_or_else(|| not_found(&cur))?;
                parent.entries.insert(name.to_os_string(), Entry::Dir(id));
                st.dirs.insert(child.clone(), Dir { id, ..Dir::default() });
            }
            cur = child;
        }
        Ok(())
    }

    fn dir_exists(&self, path: &Path) -> bool {
        self.lock().is_ok_and(|st| st.dirs.contains_key(&normalize(path)))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let st = self.lock()?;
        let dir = st.dirs.get(&normalize(path)).ok_or_else(|| not_found(path))?;
        Ok(dir.entries.keys().cloned().collect())
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let ino = self.lock()?.lookup_file(path)?;
        Ok(Box::new(SimFile { fs: self.clone(), ino, writable: false }))
    }

    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let ino = self.lock()?.lookup_file(path)?;
        Ok(Box::new(SimFile { fs: self.clone(), ino, writable: true }))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let ino = self.lock()?.create(path, true)?;
        Ok(Box::new(SimFile { fs: self.clone(), ino, writable: true }))
    }

    fn create_truncate(&self, path: &Path) -> io::Result<Box<dyn FileHandle>> {
        let ino = self.lock()?.create(path, false)?;
        Ok(Box::new(SimFile { fs: self.clone(), ino, writable: true }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.lock()?;
        let (fp, fname) = split(from)?;
        let (tp, tname) = split(to)?;
        let entry = st
            .dirs
            .get_mut(&fp)
            .and_then(|d| d.entries.remove(&fname))
            .ok_or_else(|| not_found(from))?;
        if matches!(entry, Entry::Dir(_)) {
            // The directory and everything under it now live at the new path.
            let (from, to) = (normalize(from), normalize(to));
            let moved: Vec<PathBuf> =
                st.dirs.keys().filter(|p| p.starts_with(&from)).cloned().collect();
            for old in moved {
                if let (Some(d), Ok(rest)) = (st.dirs.remove(&old), old.strip_prefix(&from)) {
                    st.dirs.insert(to.join(rest), d);
                }
            }
        }
        st.dirs.get_mut(&tp).ok_or_else(|| not_found(&tp))?.entries.insert(tname, entry);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock()?;
        let (parent, name) = split(path)?;
        match st.dirs.get_mut(&parent).and_then(|d| d.entries.remove(&name)) {
            Some(_) => Ok(()),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock()?;
        let path = normalize(path);
        let (parent, name) = split(&path)?;
        st.dirs
            .get_mut(&parent)
            .and_then(|d| d.entries.remove(&name))
            .ok_or_else(|| not_found(&path))?;
        st.dirs.retain(|p, _| !p.starts_with(&path));
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.lock()?;
        if st.faults.fail_sync_dir {
            return Err(eio("sync_dir"));
        }
        st.sync_dir_calls += 1;
        let dir = st.dirs.get_mut(&normalize(path)).ok_or_else(|| not_found(path))?;
        dir.durable = dir.entries.clone();
        Ok(())
    }

    fn space(&self, _path: &Path) -> io::Result<Option<crate::fs::Space>> {
        let st = self.lock()?;
        Ok(st.faults.capacity_bytes.map(|total| crate::fs::Space { total, available: st.room() }))
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut st = self.lock()?;
        let path = normalize(path);
        if st.locks.contains(&path) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "directory is locked"));
        }
        st.locks.push(path.clone());
        Ok(Box::new(SimDirLock { fs: self.clone(), path }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(fs: &SimFs, p: &str, data: &[u8]) -> Box<dyn FileHandle> {
        let f = fs.create_new(Path::new(p)).expect("create");
        crate::fs::write_all_at(&*f, data, 0).expect("write");
        f
    }

    #[test]
    fn unsynced_file_and_entry_are_lost() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        fs.sync_dir(Path::new("/")).expect("sync root");
        let f = write(&fs, "/d/a", b"hello");
        f.sync_data().expect("sync");
        // The data is durable but the directory entry is not.
        let after = fs.power_cut(TornWrites::LoseAll, 1);
        assert!(after.read_file(Path::new("/d/a")).is_err());
    }

    #[test]
    fn synced_file_and_entry_survive_unsynced_tail_does_not() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        fs.sync_dir(Path::new("/")).expect("sync root");
        let f = write(&fs, "/d/a", b"hello");
        f.sync_data().expect("sync");
        fs.sync_dir(Path::new("/d")).expect("sync dir");
        crate::fs::write_all_at(&*f, b" world", 5).expect("write");
        let after = fs.power_cut(TornWrites::LoseAll, 1);
        assert_eq!(after.read_file(Path::new("/d/a")).expect("read"), b"hello");
        // The old file system is dead.
        assert!(f.read_at(&mut [0; 1], 0).is_err());
    }

    #[test]
    fn torn_prefix_keeps_part_of_the_tail() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let fs = SimFs::new();
            fs.sync_dir(Path::new("/")).expect("sync");
            let f = write(&fs, "/a", b"ab");
            f.sync_data().expect("sync");
            fs.sync_dir(Path::new("/")).expect("sync");
            crate::fs::write_all_at(&*f, b"cdefgh", 2).expect("write");
            let after = fs.power_cut(TornWrites::KeepPrefix, seed);
            let data = after.read_file(Path::new("/a")).expect("read");
            assert!(b"abcdefgh".starts_with(&data));
            seen.insert(data.len());
        }
        assert!(seen.len() > 3, "prefix lengths vary: {seen:?}");
    }

    #[test]
    fn rename_is_durable_only_after_dir_sync() {
        let fs = SimFs::new();
        let f = write(&fs, "/tmp1", b"x");
        f.sync_data().expect("sync");
        fs.sync_dir(Path::new("/")).expect("sync");
        fs.rename(Path::new("/tmp1"), Path::new("/final")).expect("rename");
        let lost = fs.power_cut(TornWrites::LoseAll, 3);
        assert!(lost.read_file(Path::new("/final")).is_err());
        assert!(lost.read_file(Path::new("/tmp1")).is_ok());
    }

    #[test]
    fn a_renamed_directory_keeps_its_files_and_its_durable_name_wins_a_power_cut() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d/a/sub")).expect("mkdir");
        let f = write(&fs, "/d/a/sub/f", b"data");
        f.sync_data().expect("sync");
        for dir in ["/", "/d", "/d/a", "/d/a/sub"] {
            fs.sync_dir(Path::new(dir)).expect("sync dir");
        }
        fs.rename(Path::new("/d/a"), Path::new("/d/b")).expect("rename");
        assert!(!fs.dir_exists(Path::new("/d/a")));
        assert_eq!(fs.read_file(Path::new("/d/b/sub/f")).expect("moved"), b"data");
        // Not yet durable: the cut brings it back under its old name, contents and all.
        let cut = fs.power_cut(TornWrites::LoseAll, 1);
        assert_eq!(cut.read_file(Path::new("/d/a/sub/f")).expect("old name"), b"data");
        assert!(!cut.dir_exists(Path::new("/d/b")));
        // Durable: the new name survives.
        cut.rename(Path::new("/d/a"), Path::new("/d/b")).expect("rename");
        cut.sync_dir(Path::new("/d")).expect("sync dir");
        let cut2 = cut.power_cut(TornWrites::LoseAll, 2);
        assert_eq!(cut2.read_file(Path::new("/d/b/sub/f")).expect("new name"), b"data");
        assert!(!cut2.dir_exists(Path::new("/d/a")));
    }

    #[test]
    fn faults_fire() {
        let fs = SimFs::new();
        fs.set_faults(Faults { short_writes: true, fail_sync_after: Some(1), ..Faults::default() });
        let f = fs.create_new(Path::new("/a")).expect("create");
        assert_eq!(f.write_at(b"abcd", 0).expect("write"), 2);
        f.sync_data().expect("first sync succeeds");
        assert!(f.sync_data().is_err());
        fs.set_faults(Faults { enospc_after_bytes: Some(3), ..Faults::default() });
        assert_eq!(f.write_at(b"abcd", 0).expect("write"), 3);
        let e = f.write_at(b"a", 3).expect_err("full");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
    }

    #[test]
    fn lock_is_exclusive() {
        let fs = SimFs::new();
        let g = fs.lock_dir(Path::new("/")).expect("lock");
        assert!(fs.lock_dir(Path::new("/")).is_err());
        drop(g);
        assert!(fs.lock_dir(Path::new("/")).is_ok());
    }
}
