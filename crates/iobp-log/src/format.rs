//! Byte layout of segment headers, records and checkpoints: segment format version 2 (which
//! reads version 1 segments too), checkpoint version 2 (which reads version 1 files too).
//!
//! This module is the only place that knows the bytes; the crate docs describe the same layout
//! in prose and `tests` below pin it with golden bytes and a CRC known-answer test. Every
//! integer is little-endian. Every checksum is CRC-32C (Castagnoli, reflected polynomial
//! `0x82F63B78`, initial value and final XOR `0xFFFFFFFF`): `crc32c(b"123456789") == 0xE306_9283`.

/// Version written into every new segment header. Readers accept 1 and 2 (version 2 added
/// the producer table to the header and tagged records).
pub const SEGMENT_VERSION: u16 = 2;
/// Version written into each checkpoint slot. Version 1 files (one 32-byte record, replaced by
/// rename) are read too.
pub const CHECKPOINT_VERSION: u16 = 2;
/// Most idempotent producers one log tracks (see [`SegmentHeader::producers`]).
pub const MAX_PRODUCERS: usize = 4096;

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"IOBPSEG\0";
/// Size of the fixed part of a segment header (the whole header of a segment without
/// producers). Each producer entry adds [`PRODUCER_ENTRY_LEN`].
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of one producer entry in a segment header.
pub const PRODUCER_ENTRY_LEN: usize = 16;

/// Size of the fixed record header that precedes each payload.
pub const RECORD_HEADER_LEN: usize = 24;
/// Bit 31 of a record's `len` field: the record is tagged (its data starts with the
/// producer's id and sequence number).
pub const TAGGED: u32 = 1 << 31;
/// Size of the tag at the start of a tagged record's data.
pub const TAG_LEN: usize = 16;
/// [`TAG_LEN`] as the type of the `len` field.
pub const TAG_LEN_U32: u32 = 16;
/// Hard upper bound on one record's payload. Bounds the memory a scan of a damaged file can
/// ask for: a length field above this is treated as corruption, never as an allocation size.
pub const MAX_RECORD_PAYLOAD: u32 = 64 * 1024 * 1024;

/// First eight bytes of the checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"IOBPCKP\0";
/// Size of a version 1 checkpoint file.
pub const CHECKPOINT_V1_LEN: usize = 32;
/// Size of one checkpoint slot.
pub const CHECKPOINT_SLOT_LEN: usize = 48;
/// Distance between the two slots: each in its own page (and sector), so a torn write of one
/// can never damage the other.
pub const CHECKPOINT_SLOT_STRIDE: usize = 4096;
/// Size of the checkpoint file: two slots.
pub const CHECKPOINT_FILE_LEN: usize = 2 * CHECKPOINT_SLOT_STRIDE;

/// What is wrong with a header or checkpoint that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the fixed size.
    Short,
    /// The magic bytes do not match.
    BadMagic,
    /// A format version this build does not read.
    UnsupportedVersion(u16),
    /// The checksum over the header does not match.
    BadChecksum,
}

impl HeaderError {
    /// A short description for error messages.
    pub fn describe(self) -> String {
        match self {
            HeaderError::Short => "truncated header".into(),
            HeaderError::BadMagic => "bad magic bytes".into(),
            HeaderError::UnsupportedVersion(v) => format!("unsupported format version {v}"),
            HeaderError::BadChecksum => "header checksum mismatch".into(),
        }
    }
}

/// The header at offset 0 of every segment file.
///
/// ```text
/// offset size field
///      0    8 magic        "IOBPSEG\0"
///      8    2 version      2 (1: older segments, read the same way with no producers)
///     10    2 producers    N, the number of producer entries (version 1: flags, ignored)
///     12    8 first_seq    sequence number of the first record in this segment
///     20    8 created_us   creation time, microseconds since the Unix epoch
///     28    4 crc32c       over bytes 0..28, then the N entries
///     32  16N entries      producer id u64, last producer sequence u64; ascending ids
/// ```
///
/// The entries are the log's producer table as of every record before this segment: what
/// lets a log deduplicate an idempotent producer's retries (see `Log::try_append_tagged`)
/// survive the deletion of older segments. The records of this segment update it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the segment's first record (also its file name).
    pub first_seq: u64,
    /// When the segment was created, in microseconds since the Unix epoch.
    pub created_us: u64,
    /// `(producer id, last producer sequence number)`, ascending ids, at most
    /// [`MAX_PRODUCERS`].
    pub producers: Vec<(u64, u64)>,
}

