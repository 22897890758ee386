//! The [`Log`] handle and the state its parts share.
//!
//! Locks, and the only order in which two may be held together (anything else takes one at a
//! time): `reader → cursor`, `reader → segments`, `checkpoint → cursor`,
//! `checkpoint → segments`. The append lock is never held with another and never across I/O.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, FailCause, Result};
use crate::format::{self, MAX_RECORD_PAYLOAD};
use crate::fs::{DirLock, FileHandle, FileSystem, StdFs};
use crate::group::CommitGroup;
use crate::ranges::SeqRanges;
use crate::reader::{Batch, ReaderIo, Record};
use crate::recovery::{self, OpenReport};
use crate::retention::{RetentionReport, StorageBudget};
use crate::wait::{Commit, Durable, Progress, Ready};
use crate::writer::{self, AppendState, TaggedAppend};

/// Tunables of one log. `Default` gives the product defaults.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// A segment is sealed and a new one started once it would exceed this size
    /// (a single larger record still gets a segment of its own). Default 16 MiB: small enough
    /// that deleting whole segments frees space promptly on an SD card.
    pub segment_bytes: u64,
    /// Largest accepted payload. Default 16 MiB; at most [`MAX_RECORD_PAYLOAD`].
    pub max_record_bytes: u32,
    /// Bytes of encoded records that may wait for the writer before appends get
    /// [`Error::Backlogged`]. Default 4 MiB (the writer's double buffer is at most twice this).
    pub queue_bytes: usize,
    /// How often the Done position is checkpointed while it moves. This is the window of Done
    /// messages that may be delivered again after a crash. Default 100 ms.
    pub checkpoint_interval: Duration,
    /// ... and at the latest once this many records became Done since the last checkpoint, so
    /// a fast drain re-delivers at most about this many after a crash. Default 10,000.
    pub checkpoint_records: u64,
    /// How long Done messages stay available (for the Live View and message browser) while
    /// storage allows. Default 24 h (adjustable later with [`Log::set_retention`]).
    pub retention: Duration,
    /// Optional limit on this log's bytes on disk, in addition to the global budget
    /// (adjustable later with [`Log::set_max_bytes`]).
    pub max_bytes: Option<u64>,
    /// Global storage accounting shared by all logs. `None`: a private budget of
    /// [`StorageBudget::DEFAULT_LIMIT_BYTES`].
    pub budget: Option<StorageBudget>,
    /// The file system. Default: the operating system's.
    pub fs: Arc<dyn FileSystem>,
    /// The commit group whose thread writes this log and whose journal shares its syncs with
    /// the group's other logs. `None`: the log has a writer thread of its own and syncs its
    /// segments itself.
    pub group: Option<CommitGroup>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 16 * 1024 * 1024,
            max_record_bytes: 16 * 1024 * 1024,
            queue_bytes: 4 * 1024 * 1024,
            checkpoint_interval: Duration::from_millis(100),
            checkpoint_records: 10_000,
            retention: Duration::from_secs(24 * 3600),
            max_bytes: None,
            budget: None,
            fs: Arc::new(StdFs),
            group: None,
        }
    }
}

/// A message's delivery state (the SPEC's states, plus the two edges of the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageState {
    /// Stored durably, waiting for delivery.
    Pending,
    /// Handed to the destination, not yet confirmed.
    InFlight,
    /// Delivered and confirmed.
    Done,
    /// Appended but not yet durable: not accepted yet.
    Unconfirmed,
    /// Not in the log (never written, or removed by retention).
    Absent,
}

