//! Appending and the writer thread: adaptive group commit.
//!
//! Appenders encode their records straight into a shared queue buffer under a short lock and
//! get sequence numbers at once. The writer thread swaps the buffer out, writes it with one
//! positional write per segment, calls **one** `fdatasync`, and only then publishes the new
//! durable position, which completes every [`Commit`] it covers. There is no batching delay:
//! while one `fdatasync` runs, new appends collect in the other buffer and go out together in
//! the next round, so batches grow exactly as much as the disk is slow.
//!
//! Segment roll: when a record would push the active segment past `segment_bytes`, the
//! appender marks a roll point in the queue. The writer syncs the old segment before creating
//! the new one, writes the new segment's header with its first records, syncs the file, then
//! syncs the directory so the new file's entry is durable, and only then publishes. A record
//! is never split across segments.
//!
//! Invariant: `Progress::publish(seq)` is called only after a completed `fdatasync` (and, for
//! a new segment, a completed directory sync) covering every record up to `seq`.
//!
//! No space (`ENOSPC`, `EDQUOT` from a write or a file creation): nothing of the round was
//! synced or published, so the round is undone — new segment files removed, the active
//! segment truncated back — and held: appends are refused as `Full` meanwhile (the sources
//! hold back), and the same round is written again once the file system has room. This is not
//! a blind retry: no byte whose write-back failed is ever trusted; an `fdatasync` error, whatever
//! its kind, fails the log.
//!
//! Idempotent producers: a tagged append skips the records whose producer sequence number is
//! not above the producer's last one in the table, under the same lock that assigns sequence
//! numbers, so two retries can never both get in. Each tagged record carries its tag, so the
//! table is rebuilt exactly from what survived a crash; each new segment's header carries the
//! table as of everything before it, so deleting old segments never forgets a producer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{self, MAX_PRODUCERS, SegmentHeader};
use crate::fs::{FileHandle, write_all_at};
use crate::log::{SegmentInfo, Shared, lock, now_us};
use crate::wait::Commit;

/// The segment the writer appends to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub first_seq: u64,
    /// Shared with the commit group's flusher, which syncs it behind the writer's back.
    pub file: Arc<dyn FileHandle>,
    /// Bytes written so far (header included).
    pub len: u64,
}

/// A point in the queue buffer where a new segment begins.
#[derive(Debug, Clone)]
struct Roll {
    offset: usize,
    first_seq: u64,
    created_us: u64,
    /// The producer table as of every record before this point (goes into the header).
    producers: Vec<(u64, u64)>,
}

/// Each idempotent producer's last producer sequence number, and the log sequence number of
/// its last record (to evict the longest-idle producer when the table is full).
#[derive(Debug, Default, Clone)]
pub(crate) struct Producers {
    map: BTreeMap<u64, (u64, u64)>,
}

impl Producers {
    /// A table read from a segment header.
    pub(crate) fn from_entries(entries: &[(u64, u64)]) -> Self {
        Producers { map: entries.iter().map(|&(id, pseq)| (id, (pseq, 0))).collect() }
    }

    pub(crate) fn get(&self, producer: u64) -> Option<u64> {
        self.map.get(&producer).map(|p| p.0)
    }

    /// The log sequence number of `producer`'s last record, where known (0: in a segment
    /// before the active one's header, hence durable).
    pub(crate) fn last_log_seq(&self, producer: u64) -> u64 {
        self.map.get(&producer).map_or(0, |p| p.1)
    }

    /// Records that `producer`'s record `pseq` is (or will be) at log sequence `seq`.
    pub(crate) fn set(&mut self, producer: u64, pseq: u64, seq: u64) {
        self.map.insert(producer, (pseq, seq));
        if self.map.len() > MAX_PRODUCERS {
            // Forget the producer idle the longest: it would only matter if it resent records
            // older than its last one after thousands of others came and went.
            if let Some(oldest) = self.map.iter().min_by_key(|(_, p)| p.1).map(|(id, _)| *id) {
                self.map.remove(&oldest);
            }
        }
    }

