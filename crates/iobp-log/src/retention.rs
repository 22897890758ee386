//! Storage accounting, the crash-safe checkpoint, and deleting Done segments.
//!
//! Byte accounting: every log counts its segment files plus the records queued for its writer;
//! a [`StorageBudget`] shared by all logs sums them against the global limit
//! (`max_storage_mb`) **and against the free space of the file system** (sampled with
//! `statvfs` at most every [`SPACE_SAMPLE_EVERY`] by appenders, keeping a margin free for the
//! rest of the data directory), and a log may also have its own limit. An append that would
//! cross a limit fails at once with [`Error::Full`] — callers hold their senders back — and
//! asks the housekeeper to release Done segments, oldest first, across all logs.
//!
//! No disk I/O happens on an appender's thread (an async worker, in the engine): checkpoints,
//! segment deletion and directory syncs are the housekeeper's (see `housekeeper.rs`).
//!
//! Invariants:
//! - A segment is deleted only when every record in it is at or below the **checkpointed**
//!   Done position, so no crash can bring back a need for a deleted record.
//! - The active (last) segment is never deleted, so the next sequence number always survives.
//! - Pending and In-Flight records are never deleted.
//!
//! Checkpoint: two slots in a preallocated file, written in place alternately and made
//! durable with one `fdatasync` — no rename, no directory sync, no change of the file's size,
//! so it does not force a journal commit that the next data `fdatasync` would wait for. A torn
//! slot write leaves the other slot; recovery takes the valid slot with the higher generation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::format::{self, Checkpoint};
use crate::fs::write_all_at;
use crate::log::{SegmentInfo, Shared, lock, now_us};

/// Share of the limit above which [`StorageBudget::is_warning`] reports true.
pub const WARNING_RATIO: f64 = 0.8;
/// Above this share of the limit the housekeeper releases Done segments ahead of need ...
const RECLAIM_ABOVE: f64 = 0.95;
/// ... down to this share.
const RECLAIM_TO: f64 = 0.9;
/// How often appenders may sample the file system's free space.
pub const SPACE_SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// `u64::MAX` as "no file system limit known".
const NO_CAP: u64 = u64::MAX;

/// Byte accounting shared by every log of an instance, against one global limit and the free
/// space of the file system. Owns the housekeeping thread that writes checkpoints and releases
/// Done segments for all its logs.
#[derive(Clone, Debug)]
pub struct StorageBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
pub(crate) struct BudgetInner {
    limit: AtomicU64,
    used: AtomicU64,
    logs: Mutex<Vec<Weak<Shared>>>,
    /// The most `used` may reach for the file system: `used` when sampled plus the bytes then
    /// available, less a margin. [`NO_CAP`]: unknown.
    fs_cap: AtomicU64,
    /// Total size of the file system when last sampled (0: unknown).
    fs_total: AtomicU64,
    /// When the file system was last sampled, in µs since `epoch` (0: never).
    sampled_us: AtomicU64,
    epoch: Instant,
    /// Bytes a refused append (or a held write round) needed; the housekeeper frees at least
    /// this much. Reset by each reclaim.
    need: AtomicU64,
    keeper: OnceLock<Thread>,
}

impl Default for StorageBudget {
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMIT_BYTES)
    }
}

/// Bytes kept free on the file system for everything else in the data directory (the
/// configuration store, checkpoints, new segment headers): 2 % of it, at least 1 MiB (or an
/// eighth of a tiny file system), at most 64 MiB.
fn fs_margin(total: u64) -> u64 {
    (total / 50).max((total / 8).min(1 << 20)).min(64 << 20)
}

impl StorageBudget {
    /// The product default of `max_storage_mb = 1000`.
    pub const DEFAULT_LIMIT_BYTES: u64 = 1000 * 1024 * 1024;

