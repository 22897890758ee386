//! The delivery cursor (Pending → In-Flight → Done), batch reads, acknowledgements, requeue,
//! browsing and counts.
//!
//! Invariant: the reader never reads past the durable end the writer published, so it never
//! hands out a record that is not covered by a completed fdatasync.
//!
//! Damaged records met while reading are skipped, counted in `lost_records`, treated as Done
//! (so the Done position can move past them) and reported once as [`Error::Corrupt`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Corruption, Error, Result};
use crate::format::{RECORD_HEADER_LEN, RecordHeader};
use crate::fs::FileHandle;
use crate::log::{CursorState, LogStats, Pos, SegmentInfo, Shared, lock};
use crate::scan::{ReadAt, ScanItem, Scanner};

/// One record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number.
    pub seq: u64,
    /// Append time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// For a record of an idempotent producer: `(producer id, producer sequence number)`.
    pub origin: Option<(u64, u64)>,
    /// The message bytes.
    pub payload: Vec<u8>,
}

/// One record borrowed from a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Append time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// For a record of an idempotent producer: `(producer id, producer sequence number)`.
    pub origin: Option<(u64, u64)>,
    /// The message bytes.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Copies the record.
    pub fn to_owned(&self) -> Record {
        Record {
            seq: self.seq,
            timestamp_us: self.timestamp_us,
            origin: self.origin,
            payload: self.payload.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    timestamp_us: u64,
    origin: Option<(u64, u64)>,
    start: usize,
    len: usize,
}

/// Records read together; payloads share one buffer.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    data: Vec<u8>,
    entries: Vec<Entry>,
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total payload bytes.
    pub fn payload_bytes(&self) -> usize {
        self.data.len()
    }

    /// Sequence number of the last record.
    pub fn last_seq(&self) -> Option<u64> {
        self.entries.last().map(|e| e.seq)
    }

    /// Sequence number of the first record.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.first().map(|e| e.seq)
    }

    /// The records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.entries.iter().map(|e| RecordRef {
            seq: e.seq,
            timestamp_us: e.timestamp_us,
            origin: e.origin,
            payload: &self.data[e.start..e.start + e.len],
        })
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.entries.clear();
    }

    fn push(&mut self, seq: u64, timestamp_us: u64, origin: Option<(u64, u64)>, payload: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.entries.push(Entry { seq, timestamp_us, origin, start, len: payload.len() });
    }
}

/// The reader's open segment and scan position.
#[derive(Debug, Default)]
pub(crate) struct ReaderIo {
    scan: Option<SegmentScan>,
    generation: u64,
    /// Damage met after records that were returned; reported by the next call.
    pending_error: Option<Corruption>,
}

#[derive(Debug)]
struct SegmentScan {
    segment: u64,
    scanner: Scanner<Box<dyn FileHandle>>,
    /// The segment's place as last looked up; `None` means look again. Looked up once per
    /// batch and whenever the scan reaches its limit, not per record: the segment list is
    /// shared with the writer and locking it per record cost a tenth of the drain rate.
    place: Option<Place>,
}

/// Where in the segment list a scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The active segment; readable up to the durable end.
    Active { durable_end: u64, durable_last_seq: u64 },
    /// A sealed segment, followed by one starting at `next_first`.
    Sealed { len: u64, next_first: u64 },
    /// The segment was removed (retention) or the list changed under us.
    Gone,
}

fn place(shared: &Shared, segment: u64) -> Place {
    let segs = lock(&shared.segments);
    let Some(i) = segs.list.iter().position(|s| s.first_seq == segment) else {
        return Place::Gone;
    };
    match segs.list.get(i + 1) {
        None => {
            Place::Active { durable_end: segs.durable_end, durable_last_seq: segs.durable_last_seq }
        }
        Some(next) => Place::Sealed { len: segs.list[i].bytes, next_first: next.first_seq },
    }
}

/// The segment holding `seq`: the last one starting at or before it (or the first one).
fn segment_for(shared: &Shared, seq: u64) -> Option<SegmentInfo> {
    let segs = lock(&shared.segments);
    let i = segs.list.partition_point(|s| s.first_seq <= seq);
    segs.list.get(i.saturating_sub(1)).copied()
}

fn open_scan(shared: &Shared, seg: SegmentInfo, start: Option<(u64, u64)>) -> Result<SegmentScan> {
    let path = shared.segment_path(seg.first_seq);
    let file = shared.fs.open_read(&path).map_err(|e| Error::io("open segment", &path, e))?;
    let (offset, seq) = start.unwrap_or((seg.data_start, seg.first_seq));
    // The limit is set per step from the segment list.
    let scanner = Scanner::new(file, offset, seq, offset, shared.opts.max_record_bytes);
    Ok(SegmentScan { segment: seg.first_seq, scanner, place: None })
}