/// Encoded size of a segment header with `producers` entries.
pub fn segment_header_len(producers: usize) -> usize {
    SEGMENT_HEADER_LEN + PRODUCER_ENTRY_LEN * producers
}

impl SegmentHeader {
    /// The header's bytes.
    ///
    /// # Panics
    /// If there are more than [`MAX_PRODUCERS`] entries; the log never keeps more.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.producers.len() <= MAX_PRODUCERS, "producer table bounded by the log");
        let n = u16::try_from(self.producers.len()).expect("bounded above");
        let mut b = vec![0u8; segment_header_len(self.producers.len())];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&n.to_le_bytes());
        b[12..20].copy_from_slice(&self.first_seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.created_us.to_le_bytes());
        for (i, (id, pseq)) in self.producers.iter().enumerate() {
            let at = SEGMENT_HEADER_LEN + i * PRODUCER_ENTRY_LEN;
            b[at..at + 8].copy_from_slice(&id.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&pseq.to_le_bytes());
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..28]), &b[SEGMENT_HEADER_LEN..]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The full header length announced by its first [`SEGMENT_HEADER_LEN`] bytes, so that a
    /// reader knows how much to read. Checks magic, version and the entry bound only.
    pub fn encoded_len(b: &[u8]) -> Result<usize, HeaderError> {
        let b = b.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Short)?;
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        match le_u16(&b[8..10]) {
            1 => Ok(SEGMENT_HEADER_LEN),
            2 => {
                let n = usize::from(le_u16(&b[10..12]));
                if n > MAX_PRODUCERS {
                    return Err(HeaderError::BadChecksum);
                }
                Ok(segment_header_len(n))
            }
            v => Err(HeaderError::UnsupportedVersion(v)),
        }
    }

    /// Decodes and verifies a header; returns it and its encoded length (where the records
    /// start).
    pub fn decode(b: &[u8]) -> Result<(Self, usize), HeaderError> {
        let len = Self::encoded_len(b)?;
        let b = b.get(..len).ok_or(HeaderError::Short)?;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..28]), &b[SEGMENT_HEADER_LEN..]);
        if crc != le_u32(&b[28..32]) {
            return Err(HeaderError::BadChecksum);
        }
        let producers = b[SEGMENT_HEADER_LEN..]
            .chunks_exact(PRODUCER_ENTRY_LEN)
            .map(|e| (le_u64(&e[0..8]), le_u64(&e[8..16])))
            .collect();
        let h = SegmentHeader {
            first_seq: le_u64(&b[12..20]),
            created_us: le_u64(&b[20..28]),
            producers,
        };
        Ok((h, len))
    }
}

/// The fixed part of a record.
///
/// ```text
/// offset size field
///      0    4 len          bits 0..31: data length; bit 31: tagged
///      4    4 crc32c       over bytes 0..4, then bytes 8..24+len (everything but itself)
///      8    8 seq          sequence number; consecutive within a log, starting at 1
///     16    8 timestamp_us append time, microseconds since the Unix epoch
///     24  len data         the payload; for a tagged record: producer id u64, producer
///                          sequence u64, then the payload
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The `len` field as stored: data length, with [`TAGGED`] as a flag.
    pub len: u32,
    /// Stored checksum.
    pub crc: u32,
    /// Sequence number.
    pub seq: u64,
    /// Append time in microseconds since the Unix epoch.
    pub timestamp_us: u64,
}