    /// A budget with a limit in bytes.
    pub fn new(limit_bytes: u64) -> Self {
        StorageBudget {
            inner: Arc::new(BudgetInner {
                limit: AtomicU64::new(limit_bytes),
                used: AtomicU64::new(0),
                logs: Mutex::new(Vec::new()),
                fs_cap: AtomicU64::new(NO_CAP),
                fs_total: AtomicU64::new(0),
                sampled_us: AtomicU64::new(0),
                epoch: Instant::now(),
                need: AtomicU64::new(0),
                keeper: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn from_inner(inner: Arc<BudgetInner>) -> Self {
        StorageBudget { inner }
    }

    /// A budget of `mb` mebibytes (the unit of `max_storage_mb`).
    pub fn from_mb(mb: u64) -> Self {
        Self::new(mb.saturating_mul(1024 * 1024))
    }

    /// The configured limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit.load(Ordering::Acquire)
    }

    /// The limit in force: the configured one, or less where the file system has less room.
    pub fn effective_limit(&self) -> u64 {
        self.limit().min(self.inner.fs_cap.load(Ordering::Acquire))
    }

    /// The file system, not the configured limit, bounds the buffers now.
    pub fn disk_bound(&self) -> bool {
        self.inner.fs_cap.load(Ordering::Acquire) < self.limit()
    }

    /// Size of the file system holding the buffers when last sampled (`None`: unknown).
    pub fn fs_total(&self) -> Option<u64> {
        Some(self.inner.fs_total.load(Ordering::Acquire)).filter(|&t| t > 0)
    }

    /// Changes the limit; takes effect for the next append.
    pub fn set_limit(&self, limit_bytes: u64) {
        self.inner.limit.store(limit_bytes, Ordering::Release);
    }

    /// Bytes in use by all logs.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// `used / effective limit`.
    #[allow(clippy::cast_precision_loss)] // a ratio for display and alarms
    pub fn usage_ratio(&self) -> f64 {
        let limit = self.effective_limit();
        if limit == 0 { 1.0 } else { self.used() as f64 / limit as f64 }
    }

    /// Usage is at or above [`WARNING_RATIO`].
    pub fn is_warning(&self) -> bool {
        self.usage_ratio() >= WARNING_RATIO
    }

    fn try_reserve(&self, n: u64) -> bool {
        let limit = self.effective_limit();
        self.inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= limit)
            })
            .is_ok()
    }

    pub(crate) fn force_add(&self, n: u64) {
        self.inner.used.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn release(&self, n: u64) {
        let _ = self
            .inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(n)));
    }

    /// Counts a newly opened log and starts the housekeeper if it is not running.
    pub(crate) fn register(&self, shared: &Arc<Shared>) {
        {
            let mut logs = lock(&self.inner.logs);
            logs.retain(|w| w.upgrade().is_some_and(|l| !l.detached.load(Ordering::Acquire)));
            logs.push(Arc::downgrade(shared));
        }
        if self.inner.keeper.get().is_none() {
            let weak = Arc::downgrade(&self.inner);
            // Spawning fails only when the OS is out of threads; the log then works without
            // background checkpoints until the next open tries again (close still writes one).
            if let Ok(h) = std::thread::Builder::new()
                .name("iobp-log:keeper".into())
                .stack_size(256 * 1024)
                .spawn(move || crate::housekeeper::run(&weak))
            {
                let _ = self.inner.keeper.set(h.thread().clone());
            }
        }
    }

    /// Wakes the housekeeper.
    pub(crate) fn wake_keeper(&self) {
        if let Some(t) = self.inner.keeper.get() {
            t.unpark();
        }
    }

    /// Records that an append needed `n` bytes it could not get, and wakes the housekeeper.
    pub(crate) fn want_space(&self, n: u64) {
        self.inner.need.fetch_max(n.max(1), Ordering::AcqRel);
        self.wake_keeper();
    }

    /// Samples the file system's free space if the last sample is older than
    /// [`SPACE_SAMPLE_EVERY`]. A `statvfs` call, no disk I/O.
    pub(crate) fn sample_space(&self, shared: &Shared) {
        let inner = &self.inner;
        let now = u64::try_from(inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
        let last = inner.sampled_us.load(Ordering::Acquire);
        let every = u64::try_from(SPACE_SAMPLE_EVERY.as_micros()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            return;
        }
        if inner
            .sampled_us
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // another appender samples right now
        }
        match shared.fs.space(&shared.dir) {
            Ok(Some(space)) => {
                let used = self.used();
                let cap =
                    used.saturating_add(space.available).saturating_sub(fs_margin(space.total));
                inner.fs_cap.store(cap, Ordering::Release);
                inner.fs_total.store(space.total, Ordering::Release);
            }
            Ok(None) | Err(_) => inner.fs_cap.store(NO_CAP, Ordering::Release),
        }
    }

    pub(crate) fn take_need(&self) -> u64 {
        self.inner.need.swap(0, Ordering::AcqRel)
    }

    /// The live (open) logs.
    pub(crate) fn logs(&self) -> Vec<Arc<Shared>> {
        lock(&self.inner.logs)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|l| !l.detached.load(Ordering::Acquire))
            .collect()
    }

    /// Deletes Done segments, globally oldest first, until `used + need` fits under
    /// [`RECLAIM_TO`] of the limit (or `need` bytes fit at all), or none are left; returns the
    /// bytes freed. Housekeeper only.
    pub(crate) fn reclaim(&self, logs: &[Arc<Shared>], need: u64) -> u64 {
        let limit = self.effective_limit();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let high = (limit as f64 * RECLAIM_ABOVE) as u64;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let target = (limit as f64 * RECLAIM_TO) as u64;
        let used = self.used();
        if need == 0 && used <= high {
            return 0;
        }
        // At least what was asked for (a round the file system had no room for needs that much
        // freed whatever the limits say), and room under the target if Done data allows.
        let goal = need.max((used + need).saturating_sub(limit)).max(if used > high {
            used.saturating_sub(target)
        } else {
            0
        });
        for l in logs {
            if lock(&l.cursor).done_seq > lock(&l.checkpoint).written_seq {
                let _ = write_checkpoint(l);
            }
        }
        let mut freed = 0;
        while freed < goal {
            let oldest = logs
                .iter()
                .filter_map(|l| oldest_releasable(l).map(|ts| (l, ts)))
                .min_by_key(|(_, ts)| *ts);
            let Some((log, _)) = oldest else { break };
            match delete_prefix(log, |_, _| true, Some(1)) {
                Ok(0) | Err(_) => break,
                Ok(n) => freed += n,
            }
        }
        if freed < goal {
            // What is left may sit in active segments that are all Done: seal them so that
            // the next pass can free them.
            for l in logs {
                seal_if_all_done(l);
            }
        }
        freed
    }
}

