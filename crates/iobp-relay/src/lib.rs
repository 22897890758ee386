//! # iobp-relay: the relay protocol between ioBufferPro instances, version 1
//!
//! This crate is the protocol's specification and its codec: frames to bytes and back, with
//! every bound checked. It does no I/O; the engine runs the sessions, the web layer does the
//! HTTP part. `docs/relay-protocol.md` describes the whole exchange for people writing
//! another implementation; this module documentation is the normative byte layout.
//!
//! ## Roles
//!
//! A relay connection carries one **stream**: the records of one channel pair's buffer on
//! the **sender**, appended to one channel pair's buffer on the **receiver**. Which instance
//! opened the connection does not matter: a `remote_icombuffer` destination with a `url`
//! connects and sends (push); a `remote_icombuffer` source with a `url` connects and receives
//! (pull). The stream is identified by the sender's buffer identity (a random 64-bit number
//! that changes when the buffer is created anew), and each record by the sender's sequence
//! number for it (`pseq`, increasing, gaps allowed).
//!
//! ## Connection
//!
//! HTTP/1.1 on the remote instance's Operations Portal port (`https://` for TLS); the paths,
//! headers and JSON shapes are in [`http`]:
//!
//! 1. `POST /api/v1/relay/session` with `{"username": "...", "password": "..."}` returns
//!    `{"token": "...", "expires_in_s": N}` for a user whose role allows relaying (`relay`
//!    or `admin`). The password is checked once; the token is used until it is refused.
//! 2. `GET /api/v1/relay/channels/{channel_id}/push` (the caller sends) or
//!    `.../pull` (the caller receives), with `Authorization: Bearer <token>`,
//!    `Connection: Upgrade` and `Upgrade: iobp-relay/1`. The answer is `101 Switching
//!    Protocols`; from then on the connection carries frames in both directions. Errors
//!    before the upgrade are ordinary JSON errors (401: token refused, log in again; 403: the
//!    user may not relay; 404: no such channel; 409: the channel is not a `remote_icombuffer`
//!    side without `url` in the matching direction).
//!
//! ## Frames
//!
//! Every frame is `type: u8`, `len: u32` (little-endian, at most [`MAX_FRAME_BODY`]), then
//! `len` bytes of body. All integers are little-endian. A frame that breaks a rule below is a
//! protocol error: the peer sends [`Frame::Error`] if it can and closes the connection.
//!
//! | type | frame | direction | body |
//! |---|---|---|---|
//! | 1 | `Hello` | sender → receiver, first | `version: u16` (1), `stream: u64` (≠ 0) |
//! | 2 | `Resume` | receiver → sender, answers `Hello` | `position: u64` |
//! | 3 | `Data` | sender → receiver | `prev: u64`, `backlog: u64`, `last_ts_us: u64`, `count: u32`, then `count` × (`pseq: u64`, `len: u32`, `len` bytes) |
//! | 4 | `Ack` | receiver → sender | `through: u64` |
//! | 5 | `Busy` | receiver → sender | `position: u64`, `retry_after_ms: u32`, `reason`: UTF-8, rest of the body |
//! | 6 | `Ping` | either | `nonce: u64` |
//! | 7 | `Pong` | either, answers `Ping` | `nonce: u64` |
//! | 8 | `Error` | either, then close | `message`: UTF-8, the whole body |
//!
//! ## Exactly once
//!
//! - `Resume.position` is the last `pseq` of this stream that is **durable** in the
//!   receiver's buffer (0: none). The sender treats everything up to it as delivered and
//!   sends what follows.
//! - A `Data` frame holds records with `pseq` increasing, all above `prev`, where `prev` is
//!   the `pseq` of the record the sender sent just before this frame's first (or the resume
//!   position). `backlog` is how many records wait at the sender after this frame and
//!   `last_ts_us` when the frame's last record was stored there (µs since the Unix epoch):
//!   together the receiver's view of the lag. At most [`MAX_RECORDS`] records; each at most
//!   [`MAX_RECORD_BYTES`].
//! - The receiver stores a frame only if `prev` is not above what it has of the stream (else a
//!   frame before it was refused and it ignores this one), skips records it already has,
//!   and stores the rest together with their `pseq`, durably, in one commit: the buffer's
//!   deduplication is durable with the data, so a resend after a lost `Ack`, a reconnect or
//!   a crash of either side never stores a record twice.
//! - `Ack.through` is sent only once every record of the stream up to it is durable at the
//!   receiver; only then does the sender mark them delivered. Acks come in order.
//! - `Busy` says the receiver could not store the frame after `position` (its buffer is
//!   full): the sender waits `retry_after_ms` and sends again from `position`.
//! - Frames may be pipelined: the sender need not wait for an `Ack` before the next `Data`.
//! - `Ping` at least every [`PING_INTERVAL_S`] seconds while idle; a connection silent for
//!   [`IDLE_TIMEOUT_S`] seconds is dead.

