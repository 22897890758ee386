//! Commit groups: many logs, one commit thread, one `fdatasync` for all of them.
//!
//! A log opened with a [`CommitGroup`] has no writer thread of its own. The group's **commit
//! thread** takes, in each round, what every log of the group queued since its last round:
//!
//! - When a single log has records (or a log's round starts a new segment, or the journal is
//!   unavailable), that log's round is written as a log without a group writes it: to its
//!   segment, one `fdatasync` of the segment, publish.
//! - When several logs have records, each log's bytes go to its own segment **without** a sync,
//!   then the same bytes, each with its log's identity and segment address, go into the
//!   group's **commit journal** with one write and **one** `fdatasync`; then every one of those
//!   logs publishes. Records arriving on different pairs in the same moment are made durable by
//!   the same sync, so the cost of a commit follows the number of rounds, not of pairs.
//!
//! The journal only carries durability until the segments are synced: the group's **flusher
//! thread** starts a new journal file every `flush_interval` (or `journal_file_bytes`), syncs
//! the segments that have journaled bytes in the older files (one `fdatasync` per such log per
//! interval, off the commit path) and deletes those files, oldest first. A log without traffic
//! costs nothing; a stuck pair's records are in its own segments like any others, so it never
//! holds a journal file back (only a log whose segment sync failed does, until it is reopened).
//!
//! Recovery: [`CommitGroup::open`] runs before any log of the group opens. It reads every
//! journal file in order, writes each entry's bytes back into its segment
//! (entries of logs that no longer exist, or of segments since deleted, are skipped), syncs
//! those segments and deletes the journal. Then each log opens as usual and finds in its
//! segment everything that was acknowledged. [`crate::Log::reopen`] of a log whose segment
//! sync failed writes its journaled bytes back the same way before recovery.
//!
//! Failure: a journal write or sync that fails never fails a log: the round's segments are then
//! synced one by one (a log whose own sync fails fails alone and heals by reopening), and the
//! journal file is given up — nothing is appended to it again; the flusher starts another.
//!
//! ## Journal format (version 1)
//!
//! Files `<generation:020>.jnl` in the group's directory, generations increasing from 1.
//! All integers little-endian, checksums CRC-32C as in segments.
//!
//! File header (32 bytes): magic `"IOBPJNL\0"`, version `u16` (`1`), reserved `u16`, reserved
//! `u32`, `generation` `u64`, CRC-32C of bytes 0..24 in bytes 24..28, reserved `u32`.
//!
//! Entries back to back after the header; an entry (40-byte header, then `len` bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `len`: bytes that follow the header (at most 64 MiB) |
//! | 4 | 4 | CRC-32C of bytes 8..40 followed by the `len` bytes |
//! | 8 | 8 | `generation` of the file (an entry of another generation is not of this file) |
//! | 16 | 8 | the log's identity ([`crate::Log::id`]) |
//! | 24 | 8 | the segment: its first sequence number |
//! | 32 | 8 | byte offset in the segment |
//! | 40 | len | the bytes written to the segment there: whole records |
//!
//! An entry whose segment field is `0` (no segment starts at 0) is a **checkpoint**: the
//! offset field is the log's Done position and the 8-byte body its high-water mark. The
//! housekeeper's checkpoints ride along with the next round this way (one sync for the
//! checkpoints of all logs); the flusher writes each log's checkpoint file before the journal
//! file holding them is deleted, and a replay raises each checkpoint file to the newest one
//! journaled.
//!
//! Reading a file stops at the first entry that is incomplete or fails its checksum: the rest
//! of the file was never synced, so nothing after it was acknowledged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::fs::{FileHandle, FileSystem, StdFs, read_full_at, write_all_at};
use crate::log::{Shared, lock};
use crate::writer::{Job, NO_SPACE_MAX_PAUSE, RoundError, Take, Writer};

const FILE_MAGIC: [u8; 8] = *b"IOBPJNL\0";
const FILE_VERSION: u16 = 1;
/// Length of a journal file's header.
pub const JOURNAL_HEADER_LEN: usize = 32;
/// Length of a journal entry's header.
pub const ENTRY_HEADER_LEN: usize = 40;
/// Largest entry body read back (a round of one log is at most its queue, 4 MiB by default).
const MAX_ENTRY_LEN: u32 = 64 << 20;
const SUFFIX: &str = ".jnl";

/// Tunables of a commit group.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// A new journal file is started once the current one reaches this size. Default 32 MiB.
    pub journal_file_bytes: u64,
    /// ... or once it is this old: the segments it covers are then synced and it is deleted.
    /// This bounds what a crash replays and how long a journal file lives. Default 2 s.
    pub flush_interval: Duration,
    /// The file system. Default: the operating system's.
    pub fs: Arc<dyn FileSystem>,
    /// A round is journaled when at least this many logs have records in it; below, each log
    /// syncs its own segment (one sync either way, and no second copy of the bytes). Default
    /// 2; tests set 1 to put every round through the journal.
    pub journal_from_logs: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            journal_file_bytes: 32 << 20,
            flush_interval: Duration::from_secs(2),
            fs: Arc::new(StdFs),
            journal_from_logs: 2,
        }
    }
}