impl Drop for BudgetInner {
    fn drop(&mut self) {
        // Let the housekeeper see that its budget is gone and end.
        if let Some(t) = self.keeper.get() {
            t.unpark();
        }
    }
}

fn oldest_releasable(shared: &Shared) -> Option<u64> {
    let ckpt = lock(&shared.checkpoint).written_seq;
    let segs = lock(&shared.segments);
    match (segs.list.first(), segs.list.get(1)) {
        (Some(s), Some(next)) if next.first_seq - 1 <= ckpt => Some(s.created_us),
        _ => None,
    }
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segment files deleted.
    pub segments: usize,
    /// Bytes freed.
    pub bytes: u64,
}

/// Accounts `n` bytes to the log. Never does disk I/O and never waits: when a limit is in the
/// way it fails with [`Error::Full`] at once and asks the housekeeper for room.
pub(crate) fn reserve(shared: &Shared, n: u64) -> Result<()> {
    let budget = &shared.budget;
    budget.sample_space(shared);
    if shared.no_space.load(Ordering::Acquire) {
        budget.want_space(n);
        return Err(Error::Full {
            scope: "disk",
            needed: n,
            used: budget.used(),
            limit: budget.effective_limit(),
        });
    }
    let max = shared.max_bytes.load(Ordering::Acquire);
    if max != u64::MAX {
        let cur = shared.bytes.load(Ordering::Acquire);
        if cur + n > max {
            shared.need.fetch_max(n, Ordering::AcqRel);
            budget.wake_keeper();
            return Err(Error::Full { scope: "log", needed: n, used: cur, limit: max });
        }
    }
    if !budget.try_reserve(n) {
        budget.want_space(n);
        let scope = if budget.disk_bound() { "disk" } else { "global" };
        return Err(Error::Full {
            scope,
            needed: n,
            used: budget.used(),
            limit: budget.effective_limit(),
        });
    }
    shared.bytes.fetch_add(n, Ordering::AcqRel);
    #[allow(clippy::cast_precision_loss)]
    if budget.used() as f64 > budget.effective_limit() as f64 * RECLAIM_ABOVE {
        budget.wake_keeper();
    }
    Ok(())
}

/// Storage is full: if every record of the active segment is Done and checkpointed, seal it
/// (the writer starts an empty segment) so that the next reclaim can delete it. Without this a
/// small limit could fill up with Done records in the one segment that is never deleted.
pub(crate) fn seal_if_all_done(shared: &Shared) {
    let checkpointed = lock(&shared.checkpoint).written_seq;
    let rolled = {
        let mut st = lock(&shared.append);
        st.queue_is_empty() && checkpointed + 1 >= st.next_seq && st.force_roll(now_us())
    };
    if rolled {
        shared.wake_writer();
    }
}

/// Gives back a reservation that was not used.
pub(crate) fn unreserve(shared: &Shared, n: u64) {
    shared.bytes.fetch_sub(n.min(shared.bytes.load(Ordering::Acquire)), Ordering::AcqRel);
    shared.budget.release(n);
}

/// Accounts bytes that must be written whatever the limit (segment headers).
pub(crate) fn force_add(shared: &Shared, n: u64) {
    shared.bytes.fetch_add(n, Ordering::AcqRel);
    shared.budget.force_add(n);
}