/// What one scan step produced.
enum Step {
    Record {
        seq: u64,
        timestamp_us: u64,
        offset: u64,
        origin: Option<(u64, u64)>,
    },
    /// Records `from..to` are lost.
    Lost {
        from: u64,
        to: u64,
        corruption: Corruption,
    },
    /// Nothing more is durable right now.
    Exhausted,
}

impl Step {
    fn lost(from: u64, to: u64, segment: PathBuf, offset: u64, reason: &str) -> Step {
        let reason = reason.to_string();
        let corruption =
            Corruption { segment, offset, first_lost_seq: from, lost: to - from, reason };
        Step::Lost { from, to, corruption }
    }
}

/// Advances a scan by one step, moving to the next segment where the current one ends.
/// Records below `from_seq` are skipped; `payload` receives the record's bytes.
fn step(shared: &Shared, io: &mut ReaderIo, from_seq: u64, payload: &mut Vec<u8>) -> Result<Step> {
    loop {
        let Some(scan) = io.scan.as_mut() else {
            let Some(seg) = segment_for(shared, from_seq) else {
                return Ok(Step::Exhausted);
            };
            io.scan = Some(open_scan(shared, seg, None)?);
            continue;
        };
        let here = if let Some(p) = scan.place {
            p
        } else {
            let p = place(shared, scan.segment);
            scan.place = Some(p);
            match p {
                Place::Active { durable_end, .. } => scan.scanner.set_limit(durable_end),
                Place::Sealed { len, .. } => scan.scanner.set_limit(len),
                Place::Gone => {}
            }
            p
        };
        match here {
            Place::Gone => {
                io.scan = None;
                let first = lock(&shared.segments).list.first().map(|s| s.first_seq);
                match first {
                    // The records we were about to read no longer exist.
                    Some(f) if f > from_seq => {
                        let path = shared.segment_path(f);
                        return Ok(Step::lost(from_seq, f, path, 0, "segment removed"));
                    }
                    _ => continue,
                }
            }
            Place::Active { .. } | Place::Sealed { .. } => {}
        }
        let segment = scan.segment;
        let path = || shared.segment_path(segment);
        let item = scan.scanner.next_item().map_err(|e| Error::io("read segment", path(), e))?;
        match item {
            ScanItem::Record(m) if m.seq >= from_seq => {
                payload.clear();
                payload.extend_from_slice(scan.scanner.payload());
                let (seq, timestamp_us, offset, origin) = (m.seq, m.timestamp_us, m.offset, m.tag);
                return Ok(Step::Record { seq, timestamp_us, offset, origin });
            }
            ScanItem::Record(_) => {}
            ScanItem::Corrupt { offset, problem, expected_seq, resume_seq, .. } => {
                let from = expected_seq.max(from_seq);
                if resume_seq > from {
                    return Ok(Step::lost(from, resume_seq, path(), offset, problem.describe()));
                }
            }
            ScanItem::End { offset, clean, problem } => {
                // The writer may have moved on since we looked: look again before deciding.
                if place(shared, segment) != here {
                    scan.place = None;
                    continue;
                }
                let expected = scan.scanner.expected_seq().max(from_seq);
                let why = match (clean, problem) {
                    (false, Some(p)) => p.describe(),
                    (false, None) => "damaged data",
                    (true, _) => "segment ends early",
                };
                match here {
                    Place::Active { .. } if clean => return Ok(Step::Exhausted),
                    Place::Active { durable_end, durable_last_seq } => {
                        // Damage inside the durable part of the active segment: continue after it.
                        scan.scanner.skip_to(durable_end, durable_last_seq + 1);
                        if durable_last_seq + 1 > expected {
                            return Ok(Step::lost(
                                expected,
                                durable_last_seq + 1,
                                path(),
                                offset,
                                why,
                            ));
                        }
                    }
                    Place::Sealed { next_first, .. } => {
                        let next = lock(&shared.segments)
                            .list
                            .iter()
                            .find(|s| s.first_seq == next_first)
                            .copied();
                        io.scan = next.map(|n| open_scan(shared, n, None)).transpose()?;
                        if next_first > expected {
                            return Ok(Step::lost(expected, next_first, path(), offset, why));
                        }
                    }
                    Place::Gone => {}
                }
            }
        }
    }
}