impl RecordHeader {
    /// Reads the fixed header fields without verifying anything. `b` must hold at least
    /// [`RECORD_HEADER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b = b.get(..RECORD_HEADER_LEN)?;
        Some(RecordHeader {
            len: le_u32(&b[0..4]),
            crc: le_u32(&b[4..8]),
            seq: le_u64(&b[8..16]),
            timestamp_us: le_u64(&b[16..24]),
        })
    }

    /// Length of the data after the header (tag included).
    pub fn data_len(&self) -> u32 {
        self.len & !TAGGED
    }

    /// Whether the data starts with a producer tag.
    pub fn is_tagged(&self) -> bool {
        self.len & TAGGED != 0
    }

    /// Total encoded size of this record.
    pub fn total_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.data_len())
    }
}

/// Encoded size of a record with a payload of `payload_len` bytes.
pub fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Encoded size of a tagged record with a payload of `payload_len` bytes.
pub fn tagged_record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + TAG_LEN + payload_len
}

/// Appends one encoded record to `out`.
///
/// # Panics
/// If `payload` is longer than [`MAX_RECORD_PAYLOAD`]; callers check it first.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, timestamp_us: u64, payload: &[u8]) {
    encode(out, seq, timestamp_us, None, payload);
}

/// Appends one encoded tagged record (producer `producer`, its sequence number `pseq`).
///
/// # Panics
/// If `payload` is longer than [`MAX_RECORD_PAYLOAD`]; callers check it first.
pub fn encode_tagged_record(
    out: &mut Vec<u8>,
    seq: u64,
    timestamp_us: u64,
    producer: u64,
    pseq: u64,
    payload: &[u8],
) {
    encode(out, seq, timestamp_us, Some((producer, pseq)), payload);
}

fn encode(out: &mut Vec<u8>, seq: u64, ts: u64, tag: Option<(u64, u64)>, payload: &[u8]) {
    assert!(payload.len() <= MAX_RECORD_PAYLOAD as usize, "payload length checked by the caller");
    let data_len = payload.len() + if tag.is_some() { TAG_LEN } else { 0 };
    let len =
        u32::try_from(data_len).expect("bounded above") | if tag.is_some() { TAGGED } else { 0 };
    let start = out.len();
    out.reserve(RECORD_HEADER_LEN + data_len);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    if let Some((producer, pseq)) = tag {
        out.extend_from_slice(&producer.to_le_bytes());
        out.extend_from_slice(&pseq.to_le_bytes());
    }
    out.extend_from_slice(payload);
    let crc = record_crc(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The tag at the start of a tagged record's data.
pub fn parse_tag(data: &[u8]) -> Option<(u64, u64)> {
    let t = data.get(..TAG_LEN)?;
    Some((le_u64(&t[0..8]), le_u64(&t[8..16])))
}

/// The checksum of a complete encoded record (header and payload), skipping the stored CRC.
pub fn record_crc(record: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&record[0..4]);
    crc32c::crc32c_append(crc, &record[8..])
}

/// Why a record failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordProblem {
    /// The length field exceeds the allowed maximum.
    TooLong,
    /// The sequence number is not the one expected at this position.
    UnexpectedSeq,
    /// The record's bytes run past the readable end of the segment.
    Truncated,
    /// The stored checksum does not match.
    BadChecksum,
}

impl RecordProblem {
    /// A short description for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            RecordProblem::TooLong => "record length field out of range",
            RecordProblem::UnexpectedSeq => "unexpected sequence number",
            RecordProblem::Truncated => "record runs past the end of the data",
            RecordProblem::BadChecksum => "record checksum mismatch",
        }
    }
}

/// One checkpoint: the Done position and the durable high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Bumped by every write; the slot with the highest valid generation is current.
    /// Slot `generation % 2` holds it. 0: read from a version 1 file.
    pub generation: u64,
    /// Every record with `seq <= done_seq` is Done.
    pub done_seq: u64,
    /// Every sequence number up to this one was given to a record that became durable: the
    /// log never hands out a number at or below it again, whatever damage recovery meets.
    pub high_water: u64,
    /// When it was written, microseconds since the Unix epoch.
    pub written_us: u64,
}