/// Deletes Done segments of this log, oldest first, regardless of age, until it needs `need`
/// bytes less than its own limit allows. Housekeeper only.
pub(crate) fn release_for_own_limit(shared: &Shared) -> u64 {
    let need = shared.need.swap(0, Ordering::AcqRel);
    let max = shared.max_bytes.load(Ordering::Acquire);
    if need == 0 || max == u64::MAX {
        return 0;
    }
    if lock(&shared.cursor).done_seq > lock(&shared.checkpoint).written_seq {
        let _ = write_checkpoint(shared);
    }
    let goal = (shared.bytes.load(Ordering::Acquire) + need).saturating_sub(max);
    let mut freed = 0;
    while freed < goal {
        match delete_prefix(shared, |_, _| true, Some(1)) {
            Ok(0) | Err(_) => break,
            Ok(n) => freed += n,
        }
    }
    if freed < goal {
        seal_if_all_done(shared);
    }
    freed
}

pub(crate) fn enforce_age(shared: &Shared, now: SystemTime) -> Result<RetentionReport> {
    let now_us =
        u64::try_from(now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros())
            .unwrap_or(u64::MAX);
    let keep_us = shared.retention_us.load(Ordering::Acquire);
    let before = lock(&shared.segments).list.len();
    // A segment's newest record is no newer than the next segment's creation time.
    let bytes =
        delete_prefix(shared, |_, next| now_us.saturating_sub(next.created_us) >= keep_us, None)?;
    let after = lock(&shared.segments).list.len();
    Ok(RetentionReport { segments: before - after, bytes })
}

/// Deletes the longest prefix of non-active segments that are entirely at or below the
/// checkpoint and satisfy `pred(segment, next_segment)`, at most `max_count` of them.
/// Returns the bytes freed.
fn delete_prefix(
    shared: &Shared,
    mut pred: impl FnMut(&SegmentInfo, &SegmentInfo) -> bool,
    max_count: Option<usize>,
) -> Result<u64> {
    let victims: Vec<SegmentInfo> = {
        let ck = lock(&shared.checkpoint);
        let mut segs = lock(&shared.segments);
        let mut k = 0;
        while k + 1 < segs.list.len() && max_count.is_none_or(|m| k < m) {
            let (s, next) = (segs.list[k], segs.list[k + 1]);
            if next.first_seq - 1 > ck.written_seq || !pred(&s, &next) {
                break;
            }
            k += 1;
        }
        segs.list.drain(..k).collect()
    };
    let mut freed = 0;
    let mut first_err = None;
    for v in victims {
        let path = shared.segment_path(v.first_seq);
        match shared.fs.remove_file(&path) {
            Ok(()) => freed += v.bytes,
            // Already gone is as good as deleted.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => freed += v.bytes,
            // The file stays on disk (still counted); the next open finds it below the
            // checkpoint and it is deleted then.
            Err(e) => {
                first_err.get_or_insert(Error::io("delete segment", path, e));
            }
        }
    }
    if freed > 0 {
        // Make the removals durable too, so a power cut cannot bring deleted segments back.
        if let Err(e) = shared.fs.sync_dir(&shared.dir) {
            first_err.get_or_insert(Error::io("sync directory", &shared.dir, e));
        }
    }
    shared.bytes.fetch_sub(freed.min(shared.bytes.load(Ordering::Acquire)), Ordering::AcqRel);
    shared.budget.release(freed);
    match first_err {
        Some(e) => Err(e),
        None => Ok(freed),
    }
}

/// Writes the current Done position and high-water mark into the next checkpoint slot and
/// syncs it; a no-op if neither moved.
pub(crate) fn write_checkpoint(shared: &Shared) -> Result<()> {
    shared.check_failed()?;
    let mut ck = lock(&shared.checkpoint);
    // Clear first: an ack after we read `done_seq` sets it again.
    shared.checkpoint_dirty.store(false, Ordering::Release);
    let done = lock(&shared.cursor).done_seq;
    let high_water = shared.progress.durable_seq();
    if (done, high_water) == ck.in_file {
        ck.written_at = Instant::now();
        shared.ckpt_hold.store(0, Ordering::Release);
        return Ok(());
    }
    let Some(file) = ck.file.as_ref() else { return Err(Error::Closed) };
    let c = Checkpoint {
        generation: ck.generation + 1,
        done_seq: done,
        high_water,
        written_us: now_us(),
    };
    let path = shared.dir.join(crate::recovery::CHECKPOINT_FILE);
    let at = format::checkpoint_slot_offset(c.generation) as u64;
    write_all_at(&**file, &format::encode_checkpoint_slot(&c), at)
        .map_err(|e| shared.fail("write", &path, &e))?;
    file.sync_data().map_err(|e| shared.fail("fdatasync", &path, &e))?;
    ck.generation = c.generation;
    ck.written_seq = done;
    ck.high_water = high_water;
    ck.in_file = (done, high_water);
    // Nothing a journaled checkpoint holds is newer than what the file has now.
    shared.ckpt_hold.store(0, Ordering::Release);
    ck.written_at = Instant::now();
    shared.checkpointed.store(done, Ordering::Release);
    Ok(())
}