/// What [`CommitGroup::open`] found in the journal and wrote back into segments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Journal files read.
    pub files: usize,
    /// Valid entries read.
    pub entries: u64,
    /// Entries written back into their segment.
    pub rewritten: u64,
    /// Entries of logs or segments that no longer exist.
    pub skipped: u64,
}

/// Counters of a commit group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Commit rounds.
    pub rounds: u64,
    /// Rounds whose logs were made durable by one journal sync.
    pub journal_rounds: u64,
    /// Log rounds carried by those journal syncs.
    pub journaled_log_rounds: u64,
    /// Segment syncs by the flusher.
    pub flush_syncs: u64,
    /// Journal files deleted.
    pub files_deleted: u64,
    /// Journal files that could not be created, written or synced (rounds were synced log by
    /// log meanwhile).
    pub journal_failures: u64,
}

#[derive(Debug, Default)]
struct Counters {
    rounds: AtomicU64,
    journal_rounds: AtomicU64,
    journaled_log_rounds: AtomicU64,
    flush_syncs: AtomicU64,
    files_deleted: AtomicU64,
    journal_failures: AtomicU64,
}

/// Logs of one instance that share one commit thread, one flusher thread and one commit
/// journal (see the module documentation). Cheap to clone.
#[derive(Clone, Debug)]
pub struct CommitGroup {
    inner: Arc<GroupInner>,
}

#[derive(Debug)]
struct JournalFile {
    generation: u64,
    path: PathBuf,
    file: Arc<dyn FileHandle>,
    /// Bytes written and synced.
    len: u64,
    opened: Instant,
}

#[derive(Debug, Default)]
struct Journal {
    current: Option<JournalFile>,
    next: Option<JournalFile>,
    /// Files no longer written to, oldest first, waiting for their segments to be synced.
    old: Vec<JournalFile>,
    next_generation: u64,
}

#[derive(Default)]
struct Queue {
    ready: Vec<Arc<Shared>>,
    joining: Vec<Writer>,
    /// Logs whose checkpoint is due: journaled with the next round.
    checkpoints: Vec<Arc<Shared>>,
}

pub(crate) struct GroupInner {
    dir: PathBuf,
    opts: GroupOptions,
    queue: Mutex<Queue>,
    journal: Mutex<Journal>,
    logs: Mutex<Vec<Weak<Shared>>>,
    /// Log directories closed while their journaled bytes were not synced to their segments
    /// (their sync failed): the oldest journal generation each needs kept.
    pinned: Mutex<HashMap<PathBuf, u64>>,
    committer: OnceLock<Thread>,
    flusher: OnceLock<Thread>,
    counters: Counters,
}

impl std::fmt::Debug for GroupInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitGroup").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Drop for GroupInner {
    fn drop(&mut self) {
        for t in [self.committer.get(), self.flusher.get()].into_iter().flatten() {
            t.unpark();
        }
    }
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}{SUFFIX}"))
}