#![warn(missing_docs)]

pub mod http;

use std::fmt;

/// The `Upgrade` token of this protocol version.
pub const PROTOCOL: &str = "iobp-relay/1";
/// The protocol version in `Hello`.
pub const VERSION: u16 = 1;
/// Frame header: type and length.
pub const FRAME_HEADER_LEN: usize = 5;
/// Largest record payload.
pub const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;
/// Most records in one `Data` frame.
pub const MAX_RECORDS: u32 = 65_536;
/// Largest frame body: one largest record plus headroom; many small records fit easily.
pub const MAX_FRAME_BODY: u32 = MAX_RECORD_BYTES + 64 * 1024;
/// Size of the fixed part of a `Data` body.
pub const DATA_HEADER_LEN: usize = 28;
/// Size of each record's header in a `Data` body.
pub const RECORD_HEADER_LEN: usize = 12;
/// How often an idle side sends `Ping`.
pub const PING_INTERVAL_S: u64 = 10;
/// A connection with nothing received for this long is dead.
pub const IDLE_TIMEOUT_S: u64 = 35;

const T_HELLO: u8 = 1;
const T_RESUME: u8 = 2;
const T_DATA: u8 = 3;
const T_ACK: u8 = 4;
const T_BUSY: u8 = 5;
const T_PING: u8 = 6;
const T_PONG: u8 = 7;
const T_ERROR: u8 = 8;

/// A protocol violation found while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame type is unknown.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The length field exceeds [`MAX_FRAME_BODY`].
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME_BODY}")]
    TooLarge(u32),
    /// The body does not match the frame's layout.
    #[error("malformed {frame} frame: {why}")]
    Malformed {
        /// Which frame.
        frame: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

fn malformed(frame: &'static str, why: &'static str) -> ProtocolError {
    ProtocolError::Malformed { frame, why }
}

/// A decoded frame, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The sender introduces its stream.
    Hello {
        /// Protocol version.
        version: u16,
        /// The stream: the sender buffer's identity.
        stream: u64,
    },
    /// The receiver's durable position in the stream.
    Resume {
        /// Last `pseq` durable at the receiver (0: none).
        position: u64,
    },
    /// Records.
    Data(Data<'a>),
    /// Everything up to `through` is durable at the receiver.
    Ack {
        /// Last acknowledged `pseq`.
        through: u64,
    },
    /// The receiver could not store what follows `position`; send it again later.
    Busy {
        /// Last `pseq` the receiver has.
        position: u64,
        /// How long to wait before sending again.
        retry_after_ms: u32,
        /// Why, for the operator.
        reason: &'a str,
    },
    /// Keepalive.
    Ping {
        /// Echoed in the `Pong`.
        nonce: u64,
    },
    /// Keepalive answer.
    Pong {
        /// The `Ping`'s nonce.
        nonce: u64,
    },
    /// A fatal problem; the connection closes.
    Error {
        /// For the operator.
        message: &'a str,
    },
}

/// A `Data` frame's body, verified.
#[derive(Clone, PartialEq, Eq)]
pub struct Data<'a> {
    /// `pseq` of the record sent just before the first one here.
    pub prev: u64,
    /// Records waiting at the sender after this frame.
    pub backlog: u64,
    /// When the last record here was stored at the sender (µs since the Unix epoch).
    pub last_ts_us: u64,
    count: u32,
    records: &'a [u8],
}

impl fmt::Debug for Data<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Data")
            .field("prev", &self.prev)
            .field("backlog", &self.backlog)
            .field("count", &self.count)
            .field("bytes", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Data<'a> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the frame holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records: `(pseq, payload)`, in order (verified when the frame was decoded).
    pub fn records(&self) -> Records<'a> {
        Records { rest: self.records }
    }

    /// The last record's `pseq` (or `prev` when empty).
    pub fn last_pseq(&self) -> u64 {
        self.records().last().map_or(self.prev, |(p, _)| p)
    }
}