pub(crate) fn read_batch(
    shared: &Arc<Shared>,
    batch: &mut Batch,
    max_records: usize,
    max_bytes: usize,
) -> Result<()> {
    batch.clear();
    shared.check_open()?;
    let mut io = lock(&shared.reader);
    if let Some(c) = io.pending_error.take() {
        return Err(Error::Corrupt(c));
    }
    let (read_seq, generation, hint) = {
        let c = lock(&shared.cursor);
        (c.read_seq, c.generation, c.seek_hint)
    };
    if read_seq > shared.progress.durable_seq() {
        return Ok(());
    }
    if let Some(s) = io.scan.as_mut() {
        s.place = None;
    }
    if io.generation != generation
        || io.scan.as_ref().is_none_or(|s| s.scanner.expected_seq() != read_seq)
    {
        io.generation = generation;
        io.scan = None;
        // After a requeue, start right at the requeued record instead of scanning for it.
        if let Some(h) = hint.filter(|h| h.seq == read_seq)
            && let Some(seg) = segment_for(shared, h.segment).filter(|s| s.first_seq == h.segment)
        {
            io.scan = Some(open_scan(shared, seg, Some((h.offset, h.seq)))?);
        }
    }
    let mut positions: Vec<Pos> = Vec::new();
    let mut lost_seqs: Vec<(u64, u64)> = Vec::new();
    let mut next_seq = read_seq;
    let mut corruption = None;
    let mut payload = Vec::new();
    let skip = lock(&shared.cursor).done_above.from(read_seq);
    while batch.len() < max_records.max(1)
        && (batch.is_empty() || batch.payload_bytes() < max_bytes)
    {
        match step(shared, &mut io, next_seq, &mut payload)? {
            Step::Record { seq, timestamp_us, offset, origin } => {
                let segment = io.scan.as_ref().map_or(0, |s| s.segment);
                next_seq = seq + 1;
                if skip.contains(seq) {
                    continue;
                }
                positions.push(Pos { seq, segment, offset, timestamp_us });
                batch.push(seq, timestamp_us, origin, &payload);
            }
            Step::Lost { from, to, corruption: c } => {
                lost_seqs.push((from, to));
                next_seq = to;
                corruption = Some(c);
                break;
            }
            Step::Exhausted => break,
        }
    }
    {
        let mut c = lock(&shared.cursor);
        if c.generation != generation {
            // A requeue moved the cursor while we read; hand out nothing, read again next time.
            batch.clear();
            return Ok(());
        }
        c.read_seq = next_seq;
        c.seek_hint = None;
        c.inflight.extend(positions);
        let mut lost_total = 0;
        for (from, to) in lost_seqs {
            lost_total += to - from;
            c.done_above.insert_range(from..to);
        }
        if lost_total > 0 {
            shared.counters.lost_records.fetch_add(lost_total, Ordering::Relaxed);
            shared.counters.corrupt_events.fetch_add(1, Ordering::Relaxed);
            absorb(&mut c);
            shared.mark_checkpoint_dirty(Some(c.done_seq));
        }
    }
    if let Some(c) = corruption {
        if batch.is_empty() {
            return Err(Error::Corrupt(c));
        }
        io.pending_error = Some(c);
    }
    Ok(())
}

/// Moves the contiguous Done position over individually confirmed records.
fn absorb(c: &mut CursorState) {
    while let Some(end) = c.done_above.take_run_from(c.done_seq + 1) {
        c.done_seq = end - 1;
    }
    while c.inflight.front().is_some_and(|p| p.seq <= c.done_seq) {
        c.inflight.pop_front();
    }
}

pub(crate) fn ack_through(shared: &Shared, seq: u64) -> Result<()> {
    let mut c = lock(&shared.cursor);
    if seq <= c.done_seq {
        return Ok(());
    }
    if seq >= c.read_seq {
        return Err(Error::InvalidCursor(format!(
            "cannot mark {seq} Done: only records below {} have been handed out",
            c.read_seq
        )));
    }
    c.done_seq = seq;
    c.done_above.remove_through(seq);
    absorb(&mut c);
    let done = c.done_seq;
    drop(c);
    shared.mark_checkpoint_dirty(Some(done));
    Ok(())
}

pub(crate) fn ack_one(shared: &Shared, seq: u64) -> Result<()> {
    let mut c = lock(&shared.cursor);
    if seq <= c.done_seq || c.done_above.contains(seq) {
        return Ok(());
    }
    if seq >= c.read_seq {
        return Err(Error::InvalidCursor(format!("record {seq} is not In-Flight")));
    }
    c.done_above.insert(seq);
    let before = c.done_seq;
    absorb(&mut c);
    let (moved, done) = (c.done_seq != before, c.done_seq);
    drop(c);
    if moved {
        shared.mark_checkpoint_dirty(Some(done));
    }
    Ok(())
}