fn encode_file_header(generation: u64) -> [u8; JOURNAL_HEADER_LEN] {
    let mut b = [0u8; JOURNAL_HEADER_LEN];
    b[0..8].copy_from_slice(&FILE_MAGIC);
    b[8..10].copy_from_slice(&FILE_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_file_header(b: &[u8]) -> Option<u64> {
    if b.len() < JOURNAL_HEADER_LEN || b[0..8] != FILE_MAGIC {
        return None;
    }
    if u16::from_le_bytes([b[8], b[9]]) != FILE_VERSION {
        return None;
    }
    if crc32c::crc32c(&b[0..24]).to_le_bytes() != b[24..28] {
        return None;
    }
    Some(u64_at(b, 16))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Appends one entry to `out`.
pub(crate) fn encode_entry(
    out: &mut Vec<u8>,
    generation: u64,
    log_id: u64,
    segment: u64,
    offset: u64,
    body: &[u8],
) {
    let start = out.len();
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&log_id.to_le_bytes());
    out.extend_from_slice(&segment.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(body);
    let mut crc = crc32c::crc32c(&out[start + 8..start + ENTRY_HEADER_LEN]);
    crc = crc32c::crc32c_append(crc, body);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One entry read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub log_id: u64,
    pub segment: u64,
    pub offset: u64,
    pub body: Vec<u8>,
}

/// Reads the valid entries of a journal file, up to `limit` bytes (the synced length of a file
/// being written), calling `each` for every one; stops at the first invalid one. Returns the
/// file's generation, or `None` if its header is not valid.
pub(crate) fn read_journal(
    file: &dyn FileHandle,
    limit: u64,
    mut each: impl FnMut(Entry),
) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; JOURNAL_HEADER_LEN];
    if read_full_at(file, &mut head, 0)? < JOURNAL_HEADER_LEN {
        return Ok(None);
    }
    let Some(generation) = decode_file_header(&head) else { return Ok(None) };
    let mut at = JOURNAL_HEADER_LEN as u64;
    let mut eh = [0u8; ENTRY_HEADER_LEN];
    while at + ENTRY_HEADER_LEN as u64 <= limit {
        if read_full_at(file, &mut eh, at)? < ENTRY_HEADER_LEN {
            break;
        }
        let len = u32::from_le_bytes([eh[0], eh[1], eh[2], eh[3]]);
        let crc = u32::from_le_bytes([eh[4], eh[5], eh[6], eh[7]]);
        let end = at + ENTRY_HEADER_LEN as u64 + u64::from(len);
        if len == 0 || len > MAX_ENTRY_LEN || end > limit || u64_at(&eh, 8) != generation {
            break;
        }
        let mut body = vec![0u8; len as usize];
        if read_full_at(file, &mut body, at + ENTRY_HEADER_LEN as u64)? < body.len() {
            break;
        }
        let got = crc32c::crc32c_append(crc32c::crc32c(&eh[8..]), &body);
        if got != crc {
            break;
        }
        each(Entry {
            log_id: u64_at(&eh, 16),
            segment: u64_at(&eh, 24),
            offset: u64_at(&eh, 32),
            body,
        });
        at = end;
    }
    Ok(Some(generation))
}

/// Journal files in `dir`, by generation.
fn list_journal(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for name in fs.list_dir(dir).map_err(|e| Error::io("list journal directory", dir, e))? {
        let name = name.to_string_lossy();
        if let Some(g) = name.strip_suffix(SUFFIX).and_then(|g| g.parse::<u64>().ok()) {
            files.push((g, dir.join(&*name)));
        }
    }
    files.sort();
    Ok(files)
}

/// Writes journaled bytes back into segments; `dir_of` maps a log identity to its directory.
struct Rewriter<'a> {
    fs: &'a dyn FileSystem,
    open: HashMap<PathBuf, Option<Box<dyn FileHandle>>>,
    /// The newest journaled checkpoint of each log directory: (Done, high-water mark).
    checkpoints: HashMap<PathBuf, (u64, u64)>,
    report: ReplayReport,
}

impl Rewriter<'_> {
    fn apply(&mut self, dir: &Path, e: &Entry) -> Result<()> {
        if e.segment == 0 {
            // A checkpoint: the offset field is the Done position, the body the high-water mark.
            let high_water = e.body.get(..8).map_or(0, |b| u64_at(b, 0));
            let c = self.checkpoints.entry(dir.to_path_buf()).or_insert((0, 0));
            *c = (c.0.max(e.offset), c.1.max(high_water));
            return Ok(());
        }
        let path = dir.join(crate::format::segment_file_name(e.segment));
        let fs = self.fs;
        let file = self.open.entry(path.clone()).or_insert_with(|| fs.open_rw(&path).ok());
        let Some(file) = file else {
            // Deleted by retention (every record Done and checkpointed) or with its pair.
            self.report.skipped += 1;
            return Ok(());
        };
        // Written whatever the segment seems to hold: after a failed sync the page cache may
        // show bytes the disk does not have.
        write_all_at(&**file, &e.body, e.offset)
            .map_err(|err| Error::io("write segment", &path, err))?;
        self.report.rewritten += 1;
        Ok(())
    }

    fn sync(self) -> Result<ReplayReport> {
        for (path, file) in self.open {
            if let Some(f) = file {
                f.sync_data().map_err(|e| Error::io("sync segment", &path, e))?;
            }
        }
        // After the segments: a checkpoint never counts records the disk does not hold.
        for (dir, (done, high_water)) in self.checkpoints {
            crate::recovery::raise_checkpoint(self.fs, &dir, done, high_water)?;
        }
        Ok(self.report)
    }
}