/// Iterator over a verified `Data` frame's records.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let pseq = le_u64(self.rest.get(0..8)?);
        let len = le_u32(self.rest.get(8..12)?) as usize;
        let payload = self.rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)?;
        self.rest = &self.rest[RECORD_HEADER_LEN + len..];
        Some((pseq, payload))
    }
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

/// Decodes the frame at the start of `buf`. `Ok(None)`: more bytes are needed (the header
/// says how many: see [`needed`]); `Ok(Some((frame, used)))`: a frame of `used` bytes.
///
/// A frame is verified completely here (every length, every record bound, `pseq` order), so
/// nothing decoded can make a caller index out of bounds.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, ProtocolError> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else { return Ok(None) };
    let kind = header[0];
    let len = le_u32(&header[1..5]);
    if len > MAX_FRAME_BODY {
        return Err(ProtocolError::TooLarge(len));
    }
    if !(T_HELLO..=T_ERROR).contains(&kind) {
        return Err(ProtocolError::UnknownType(kind));
    }
    let total = FRAME_HEADER_LEN + len as usize;
    let Some(body) = buf.get(FRAME_HEADER_LEN..total) else { return Ok(None) };
    let exact = |name: &'static str, n: usize| {
        if body.len() == n { Ok(()) } else { Err(malformed(name, "wrong length")) }
    };
    let frame = match kind {
        T_HELLO => {
            exact("Hello", 10)?;
            let stream = le_u64(&body[2..10]);
            if stream == 0 {
                return Err(malformed("Hello", "stream 0"));
            }
            Frame::Hello { version: le_u16(&body[0..2]), stream }
        }
        T_RESUME => {
            exact("Resume", 8)?;
            Frame::Resume { position: le_u64(body) }
        }
        T_DATA => Frame::Data(decode_data(body)?),
        T_ACK => {
            exact("Ack", 8)?;
            Frame::Ack { through: le_u64(body) }
        }
        T_BUSY => {
            if body.len() < 12 {
                return Err(malformed("Busy", "too short"));
            }
            let reason = std::str::from_utf8(&body[12..])
                .map_err(|_| malformed("Busy", "reason not UTF-8"))?;
            Frame::Busy {
                position: le_u64(&body[0..8]),
                retry_after_ms: le_u32(&body[8..12]),
                reason,
            }
        }
        T_PING => {
            exact("Ping", 8)?;
            Frame::Ping { nonce: le_u64(body) }
        }
        T_PONG => {
            exact("Pong", 8)?;
            Frame::Pong { nonce: le_u64(body) }
        }
        _ => {
            let message =
                std::str::from_utf8(body).map_err(|_| malformed("Error", "message not UTF-8"))?;
            Frame::Error { message }
        }
    };
    Ok(Some((frame, total)))
}

/// How many bytes the frame at the start of `buf` needs in total, once its header is there.
pub fn needed(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..FRAME_HEADER_LEN)?;
    Some(FRAME_HEADER_LEN + le_u32(&header[1..5]) as usize)
}

fn decode_data(body: &[u8]) -> Result<Data<'_>, ProtocolError> {
    let name = "Data";
    let fixed = body.get(..DATA_HEADER_LEN).ok_or_else(|| malformed(name, "too short"))?;
    let prev = le_u64(&fixed[0..8]);
    let count = le_u32(&fixed[24..28]);
    if count > MAX_RECORDS {
        return Err(malformed(name, "too many records"));
    }
    let records = &body[DATA_HEADER_LEN..];
    let mut rest = records;
    let mut last = prev;
    for _ in 0..count {
        let h = rest.get(..RECORD_HEADER_LEN).ok_or_else(|| malformed(name, "record cut short"))?;
        let pseq = le_u64(&h[0..8]);
        let len = le_u32(&h[8..12]);
        if pseq <= last {
            return Err(malformed(name, "record numbers must increase above prev"));
        }
        if len > MAX_RECORD_BYTES {
            return Err(malformed(name, "record too large"));
        }
        let end = RECORD_HEADER_LEN + len as usize;
        if rest.len() < end {
            return Err(malformed(name, "record cut short"));
        }
        rest = &rest[end..];
        last = pseq;
    }
    if !rest.is_empty() {
        return Err(malformed(name, "bytes after the last record"));
    }
    Ok(Data {
        prev,
        backlog: le_u64(&fixed[8..16]),
        last_ts_us: le_u64(&fixed[16..24]),
        count,
        records,
    })
}