    pub(crate) fn entries(&self) -> Vec<(u64, u64)> {
        self.map.iter().map(|(&id, &(pseq, _))| (id, pseq)).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// What a tagged append did.
#[derive(Debug)]
pub struct TaggedAppend {
    /// Resolves once **every** record of the call is durable: those appended now and the
    /// duplicates, which another caller may have queued a moment ago and which may not be
    /// synced yet. Acknowledge a producer only after it resolved.
    pub commit: Commit,
    /// The log sequence numbers given to the records appended now (`None`: all duplicates).
    pub appended: Option<std::ops::RangeInclusive<u64>>,
    /// Records skipped because the producer had already appended them.
    pub duplicates: usize,
}

/// Records waiting for the writer, and the logical state of the active segment including them.
#[derive(Debug)]
pub(crate) struct AppendState {
    pub next_seq: u64,
    buf: Vec<u8>,
    rolls: Vec<Roll>,
    /// Logical size of the active segment once the queue is written.
    active_bytes: u64,
    /// Records in the active segment once the queue is written.
    active_records: u64,
    /// Set by the writer when it stops; nothing more may be queued.
    pub(crate) closed: bool,
    /// Idempotent producers, including queued records.
    pub producers: Producers,
}

impl AppendState {
    /// Starts a new segment at the next append position if the active one holds records:
    /// the old one is sealed by the writer and becomes deletable once Done.
    pub(crate) fn force_roll(&mut self, created_us: u64) -> bool {
        if self.active_records == 0 || self.closed {
            return false;
        }
        self.roll(created_us);
        true
    }

    /// Starts a new segment at the current end of the queue.
    fn roll(&mut self, created_us: u64) {
        let producers = self.producers.entries();
        self.active_bytes = format::segment_header_len(producers.len()) as u64;
        self.active_records = 0;
        let roll = Roll { offset: self.buf.len(), first_seq: self.next_seq, created_us, producers };
        self.rolls.push(roll);
    }

    /// No record is waiting for the writer.
    pub(crate) fn queue_is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn new(
        next_seq: u64,
        active_bytes: u64,
        active_records: u64,
        producers: Producers,
    ) -> Self {
        AppendState {
            next_seq,
            buf: Vec::new(),
            rolls: Vec::new(),
            active_bytes,
            active_records,
            closed: false,
            producers,
        }
    }
}

pub(crate) fn try_append_batch<T: AsRef<[u8]>>(
    shared: &Arc<Shared>,
    payloads: &[T],
) -> Result<Commit> {
    shared.check_open()?;
    shared.check_failed()?;
    if shared.shutdown.load(Ordering::Acquire) {
        return Err(Error::Closed);
    }
    let max = shared.opts.max_record_bytes;
    let mut total: u64 = 0;
    for p in payloads {
        let len = p.as_ref().len();
        if len > max as usize {
            return Err(Error::TooLarge { len, max });
        }
        total += format::record_len(len) as u64;
    }
    if !shared.progress.has_room() {
        return Err(Error::Backlogged);
    }
    crate::retention::reserve(shared, total)?;
    let ts = now_us();
    let (first, last, was_empty) = {
        let mut st = lock(&shared.append);
        if st.closed {
            drop(st);
            crate::retention::unreserve(shared, total);
            return Err(Error::Closed);
        }
        let first = st.next_seq;
        let was_empty = st.buf.is_empty();
        let segment_bytes = shared.opts.segment_bytes;
        for p in payloads {
            let p = p.as_ref();
            let n = format::record_len(p.len()) as u64;
            if st.active_records > 0 && st.active_bytes + n > segment_bytes {
                st.roll(ts);
            }
            let seq = st.next_seq;
            format::encode_record(&mut st.buf, seq, ts, p);
            st.next_seq += 1;
            st.active_bytes += n;
            st.active_records += 1;
        }
        shared.progress.set_queued(st.buf.len());
        (first, st.next_seq - 1, was_empty)
    };
    // The writer only parks when the queue is empty, so only the append that makes it
    // non-empty has to wake it.
    if was_empty {
        shared.wake_writer();
    }
    Ok(Commit::new(shared.progress.clone(), first, last))
}

pub(crate) fn try_append_tagged<T: AsRef<[u8]>>(
    shared: &Arc<Shared>,
    producer: u64,
    records: &[(u64, T)],
) -> Result<TaggedAppend> {
    shared.check_open()?;
    shared.check_failed()?;
    if shared.shutdown.load(Ordering::Acquire) {
        return Err(Error::Closed);
    }
    let max = shared.opts.max_record_bytes;
    let mut prev = 0u64;
    for (pseq, p) in records {
        let len = p.as_ref().len();
        if len > max as usize {
            return Err(Error::TooLarge { len, max });
        }
        if *pseq <= prev {
            return Err(Error::InvalidTag(format!(
                "producer sequence numbers must increase from 1: {pseq} after {prev}"
            )));
        }
        prev = *pseq;
    }
    // Reserve room only for what is new; the position is checked again under the lock.
    let size = |from: u64| -> u64 {
        records
            .iter()
            .filter(|(pseq, _)| *pseq > from)
            .map(|(_, p)| format::tagged_record_len(p.as_ref().len()) as u64)
            .sum()
    };
    let (seen, last_log_seq) = {
        let st = lock(&shared.append);
        (st.producers.get(producer).unwrap_or(0), st.producers.last_log_seq(producer))
    };
    let reserved = size(seen);
    if reserved == 0 {
        // Every record is here already, perhaps queued by another session and not yet
        // durable: the commit covers the producer's last record.
        let commit = Commit::new(shared.progress.clone(), last_log_seq, last_log_seq);
        return Ok(TaggedAppend { commit, appended: None, duplicates: records.len() });
    }
    if !shared.progress.has_room() {
        return Err(Error::Backlogged);
    }
    crate::retention::reserve(shared, reserved)?;
    let ts = now_us();
    let (range, was_empty, used, duplicates, last_log_seq) = {
        let mut st = lock(&shared.append);
        if st.closed {
            drop(st);
            crate::retention::unreserve(shared, reserved);
            return Err(Error::Closed);
        }
        let seen = st.producers.get(producer).unwrap_or(0);
        let last_log_seq = st.producers.last_log_seq(producer);
        let first = st.next_seq;
        let was_empty = st.buf.is_empty();
        let segment_bytes = shared.opts.segment_bytes;
        let (mut used, mut duplicates) = (0u64, 0usize);
        for (pseq, p) in records {
            if *pseq <= seen {
                duplicates += 1;
                continue;
            }
            let p = p.as_ref();
            let n = format::tagged_record_len(p.len()) as u64;
            if st.active_records > 0 && st.active_bytes + n > segment_bytes {
                st.roll(ts);
            }
            let seq = st.next_seq;
            format::encode_tagged_record(&mut st.buf, seq, ts, producer, *pseq, p);
            st.producers.set(producer, *pseq, seq);
            st.next_seq += 1;
            st.active_bytes += n;
            st.active_records += 1;
            used += n;
        }
        shared.progress.set_queued(st.buf.len());
        let range = (st.next_seq > first).then(|| (first, st.next_seq - 1));
        (range, was_empty, used, duplicates, last_log_seq)
    };
    crate::retention::unreserve(shared, reserved - used);
    let Some((first, last)) = range else {
        // Another caller appended them between our look and the lock.
        let commit = Commit::new(shared.progress.clone(), last_log_seq, last_log_seq);
        return Ok(TaggedAppend { commit, appended: None, duplicates });
    };
    if was_empty {
        shared.wake_writer();
    }
    let commit = Commit::new(shared.progress.clone(), first, last);
    Ok(TaggedAppend { commit, appended: Some(first..=last), duplicates })
}

/// Starts the writer thread of a log that has one of its own (no commit group).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    active: ActiveSegment,
    name: &str,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("iobp-log:{name}"))
        .stack_size(256 * 1024)
        .spawn(move || Writer::new(shared, active).run())
}