impl CommitGroup {
    /// Opens the group whose journal lives in `dir` (created if needed), for logs whose
    /// directories are subdirectories of `logs_roots`. Call before opening any log of the
    /// group: whatever the journal holds is written back into the logs' segments first (a
    /// crash or power cut left it there), then the journal starts empty.
    pub fn open(
        dir: impl AsRef<Path>,
        logs_roots: &[PathBuf],
        opts: GroupOptions,
    ) -> Result<(CommitGroup, ReplayReport)> {
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        // Durably: a journal file in a directory a power cut takes away is no journal.
        crate::recovery::create_dir_durably(&*fs, &dir)?;
        let files = list_journal(&*fs, &dir)?;
        let mut report = ReplayReport::default();
        let mut next_generation = 1;
        if !files.is_empty() {
            let dirs = log_dirs(&*fs, logs_roots);
            let mut rw = Rewriter {
                fs: &*fs,
                open: HashMap::new(),
                checkpoints: HashMap::new(),
                report: ReplayReport::default(),
            };
            let mut failed: Option<Error> = None;
            for (generation, path) in &files {
                next_generation = next_generation.max(generation + 1);
                let file = fs.open_read(path).map_err(|e| Error::io("open journal", path, e))?;
                let limit = file.size().map_err(|e| Error::io("size of journal", path, e))?;
                read_journal(&*file, limit, |e| {
                    rw.report.entries += 1;
                    if failed.is_some() {
                        return;
                    }
                    match dirs.get(&e.log_id) {
                        Some(d) => {
                            if let Err(err) = rw.apply(d, &e) {
                                failed = Some(err);
                            }
                        }
                        None => rw.report.skipped += 1,
                    }
                })
                .map_err(|e| Error::io("read journal", path, e))?;
                rw.report.files += 1;
            }
            if let Some(e) = failed {
                return Err(e);
            }
            report = rw.sync()?;
            for (_, path) in &files {
                fs.remove_file(path).map_err(|e| Error::io("remove journal", path, e))?;
            }
            fs.sync_dir(&dir).map_err(|e| Error::io("sync journal directory", &dir, e))?;
        }
        let inner = Arc::new(GroupInner {
            dir,
            opts,
            queue: Mutex::default(),
            journal: Mutex::new(Journal { next_generation, ..Journal::default() }),
            logs: Mutex::default(),
            pinned: Mutex::default(),
            committer: OnceLock::new(),
            flusher: OnceLock::new(),
            counters: Counters::default(),
        });
        let spawn = |name: &str, f: fn(&Weak<GroupInner>)| {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name(name.into())
                .stack_size(256 * 1024)
                .spawn(move || f(&weak))
                .map_err(|e| Error::io("spawn thread for", &inner.dir, e))
        };
        let c = spawn("iobp-log:commit", committer)?;
        let _ = inner.committer.set(c.thread().clone());
        let f = spawn("iobp-log:flush", flusher)?;
        let _ = inner.flusher.set(f.thread().clone());
        Ok((CommitGroup { inner }, report))
    }

    /// Retires every journal file there is now: the current one is given up, the segments
    /// the files cover are synced, and the files deleted (durably). A log reopened after a
    /// failure calls this once its own journaled bytes are back in its segment and before it
    /// writes again: the failed instance may have left entries that were never acknowledged
    /// (a round whose syncs failed) for offsets the new instance will fill with other
    /// records, and a replay after a later crash must never put those back. Fails while a
    /// file is still needed by another failed log (that log's own reopening releases it).
    /// Also what a clean shutdown calls last, so the next start has nothing to replay.
    pub fn retire_journal(&self) -> Result<()> {
        let inner = &self.inner;
        let newest = {
            let mut j = lock(&inner.journal);
            if let Some(c) = j.current.take() {
                j.old.push(c);
            }
            j.old.last().map(|f| f.generation)
        };
        inner.wake_flusher();
        let Some(newest) = newest else { return Ok(()) };
        inner.flush_through(newest);
        inner.delete_old();
        if lock(&inner.journal).old.iter().any(|f| f.generation <= newest) {
            let e = std::io::Error::other("a journal file is still needed by a failed log");
            return Err(Error::io("retire journal files in", &inner.dir, e));
        }
        Ok(())
    }

    /// Whether the calling thread is the group's commit thread.
    pub(crate) fn on_commit_thread(&self) -> bool {
        self.inner.committer.get().is_some_and(|t| t.id() == std::thread::current().id())
    }