pub(crate) fn requeue_from(shared: &Shared, seq: u64) -> Result<()> {
    let mut c = lock(&shared.cursor);
    if seq <= c.done_seq {
        return Err(Error::InvalidCursor(format!("record {seq} is already Done")));
    }
    if seq >= c.read_seq {
        return Ok(());
    }
    let keep = c.inflight.partition_point(|p| p.seq < seq);
    let hint = c.inflight.get(keep).copied();
    c.inflight.truncate(keep);
    c.read_seq = seq;
    c.seek_hint = hint.filter(|h| h.seq == seq);
    c.generation += 1;
    Ok(())
}

pub(crate) fn read_range(
    shared: &Arc<Shared>,
    from_seq: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<Batch> {
    let mut batch = Batch::default();
    let first = lock(&shared.segments).list.first().map_or(u64::MAX, |s| s.first_seq);
    let from_seq = from_seq.max(first).max(1);
    if from_seq > shared.progress.durable_seq() {
        return Ok(batch);
    }
    let mut io = ReaderIo::default();
    let mut payload = Vec::new();
    let mut next = from_seq;
    while batch.len() < max_records.max(1)
        && (batch.is_empty() || batch.payload_bytes() < max_bytes)
    {
        match step(shared, &mut io, next, &mut payload)? {
            Step::Record { seq, timestamp_us, origin, .. } => {
                next = seq + 1;
                batch.push(seq, timestamp_us, origin, &payload);
            }
            // The browser shows what is there; the delivery reader reports damage.
            Step::Lost { to, .. } => next = to,
            Step::Exhausted => break,
        }
    }
    Ok(batch)
}

pub(crate) fn stats(shared: &Arc<Shared>) -> LogStats {
    let durable = shared.progress.durable_seq();
    let next_seq = lock(&shared.append).next_seq;
    let (first_seq, segments) = {
        let s = lock(&shared.segments);
        (s.list.first().map_or(next_seq, |x| x.first_seq), s.list.len())
    };
    let checkpoint_seq = lock(&shared.checkpoint).written_seq;
    let (read_seq, done_seq, above_inflight, above_pending, done_above, oldest_inflight) = {
        let c = lock(&shared.cursor);
        let inflight_above = c.done_above.count_in(0..c.read_seq);
        let pending_above = c.done_above.count_in(c.read_seq..durable.max(c.read_seq) + 1);
        let oldest =
            c.inflight.iter().find(|p| !c.done_above.contains(p.seq)).map(|p| p.timestamp_us);
        (c.read_seq, c.done_seq, inflight_above, pending_above, c.done_above.len(), oldest)
    };
    let pending = (durable + 1).saturating_sub(read_seq).saturating_sub(above_pending);
    let in_flight = read_seq.saturating_sub(done_seq + 1).saturating_sub(above_inflight);
    let done = (done_seq + 1).saturating_sub(first_seq) + done_above;
    let oldest_pending_us = oldest_inflight.or_else(|| {
        if pending == 0 {
            return None;
        }
        peek_timestamp(shared, read_seq)
    });
    LogStats {
        first_seq,
        next_seq,
        durable_seq: durable,
        done_seq,
        read_seq,
        checkpoint_seq,
        pending,
        in_flight,
        done,
        bytes: shared.bytes.load(Ordering::Acquire),
        segments,
        oldest_pending_us,
        corrupt_events: shared.counters.corrupt_events.load(Ordering::Relaxed),
        lost_records: shared.counters.lost_records.load(Ordering::Relaxed),
        syncs: shared.counters.syncs.load(Ordering::Relaxed),
        failed: shared.progress.failure().map(|f| f.to_string()),
    }
}

/// Timestamp of record `seq` if the reader is positioned right at it (the usual case); else
/// a browse read.
fn peek_timestamp(shared: &Arc<Shared>, seq: u64) -> Option<u64> {
    if let Ok(io) = shared.reader.try_lock()
        && let Some(scan) = io.scan.as_ref().filter(|s| s.scanner.expected_seq() == seq)
    {
        let mut hdr = [0u8; RECORD_HEADER_LEN];
        let pos = scan.scanner.position();
        if scan.scanner.source().read_at(&mut hdr, pos).ok() == Some(RECORD_HEADER_LEN)
            && let Some(h) = RecordHeader::parse(&hdr).filter(|h| h.seq == seq)
        {
            return Some(h.timestamp_us);
        }
    }
    read_range(shared, seq, 1, 1).ok()?.iter().next().map(|r| r.timestamp_us)
}
