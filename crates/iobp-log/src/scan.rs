//! Walks the records of one segment, verifying each, and resynchronises after damage.
//!
//! The scanner is the single place that interprets record bytes read back from disk; recovery,
//! the delivery reader, the message browser and the fuzz target all use it. It reads through a
//! bounded window, so a damaged length field can never make it allocate more than
//! [`MAX_RECORD_PAYLOAD`](crate::format::MAX_RECORD_PAYLOAD) plus one window.
//!
//! Rules:
//! - A record is accepted only if its length is in range, its sequence number is exactly the
//!   expected one, it lies entirely below the scan limit, and its CRC matches.
//! - After a record that fails, the scanner searches forward byte by byte for the next record
//!   that passes all checks with a larger sequence number that can fit in the skipped bytes
//!   (each skipped record needs at least a header). Found: the gap is reported as
//!   [`ScanItem::Corrupt`] and scanning continues there. Not found: [`ScanItem::End`] with
//!   `clean == false` (a torn tail, or damage reaching the end of the segment).

use std::io;

use crate::format::{
    RECORD_HEADER_LEN, RecordHeader, RecordProblem, TAG_LEN, TAG_LEN_U32, parse_tag, record_crc,
};
use crate::fs::FileHandle;

/// Size of each read from the source.
const WINDOW_CHUNK: usize = 256 * 1024;

/// Something positional reads can be served from.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; returns 0 at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
}

impl ReadAt for Box<dyn FileHandle> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        crate::fs::read_full_at(&**self, buf, offset)
    }
}

/// A verified record found by the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    /// Sequence number.
    pub seq: u64,
    /// Append time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Offset of the record header in the segment.
    pub offset: u64,
    /// Length of the record's data (the payload, and the tag if tagged).
    pub len: u32,
    /// The producer tag `(producer id, producer sequence number)` of a tagged record.
    pub tag: Option<(u64, u64)>,
}

impl RecordMeta {
    /// Offset just past this record.
    pub fn end(&self) -> u64 {
        self.offset + RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Length of the payload (the data without the tag).
    pub fn payload_len(&self) -> u32 {
        if self.tag.is_some() { self.len - TAG_LEN_U32 } else { self.len }
    }
}

/// One step of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanItem {
    /// A valid record; its payload is available from [`Scanner::payload`] until the next step.
    Record(RecordMeta),
    /// Bytes from `offset` to `resume_offset` did not hold valid records; the records with
    /// sequence numbers `expected_seq..resume_seq` are lost. Scanning continues at
    /// `resume_offset`.
    Corrupt {
        /// Where the first bad record starts.
        offset: u64,
        /// Why it was rejected.
        problem: RecordProblem,
        /// The next valid record's offset.
        resume_offset: u64,
        /// The sequence number the bad record should have had.
        expected_seq: u64,
        /// The next valid record's sequence number.
        resume_seq: u64,
    },
    /// No further valid record below the limit.
    End {
        /// Offset just past the last valid record.
        offset: u64,
        /// `true` if the data ends exactly there; `false` if bytes follow that are not a valid
        /// record (a torn tail, or damage that runs to the end).
        clean: bool,
        /// Why the bytes after `offset` were rejected, when not clean.
        problem: Option<RecordProblem>,
    },
}

/// A forward scan over the records of one segment.
#[derive(Debug)]
pub struct Scanner<R> {
    src: R,
    limit: u64,
    pos: u64,
    expected_seq: u64,
    max_payload: u32,
    window: Vec<u8>,
    window_start: u64,
    last: Option<RecordMeta>,
}

impl<R: ReadAt> Scanner<R> {
    /// Scans `src` from `start` (just after the segment header) expecting `first_seq` first,
    /// reading no byte at or beyond `limit`.
    pub fn new(src: R, start: u64, first_seq: u64, limit: u64, max_payload: u32) -> Self {
        Scanner {
            src,
            limit,
            pos: start,
            expected_seq: first_seq,
            max_payload,
            window: Vec::new(),
            window_start: start,
            last: None,
        }
    }

    /// Offset of the next record to read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Sequence number the next record must have.
    pub fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    /// The scan limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Continues the scan at `offset`, expecting `seq` there (skipping damaged bytes).
    pub fn skip_to(&mut self, offset: u64, seq: u64) {
        self.pos = offset;
        self.expected_seq = seq;
        self.last = None;
    }

    /// Moves the limit (the durable end of an active segment grows).
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Gives back the underlying source.
    pub fn into_source(self) -> R {
        self.src
    }

    /// The underlying source.
    pub fn source(&self) -> &R {
        &self.src
    }

    /// The payload of the record returned by the last [`Scanner::next_item`] (without its
    /// tag).
    pub fn payload(&self) -> &[u8] {
        match self.last {
            Some(m) => {
                let data =
                    usize::try_from(m.offset - self.window_start).unwrap_or(0) + RECORD_HEADER_LEN;
                let start = data + if m.tag.is_some() { TAG_LEN } else { 0 };
                &self.window[start..data + m.len as usize]
            }
            None => &[],
        }
    }