    /// The group's counters.
    pub fn stats(&self) -> GroupStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GroupStats {
            rounds: get(&c.rounds),
            journal_rounds: get(&c.journal_rounds),
            journaled_log_rounds: get(&c.journaled_log_rounds),
            flush_syncs: get(&c.flush_syncs),
            files_deleted: get(&c.files_deleted),
            journal_failures: get(&c.journal_failures),
        }
    }

    /// Journal files on disk right now (the current one included).
    pub fn journal_files(&self) -> usize {
        let j = lock(&self.inner.journal);
        j.old.len() + usize::from(j.current.is_some()) + usize::from(j.next.is_some())
    }

    /// A new log of the group: its writer joins the commit thread.
    pub(crate) fn attach(&self, shared: &Arc<Shared>, writer: Writer) {
        {
            let mut logs = lock(&self.inner.logs);
            logs.retain(|w| w.upgrade().is_some_and(|l| !l.detached.load(Ordering::Acquire)));
            logs.push(Arc::downgrade(shared));
        }
        lock(&self.inner.queue).joining.push(writer);
    }

    /// The log has records queued (or is closing): it gets a round soon.
    pub(crate) fn schedule(&self, shared: &Arc<Shared>) {
        self.inner.schedule(shared);
    }

    /// The housekeeper asks for a checkpoint of `shared`: it goes into the journal with the
    /// next round (one sync for the checkpoints of all logs), and into the log's checkpoint
    /// file when the flusher retires that journal file.
    pub(crate) fn request_checkpoint(&self, shared: &Arc<Shared>) {
        if shared.ckpt_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.inner.queue).checkpoints.push(shared.clone());
        if let Some(t) = self.inner.committer.get() {
            t.unpark();
        }
    }

    /// Keeps the journal files a closed log's unsynced bytes are in until its directory is
    /// opened again (or deleted).
    pub(crate) fn pin(&self, dir: &Path, generation: u64) {
        let mut p = lock(&self.inner.pinned);
        let g = p.entry(dir.to_path_buf()).or_insert(generation);
        *g = (*g).min(generation);
    }

    pub(crate) fn unpin(&self, dir: &Path) {
        lock(&self.inner.pinned).remove(dir);
    }

    pub(crate) fn is_pinned(&self, dir: &Path) -> bool {
        lock(&self.inner.pinned).contains_key(dir)
    }

    /// Writes the journaled bytes of log `id` back into its segments in `dir` and syncs them:
    /// what a log whose segment sync failed needs before it is opened again.
    pub(crate) fn replay_log(&self, id: u64, dir: &Path) -> Result<ReplayReport> {
        let files: Vec<(PathBuf, Arc<dyn FileHandle>, u64)> = {
            let j = lock(&self.inner.journal);
            j.old
                .iter()
                .chain(j.current.iter())
                .map(|f| (f.path.clone(), f.file.clone(), f.len))
                .collect()
        };
        let fs = &*self.inner.opts.fs;
        let mut rw = Rewriter {
            fs,
            open: HashMap::new(),
            checkpoints: HashMap::new(),
            report: ReplayReport::default(),
        };
        let mut failed = None;
        for (path, file, len) in files {
            read_journal(&*file, len, |e| {
                if e.log_id != id || failed.is_some() {
                    return;
                }
                rw.report.entries += 1;
                if let Err(err) = rw.apply(dir, &e) {
                    failed = Some(err);
                }
            })
            .map_err(|e| Error::io("read journal", &path, e))?;
            rw.report.files += 1;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        rw.sync()
    }
}

/// Log identities of the subdirectories of `roots`.
fn log_dirs(fs: &dyn FileSystem, roots: &[PathBuf]) -> HashMap<u64, PathBuf> {
    let mut map = HashMap::new();
    for root in roots {
        // A directory being deleted is no log's any more: never replay into it.
        for name in fs
            .list_dir(root)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !crate::retire::is_retired(n))
        {
            let dir = root.join(name);
            if let Some(id) = crate::recovery::peek_id(fs, &dir) {
                map.insert(id, dir);
            }
        }
    }
    map
}

/// Signals a closing (or failed) log's closer that the commit thread let go of it.
pub(crate) fn signal_released(shared: &Shared) {
    let (m, cv) = &shared.group_released;
    *lock(m) = true;
    cv.notify_all();
}

