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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::{self, SEGMENT_HEADER_LEN, SegmentHeader};
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
#[derive(Debug, Clone, Copy)]
struct Roll {
    offset: usize,
    first_seq: u64,
    created_us: u64,
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
}

impl AppendState {
    /// Starts a new segment at the next append position if the active one holds records:
    /// the old one is sealed by the writer and becomes deletable once Done.
    pub(crate) fn force_roll(&mut self, created_us: u64) -> bool {
        if self.active_records == 0 || self.closed {
            return false;
        }
        let roll = Roll { offset: self.buf.len(), first_seq: self.next_seq, created_us };
        self.rolls.push(roll);
        self.active_bytes = SEGMENT_HEADER_LEN as u64;
        self.active_records = 0;
        true
    }

    /// No record is waiting for the writer.
    pub(crate) fn queue_is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn new(
        next_seq: u64,
        _active_first: u64,
        active_bytes: u64,
        active_records: u64,
    ) -> Self {
        AppendState {
            next_seq,
            buf: Vec::new(),
            rolls: Vec::new(),
            active_bytes,
            active_records,
            closed: false,
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
                let roll = Roll { offset: st.buf.len(), first_seq: st.next_seq, created_us: ts };
                st.rolls.push(roll);
                st.active_bytes = SEGMENT_HEADER_LEN as u64;
                st.active_records = 0;
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
            let header = SegmentHeader { first_seq: roll.first_seq, created_us: roll.created_us };
            write_all_at(&*file, &header.encode(), 0)
                .map_err(|e| shared.fail("write", &path, &e))?;
            crate::retention::force_add(&shared, SEGMENT_HEADER_LEN as u64);
            self.active =
                ActiveSegment { first_seq: roll.first_seq, file, len: SEGMENT_HEADER_LEN as u64 };
            created.push(SegmentInfo {
                first_seq: roll.first_seq,
                bytes: SEGMENT_HEADER_LEN as u64,
                created_us: roll.created_us,
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