/// What the writer took from the append queue for one round.
#[derive(Debug)]
pub(crate) struct Job {
    last_seq: u64,
    rolls: Vec<Roll>,
}

impl Job {
    /// The round starts at least one new segment (then it syncs its segments itself).
    pub(crate) fn rolls(&self) -> bool {
        !self.rolls.is_empty()
    }
}

/// What [`Writer::take`] found.
pub(crate) enum Take {
    /// Records to write.
    Job(Job),
    /// Nothing queued.
    Idle,
    /// Nothing queued and the log is closing: the queue is now closed.
    Close,
}

/// Why a round did not complete.
#[derive(Debug)]
pub(crate) enum RoundError {
    /// The file system had no room for a write or a new file; the round was undone and can be
    /// written again as it is.
    NoSpace,
    /// Anything else; the log is failed (already recorded).
    Failed,
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// Longest pause between attempts to write a held round.
pub(crate) const NO_SPACE_MAX_PAUSE: Duration = Duration::from_millis(500);

/// Segments a round created or sealed, to enter into the segment list when it is published.
#[derive(Default)]
struct RoundFiles {
    /// The active segment the round started in, when the round replaced it.
    replaced: Option<ActiveSegment>,
    created: Vec<SegmentInfo>,
    sealed: Vec<(u64, u64)>,
}

/// Where a staged round's bytes went: the commit journal records them with this address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged {
    /// The segment (its first sequence number).
    pub segment: u64,
    /// Byte offset of the round's first byte in the segment.
    pub offset: u64,
}