    /// Makes `[offset, offset + len)` available in the window; `false` if it crosses the limit.
    fn ensure(&mut self, offset: u64, len: usize) -> io::Result<bool> {
        let end = offset + len as u64;
        if end > self.limit {
            return Ok(false);
        }
        let win_end = self.window_start + self.window.len() as u64;
        if offset >= self.window_start && end <= win_end {
            return Ok(true);
        }
        // Drop what lies before `offset`, keep the rest, read more after it.
        if offset >= self.window_start && offset <= win_end {
            let drop = usize::try_from(offset - self.window_start).unwrap_or(self.window.len());
            self.window.drain(..drop);
        } else {
            self.window.clear();
        }
        self.window_start = offset;
        if self.window.capacity() > 4 * WINDOW_CHUNK && len <= WINDOW_CHUNK {
            self.window.shrink_to(2 * WINDOW_CHUNK);
        }
        let have = self.window.len();
        let want = len.max(WINDOW_CHUNK).min(usize::try_from(self.limit - offset).unwrap_or(len));
        if want > have {
            self.window.resize(want, 0);
            match self.src.read_at(&mut self.window[have..], offset + have as u64) {
                Ok(n) => self.window.truncate(have + n),
                Err(e) => {
                    // Never leave the zeros in place: a later call would take them for data
                    // (damage), and skip records a transient read error only hid.
                    self.window.truncate(have);
                    return Err(e);
                }
            }
        }
        Ok(self.window.len() >= len)
    }

    fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let start = usize::try_from(offset - self.window_start).unwrap_or(0);
        &self.window[start..start + len]
    }

    /// Checks the record at `offset`: `Ok(header)` if valid with a sequence number that
    /// satisfies `seq_ok`.
    fn check(
        &mut self,
        offset: u64,
        seq_ok: impl Fn(u64) -> bool,
    ) -> io::Result<Result<RecordHeader, RecordProblem>> {
        if !self.ensure(offset, RECORD_HEADER_LEN)? {
            return Ok(Err(RecordProblem::Truncated));
        }
        let Some(h) = RecordHeader::parse(self.slice(offset, RECORD_HEADER_LEN)) else {
            return Ok(Err(RecordProblem::Truncated));
        };
        let tag_len = if h.is_tagged() { TAG_LEN_U32 } else { 0 };
        if h.data_len() > self.max_payload.saturating_add(tag_len) || h.data_len() < tag_len {
            return Ok(Err(RecordProblem::TooLong));
        }
        if !seq_ok(h.seq) {
            return Ok(Err(RecordProblem::UnexpectedSeq));
        }
        let total = RECORD_HEADER_LEN + h.data_len() as usize;
        if !self.ensure(offset, total)? {
            return Ok(Err(RecordProblem::Truncated));
        }
        if record_crc(self.slice(offset, total)) != h.crc {
            return Ok(Err(RecordProblem::BadChecksum));
        }
        Ok(Ok(h))
    }

    /// The next step of the scan.
    pub fn next_item(&mut self) -> io::Result<ScanItem> {
        self.last = None;
        if self.pos >= self.limit {
            return Ok(ScanItem::End { offset: self.pos, clean: true, problem: None });
        }
        let expected = self.expected_seq;
        match self.check(self.pos, |s| s == expected)? {
            Ok(h) => Ok(self.accept(self.pos, h)),
            Err(problem) => self.resync(problem),
        }
    }

    fn accept(&mut self, offset: u64, h: RecordHeader) -> ScanItem {
        let tag = if h.is_tagged() {
            parse_tag(self.slice(offset + RECORD_HEADER_LEN as u64, TAG_LEN))
        } else {
            None
        };
        let meta =
            RecordMeta { seq: h.seq, timestamp_us: h.timestamp_us, offset, len: h.data_len(), tag };
        self.pos = meta.end();
        self.expected_seq = h.seq.wrapping_add(1);
        self.last = Some(meta);
        ScanItem::Record(meta)
    }

    fn resync(&mut self, problem: RecordProblem) -> io::Result<ScanItem> {
        let bad = self.pos;
        let expected = self.expected_seq;
        let mut candidate = bad + 1;
        while candidate + RECORD_HEADER_LEN as u64 <= self.limit {
            // At most one lost record per header's worth of skipped bytes.
            let max_lost = (candidate - bad) / RECORD_HEADER_LEN as u64;
            let ok = |s: u64| s > expected && s - expected <= max_lost;
            if let Ok(h) = self.check(candidate, ok)? {
                let item = ScanItem::Corrupt {
                    offset: bad,
                    problem,
                    resume_offset: candidate,
                    expected_seq: expected,
                    resume_seq: h.seq,
                };
                self.pos = candidate;
                self.expected_seq = h.seq;
                return Ok(item);
            }
            candidate += 1;
        }
        Ok(ScanItem::End { offset: bad, clean: false, problem: Some(problem) })
    }
}