/// A cheap snapshot of a log's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Oldest retained sequence number (records before it were removed by retention).
    pub first_seq: u64,
    /// The sequence number the next append will get.
    pub next_seq: u64,
    /// Everything up to this is durable.
    pub durable_seq: u64,
    /// Everything up to this is Done.
    pub done_seq: u64,
    /// The next record the reader hands out (those from `done_seq + 1` to this are in
    /// flight, but for any confirmed out of order).
    pub read_seq: u64,
    /// The Done position last written to the checkpoint file.
    pub checkpoint_seq: u64,
    /// Durable records waiting for delivery.
    pub pending: u64,
    /// Records handed out and not yet confirmed.
    pub in_flight: u64,
    /// Done records still retained.
    pub done: u64,
    /// Bytes on disk (and queued for the writer).
    pub bytes: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Append time of the oldest record that is not Done, microseconds since the Unix epoch.
    pub oldest_pending_us: Option<u64>,
    /// Damaged stretches found while reading.
    pub corrupt_events: u64,
    /// Records lost to damage.
    pub lost_records: u64,
    /// Completed fdatasync calls on segment files (group commits).
    pub syncs: u64,
    /// Why the log failed, if it did.
    pub failed: Option<String>,
}

/// Metadata of one segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub first_seq: u64,
    /// Bytes written (for sealed segments: the file size).
    pub bytes: u64,
    pub created_us: u64,
    /// Where the first record starts (the header's length).
    pub data_start: u64,
}

/// The segment list and the durable end of the active (last) segment.
#[derive(Debug)]
pub(crate) struct Segments {
    pub list: Vec<SegmentInfo>,
    /// Byte offset in the active segment up to which data is durable.
    pub durable_end: u64,
    /// Last sequence number inside that durable range (`first_seq - 1` if none).
    pub durable_last_seq: u64,
}

/// Where a handed-out record lives, for rewinding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pos {
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
    pub timestamp_us: u64,
}

/// Delivery cursor: which records are Pending, In-Flight and Done.
#[derive(Debug)]
pub(crate) struct CursorState {
    /// Next record to hand out; records in `(done_seq, read_seq)` are In-Flight unless in
    /// `done_above`.
    pub read_seq: u64,
    /// Every record `<= done_seq` is Done.
    pub done_seq: u64,
    /// Records above `done_seq` confirmed individually (or lost to damage).
    pub done_above: SeqRanges,
    /// Positions of handed-out records above `done_seq`, in sequence order.
    pub inflight: VecDeque<Pos>,
    /// Bumped whenever `read_seq` moves backwards; the reader then repositions.
    pub generation: u64,
    /// Where to reposition to, when known.
    pub seek_hint: Option<Pos>,
}

#[derive(Debug)]
pub(crate) struct CheckpointState {
    pub written_seq: u64,
    pub written_at: Instant,
    /// Generation of the slot last written.
    pub generation: u64,
    /// The high-water mark last written.
    pub high_water: u64,
    /// The Done position and high-water mark in the checkpoint file itself (in a commit
    /// group, `written_seq` and `high_water` may be newer: made durable in the journal).
    pub in_file: (u64, u64),
    /// The checkpoint file, open for in-place slot writes; `None` once the log is closed.
    pub file: Option<Box<dyn crate::fs::FileHandle>>,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub corrupt_events: AtomicU64,
    pub lost_records: AtomicU64,
    pub syncs: AtomicU64,
}

