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
    pub file: Box<dyn FileHandle>,
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
    /// Resolves when the appended records are durable; `None` when every record was already
    /// in the log.
    pub commit: Option<Commit>,
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
    closed: bool,
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
    let seen = lock(&shared.append).producers.get(producer).unwrap_or(0);
    let reserved = size(seen);
    if reserved == 0 {
        return Ok(TaggedAppend { commit: None, duplicates: records.len() });
    }
    if !shared.progress.has_room() {
        return Err(Error::Backlogged);
    }
    crate::retention::reserve(shared, reserved)?;
    let ts = now_us();
    let (range, was_empty, used, duplicates) = {
        let mut st = lock(&shared.append);
        if st.closed {
            drop(st);
            crate::retention::unreserve(shared, reserved);
            return Err(Error::Closed);
        }
        let seen = st.producers.get(producer).unwrap_or(0);
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
        (range, was_empty, used, duplicates)
    };
    crate::retention::unreserve(shared, reserved - used);
    let Some((first, last)) = range else {
        return Ok(TaggedAppend { commit: None, duplicates });
    };
    if was_empty {
        shared.wake_writer();
    }
    Ok(TaggedAppend { commit: Some(Commit::new(shared.progress.clone(), first, last)), duplicates })
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    active: ActiveSegment,
    name: &str,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("iobp-log:{name}"))
        .stack_size(256 * 1024)
        .spawn(move || Writer { shared, active, spare: Vec::new() }.run())
}

struct Job {
    last_seq: u64,
    rolls: Vec<Roll>,
}

struct Writer {
    shared: Arc<Shared>,
    active: ActiveSegment,
    /// The buffer the writer writes from while appenders fill the other one.
    spare: Vec<u8>,
}

impl Writer {
    fn run(mut self) {
        let interval = self.shared.opts.checkpoint_interval;
        loop {
            let job = {
                let mut st = lock(&self.shared.append);
                if st.buf.is_empty() && st.rolls.is_empty() {
                    if self.shared.shutdown.load(Ordering::Acquire) {
                        st.closed = true;
                        None
                    } else {
                        drop(st);
                        self.idle(interval);
                        continue;
                    }
                } else {
                    std::mem::swap(&mut st.buf, &mut self.spare);
                    self.shared.progress.set_queued(0);
                    Some(Job { last_seq: st.next_seq - 1, rolls: std::mem::take(&mut st.rolls) })
                }
            };
            let Some(job) = job else { break };
            self.shared.progress.wake_space();
            let result = self.write(&job);
            self.spare.clear();
            // A burst can leave a large buffer behind; keep the steady-state footprint small.
            if self.spare.capacity() > 2 * self.shared.opts.queue_bytes {
                self.spare.shrink_to(self.shared.opts.queue_bytes);
            }
            if result.is_err() {
                // Failed: `write` already recorded the cause and woke every waiter. Nothing
                // more is written; the queue is refused from now on.
                lock(&self.shared.append).closed = true;
                return;
            }
            self.maybe_checkpoint(interval);
        }
        if self.shared.progress.failure().is_none() {
            let _ = crate::retention::write_checkpoint(&self.shared);
        }
        self.shared.progress.close();
    }

    /// Nothing queued: checkpoint if due, then sleep until woken (or the checkpoint is due).
    fn idle(&mut self, interval: Duration) {
        self.maybe_checkpoint(interval);
        if self.shared.checkpoint_dirty.load(Ordering::Acquire) {
            let since = lock(&self.shared.checkpoint).written_at.elapsed();
            std::thread::park_timeout(interval.saturating_sub(since).max(Duration::from_millis(1)));
        } else {
            std::thread::park();
        }
    }

    fn maybe_checkpoint(&self, interval: Duration) {
        if self.shared.checkpoint_dirty.load(Ordering::Acquire)
            && lock(&self.shared.checkpoint).written_at.elapsed() >= interval
        {
            // A failure is recorded in the log's state by `write_checkpoint` itself.
            let _ = crate::retention::write_checkpoint(&self.shared);
        }
    }

    fn write(&mut self, job: &Job) -> Result<()> {
        let shared = self.shared.clone();
        let mut start = 0usize;
        let mut sealed: Vec<(u64, u64)> = Vec::new();
        let mut created: Vec<SegmentInfo> = Vec::new();
        for roll in &job.rolls {
            self.write_chunk(start, roll.offset)?;
            start = roll.offset;
            // The old segment must be complete on disk before the next one can exist, or a
            // crash could leave a gap in the middle of the log.
            let old_path = shared.segment_path(self.active.first_seq);
            self.active.file.sync_data().map_err(|e| shared.fail("fdatasync", &old_path, &e))?;
            shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            // The segment being sealed may itself have been created earlier in this round.
            match created.last_mut() {
                Some(c) if c.first_seq == self.active.first_seq => c.bytes = self.active.len,
                _ => sealed.push((self.active.first_seq, self.active.len)),
            }
            let path = shared.segment_path(roll.first_seq);
            let file = shared.fs.create_new(&path).map_err(|e| shared.fail("create", &path, &e))?;
            let header = SegmentHeader {
                first_seq: roll.first_seq,
                created_us: roll.created_us,
                producers: roll.producers.clone(),
            }
            .encode();
            write_all_at(&*file, &header, 0).map_err(|e| shared.fail("write", &path, &e))?;
            let header_len = header.len() as u64;
            crate::retention::force_add(&shared, header_len);
            self.active = ActiveSegment { first_seq: roll.first_seq, file, len: header_len };
            created.push(SegmentInfo {
                first_seq: roll.first_seq,
                bytes: header_len,
                created_us: roll.created_us,
                data_start: header_len,
            });
        }
        self.write_chunk(start, self.spare.len())?;
        let path = shared.segment_path(self.active.first_seq);
        self.active.file.sync_data().map_err(|e| shared.fail("fdatasync", &path, &e))?;
        shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
        if !created.is_empty() {
            shared
                .fs
                .sync_dir(&shared.dir)
                .map_err(|e| shared.fail("sync directory", &shared.dir, &e))?;
        }
        {
            let mut segs = lock(&shared.segments);
            for (first, len) in sealed {
                if let Some(s) = segs.list.iter_mut().rev().find(|s| s.first_seq == first) {
                    s.bytes = len;
                }
            }
            segs.list.extend(created);
            if let Some(last) = segs.list.last_mut() {
                last.bytes = self.active.len;
            }
            segs.durable_end = self.active.len;
            segs.durable_last_seq = job.last_seq;
        }
        shared.progress.publish(job.last_seq);
        Ok(())
    }

    fn write_chunk(&mut self, from: usize, to: usize) -> Result<()> {
        if from == to {
            return Ok(());
        }
        let path: PathBuf = self.shared.segment_path(self.active.first_seq);
        write_all_at(&*self.active.file, &self.spare[from..to], self.active.len)
            .map_err(|e| self.shared.fail("write", &path, &e))?;
        self.active.len += (to - from) as u64;
        Ok(())
    }
}
