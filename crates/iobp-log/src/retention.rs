//! Storage accounting, the crash-safe checkpoint, and deleting Done segments.
//!
//! Byte accounting: every log counts its segment files plus the records queued for its writer;
//! a [`StorageBudget`] shared by all logs sums them against the global limit
//! (`max_storage_mb`), and a log may also have its own limit. An append that would cross a
//! limit first releases Done segments — oldest first, across all logs for the global limit —
//! and fails with [`Error::Full`] only if Pending data alone fills the space.
//!
//! Invariants:
//! - A segment is deleted only when every record in it is at or below the **checkpointed**
//!   Done position, so no crash can bring back a need for a deleted record.
//! - The active (last) segment is never deleted, so the next sequence number always survives.
//! - Pending and In-Flight records are never deleted.
//!
//! Checkpoint: the Done position is written to `checkpoint.tmp`, synced, renamed over
//! `checkpoint`, and the directory synced; a crash leaves either the old or the new file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Instant, SystemTime};

use crate::error::{Error, Result};
use crate::format;
use crate::fs::write_all_at;
use crate::log::{SegmentInfo, Shared, lock, now_us};
use crate::recovery::{CHECKPOINT_FILE, CHECKPOINT_TMP};

/// Share of the limit above which [`StorageBudget::is_warning`] reports true.
pub const WARNING_RATIO: f64 = 0.8;

/// Byte accounting shared by every log of an instance, against one global limit.
#[derive(Clone, Debug)]
pub struct StorageBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    limit: AtomicU64,
    used: AtomicU64,
    logs: Mutex<Vec<Weak<Shared>>>,
    /// One reclaim pass at a time; concurrent appenders that hit the limit wait for it.
    reclaiming: Mutex<()>,
}

impl Default for StorageBudget {
    fn default() -> Self {
        Self::new(Self::DEFAULT_LIMIT_BYTES)
    }
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
                reclaiming: Mutex::new(()),
            }),
        }
    }

    /// A budget of `mb` mebibytes (the unit of `max_storage_mb`).
    pub fn from_mb(mb: u64) -> Self {
        Self::new(mb.saturating_mul(1024 * 1024))
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit.load(Ordering::Acquire)
    }

    /// Changes the limit; takes effect for the next append.
    pub fn set_limit(&self, limit_bytes: u64) {
        self.inner.limit.store(limit_bytes, Ordering::Release);
    }

    /// Bytes in use by all logs.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// `used / limit`.
    #[allow(clippy::cast_precision_loss)] // a ratio for display and alarms
    pub fn usage_ratio(&self) -> f64 {
        let limit = self.limit();
        if limit == 0 { 1.0 } else { self.used() as f64 / limit as f64 }
    }

    /// Usage is at or above [`WARNING_RATIO`].
    pub fn is_warning(&self) -> bool {
        self.usage_ratio() >= WARNING_RATIO
    }

    fn try_reserve(&self, n: u64) -> bool {
        let limit = self.limit();
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

    pub(crate) fn register(&self, shared: &Arc<Shared>) {
        let mut logs = lock(&self.inner.logs);
        logs.retain(|w| w.strong_count() > 0);
        logs.push(Arc::downgrade(shared));
    }

    /// Deletes Done segments, globally oldest first, until `need` bytes are freed or none are
    /// left; returns the bytes freed.
    fn reclaim(&self, need: u64) -> u64 {
        let _one = lock(&self.inner.reclaiming);
        let logs: Vec<Arc<Shared>> =
            lock(&self.inner.logs).iter().filter_map(Weak::upgrade).collect();
        for l in &logs {
            if lock(&l.cursor).done_seq > lock(&l.checkpoint).written_seq {
                let _ = write_checkpoint(l);
            }
        }
        let mut freed = 0;
        while freed < need {
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
        freed
    }
}

impl StorageBudget {
    /// Seals the active segment of every log whose records are all Done, so the next
    /// reclaim can free them.
    fn seal_fully_done_logs(&self) {
        let logs: Vec<Arc<Shared>> =
            lock(&self.inner.logs).iter().filter_map(Weak::upgrade).collect();
        for l in &logs {
            seal_if_all_done(l);
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

/// Accounts `n` bytes to the log, releasing Done segments if a limit is in the way.
pub(crate) fn reserve(shared: &Shared, n: u64) -> Result<()> {
    let max = shared.max_bytes.load(Ordering::Acquire);
    if max != u64::MAX {
        let cur = shared.bytes.load(Ordering::Acquire);
        if cur + n > max {
            release_done(shared, cur + n - max);
            let cur = shared.bytes.load(Ordering::Acquire);
            if cur + n > max {
                seal_if_all_done(shared);
                return Err(Error::Full { scope: "log", needed: n, used: cur, limit: max });
            }
        }
    }
    let budget = &shared.budget;
    if !budget.try_reserve(n) {
        budget.reclaim(n);
        if !budget.try_reserve(n) {
            budget.seal_fully_done_logs();
            return Err(Error::Full {
                scope: "global",
                needed: n,
                used: budget.used(),
                limit: budget.limit(),
            });
        }
    }
    shared.bytes.fetch_add(n, Ordering::AcqRel);
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
    shared.bytes.fetch_sub(n, Ordering::AcqRel);
    shared.budget.release(n);
}

/// Accounts bytes that must be written whatever the limit (segment headers).
pub(crate) fn force_add(shared: &Shared, n: u64) {
    shared.bytes.fetch_add(n, Ordering::AcqRel);
    shared.budget.force_add(n);
}

/// Deletes Done segments of this log, oldest first, regardless of age, until `need` bytes are
/// freed.
fn release_done(shared: &Shared, need: u64) -> u64 {
    if lock(&shared.cursor).done_seq > lock(&shared.checkpoint).written_seq {
        let _ = write_checkpoint(shared);
    }
    let mut freed = 0;
    while freed < need {
        match delete_prefix(shared, |_, _| true, Some(1)) {
            Ok(0) | Err(_) => break,
            Ok(n) => freed += n,
        }
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

/// Writes the current Done position crash-safely; a no-op if it has not moved.
pub(crate) fn write_checkpoint(shared: &Shared) -> Result<()> {
    shared.check_failed()?;
    let mut ck = lock(&shared.checkpoint);
    // Clear first: an ack after we read `done_seq` sets it again.
    shared.checkpoint_dirty.store(false, Ordering::Release);
    let done = lock(&shared.cursor).done_seq;
    if done == ck.written_seq {
        ck.written_at = Instant::now();
        return Ok(());
    }
    let tmp = shared.dir.join(CHECKPOINT_TMP);
    let dst = shared.dir.join(CHECKPOINT_FILE);
    let file = shared.fs.create_truncate(&tmp).map_err(|e| shared.fail("create", &tmp, &e))?;
    write_all_at(&*file, &format::encode_checkpoint(done, now_us()), 0)
        .map_err(|e| shared.fail("write", &tmp, &e))?;
    file.sync_data().map_err(|e| shared.fail("fdatasync", &tmp, &e))?;
    drop(file);
    shared.fs.rename(&tmp, &dst).map_err(|e| shared.fail("rename", &tmp, &e))?;
    shared.fs.sync_dir(&shared.dir).map_err(|e| shared.fail("sync directory", &shared.dir, &e))?;
    ck.written_seq = done;
    ck.written_at = Instant::now();
    Ok(())
}