/// Waits until the commit thread let go of a closing log.
pub(crate) fn wait_released(shared: &Shared) {
    let (m, cv) = &shared.group_released;
    let mut done = lock(m);
    while !*done {
        done = cv.wait(done).unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Encodes the checkpoints that moved into `buf` (entries of segment 0), for journal
/// generation `generation`; returns them with what they record.
fn due_checkpoints(
    checkpoints: Vec<Arc<Shared>>,
    generation: u64,
    buf: &mut Vec<u8>,
) -> Vec<(Arc<Shared>, u64, u64)> {
    let mut out = Vec::new();
    for l in checkpoints {
        l.ckpt_queued.store(false, Ordering::Release);
        if l.detached.load(Ordering::Acquire) || l.progress.failure().is_some() {
            continue;
        }
        let mut ck = lock(&l.checkpoint);
        // Cleared first: an ack after `done_seq` is read sets it again.
        l.checkpoint_dirty.store(false, Ordering::Release);
        let done = lock(&l.cursor).done_seq;
        let high_water = l.progress.durable_seq();
        if done == ck.written_seq && high_water == ck.high_water {
            ck.written_at = Instant::now();
            continue;
        }
        drop(ck);
        encode_entry(buf, generation, l.id, 0, done, &high_water.to_le_bytes());
        out.push((l, done, high_water));
    }
    out
}

/// A checkpoint is durable in journal generation `generation`: the log counts it as written
/// (retention and the re-delivery bound go by it); its file gets it when the flusher retires
/// that journal file.
fn checkpoint_journaled(l: &Shared, done: u64, high_water: u64, generation: u64) {
    let mut ck = lock(&l.checkpoint);
    ck.written_seq = ck.written_seq.max(done);
    ck.high_water = ck.high_water.max(high_water);
    ck.written_at = Instant::now();
    l.checkpointed.fetch_max(done, Ordering::AcqRel);
    let _ = l.ckpt_hold.compare_exchange(0, generation, Ordering::AcqRel, Ordering::Acquire);
}

/// What the round's logs queued, and the logs that closed; held rounds that are due are
/// taken again (marked `true`).
fn take_jobs(
    writers: &mut HashMap<u64, Writer>,
    ready: Vec<Arc<Shared>>,
) -> (Vec<(u64, Job, bool)>, Vec<u64>) {
    let now = Instant::now();
    let mut jobs = Vec::new();
    let mut released = Vec::new();
    for s in ready {
        // Cleared before the queue is taken: an append after this schedules the log again.
        s.scheduled.store(false, Ordering::Release);
        let Some(w) = writers.get_mut(&s.key) else { continue };
        if w.held.is_some() {
            continue; // its queue waits behind the held round
        }
        match w.take() {
            Take::Idle => {}
            Take::Close => released.push(s.key),
            Take::Job(job) => jobs.push((s.key, job, false)),
        }
    }
    for (key, w) in writers.iter_mut() {
        if w.retry_at <= now
            && let Some(job) = w.held.take()
        {
            jobs.push((*key, job, true));
        }
    }
    (jobs, released)
}

fn committer(weak: &Weak<GroupInner>) {
    let mut writers: HashMap<u64, Writer> = HashMap::new();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(g) = weak.upgrade() else { return };
        let (ready, joining, checkpoints) = {
            let mut q = lock(&g.queue);
            (
                std::mem::take(&mut q.ready),
                std::mem::take(&mut q.joining),
                std::mem::take(&mut q.checkpoints),
            )
        };
        for w in joining {
            writers.insert(w.shared.key, w);
        }
        let now = Instant::now();
        let held_due = writers.values().any(|w| w.held.is_some() && w.retry_at <= now);
        if ready.is_empty() && checkpoints.is_empty() && !held_due {
            let next_retry =
                writers.values().filter(|w| w.held.is_some()).map(|w| w.retry_at).min();
            drop(g);
            match next_retry {
                Some(t) => std::thread::park_timeout(t.saturating_duration_since(now)),
                None => std::thread::park(),
            }
            continue;
        }
        g.round(&mut writers, ready, checkpoints, &mut buf);
        if buf.capacity() > 8 << 20 {
            buf = Vec::new();
        }
    }
}

impl GroupInner {
    fn schedule(&self, shared: &Arc<Shared>) {
        if shared.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.queue).ready.push(shared.clone());
        if let Some(t) = self.committer.get() {
            t.unpark();
        }
    }

    fn round(
        &self,
        writers: &mut HashMap<u64, Writer>,
        ready: Vec<Arc<Shared>>,
        checkpoints: Vec<Arc<Shared>>,
        buf: &mut Vec<u8>,
    ) {
        self.counters.rounds.fetch_add(1, Ordering::Relaxed);
        self.rotate_if_due();
        let (jobs, mut released) = take_jobs(writers, ready);
        // Storage is tight (a round found no room, or the budget is near its limit): the
        // journal's second copy would take room the segments need, so rounds are synced log
        // by log and the current journal file is given up, to be flushed and deleted.
        let tight = jobs.iter().any(|(key, _, _)| {
            writers.get(key).is_some_and(|w| {
                w.shared.no_space.load(Ordering::Acquire) || w.shared.budget.is_warning()
            })
        });
        if tight {
            self.give_up_current();
        }
        let file = if tight {
            None
        } else {
            lock(&self.journal).current.as_ref().map(|f| (f.generation, f.file.clone(), f.len))
        };
        let journal =
            if jobs.len() >= self.opts.journal_from_logs.max(1) { file.clone() } else { None };
        buf.clear();
        let ckpts = if let Some((generation, _, _)) = &file {
            due_checkpoints(checkpoints, *generation, buf)
        } else {
            // No journal to share: each checkpoint on its own, as without a group.
            for l in checkpoints {
                l.ckpt_queued.store(false, Ordering::Release);
                let _ = crate::retention::write_checkpoint(&l);
            }
            Vec::new()
        };
        let mut staged = Vec::new();
        let closing: Vec<u64> = jobs
            .iter()
            .filter(|(key, _, _)| {
                writers.get(key).is_some_and(|w| w.shared.shutdown.load(Ordering::Acquire))
            })
            .map(|(key, _, _)| *key)
            .collect();
        for (key, job, was_held) in jobs {
            let Some(w) = writers.get_mut(&key) else { continue };
            let outcome = match &journal {
                Some((generation, _, _)) if !job.rolls() && !was_held => match w.stage(&job) {
                    Ok(at) => {
                        // After the segment write, so that a flusher that takes the mark
                        // syncs these bytes.
                        let _ = w.shared.journal_hold.compare_exchange(
                            0,
                            *generation,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                        encode_entry(
                            buf,
                            *generation,
                            w.shared.id,
                            at.segment,
                            at.offset,
                            w.round_bytes(),
                        );
                        staged.push((key, job));
                        continue;
                    }
                    Err(e) => Err(e),
                },
                _ => w.write(&job),
            };
            match outcome {
                Ok(()) => {
                    w.pause = Duration::from_millis(5);
                    w.round_done();
                    if was_held {
                        // What was queued behind the held round (or a close) was not taken.
                        self.schedule(&w.shared);
                    }
                }
                Err(RoundError::NoSpace) => {
                    if w.give_up_when_closing() {
                        released.push(key);
                    } else {
                        w.retry_at = Instant::now() + w.pause;
                        w.pause = (w.pause * 2).min(NO_SPACE_MAX_PAUSE);
                        w.held = Some(job);
                    }
                }
                Err(RoundError::Failed) => released.push(key),
            }
        }
        if !staged.is_empty() || !ckpts.is_empty() {
            self.commit_journaled(writers, staged, &ckpts, file.as_ref(), buf, &mut released);
        }
        // A closing log whose last records were just written is taken again, to close: its
        // own writer thread would loop until the queue is empty, nothing else schedules it.
        for key in closing {
            if let Some(w) = writers.get(&key).filter(|w| w.held.is_none()) {
                self.schedule(&w.shared);
            }
        }
        for key in released {
            if let Some(w) = writers.remove(&key) {
                lock(&w.shared.append).closed = true;
                signal_released(&w.shared);
                if w.shared.close_by_committer.load(Ordering::Acquire) {
                    w.shared.close_in_group();
                    w.shared.detach();
                }
            }
        }
    }

    /// Makes the staged rounds and the checkpoints of this round durable with one journal
    /// write and sync; when the journal cannot, each log syncs its own segment (and writes its
    /// own checkpoint file) instead.
    fn commit_journaled(
        &self,
        writers: &mut HashMap<u64, Writer>,
        staged: Vec<(u64, Job)>,
        ckpts: &[(Arc<Shared>, u64, u64)],
        file: Option<&(u64, Arc<dyn FileHandle>, u64)>,
        buf: &[u8],
        released: &mut Vec<u64>,
    ) {
        let durable = match file {
            Some((generation, file, len)) => self.append_journal(*generation, &**file, *len, buf),
            None => false,
        };
        if durable && !staged.is_empty() {
            self.counters.journal_rounds.fetch_add(1, Ordering::Relaxed);
            self.counters.journaled_log_rounds.fetch_add(staged.len() as u64, Ordering::Relaxed);
        }
        for (key, job) in staged {
            let Some(w) = writers.get_mut(&key) else { continue };
            let outcome = if durable { w.publish_staged(&job) } else { w.sync_staged(&job) };
            if outcome.is_err() {
                released.push(key);
            }
            w.round_done();
        }
        for (l, done, high_water) in ckpts {
            match file {
                Some((generation, _, _)) if durable => {
                    checkpoint_journaled(l, *done, *high_water, *generation);
                }
                _ => {
                    let _ = crate::retention::write_checkpoint(l);
                }
            }
        }
    }

    /// Writes and syncs one round's entries at the end of the current journal file. On any
    /// error the file is given up (nothing is appended to it again) and `false` returned.
    fn append_journal(
        &self,
        generation: u64,
        file: &dyn FileHandle,
        len: u64,
        bytes: &[u8],
    ) -> bool {
        let ok = write_all_at(file, bytes, len).and_then(|()| file.sync_data()).is_ok();
        let mut j = lock(&self.journal);
        if ok {
            if let Some(cur) = j.current.as_mut().filter(|c| c.generation == generation) {
                cur.len = len + bytes.len() as u64;
                let due = cur.len >= self.opts.journal_file_bytes;
                drop(j);
                if due {
                    self.wake_flusher();
                }
            }
            return true;
        }
        self.counters.journal_failures.fetch_add(1, Ordering::Relaxed);
        if let Some(cur) = j.current.take() {
            j.old.push(cur);
        }
        drop(j);
        self.wake_flusher();
        false
    }

    /// Switches to the prepared next journal file when the current one is full, old enough,
    /// or given up.
    fn rotate_if_due(&self) {
        let mut j = lock(&self.journal);
        let due = match &j.current {
            None => true,
            Some(c) => {
                c.len >= self.opts.journal_file_bytes
                    || (c.len > JOURNAL_HEADER_LEN as u64
                        && c.opened.elapsed() >= self.opts.flush_interval)
            }
        };
        if !due {
            return;
        }
        let Some(mut next) = j.next.take() else {
            // No next file (the flusher could not create one yet: a full disk, perhaps):
            // give the current one up anyway, so that it can be flushed and deleted — on a
            // full disk it holds the room the segments need. Rounds are synced log by log
            // until a new file is ready.
            if let Some(cur) = j.current.take() {
                j.old.push(cur);
            }
            drop(j);
            self.wake_flusher();
            return;
        };
        next.opened = Instant::now();
        if let Some(cur) = j.current.replace(next) {
            j.old.push(cur);
        }
        drop(j);
        self.wake_flusher();
    }

    /// Stops writing to the current journal file (it is flushed and deleted like any old one).
    fn give_up_current(&self) {
        let mut j = lock(&self.journal);
        if let Some(cur) = j.current.take() {
            j.old.push(cur);
            drop(j);
            self.wake_flusher();
        }
    }

    fn wake_flusher(&self) {
        if let Some(t) = self.flusher.get() {
            t.unpark();
        }
    }

    fn live_logs(&self) -> Vec<Arc<Shared>> {
        lock(&self.logs)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|l| !l.detached.load(Ordering::Acquire))
            .collect()
    }

    /// One pass of the flusher; returns how long to sleep.
    fn flush_pass(&self) -> Duration {
        let pause = (self.opts.flush_interval / 2).max(Duration::from_millis(10));
        // Old files first: on a full disk they hold the room a new one needs.
        let newest_old = lock(&self.journal).old.last().map(|f| f.generation);
        if let Some(newest_old) = newest_old {
            self.flush_through(newest_old);
            self.delete_old();
        }
        let need_next = lock(&self.journal).next.is_none();
        if need_next {
            if self.prepare_next().is_err() {
                // Rounds are synced log by log until a journal file can be created.
                self.counters.journal_failures.fetch_add(1, Ordering::Relaxed);
                return pause.max(Duration::from_millis(100));
            }
            // The committer may be waiting for it.
            if let Some(t) = self.committer.get() {
                t.unpark();
            }
        }
        pause
    }

    /// Syncs the segments of every live log with journaled bytes in generations up to
    /// `generation`. A log whose sync fails is failed and keeps its journal files.
    fn flush_through(&self, generation: u64) {
        for l in self.live_logs() {
            let ch = l.ckpt_hold.load(Ordering::Acquire);
            if ch != 0 && ch <= generation && l.progress.failure().is_none() {
                // Clears the mark when written; a failure fails the log, which keeps it.
                let _ = crate::retention::write_checkpoint(&l);
            }
            let h = l.journal_hold.load(Ordering::Acquire);
            if h == 0 || h > generation || l.progress.failure().is_some() {
                continue;
            }
            let Some(file) = lock(&l.active_file).clone() else { continue };
            // Taken before the sync: bytes written after this mark the log again.
            let taken = l.journal_hold.swap(0, Ordering::AcqRel);
            if let Err(e) = file.sync_data() {
                // Keep the journal files: the log is failed, and its reopening writes its
                // journaled bytes back before anything else.
                let _ = l.journal_hold.fetch_update(Ordering::AcqRel, Ordering::Acquire, |x| {
                    Some(if x == 0 { taken } else { x.min(taken) })
                });
                l.fail("fdatasync", &l.dir, &e);
                continue;
            }
            l.counters.syncs.fetch_add(1, Ordering::Relaxed);
            self.counters.flush_syncs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Deletes the old journal files no live log and no pinned directory still needs, oldest
    /// first, and syncs the directory.
    fn delete_old(&self) {
        let mut keep = u64::MAX;
        for l in self.live_logs() {
            for h in [l.journal_hold.load(Ordering::Acquire), l.ckpt_hold.load(Ordering::Acquire)] {
                if h != 0 {
                    keep = keep.min(h);
                }
            }
        }
        if let Some(p) = lock(&self.pinned).values().min() {
            keep = keep.min(*p);
        }
        let gone: Vec<JournalFile> = {
            let mut j = lock(&self.journal);
            let (gone, kept) =
                std::mem::take(&mut j.old).into_iter().partition(|f| f.generation < keep);
            j.old = kept;
            gone
        };
        if gone.is_empty() {
            return;
        }
        for f in &gone {
            if self.opts.fs.remove_file(&f.path).is_ok() {
                self.counters.files_deleted.fetch_add(1, Ordering::Relaxed);
            }
        }
        // A deleted file must stay deleted: after a log healed, a file from before could
        // hold entries for offsets it has since written again (see `CommitGroup::retire_journal`).
        let _ = self.opts.fs.sync_dir(&self.dir);
    }

    /// Creates the next journal file: header written and synced, directory entry synced.
    fn prepare_next(&self) -> Result<()> {
        let generation = {
            let mut j = lock(&self.journal);
            let g = j.next_generation;
            j.next_generation += 1;
            g
        };
        let fs = &*self.opts.fs;
        let path = journal_path(&self.dir, generation);
        let file: Arc<dyn FileHandle> =
            fs.create_new(&path).map_err(|e| Error::io("create journal", &path, e))?.into();
        let header = encode_file_header(generation);
        let made = write_all_at(&*file, &header, 0)
            .and_then(|()| file.sync_data())
            .and_then(|()| fs.sync_dir(&self.dir));
        if let Err(e) = made {
            // A full disk: leave no empty file behind for every attempt.
            let _ = fs.remove_file(&path);
            return Err(Error::io("create journal", &path, e));
        }
        let f = JournalFile {
            generation,
            path,
            file,
            len: JOURNAL_HEADER_LEN as u64,
            opened: Instant::now(),
        };
        lock(&self.journal).next = Some(f);
        Ok(())
    }
}

fn flusher(weak: &Weak<GroupInner>) {
    loop {
        let Some(g) = weak.upgrade() else { return };
        let wait = g.flush_pass();
        drop(g);
        std::thread::park_timeout(wait);
    }
}