/// Scans a whole segment image held in memory: the fuzz target's entry point. Returns the
/// verified records and the end reached. Never panics, whatever the bytes.
pub fn scan_segment_bytes(bytes: &[u8], max_payload: u32) -> (Vec<RecordMeta>, Vec<ScanItem>) {
    let (first_seq, start) = match crate::format::SegmentHeader::decode(bytes) {
        Ok((h, len)) => (h.first_seq, len as u64),
        Err(_) => return (Vec::new(), Vec::new()),
    };
    let mut scanner = Scanner::new(bytes, start, first_seq, bytes.len() as u64, max_payload);
    let mut records = Vec::new();
    let mut events = Vec::new();
    loop {
        match scanner.next_item() {
            Ok(ScanItem::Record(m)) => {
                debug_assert_eq!(scanner.payload().len(), m.payload_len() as usize);
                records.push(m);
            }
            Ok(item @ ScanItem::Corrupt { .. }) => events.push(item),
            Ok(end @ ScanItem::End { .. }) => {
                events.push(end);
                break;
            }
            Err(_) => break,
        }
    }
    (records, events)
}

impl ReadAt for &[u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        <[u8] as ReadAt>::read_at(self, buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{MAX_RECORD_PAYLOAD, encode_record};

    fn records(range: std::ops::Range<u64>) -> (Vec<u8>, Vec<u64>) {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for seq in range {
            offsets.push(buf.len() as u64);
            let payload =
                format!("payload-{seq}").repeat(usize::try_from(seq % 5).unwrap_or(0) + 1);
            encode_record(&mut buf, seq, seq * 10, payload.as_bytes());
        }
        (buf, offsets)
    }

    fn scan_all(buf: &[u8], first: u64) -> (Vec<u64>, Vec<ScanItem>) {
        let mut s = Scanner::new(buf, 0, first, buf.len() as u64, MAX_RECORD_PAYLOAD);
        let mut seqs = Vec::new();
        let mut events = Vec::new();
        loop {
            match s.next_item().expect("io") {
                ScanItem::Record(m) => {
                    let expect = format!("payload-{}", m.seq)
                        .repeat(usize::try_from(m.seq % 5).unwrap_or(0) + 1);
                    assert_eq!(s.payload(), expect.as_bytes());
                    seqs.push(m.seq);
                }
                e @ ScanItem::Corrupt { .. } => events.push(e),
                e @ ScanItem::End { .. } => {
                    events.push(e);
                    return (seqs, events);
                }
            }
        }
    }

    #[test]
    fn clean_scan() {
        let (buf, _) = records(1..100);
        let (seqs, events) = scan_all(&buf, 1);
        assert_eq!(seqs, (1..100).collect::<Vec<_>>());
        assert_eq!(
            events,
            vec![ScanItem::End { offset: buf.len() as u64, clean: true, problem: None }]
        );
    }

    #[test]
    fn every_truncation_point_ends_at_last_whole_record() {
        let (buf, offsets) = records(1..8);
        for cut in 0..buf.len() {
            let (seqs, events) = scan_all(&buf[..cut], 1);
            let total = buf.len() as u64;
            let whole = offsets.iter().skip(1).chain(std::iter::once(&total));
            let n = whole.filter(|&&end| end <= cut as u64).count();
            assert_eq!(seqs.len(), n, "cut at {cut}");
            let Some(ScanItem::End { offset, clean, .. }) = events.last() else { panic!("no end") };
            assert!(events.len() == 1, "no corruption reported for a torn tail");
            assert_eq!(*clean, offsets.contains(&(cut as u64)) || cut == 0);
            assert!(*offset <= cut as u64);
        }
    }

    #[test]
    fn bit_flip_in_middle_is_skipped_and_reported() {
        let (mut buf, offsets) = records(1..50);
        // Flip a payload bit of record 20 (index 19).
        let at = usize::try_from(offsets[19]).unwrap_or(0) + RECORD_HEADER_LEN + 2;
        buf[at] ^= 0x10;
        let (seqs, events) = scan_all(&buf, 1);
        let expected: Vec<u64> = (1..50).filter(|&s| s != 20).collect();
        assert_eq!(seqs, expected);
        assert!(matches!(
            events[0],
            ScanItem::Corrupt {
                problem: RecordProblem::BadChecksum,
                expected_seq: 20,
                resume_seq: 21,
                ..
            }
        ));
    }

    #[test]
    fn damaged_length_field_resyncs() {
        let (mut buf, offsets) = records(1..50);
        let at = usize::try_from(offsets[9]).unwrap_or(0);
        buf[at + 3] = 0x7f; // huge length
        let (seqs, events) = scan_all(&buf, 1);
        assert_eq!(seqs, (1..50).filter(|&s| s != 10).collect::<Vec<_>>());
        assert!(matches!(events[0], ScanItem::Corrupt { problem: RecordProblem::TooLong, .. }));
    }

    #[test]
    fn garbage_never_panics_and_never_yields_records() {
        let mut x = 0x1234_5678_9abc_def0_u64;
        for len in [0usize, 1, 23, 24, 25, 100, 4096] {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            let (seqs, _) = scan_all(&buf, 1);
            assert!(seqs.is_empty());
        }
    }
}