/// State shared by handles, the writer thread and the budget.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub opts: LogOptions,
    pub budget: StorageBudget,
    pub progress: Arc<Progress>,
    pub append: Mutex<AppendState>,
    pub segments: Mutex<Segments>,
    pub cursor: Mutex<CursorState>,
    pub reader: Mutex<ReaderIo>,
    pub checkpoint: Mutex<CheckpointState>,
    /// The Done position or the durable end moved since the last checkpoint.
    pub checkpoint_dirty: AtomicBool,
    /// The Done position as last checkpointed (a lock-free copy for the count trigger).
    pub checkpointed: AtomicU64,
    pub shutdown: AtomicBool,
    /// Closed: the directory lock is released and the budget no longer counts or touches this
    /// log; every operation answers `Closed`.
    pub detached: AtomicBool,
    /// The writer holds a round that the file system had no space for (`ENOSPC`); appends are
    /// refused as `Full` until it is written.
    pub no_space: AtomicBool,
    /// Bytes a refused append needed beyond this log's own limit (0: none): the housekeeper
    /// frees Done segments of this log.
    pub need: AtomicU64,
    /// Bytes accounted to this log in the budget: files on disk plus queued records.
    pub bytes: AtomicU64,
    /// This log's own limit (`u64::MAX`: none); adjustable while open.
    pub max_bytes: AtomicU64,
    /// How long Done records are kept, in microseconds; adjustable while open.
    pub retention_us: AtomicU64,
    pub counters: Counters,
    pub writer_thread: OnceLock<Thread>,
    /// The log's identity (see [`Log::id`]).
    pub id: u64,
    /// The directory's OS lock; released when the log is closed, even while clones of the
    /// handle still exist, so the directory can be opened again at once.
    pub dir_lock: Mutex<Option<Box<dyn DirLock>>>,
    /// The commit group writing this log (`None`: its own writer thread).
    pub group: Option<CommitGroup>,
    /// This open instance, among all logs of the process.
    pub key: u64,
    pub weak_self: std::sync::Weak<Shared>,
    /// Commit group: the log waits in the commit thread's queue.
    pub scheduled: AtomicBool,
    /// Commit group: the oldest journal generation holding bytes of this log not yet synced to
    /// its segment (0: none).
    pub journal_hold: AtomicU64,
    /// Commit group: the oldest journal generation holding a checkpoint of this log that its
    /// checkpoint file does not have yet (0: none).
    pub ckpt_hold: AtomicU64,
    /// Commit group: a checkpoint of this log waits for the commit thread.
    pub ckpt_queued: AtomicBool,
    /// The active segment, for the commit group's flusher.
    pub active_file: Mutex<Option<Arc<dyn FileHandle>>>,
    /// Commit group: set when the commit thread let go of the closing (or failed) log.
    pub group_released: (Mutex<bool>, std::sync::Condvar),
    /// Commit group: the last handle was dropped on the commit thread, which then closes the
    /// log itself when it lets go of it.
    pub close_by_committer: AtomicBool,
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its state consistent before any call that could panic, so
    // a poisoned lock (a panicking thread elsewhere) does not make the state unusable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub(crate) fn now_us() -> u64 {
    let d = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Shared {
    pub(crate) fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir.join(format::segment_file_name(first_seq))
    }

    pub(crate) fn wake_writer(&self) {
        match &self.group {
            Some(g) => {
                if let Some(me) = self.weak_self.upgrade() {
                    g.schedule(&me);
                }
            }
            None => {
                if let Some(t) = self.writer_thread.get() {
                    t.unpark();
                }
            }
        }
    }

    /// Turns a write-path I/O error into the log's failed state.
    pub(crate) fn fail(&self, op: &'static str, path: &Path, e: &std::io::Error) -> Error {
        let cause =
            FailCause { op, path: path.to_path_buf(), kind: e.kind(), message: e.to_string() };
        self.progress.fail(Arc::new(cause.clone()));
        Error::Failed(cause)
    }

    pub(crate) fn check_failed(&self) -> Result<()> {
        match self.progress.failure() {
            Some(f) => Err(Error::Failed((*f).clone())),
            None => Ok(()),
        }
    }

    /// Marks the Done position (or the durable end) as moved; wakes the housekeeper to
    /// schedule a checkpoint on the first move, and at once when `checkpoint_records` Done
    /// records wait for one.
    /// `done_seq`: the new Done position, when it is what moved (the caller may hold the
    /// cursor lock).
    pub(crate) fn mark_checkpoint_dirty(&self, done_seq: Option<u64>) {
        let first = !self.checkpoint_dirty.swap(true, Ordering::AcqRel);
        let overdue = done_seq.is_some_and(|d| {
            d.saturating_sub(self.checkpointed.load(Ordering::Acquire))
                >= self.opts.checkpoint_records
        });
        if first || overdue {
            self.budget.wake_keeper();
        }
    }

    /// So many records became Done since the last checkpoint that it is due now.
    pub(crate) fn checkpoint_overdue(&self) -> bool {
        let done = lock(&self.cursor).done_seq;
        done.saturating_sub(self.checkpointed.load(Ordering::Acquire))
            >= self.opts.checkpoint_records
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.detached.load(Ordering::Acquire) { Err(Error::Closed) } else { Ok(()) }
    }

    /// Commit group: what the log's own writer thread does when it stops, done by the closing
    /// thread so the commit thread never waits for one log's disk work. The segment is synced
    /// when the journal holds bytes of it (so no journal file is kept for a closed log), then
    /// the final checkpoint is written.
    pub(crate) fn close_in_group(&self) {
        let Some(group) = &self.group else { return };
        if self.progress.failure().is_none() && self.journal_hold.load(Ordering::Acquire) != 0 {
            let file = lock(&self.active_file).clone();
            if let Some(f) = file {
                match f.sync_data() {
                    Ok(()) => {
                        self.journal_hold.store(0, Ordering::Release);
                        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.fail("fdatasync", &self.dir, &e);
                    }
                }
            }
        }
        if self.progress.failure().is_none() {
            let _ = crate::retention::write_checkpoint(self);
        }
        let hold =
            [self.journal_hold.load(Ordering::Acquire), self.ckpt_hold.load(Ordering::Acquire)]
                .into_iter()
                .filter(|&h| h != 0)
                .min();
        if let Some(hold) = hold {
            // Its journaled bytes are written back when the directory is opened again.
            group.pin(&self.dir, hold);
        }
        self.progress.close();
    }

    /// Closes for good: stops the budget counting this log, drops the checkpoint file and
    /// releases the directory lock. The writer must have stopped.
    pub(crate) fn detach(&self) {
        if self.detached.swap(true, Ordering::AcqRel) {
            return;
        }
        // An in-progress checkpoint finishes before the lock goes.
        lock(&self.checkpoint).file = None;
        let bytes = self.bytes.swap(0, Ordering::AcqRel);
        self.budget.release(bytes);
        lock(&self.dir_lock).take();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.budget.release(self.bytes.load(Ordering::Acquire));
    }
}

struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    /// Stops the writer (it flushes the queue and writes a final checkpoint) and closes the log.
    fn stop_writer(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.wake_writer();
        if let Some(handle) = lock(&self.writer).take() {
            // The writer only panics on a bug; its state is in `Shared`, which stays valid.
            let _ = handle.join();
        }
        if let Some(g) = &self.shared.group
            && !self.shared.detached.load(Ordering::Acquire)
        {
            if g.on_commit_thread() {
                // The last handle went with a task the commit thread's wake-up dropped (a
                // runtime shutting down): the commit thread cannot wait for itself, so it
                // finishes the close when it lets go of the log.
                self.shared.close_by_committer.store(true, Ordering::Release);
                return;
            }
            crate::group::wait_released(&self.shared);
            self.shared.close_in_group();
        }
        self.shared.detach();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// One durable FIFO log in its own directory. Cheap to clone; all clones are the same log.
///
/// See the crate documentation for the on-disk format and the durability contract.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
    report: Arc<OpenReport>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.inner.shared.dir).finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, running recovery: a torn tail is
    /// truncated, damaged segments are set aside, and delivery resumes after the last
    /// checkpointed Done position. What recovery found is in [`Log::open_report`].
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Log> {
        Self::open_with(dir.as_ref(), opts, recovery::Resume::default())
    }

    fn open_with(dir: &Path, mut opts: LogOptions, resume: recovery::Resume) -> Result<Log> {
        opts.max_record_bytes = opts.max_record_bytes.min(MAX_RECORD_PAYLOAD);
        opts.segment_bytes = opts.segment_bytes.max(format::SEGMENT_HEADER_LEN as u64 + 1);
        opts.queue_bytes = opts.queue_bytes.max(1);
        opts.checkpoint_records = opts.checkpoint_records.max(1);
        let dir = dir.to_path_buf();
        let budget = opts.budget.clone().unwrap_or_default();
        if let Some(g) = &opts.group {
            // A failed instance's journaled bytes may be missing from its segment (its sync
            // failed): write them back before recovery reads the segment.
            if resume.trusted.is_some() || g.is_pinned(&dir) {
                if let Some(id) = recovery::peek_id(&*opts.fs, &dir) {
                    g.replay_log(id, &dir)?;
                }
                g.unpin(&dir);
                // Entries the failed instance left that were never acknowledged must not
                // come back over what this one writes.
                g.retire_journal()?;
            }
        }
        let rec = recovery::recover(&*opts.fs, &dir, &opts, resume)?;
        budget.force_add(rec.bytes);
        let active_first = rec.active.first_seq;
        let active_len = rec.active.len;
        let durable_seq = rec.next_seq - 1;
        let group = opts.group.clone();
        let shared = Arc::new_cyclic(|weak_self| Shared {
            progress: Arc::new(Progress::new(durable_seq, opts.queue_bytes)),
            append: Mutex::new(AppendState::new(
                rec.next_seq,
                active_len,
                rec.next_seq - active_first,
                rec.producers,
            )),
            segments: Mutex::new(Segments {
                list: rec.segments,
                durable_end: active_len,
                durable_last_seq: durable_seq,
            }),
            cursor: Mutex::new(CursorState {
                read_seq: rec.done_seq + 1,
                done_seq: rec.done_seq,
                done_above: SeqRanges::default(),
                inflight: VecDeque::new(),
                generation: 0,
                seek_hint: None,
            }),
            reader: Mutex::new(ReaderIo::default()),
            checkpoint: Mutex::new(CheckpointState {
                written_seq: rec.checkpoint.done_seq,
                written_at: Instant::now(),
                generation: rec.checkpoint.generation,
                high_water: rec.checkpoint.high_water,
                in_file: (rec.checkpoint.done_seq, rec.checkpoint.high_water),
                file: Some(rec.checkpoint_file),
            }),
            // Recovery may have moved the Done position or the high-water mark past what the
            // checkpoint says: write it soon.
            checkpoint_dirty: AtomicBool::new(false),
            checkpointed: AtomicU64::new(rec.checkpoint.done_seq),
            shutdown: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            no_space: AtomicBool::new(false),
            need: AtomicU64::new(0),
            bytes: AtomicU64::new(rec.bytes),
            max_bytes: AtomicU64::new(opts.max_bytes.unwrap_or(u64::MAX)),
            retention_us: AtomicU64::new(duration_us(opts.retention)),
            counters: Counters::default(),
            writer_thread: OnceLock::new(),
            id: rec.id,
            dir_lock: Mutex::new(Some(rec.lock)),
            group: group.clone(),
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            weak_self: weak_self.clone(),
            scheduled: AtomicBool::new(false),
            journal_hold: AtomicU64::new(0),
            ckpt_hold: AtomicU64::new(0),
            ckpt_queued: AtomicBool::new(false),
            active_file: Mutex::new(None),
            group_released: (Mutex::new(false), std::sync::Condvar::new()),
            close_by_committer: AtomicBool::new(false),
            budget: budget.clone(),
            dir: dir.clone(),
            fs: opts.fs.clone(),
            opts,
        });
        budget.register(&shared);
        if rec.done_seq != rec.checkpoint.done_seq || durable_seq != rec.checkpoint.high_water {
            shared.mark_checkpoint_dirty(None);
        }
        let report = Arc::new(rec.report);
        if let Some(g) = &group {
            g.attach(&shared, writer::Writer::new(shared.clone(), rec.active));
            return Ok(Log { inner: Arc::new(Inner { shared, writer: Mutex::new(None) }), report });
        }
        let name =
            dir.file_name().map_or_else(|| "log".into(), |n| n.to_string_lossy().into_owned());
        let handle = writer::spawn(shared.clone(), rec.active, &name)
            .map_err(|e| Error::io("spawn writer thread for", &dir, e))?;
        let _ = shared.writer_thread.set(handle.thread().clone());
        Ok(Log { inner: Arc::new(Inner { shared, writer: Mutex::new(Some(handle)) }), report })
    }

    /// Closes this log (if it is not closed yet) and opens its directory again, running
    /// recovery: how a log heals after a failed write or `fdatasync`.
    ///
    /// After a failure, nothing past the last position this instance knew to be durable is
    /// trusted: the active segment is truncated back to it and segment files created after it
    /// are removed before anything is appended again. Bytes whose write-back failed may still
    /// sit in the page cache, readable and with valid checksums, while the disk does not hold
    /// them; a log that kept them would later hold acknowledged records behind a hole that a
    /// power cut opens. None of them was ever acknowledged (their commits failed). Delivery
    /// resumes at the Done position this instance reached.
    ///
    /// Clones of this handle answer [`Error::Closed`] from then on. May be called again if it
    /// fails (the disk is still sick): each call starts from the same trusted position.
    pub fn reopen(&self) -> Result<Log> {
        self.inner.stop_writer();
        let s = self.shared();
        let trusted = s.progress.failure().map(|_| {
            let segs = lock(&s.segments);
            let last = segs.list.last().map_or(0, |x| x.first_seq);
            (last, segs.durable_end)
        });
        let resume = recovery::Resume { trusted, done_seq: lock(&s.cursor).done_seq };
        let mut opts = s.opts.clone();
        opts.max_bytes = Some(s.max_bytes.load(Ordering::Acquire)).filter(|&m| m != u64::MAX);
        opts.retention = Duration::from_micros(s.retention_us.load(Ordering::Acquire));
        opts.budget = Some(s.budget.clone());
        Self::open_with(&s.dir, opts, resume)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// What recovery found when this log was opened.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// The storage budget this log counts against.
    pub fn budget(&self) -> &StorageBudget {
        &self.shared().budget
    }

    /// Queues one record. The record is accepted only when the returned [`Commit`] resolves
    /// `Ok`. Fails at once with [`Error::Backlogged`] when the queue is full (wait for
    /// [`Log::ready`]), [`Error::Full`] when storage is exhausted, [`Error::TooLarge`],
    /// [`Error::Failed`] or [`Error::Closed`].
    pub fn try_append(&self, payload: &[u8]) -> Result<Commit> {
        self.try_append_batch(std::slice::from_ref(&payload))
    }

    /// Queues several records at once, in order, with consecutive sequence numbers; one
    /// [`Commit`] covers them all. All or nothing: on error none were queued.
    pub fn try_append_batch<T: AsRef<[u8]>>(&self, payloads: &[T]) -> Result<Commit> {
        writer::try_append_batch(self.shared(), payloads)
    }

    /// Queues records from an **idempotent producer** (another log being relayed here, for
    /// instance): each record comes with the producer's own sequence number, which must
    /// increase within the call. Records whose number is not above the producer's last one in
    /// this log are skipped as duplicates; the rest are appended with their tag, under the
    /// same lock that assigns sequence numbers. The tags are stored with the records and the
    /// producer table in each segment header, so after any crash the table is exactly what
    /// survived: a producer that resends everything after [`Log::durable_producer_position`]
    /// gets each record in exactly once.
    ///
    /// Errors as [`Log::try_append_batch`], plus [`Error::InvalidTag`].
    pub fn try_append_tagged<T: AsRef<[u8]>>(
        &self,
        producer: u64,
        records: &[(u64, T)],
    ) -> Result<TaggedAppend> {
        writer::try_append_tagged(self.shared(), producer, records)
    }

    /// Like [`Log::try_append_tagged`], waiting for queue room as needed.
    pub async fn append_tagged_queued<T: AsRef<[u8]>>(
        &self,
        producer: u64,
        records: &[(u64, T)],
    ) -> Result<TaggedAppend> {
        loop {
            match self.try_append_tagged(producer, records) {
                Err(Error::Backlogged) => self.ready().await?,
                other => return other,
            }
        }
    }

    /// The last producer sequence number of `producer` in this log, including records not yet
    /// durable (0: none).
    pub fn producer_position(&self, producer: u64) -> u64 {
        lock(&self.shared().append).producers.get(producer).unwrap_or(0)
    }

    /// The last producer sequence number of `producer` that is durable in this log (0: none):
    /// waits until everything queued so far is durable. A producer resumes after it.
    pub async fn durable_producer_position(&self, producer: u64) -> Result<u64> {
        let (pos, last) = {
            let st = lock(&self.shared().append);
            (st.producers.get(producer).unwrap_or(0), st.next_seq - 1)
        };
        if last > 0 {
            Commit::new(self.shared().progress.clone(), last, last).await?;
        }
        Ok(pos)
    }

    /// A [`Commit`] that resolves once everything queued so far is durable (`None` for an
    /// empty log). Lets a caller confirm records it found already in the log only when they
    /// are durable, whoever queued them.
    pub fn queued_commit(&self) -> Option<Commit> {
        let last = lock(&self.shared().append).next_seq - 1;
        (last > 0).then(|| Commit::new(self.shared().progress.clone(), last, last))
    }

    /// Number of producers this log tracks.
    pub fn producer_count(&self) -> usize {
        lock(&self.shared().append).producers.len()
    }

    /// The log's identity: a random number chosen when its directory was created and kept in
    /// its `id` file. A log deleted and created again gets a new one, so a consumer that
    /// tracks this log's sequence numbers (the relay, as an idempotent producer elsewhere)
    /// can tell the new log from the old.
    pub fn id(&self) -> u64 {
        self.shared().id
    }

    /// Appends one record and waits until it is durable; waits for queue room as needed.
    pub async fn append(&self, payload: &[u8]) -> Result<u64> {
        let commit = self.append_queued(std::slice::from_ref(&payload)).await?;
        Ok(*commit.await?.start())
    }

    /// Queues records, waiting for queue room as needed; the returned [`Commit`] resolves
    /// when they are durable. Lets a caller pipeline: queue the next batch while the previous
    /// one is being synced.
    pub async fn append_queued<T: AsRef<[u8]>>(&self, payloads: &[T]) -> Result<Commit> {
        loop {
            match self.try_append_batch(payloads) {
                Err(Error::Backlogged) => self.ready().await?,
                other => return other,
            }
        }
    }

    /// Resolves when the append queue has room.
    pub fn ready(&self) -> Ready {
        Ready::new(self.shared().progress.clone())
    }

    /// Hands out up to `max_records` durable Pending records (and roughly `max_bytes` of
    /// payload, at least one record) and marks them In-Flight. Returns an empty batch when
    /// nothing is pending; wait with [`Log::readable`].
    ///
    /// If damaged records are met, the records before them are returned and the next call
    /// returns [`Error::Corrupt`] describing them; the call after that continues past them.
    pub fn read_batch(&self, max_records: usize, max_bytes: usize) -> Result<Batch> {
        let mut batch = Batch::default();
        self.read_batch_into(&mut batch, max_records, max_bytes)?;
        Ok(batch)
    }

    /// Like [`Log::read_batch`], reusing `batch`'s buffers (it is cleared first).
    pub fn read_batch_into(
        &self,
        batch: &mut Batch,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<()> {
        crate::reader::read_batch(self.shared(), batch, max_records, max_bytes)
    }

    /// Resolves when a record is available to [`Log::read_batch`] (or the log failed/closed).
    pub fn readable(&self) -> Durable {
        let read_seq = lock(&self.shared().cursor).read_seq;
        Durable::new(self.shared().progress.clone(), read_seq)
    }

    /// Marks every record up to and including `seq` Done. Only In-Flight records can become
    /// Done; acknowledging an already Done position is a no-op.
    pub fn ack_through(&self, seq: u64) -> Result<()> {
        crate::reader::ack_through(self.shared(), seq)
    }

    /// Marks one In-Flight record Done.
    pub fn ack(&self, seq: u64) -> Result<()> {
        crate::reader::ack_one(self.shared(), seq)
    }

    /// Returns In-Flight records from `seq` on to Pending: they are handed out again, in order,
    /// before anything newer (records already Done individually are skipped).
    pub fn requeue_from(&self, seq: u64) -> Result<()> {
        crate::reader::requeue_from(self.shared(), seq)
    }

    /// Returns every In-Flight record to Pending.
    pub fn requeue_all(&self) {
        let from = lock(&self.shared().cursor).done_seq + 1;
        // Cannot fail: `from` is just above the Done position.
        let _ = self.requeue_from(from);
    }

    /// Writes the Done position durably now (normally done in the background every
    /// `checkpoint_interval`).
    pub fn checkpoint(&self) -> Result<()> {
        crate::retention::write_checkpoint(self.shared())
    }

    /// Deletes segments whose records are all Done (as of the last checkpoint) and older than
    /// the retention age at `now`. The active segment is never deleted.
    pub fn enforce_retention(&self, now: SystemTime) -> Result<RetentionReport> {
        crate::retention::enforce_age(self.shared(), now)
    }

    /// Changes this log's own storage limit (`None`: only the global budget applies).
    pub fn set_max_bytes(&self, max: Option<u64>) {
        self.shared().max_bytes.store(max.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Changes how long Done records are kept.
    pub fn set_retention(&self, retention: Duration) {
        self.shared().retention_us.store(duration_us(retention), Ordering::Release);
    }

    /// Reads up to `max_records` durable records starting at `from_seq`, whatever their state,
    /// without touching the delivery cursor (the message browser).
    pub fn read_range(&self, from_seq: u64, max_records: usize, max_bytes: usize) -> Result<Batch> {
        crate::reader::read_range(self.shared(), from_seq, max_records, max_bytes)
    }

    /// One durable record by sequence number.
    pub fn get(&self, seq: u64) -> Result<Option<Record>> {
        let batch = self.read_range(seq, 1, 1)?;
        Ok(batch.iter().next().filter(|r| r.seq == seq).map(|r| r.to_owned()))
    }

    /// The delivery state of `seq`.
    pub fn state_of(&self, seq: u64) -> MessageState {
        let s = self.shared();
        let first = lock(&s.segments).list.first().map_or(u64::MAX, |x| x.first_seq);
        let durable = s.progress.durable_seq();
        let next = lock(&s.append).next_seq;
        let c = lock(&s.cursor);
        if seq == 0 || seq < first || seq >= next {
            MessageState::Absent
        } else if seq <= c.done_seq || c.done_above.contains(seq) {
            MessageState::Done
        } else if seq < c.read_seq {
            MessageState::InFlight
        } else if seq <= durable {
            MessageState::Pending
        } else {
            MessageState::Unconfirmed
        }
    }

    /// A snapshot of the log's counts.
    pub fn stats(&self) -> LogStats {
        crate::reader::stats(self.shared())
    }

    /// Why the log failed, if it did.
    pub fn failure(&self) -> Option<FailCause> {
        self.shared().progress.failure().map(|f| (*f).clone())
    }

    /// Flushes queued records, writes a final checkpoint, stops the writer and releases the
    /// directory (its lock and its share of the storage budget), even while clones of this
    /// handle exist: they see [`Error::Closed`] afterwards.
    pub fn close(self) -> Result<()> {
        self.inner.stop_writer();
        self.shared().check_failed()
    }

    /// Closes the log and removes its directory and every message in it, for good
    /// ([`Log::retire`], then [`crate::Retired::remove`]).
    pub fn delete(self) -> Result<()> {
        self.retire()?.remove()
    }

    /// Closes the log and moves its directory aside, durably, for deletion: from its return
    /// no start opens this log again, and a crash leaves only a directory that
    /// [`crate::remove_retired`] clears (see [`crate::retire`]). Its records leave the storage
    /// budget now.
    pub fn retire(self) -> Result<crate::Retired> {
        self.inner.stop_writer();
        let dir = self.shared().dir.clone();
        let fs = self.shared().fs.clone();
        let group = self.shared().group.clone();
        drop(self);
        if let Some(g) = group {
            g.unpin(&dir);
        }
        crate::retire::move_aside(fs, &dir)
    }
}