/// Encodes one checkpoint slot.
///
/// ```text
/// offset size field
///      0    8 magic        "IOBPCKP\0"
///      8    2 version      2
///     10    2 reserved     0
///     12    8 generation
///     20    8 done_seq
///     28    8 high_water
///     36    8 written_us
///     44    4 crc32c       over bytes 0..44
/// ```
pub fn encode_checkpoint_slot(c: &Checkpoint) -> [u8; CHECKPOINT_SLOT_LEN] {
    let mut b = [0u8; CHECKPOINT_SLOT_LEN];
    b[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
    b[8..10].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    b[12..20].copy_from_slice(&c.generation.to_le_bytes());
    b[20..28].copy_from_slice(&c.done_seq.to_le_bytes());
    b[28..36].copy_from_slice(&c.high_water.to_le_bytes());
    b[36..44].copy_from_slice(&c.written_us.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..44]);
    b[44..48].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes and verifies one checkpoint slot.
pub fn decode_checkpoint_slot(b: &[u8]) -> Result<Checkpoint, HeaderError> {
    if b.len() < CHECKPOINT_SLOT_LEN {
        return Err(HeaderError::Short);
    }
    if b[0..8] != CHECKPOINT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if crc32c::crc32c(&b[0..44]) != le_u32(&b[44..48]) {
        return Err(HeaderError::BadChecksum);
    }
    let version = le_u16(&b[8..10]);
    if version != CHECKPOINT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    Ok(Checkpoint {
        generation: le_u64(&b[12..20]),
        done_seq: le_u64(&b[20..28]),
        high_water: le_u64(&b[28..36]),
        written_us: le_u64(&b[36..44]),
    })
}

/// Encodes a whole checkpoint file holding `c` in its slot (the other slot empty).
pub fn encode_checkpoint_file(c: &Checkpoint) -> Vec<u8> {
    let mut f = vec![0u8; CHECKPOINT_FILE_LEN];
    let at = checkpoint_slot_offset(c.generation);
    f[at..at + CHECKPOINT_SLOT_LEN].copy_from_slice(&encode_checkpoint_slot(c));
    f
}

/// Where the slot of a generation starts.
pub fn checkpoint_slot_offset(generation: u64) -> usize {
    if generation.is_multiple_of(2) { 0 } else { CHECKPOINT_SLOT_STRIDE }
}

/// Decodes a checkpoint file of either version: the valid slot with the highest generation.
pub fn decode_checkpoint_file(b: &[u8]) -> Result<Checkpoint, HeaderError> {
    if b.len() == CHECKPOINT_V1_LEN {
        return decode_checkpoint_v1(b);
    }
    let slot = |at: usize| decode_checkpoint_slot(b.get(at..).unwrap_or(&[]));
    match (slot(0), slot(CHECKPOINT_SLOT_STRIDE)) {
        (Ok(a), Ok(b)) => Ok(if a.generation >= b.generation { a } else { b }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(e), Err(_)) => Err(e),
    }
}

/// Decodes a version 1 checkpoint file.
///
/// ```text
/// offset size field
///      0    8 magic        "IOBPCKP\0"
///      8    2 version      1
///     10    2 reserved     0
///     12    8 done_seq     every record with seq <= done_seq is Done
///     20    8 written_us   when the checkpoint was written, microseconds since the Unix epoch
///     28    4 crc32c       over bytes 0..28
/// ```
pub fn decode_checkpoint_v1(b: &[u8]) -> Result<Checkpoint, HeaderError> {
    if b.len() != CHECKPOINT_V1_LEN {
        return Err(HeaderError::Short);
    }
    if b[0..8] != CHECKPOINT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if crc32c::crc32c(&b[0..28]) != le_u32(&b[28..32]) {
        return Err(HeaderError::BadChecksum);
    }
    let version = le_u16(&b[8..10]);
    if version != 1 {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let done_seq = le_u64(&b[12..20]);
    Ok(Checkpoint { generation: 0, done_seq, high_water: done_seq, written_us: le_u64(&b[20..28]) })
}

/// File name of the segment whose first record has sequence number `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// Parses a segment file name; `None` for anything else.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_answer() {
        // The standard check value of CRC-32C; pins the polynomial the format documents.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn golden_record_bytes() {
        let mut out = Vec::new();
        encode_record(&mut out, 0x0102_0304_0506_0708, 0x1122_3344_5566_7788, b"hi");
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&[2, 0, 0, 0]),
            &[
                0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
                0x22, 0x11, b'h', b'i',
            ],
        );
        // Computed independently (bitwise CRC-32C in Python) when the format was pinned.
        assert_eq!(crc, 0xA2F9_2C1F, "checksum of the golden record changed");
        #[rustfmt::skip]
        let golden: [u8; 26] = [
            0x02, 0x00, 0x00, 0x00,                         // len = 2
            0x1F, 0x2C, 0xF9, 0xA2,                         // crc32c
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // seq
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // timestamp_us
            b'h', b'i',                                     // payload
        ];
        assert_eq!(out, golden);
        let h = RecordHeader::parse(&out).expect("header");
        assert_eq!(h.len, 2);
        assert_eq!(h.seq, 0x0102_0304_0506_0708);
        assert_eq!(record_crc(&out), h.crc);
    }

    #[test]
    fn golden_segment_header_bytes() {
        let h =
            SegmentHeader { first_seq: 42, created_us: 1_700_000_000_000_000, producers: vec![] };
        let b = h.encode();
        #[rustfmt::skip]
        let expected_prefix: [u8; 28] = [
            b'I', b'O', b'B', b'P', b'S', b'E', b'G', 0,   // magic
            2, 0,                                           // version
            0, 0,                                           // producers
            42, 0, 0, 0, 0, 0, 0, 0,                        // first_seq
            0x00, 0x40, 0x1e, 0x18, 0x24, 0x0a, 0x06, 0x00, // created_us
        ];
        assert_eq!(b.len(), SEGMENT_HEADER_LEN);
        assert_eq!(b[..28], expected_prefix);
        assert_eq!(b[28..32], crc32c::crc32c(&expected_prefix).to_le_bytes());
        assert_eq!(SegmentHeader::decode(&b), Ok((h, SEGMENT_HEADER_LEN)));
    }

    #[test]
    fn golden_segment_header_with_producers() {
        let h = SegmentHeader { first_seq: 1, created_us: 2, producers: vec![(7, 9), (0x0102, 3)] };
        let b = h.encode();
        assert_eq!(b.len(), 32 + 2 * 16);
        assert_eq!(&b[8..12], &[2, 0, 2, 0], "version 2, two producers");
        #[rustfmt::skip]
        let entries: [u8; 32] = [
            7, 0, 0, 0, 0, 0, 0, 0,    9, 0, 0, 0, 0, 0, 0, 0,
            2, 1, 0, 0, 0, 0, 0, 0,    3, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(b[32..], entries);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..28]), &entries);
        assert_eq!(b[28..32], crc.to_le_bytes());
        assert_eq!(SegmentHeader::encoded_len(&b), Ok(64));
        assert_eq!(SegmentHeader::decode(&b), Ok((h, 64)));
        // A damaged entry fails the checksum.
        let mut bad = b.clone();
        bad[40] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadChecksum));
        assert_eq!(SegmentHeader::decode(&b[..63]), Err(HeaderError::Short));
    }

    #[test]
    fn version_1_segment_headers_are_read() {
        // Exactly what version 1 wrote: flags 0, no producers.
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(b"IOBPSEG\0");
        b[8] = 1;
        b[12] = 5;
        b[20] = 6;
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        let (h, len) = SegmentHeader::decode(&b).expect("v1");
        assert_eq!((h.first_seq, h.created_us, h.producers.len(), len), (5, 6, 0, 32));
    }

    #[test]
    fn golden_tagged_record_bytes() {
        let mut out = Vec::new();
        encode_tagged_record(&mut out, 1, 2, 0xAB, 5, b"ok");
        #[rustfmt::skip]
        let golden_prefix: [u8; 4] = [18, 0, 0, 0x80]; // 16-byte tag + 2-byte payload, tagged
        assert_eq!(out[0..4], golden_prefix);
        assert_eq!(out.len(), tagged_record_len(2));
        assert_eq!(&out[24..32], &0xABu64.to_le_bytes());
        assert_eq!(&out[32..40], &5u64.to_le_bytes());
        assert_eq!(&out[40..], b"ok");
        let h = RecordHeader::parse(&out).expect("header");
        assert!(h.is_tagged());
        assert_eq!((h.data_len(), h.total_len()), (18, 42));
        assert_eq!(record_crc(&out), h.crc);
        assert_eq!(parse_tag(&out[24..]), Some((0xAB, 5)));
    }

    #[test]
    fn golden_checkpoint_bytes() {
        let c = Checkpoint { generation: 3, done_seq: 7, high_water: 8, written_us: 9 };
        let b = encode_checkpoint_slot(&c);
        assert_eq!(&b[0..8], b"IOBPCKP\0");
        assert_eq!(&b[8..12], &[2, 0, 0, 0]);
        assert_eq!(&b[12..20], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[20..28], &[7, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[28..36], &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[36..44], &[9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[44..48], &crc32c::crc32c(&b[0..44]).to_le_bytes());
        assert_eq!(decode_checkpoint_slot(&b), Ok(c));
        // Odd generations live in the second slot.
        let f = encode_checkpoint_file(&c);
        assert_eq!(f.len(), 8192);
        assert!(f[..4096].iter().all(|&x| x == 0));
        assert_eq!(&f[4096..4096 + 48], &b);
    }

    #[test]
    fn checkpoint_file_takes_the_newest_valid_slot() {
        let old = Checkpoint { generation: 4, done_seq: 10, high_water: 12, written_us: 1 };
        let new = Checkpoint { generation: 5, done_seq: 20, high_water: 25, written_us: 2 };
        let mut f = encode_checkpoint_file(&old);
        f[4096..4096 + 48].copy_from_slice(&encode_checkpoint_slot(&new));
        assert_eq!(decode_checkpoint_file(&f), Ok(new));
        // A torn write of the newer slot leaves the older one.
        f[4096 + 30] ^= 0xFF;
        assert_eq!(decode_checkpoint_file(&f), Ok(old));
        f[3] ^= 0xFF;
        assert!(decode_checkpoint_file(&f).is_err());
    }

    #[test]
    fn version_1_checkpoint_files_are_read() {
        // The exact bytes a version 1 build wrote for done_seq 7 at time 9.
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(b"IOBPCKP\0");
        b[8] = 1;
        b[12] = 7;
        b[20] = 9;
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        let c = decode_checkpoint_file(&b).expect("v1");
        assert_eq!((c.generation, c.done_seq, c.high_water, c.written_us), (0, 7, 7, 9));
    }

    #[test]
    fn header_decode_rejects_damage() {
        let good = SegmentHeader { first_seq: 1, created_us: 2, producers: vec![] }.encode();
        assert_eq!(SegmentHeader::decode(&good[..31]), Err(HeaderError::Short));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadMagic));
        let mut bad = good.clone();
        bad[13] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadChecksum));
        let mut bad = good.clone();
        bad[8] = 3;
        let crc = crc32c::crc32c(&bad[0..28]);
        bad[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::UnsupportedVersion(3)));
        // A producer count beyond the bound is damage, not an allocation size.
        let mut bad = good;
        bad[10..12].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadChecksum));
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_file_name("00000000000000000001.seg"), Some(1));
        assert_eq!(parse_segment_file_name(&segment_file_name(u64::MAX)), Some(u64::MAX));
        for bad in ["1.seg", "0000000000000000000a.seg", "00000000000000000001.se", "", ".seg"] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        // 20 digits that overflow u64
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
    }
}