fn header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// Appends a `Hello`.
pub fn encode_hello(out: &mut Vec<u8>, stream: u64) {
    header(out, T_HELLO, 10);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&stream.to_le_bytes());
}

/// Appends a `Resume`.
pub fn encode_resume(out: &mut Vec<u8>, position: u64) {
    header(out, T_RESUME, 8);
    out.extend_from_slice(&position.to_le_bytes());
}

/// Appends an `Ack`.
pub fn encode_ack(out: &mut Vec<u8>, through: u64) {
    header(out, T_ACK, 8);
    out.extend_from_slice(&through.to_le_bytes());
}

/// Appends a `Busy` (the reason is cut to 1 KiB at a character boundary).
pub fn encode_busy(out: &mut Vec<u8>, position: u64, retry_after_ms: u32, reason: &str) {
    let reason = truncate(reason, 1024);
    header(out, T_BUSY, 12 + reason.len());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&retry_after_ms.to_le_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// Appends a `Ping`.
pub fn encode_ping(out: &mut Vec<u8>, nonce: u64) {
    header(out, T_PING, 8);
    out.extend_from_slice(&nonce.to_le_bytes());
}

/// Appends a `Pong`.
pub fn encode_pong(out: &mut Vec<u8>, nonce: u64) {
    header(out, T_PONG, 8);
    out.extend_from_slice(&nonce.to_le_bytes());
}

/// Appends an `Error` (the message is cut to 4 KiB at a character boundary).
pub fn encode_error(out: &mut Vec<u8>, message: &str) {
    let message = truncate(message, 4096);
    header(out, T_ERROR, message.len());
    out.extend_from_slice(message.as_bytes());
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Builds a `Data` frame in place: [`DataWriter::begin`], [`DataWriter::push`] records,
/// [`DataWriter::finish`].
#[derive(Debug)]
pub struct DataWriter {
    start: usize,
    count: u32,
    last: u64,
}

/// Why a record cannot be added to a `Data` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataFull {
    /// The frame has [`MAX_RECORDS`] records or no room for this one: finish it and begin
    /// another.
    #[error("the frame is full")]
    Full,
    /// The record is larger than [`MAX_RECORD_BYTES`].
    #[error("record larger than the protocol allows")]
    RecordTooLarge,
    /// `pseq` does not increase.
    #[error("record numbers must increase")]
    OutOfOrder,
}

impl DataWriter {
    /// Starts a `Data` frame at the end of `out`.
    pub fn begin(out: &mut Vec<u8>, prev: u64, backlog: u64, last_ts_us: u64) -> DataWriter {
        let start = out.len();
        header(out, T_DATA, 0);
        out.extend_from_slice(&prev.to_le_bytes());
        out.extend_from_slice(&backlog.to_le_bytes());
        out.extend_from_slice(&last_ts_us.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        DataWriter { start, count: 0, last: prev }
    }

    /// Adds a record.
    pub fn push(&mut self, out: &mut Vec<u8>, pseq: u64, payload: &[u8]) -> Result<(), DataFull> {
        let len = u32::try_from(payload.len()).map_err(|_| DataFull::RecordTooLarge)?;
        if len > MAX_RECORD_BYTES {
            return Err(DataFull::RecordTooLarge);
        }
        if pseq <= self.last {
            return Err(DataFull::OutOfOrder);
        }
        let body = out.len() - self.start - FRAME_HEADER_LEN;
        if self.count == MAX_RECORDS
            || body + RECORD_HEADER_LEN + payload.len() > MAX_FRAME_BODY as usize
        {
            return Err(DataFull::Full);
        }
        out.extend_from_slice(&pseq.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
        self.count += 1;
        self.last = pseq;
        Ok(())
    }

    /// Records added so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The last `pseq` added (or `prev`).
    pub fn last_pseq(&self) -> u64 {
        self.last
    }

    /// Sets the backlog and timestamp fields, known only once the frame is filled.
    pub fn set_lag(&self, out: &mut [u8], backlog: u64, last_ts_us: u64) {
        let at = self.start + FRAME_HEADER_LEN + 8;
        out[at..at + 8].copy_from_slice(&backlog.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&last_ts_us.to_le_bytes());
    }

    /// Completes the frame's length and count.
    pub fn finish(self, out: &mut [u8]) {
        let body = out.len() - self.start - FRAME_HEADER_LEN;
        let len = u32::try_from(body).unwrap_or(u32::MAX);
        out[self.start + 1..self.start + 5].copy_from_slice(&len.to_le_bytes());
        let at = self.start + FRAME_HEADER_LEN + 24;
        out[at..at + 4].copy_from_slice(&self.count.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_hello_and_ack_bytes() {
        let mut out = Vec::new();
        encode_hello(&mut out, 0x0102_0304_0506_0708);
        assert_eq!(out, [1, 10, 0, 0, 0, 1, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
        out.clear();
        encode_ack(&mut out, 5);
        assert_eq!(out, [4, 8, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn golden_data_bytes() {
        let mut out = Vec::new();
        let mut w = DataWriter::begin(&mut out, 9, 0, 0);
        w.push(&mut out, 10, b"ab").expect("push");
        w.set_lag(&mut out, 3, 4);
        w.finish(&mut out);
        #[rustfmt::skip]
        let golden: [u8; 47] = [
            3, 42, 0, 0, 0,                 // Data, 42-byte body
            9, 0, 0, 0, 0, 0, 0, 0,         // prev
            3, 0, 0, 0, 0, 0, 0, 0,         // backlog
            4, 0, 0, 0, 0, 0, 0, 0,         // last_ts_us
            1, 0, 0, 0,                     // count
            10, 0, 0, 0, 0, 0, 0, 0,        // pseq
            2, 0, 0, 0,                     // len
            b'a', b'b',
        ];
        assert_eq!(out, golden);
        let (f, used) = decode(&out).expect("valid").expect("complete");
        assert_eq!(used, 47);
        let Frame::Data(d) = f else { panic!("{f:?}") };
        assert_eq!((d.prev, d.backlog, d.last_ts_us, d.len()), (9, 3, 4, 1));
        assert_eq!(d.records().collect::<Vec<_>>(), vec![(10, b"ab".as_slice())]);
    }

    #[test]
    fn partial_frames_ask_for_more() {
        let mut out = Vec::new();
        encode_busy(&mut out, 7, 250, "buffer full");
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(needed(&out[..5]), Some(out.len()));
        let (f, _) = decode(&out).expect("ok").expect("complete");
        assert_eq!(f, Frame::Busy { position: 7, retry_after_ms: 250, reason: "buffer full" });
    }

    #[test]
    fn violations_are_errors_not_panics() {
        assert_eq!(decode(&[9, 0, 0, 0, 0]), Err(ProtocolError::UnknownType(9)));
        assert_eq!(decode(&[3, 255, 255, 255, 255]), Err(ProtocolError::TooLarge(u32::MAX)));
        assert!(decode(&[2, 3, 0, 0, 0, 1, 2, 3]).is_err(), "Resume of 3 bytes");
        let mut out = Vec::new();
        encode_hello(&mut out, 1);
        out[7..15].fill(0);
        assert!(decode(&out).is_err(), "stream 0");
        // Records out of order, or not above prev.
        let mut out = Vec::new();
        let w = DataWriter::begin(&mut out, 5, 0, 0);
        out.extend_from_slice(&5u64.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let w = DataWriter { count: 1, ..w };
        w.finish(&mut out);
        assert!(matches!(decode(&out), Err(ProtocolError::Malformed { .. })));
    }

    #[test]
    fn writer_refuses_what_the_decoder_would() {
        let mut out = Vec::new();
        let mut w = DataWriter::begin(&mut out, 3, 0, 0);
        assert_eq!(w.push(&mut out, 3, b"x"), Err(DataFull::OutOfOrder));
        w.push(&mut out, 4, b"x").expect("push");
        assert_eq!(w.push(&mut out, 4, b"y"), Err(DataFull::OutOfOrder));
        let big = vec![0u8; MAX_RECORD_BYTES as usize + 1];
        assert_eq!(w.push(&mut out, 5, &big), Err(DataFull::RecordTooLarge));
        let max = vec![0u8; MAX_RECORD_BYTES as usize];
        w.push(&mut out, 5, &max).expect("one largest record fits");
        assert_eq!(w.push(&mut out, 6, &max), Err(DataFull::Full));
        w.finish(&mut out);
        let (f, _) = decode(&out).expect("valid").expect("complete");
        assert_eq!(f.clone(), f);
    }
}