/// One log's writing state: its active segment and the buffer a round is written from. Driven
/// either by the log's own thread ([`Writer::run`]) or by its commit group's thread.
pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    active: ActiveSegment,
    /// The buffer the writer writes from while appenders fill the other one.
    spare: Vec<u8>,
    /// Commit group only: a round the file system had no room for, written again later.
    pub held: Option<Job>,
    /// Commit group only: when to try the held round again, and the pause after that.
    pub retry_at: std::time::Instant,
    pub pause: Duration,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>, active: ActiveSegment) -> Self {
        *lock(&shared.active_file) = Some(active.file.clone());
        Writer {
            shared,
            active,
            spare: Vec::new(),
            held: None,
            retry_at: std::time::Instant::now(),
            pause: Duration::from_millis(5),
        }
    }

    /// Takes everything appenders queued since the last round.
    pub(crate) fn take(&mut self) -> Take {
        let take = {
            let mut st = lock(&self.shared.append);
            if st.buf.is_empty() && st.rolls.is_empty() {
                if self.shared.shutdown.load(Ordering::Acquire) {
                    st.closed = true;
                    Take::Close
                } else {
                    Take::Idle
                }
            } else {
                std::mem::swap(&mut st.buf, &mut self.spare);
                self.shared.progress.set_queued(0);
                Take::Job(Job { last_seq: st.next_seq - 1, rolls: std::mem::take(&mut st.rolls) })
            }
        };
        if matches!(take, Take::Job(_)) {
            self.shared.progress.wake_space();
        }
        take
    }

    /// The writer's own thread: rounds until the log closes or fails.
    fn run(mut self) {
        loop {
            let job = match self.take() {
                Take::Idle => {
                    // Checkpoints are the housekeeper's; an idle writer costs nothing.
                    std::thread::park();
                    continue;
                }
                Take::Close => break,
                Take::Job(job) => job,
            };
            let result = self.write_held(&job);
            self.round_done();
            if result.is_err() {
                // Failed: the cause is recorded and every waiter woken. Nothing more is
                // written; the queue is refused from now on.
                lock(&self.shared.append).closed = true;
                return;
            }
        }
        if self.shared.progress.failure().is_none() {
            let _ = crate::retention::write_checkpoint(&self.shared);
        }
        self.shared.progress.close();
    }

    /// The round's buffer is no longer needed.
    pub(crate) fn round_done(&mut self) {
        self.spare.clear();
        // A burst can leave a large buffer behind; keep the steady-state footprint small.
        if self.spare.capacity() > 2 * self.shared.opts.queue_bytes {
            self.spare.shrink_to(self.shared.opts.queue_bytes);
        } else if self.shared.group.is_some() && self.spare.capacity() > 64 * 1024 {
            // Many logs share a process in a group: an idle one keeps no buffer.
            self.spare = Vec::new();
        }
    }

    /// Writes a round; while the file system has no room, holds it and tries again.
    fn write_held(&mut self, job: &Job) -> std::result::Result<(), ()> {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.write(job) {
                Ok(()) => return Ok(()),
                Err(RoundError::Failed) => return Err(()),
                Err(RoundError::NoSpace) => {
                    if self.give_up_when_closing() {
                        return Err(());
                    }
                    std::thread::park_timeout(pause);
                    pause = (pause * 2).min(NO_SPACE_MAX_PAUSE);
                }
            }
        }
    }

    /// A round found no room: records it for the budget; when the log is closing, the held
    /// records were never accepted and the log fails (their commits with it). Returns whether
    /// it gave up.
    pub(crate) fn give_up_when_closing(&self) -> bool {
        self.shared.budget.want_space(self.spare.len() as u64);
        if self.shared.shutdown.load(Ordering::Acquire) {
            let e = std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on the file system; records not written at close",
            );
            let _ = self.shared.fail("write", &self.shared.dir, &e);
            return true;
        }
        false
    }

    /// One round on its own: the queued bytes to their segments, one `fdatasync`, publish.
    /// Without room, the round is undone (and `no_space` set) so it can be written again.
    pub(crate) fn write(&mut self, job: &Job) -> std::result::Result<(), RoundError> {
        // Where the round starts, to undo it when there is no room.
        let start_len = self.active.len;
        let mut files = RoundFiles::default();
        let mut outcome = self.write_segments(job, &mut files);
        if outcome.is_ok() {
            outcome = self.sync_active(&files);
        }
        match outcome {
            Ok(()) => {
                self.shared.no_space.store(false, Ordering::Release);
                if self.publish(job, files) { Ok(()) } else { Err(RoundError::Failed) }
            }
            Err(RoundError::NoSpace) => {
                self.undo(start_len, files)?;
                self.shared.no_space.store(true, Ordering::Release);
                Err(RoundError::NoSpace)
            }
            Err(RoundError::Failed) => Err(RoundError::Failed),
        }
    }

    /// Commit group: writes a round that starts no segment to its segment without syncing it;
    /// the group's journal makes it durable ([`Writer::publish_staged`]), or, when the journal
    /// cannot, [`Writer::sync_staged`]. The bytes to journal are [`Writer::round_bytes`].
    pub(crate) fn stage(&mut self, job: &Job) -> std::result::Result<Staged, RoundError> {
        debug_assert!(!job.rolls(), "a round that rolls is written on its own");
        let staged = Staged { segment: self.active.first_seq, offset: self.active.len };
        let shared = self.shared.clone();
        match self.write_chunk(0, self.spare.len()) {
            Ok(()) => Ok(staged),
            Err((_, e)) if is_no_space(&e) => {
                self.undo(staged.offset, RoundFiles::default())?;
                self.shared.no_space.store(true, Ordering::Release);
                Err(RoundError::NoSpace)
            }
            Err((path, e)) => {
                shared.fail("write", &path, &e);
                Err(RoundError::Failed)
            }
        }
    }

    /// The bytes of the round being written, as they went to the segment.
    pub(crate) fn round_bytes(&self) -> &[u8] {
        &self.spare
    }

    /// Commit group: the journal holding a staged round is durable.
    pub(crate) fn publish_staged(&mut self, job: &Job) -> std::result::Result<(), RoundError> {
        self.shared.no_space.store(false, Ordering::Release);
        if self.publish(job, RoundFiles::default()) { Ok(()) } else { Err(RoundError::Failed) }
    }

    /// Commit group: the journal could not take a staged round; sync its segment instead.
    pub(crate) fn sync_staged(&mut self, job: &Job) -> std::result::Result<(), RoundError> {
        self.sync_active(&RoundFiles::default())?;
        self.publish_staged(job)
    }

    /// Removes the segments this round created and truncates the segment it started in back
    /// to where it began.
    fn undo(&mut self, start_len: u64, files: RoundFiles) -> std::result::Result<(), RoundError> {
        let shared = self.shared.clone();
        if let Some(first) = files.replaced {
            self.active = first;
            *lock(&shared.active_file) = Some(self.active.file.clone());
        }
        for c in &files.created {
            let path = shared.segment_path(c.first_seq);
            match shared.fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    shared.fail("remove", &path, &e);
                    return Err(RoundError::Failed);
                }
            }
            crate::retention::unreserve(&shared, c.data_start);
        }
        if !files.created.is_empty() {
            // Best effort: a segment that reappears after a power cut holds only records that
            // were never acknowledged, in sequence after the truncated one.
            let _ = shared.fs.sync_dir(&shared.dir);
        }
        let path = shared.segment_path(self.active.first_seq);
        if let Err(e) = self.active.file.set_len(start_len) {
            shared.fail("truncate", &path, &e);
            return Err(RoundError::Failed);
        }
        self.active.len = start_len;
        Ok(())
    }

    /// Writes the round's bytes to their segments; each segment it seals is synced before the
    /// next one is created, and each new one gets its header.
    fn write_segments(
        &mut self,
        job: &Job,
        files: &mut RoundFiles,
    ) -> std::result::Result<(), RoundError> {
        let shared = self.shared.clone();
        // A write or creation without room can be undone; anything else fails the log.
        let fail_or_full = |op: &'static str, path: &std::path::Path, e: &std::io::Error| {
            if is_no_space(e) {
                RoundError::NoSpace
            } else {
                shared.fail(op, path, e);
                RoundError::Failed
            }
        };
        let failed = |op: &'static str, path: &std::path::Path, e: &std::io::Error| {
            shared.fail(op, path, e);
            RoundError::Failed
        };
        let mut start = 0usize;
        for roll in &job.rolls {
            self.write_chunk(start, roll.offset).map_err(|(p, e)| fail_or_full("write", &p, &e))?;
            start = roll.offset;
            // The old segment must be complete on disk before the next one can exist, or a
            // crash could leave a gap in the middle of the log. (In a commit group this also
            // covers every journaled round of the old segment.)
            let old_path = shared.segment_path(self.active.first_seq);
            self.active.file.sync_data().map_err(|e| failed("fdatasync", &old_path, &e))?;
            shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            // The segment being sealed may itself have been created earlier in this round.
            match files.created.last_mut() {
                Some(c) if c.first_seq == self.active.first_seq => c.bytes = self.active.len,
                _ => files.sealed.push((self.active.first_seq, self.active.len)),
            }
            let path = shared.segment_path(roll.first_seq);
            let file =
                shared.fs.create_new(&path).map_err(|e| fail_or_full("create", &path, &e))?;
            let header = SegmentHeader {
                first_seq: roll.first_seq,
                created_us: roll.created_us,
                producers: roll.producers.clone(),
            }
            .encode();
            let header_len = header.len() as u64;
            crate::retention::force_add(&shared, header_len);
            files.created.push(SegmentInfo {
                first_seq: roll.first_seq,
                bytes: header_len,
                created_us: roll.created_us,
                data_start: header_len,
            });
            let old = std::mem::replace(
                &mut self.active,
                ActiveSegment { first_seq: roll.first_seq, file: file.into(), len: 0 },
            );
            *lock(&shared.active_file) = Some(self.active.file.clone());
            if files.replaced.is_none() {
                files.replaced = Some(old);
            }
            write_all_at(&*self.active.file, &header, 0)
                .map_err(|e| fail_or_full("write", &path, &e))?;
            self.active.len = header_len;
        }
        self.write_chunk(start, self.spare.len()).map_err(|(p, e)| fail_or_full("write", &p, &e))
    }

    /// Syncs the active segment, and the directory if the round created segments.
    fn sync_active(&mut self, files: &RoundFiles) -> std::result::Result<(), RoundError> {
        let shared = &self.shared;
        let path = shared.segment_path(self.active.first_seq);
        if let Err(e) = self.active.file.sync_data() {
            shared.fail("fdatasync", &path, &e);
            return Err(RoundError::Failed);
        }
        shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        if !files.created.is_empty()
            && let Err(e) = shared.fs.sync_dir(&shared.dir)
        {
            shared.fail("sync directory", &shared.dir, &e);
            return Err(RoundError::Failed);
        }
        Ok(())
    }

    /// The round is durable: enters its segments into the list and publishes its end. The
    /// only place the durable position moves. Returns `false` (and publishes nothing) when the
    /// log failed meanwhile (the group's flusher or a checkpoint can fail it).
    fn publish(&mut self, job: &Job, mut files: RoundFiles) -> bool {
        let shared = &self.shared;
        {
            // Held while the position moves, so that the durable end a failed instance
            // trusts is exactly what it published.
            let mut segs = lock(&shared.segments);
            if !shared.progress.publish_unless_failed(job.last_seq) {
                return false;
            }
            for (first, len) in files.sealed {
                if let Some(s) = segs.list.iter_mut().rev().find(|s| s.first_seq == first) {
                    s.bytes = len;
                }
            }
            segs.list.append(&mut files.created);
            if let Some(last) = segs.list.last_mut() {
                last.bytes = self.active.len;
            }
            segs.durable_end = self.active.len;
            segs.durable_last_seq = job.last_seq;
        }
        // The replaced segment's handle is no longer needed.
        files.replaced.take();
        shared.mark_checkpoint_dirty(None);
        true
    }

    fn write_chunk(
        &mut self,
        from: usize,
        to: usize,
    ) -> std::result::Result<(), (PathBuf, std::io::Error)> {
        if from == to {
            return Ok(());
        }
        write_all_at(&*self.active.file, &self.spare[from..to], self.active.len)
            .map_err(|e| (self.shared.segment_path(self.active.first_seq), e))?;
        self.active.len += (to - from) as u64;
        Ok(())
    }
}
