//! The [`Deframer`]: a state machine that cuts one byte stream into messages and rejections.
//!
//! Bytes stay in the caller's `BytesMut` until they are decided: a frame is split off its front
//! without copying; a rejected frame is counted and dropped as it is discarded, keeping only a
//! preview. The rules it keeps are stated in the crate documentation; the comments here say how.

use std::mem;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use memchr::memmem::Finder;

use crate::framing::Framing;
use crate::rejection::{
    Discard, INCOMPLETE_AT_EOF, OUTSIDE_FRAME, RejectKind, Rejection, STARTED_AGAIN,
};

/// Why [`Deframer::flush`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// The stream has been quiet for [`Deframer::idle_gap`].
    Idle,
    /// The stream ended (connection closed, port gone). Nothing more will follow.
    Eof,
}

/// One event out of a [`Deframer`].
#[must_use = "a decoded frame or rejection must be stored or reported, never dropped"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete message (framing bytes removed). May be empty.
    Frame(bytes::Bytes),
    /// Bytes that were discarded instead of delivered.
    Rejected(Rejection),
}

/// Stateful decoder for one stream (one TCP connection / serial port).
///
/// Use: after every read into `buf`, call [`decode`](Deframer::decode) until it returns `None`;
/// between calls only append to `buf` (the deframer remembers how far it has scanned). When
/// the idle timer fires call [`flush`](Deframer::flush) with [`FlushReason::Idle`], at end of
/// stream with [`FlushReason::Eof`], in both cases until it returns `None`.
#[derive(Debug)]
pub struct Deframer {
    framing: Framing,
    max: usize,
    machine: Machine,
}

/// The decoding rules in force (a framing that cannot be applied decodes as `Raw`), each with
/// its own state.
#[derive(Debug)]
enum Machine {
    Raw,
    IdleGap { gap: Duration },
    Prefixed { width: usize, state: PrefixState },
    // Boxed: memmem finders are large, and most deframers are not delimited.
    Delimited { delims: Box<Delims>, scan: Scan, state: DelimState },
}

#[derive(Debug)]
enum PrefixState {
    /// Waiting for a length prefix (and then its payload) at the front of `buf`.
    Header,
    /// Throwing away an oversize frame: `remaining` more bytes belong to it. Counting them,
    /// not buffering them, is what keeps a 4 GiB announcement harmless.
    Skipping { remaining: u64, discard: Discard },
}

#[derive(Debug)]
enum DelimState {
    /// Between frames (only with a non-empty `start`): the next bytes should be `start`.
    Between,
    /// Inside a frame: `start` has been consumed, the payload so far is at the front of `buf`.
    InFrame,
    /// Discarding an oversize frame or a run of garbage until the stream resynchronises: at
    /// the next `start`, or (when `until_end`) after the next `end` if it completes first.
    Discarding { discard: Discard, until_end: bool },
}

#[derive(Debug)]
struct Delims {
    start: Vec<u8>,
    end: Vec<u8>,
    // Finders are built once: a memmem searcher has set-up cost worth paying once per stream.
    start_finder: Finder<'static>,
    end_finder: Finder<'static>,
}

/// How far `buf` has been scanned: no complete `start` begins before `start`, no complete
/// `end` before `end`. Offsets are relative to the front of `buf` and move back when bytes
/// are consumed. They make byte-at-a-time feeding linear: no byte is searched twice.
#[derive(Debug, Default)]
struct Scan {
    start: usize,
    end: usize,
}

/// The first delimiter that completes in the buffer.
enum Event {
    End(usize),
    Start(usize),
}

impl Deframer {
    /// A decoder for `framing`, delivering messages of at most `max_message_bytes` bytes
    /// (a value of 0 is taken as 1).
    ///
    /// A framing that cannot be applied — delimited with an empty `end`, or a length prefix
    /// width other than 1, 2 or 4 — decodes as [`Framing::Raw`], so no byte is lost. Other
    /// framings that [`Framing::validate`] refuses (because nothing could be *sent* with them)
    /// still decode by the rules.
    pub fn new(framing: Framing, max_message_bytes: usize) -> Deframer {
        let max = max_message_bytes.max(1);
        let machine = match &framing {
            Framing::IdleGap { gap } => Machine::IdleGap { gap: *gap },
            Framing::LengthPrefixed { width: width @ (1 | 2 | 4) } => {
                Machine::Prefixed { width: usize::from(*width), state: PrefixState::Header }
            }
            Framing::Delimited { start, end } if !end.is_empty() => {
                let delims = Delims {
                    start_finder: Finder::new(start).into_owned(),
                    end_finder: Finder::new(end).into_owned(),
                    start: start.clone(),
                    end: end.clone(),
                };
                let state = delims.initial();
                Machine::Delimited { delims: Box::new(delims), scan: Scan::default(), state }
            }
            Framing::Raw | Framing::LengthPrefixed { .. } | Framing::Delimited { .. } => {
                Machine::Raw
            }
        };
        Deframer { framing, max, machine }
    }

    /// The framing this deframer was made for.
    pub fn framing(&self) -> &Framing {
        &self.framing
    }

    /// The largest message this deframer delivers.
    pub fn max_message_bytes(&self) -> usize {
        self.max
    }

    /// The most bytes `buf` holds once [`decode`](Deframer::decode) has returned `None`:
    /// `max_message_bytes` plus the longest delimiter or the prefix width, minus one
    /// (`max_message_bytes - 1` for idle gap, 0 for raw). Size read buffers with it.
    pub fn max_buffered(&self) -> usize {
        match &self.machine {
            Machine::Raw => 0,
            Machine::IdleGap { .. } => self.max - 1,
            Machine::Prefixed { width, .. } => self.max.saturating_add(*width - 1),
            Machine::Delimited { delims, .. } => self.max.saturating_add(delims.longest() - 1),
        }
    }

    /// The idle gap to arm a timer for after each read that leaves bytes buffered (`Some`
    /// only for [`Framing::IdleGap`]).
    pub fn idle_gap(&self) -> Option<Duration> {
        match &self.machine {
            Machine::IdleGap { gap } => Some(*gap),
            _ => None,
        }
    }

    /// Takes the next complete event out of `buf` (consuming bytes from its front), or `None`
    /// if more bytes are needed. Call repeatedly until `None` after every read.
    #[must_use = "a decoded frame or rejection must be stored or reported, never dropped"]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Decoded> {
        let max = self.max;
        match &mut self.machine {
            Machine::Raw => {
                if buf.is_empty() {
                    None
                } else {
                    Some(Decoded::Frame(buf.split_to(buf.len().min(max)).freeze()))
                }
            }
            Machine::IdleGap { .. } => {
                (buf.len() >= max).then(|| Decoded::Frame(buf.split_to(max).freeze()))
            }
            Machine::Prefixed { width, state } => decode_prefixed(*width, state, max, buf),
            Machine::Delimited { delims, scan, state } => {
                decode_delimited(delims, scan, state, max, buf)
            }
        }
    }

    /// The stream went quiet for the idle gap ([`FlushReason::Idle`]) or ended
    /// ([`FlushReason::Eof`]): emit what is pending. Call until it returns `None`; the first
    /// calls return whatever [`decode`](Deframer::decode) still would.
    ///
    /// - `Idle`: for idle-gap framing everything buffered is one message; for other framings
    ///   `Idle` does nothing (returns `None`).
    /// - `Eof`: raw, idle-gap and line-like framings (delimited with an empty `start`) emit
    ///   the remaining bytes as a final message (a last line without newline is still a
    ///   message; if it is longer than `max_message_bytes` it is rejected as oversize). A
    ///   partial frame of a framing with a start marker or length prefix is rejected as
    ///   [`INCOMPLETE_AT_EOF`] (or as oversize if it is already too long); garbage being
    ///   discarded is reported. Afterwards the deframer is back in its initial state.
    #[must_use = "a decoded frame or rejection must be stored or reported, never dropped"]
    pub fn flush(&mut self, buf: &mut BytesMut, reason: FlushReason) -> Option<Decoded> {
        let is_idle_gap = matches!(self.machine, Machine::IdleGap { .. });
        if reason == FlushReason::Idle && !is_idle_gap {
            return None;
        }
        if let Some(event) = self.decode(buf) {
            return Some(event);
        }
        let max = self.max;
        match &mut self.machine {
            Machine::Raw | Machine::IdleGap { .. } => {
                (!buf.is_empty()).then(|| Decoded::Frame(buf.split().freeze()))
            }
            Machine::Prefixed { state, .. } => {
                let event = match mem::replace(state, PrefixState::Header) {
                    PrefixState::Header if buf.is_empty() => None,
                    PrefixState::Header => {
                        let mut d = Discard::new(RejectKind::Malformed(INCOMPLETE_AT_EOF));
                        d.take(buf);
                        Some(Decoded::Rejected(d.finish()))
                    }
                    PrefixState::Skipping { mut discard, .. } => {
                        discard.take(buf);
                        Some(Decoded::Rejected(discard.finish()))
                    }
                };
                buf.clear();
                event
            }
            Machine::Delimited { delims, scan, state } => {
                let event = match mem::replace(state, delims.initial()) {
                    DelimState::Between if buf.is_empty() => None,
                    DelimState::Between => {
                        let mut d = Discard::new(RejectKind::Malformed(OUTSIDE_FRAME));
                        d.take(buf);
                        Some(Decoded::Rejected(d.finish()))
                    }
                    DelimState::InFrame if delims.start.is_empty() && buf.is_empty() => None,
                    DelimState::InFrame if delims.start.is_empty() && buf.len() <= max => {
                        Some(Decoded::Frame(buf.split().freeze()))
                    }
                    DelimState::InFrame => {
                        let kind = if buf.len() > max {
                            RejectKind::Oversize
                        } else {
                            RejectKind::Malformed(INCOMPLETE_AT_EOF)
                        };
                        let mut d = Discard::new(kind);
                        d.take(&delims.start);
                        d.take(buf);
                        Some(Decoded::Rejected(d.finish()))
                    }
                    DelimState::Discarding { mut discard, .. } => {
                        discard.take(buf);
                        Some(Decoded::Rejected(discard.finish()))
                    }
                };
                buf.clear();
                *scan = Scan::default();
                event
            }
        }
    }
}

fn decode_prefixed(
    width: usize,
    state: &mut PrefixState,
    max: usize,
    buf: &mut BytesMut,
) -> Option<Decoded> {
    loop {
        match state {
            PrefixState::Header => {
                let prefix = buf.get(..width)?;
                let announced = prefix.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
                match usize::try_from(announced) {
                    Ok(len) if len <= max => {
                        if buf.len() - width < len {
                            return None;
                        }
                        buf.advance(width);
                        return Some(Decoded::Frame(buf.split_to(len).freeze()));
                    }
                    _ => {
                        let remaining = width as u64 + announced;
                        *state = PrefixState::Skipping {
                            remaining,
                            discard: Discard::new(RejectKind::Oversize),
                        };
                    }
                }
            }
            PrefixState::Skipping { remaining, discard } => {
                let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(buf.len());
                discard.take(&buf[..n]);
                buf.advance(n);
                *remaining -= n as u64;
                if *remaining > 0 {
                    return None;
                }
                let rejection = discard.finish();
                *state = PrefixState::Header;
                return Some(Decoded::Rejected(rejection));
            }
        }
    }
}

impl Delims {
    fn initial(&self) -> DelimState {
        // A frame of a line-like framing begins right after the previous one ended.
        if self.start.is_empty() { DelimState::InFrame } else { DelimState::Between }
    }

    fn longest(&self) -> usize {
        self.start.len().max(self.end.len())
    }

    /// The first delimiter to *complete* in `buf` (that is how a byte stream reveals them):
    /// `end` only if `want_end`, `start` only if it is not empty. On a tie — both complete on
    /// the same byte, as when `start == end` — `end` wins: inside a frame it closes.
    fn first_event(&self, scan: &mut Scan, buf: &[u8], want_end: bool) -> Option<Event> {
        let end_at = if want_end {
            find(&self.end_finder, self.end.len(), buf, &mut scan.end)
        } else {
            None
        };
        if self.start.is_empty() {
            return end_at.map(Event::End);
        }
        // A start wins only if it completes strictly before that end, i.e. lies entirely in
        // `buf[..end_at + end.len() - 1]`.
        let limit = end_at.map_or(buf.len(), |e| e + self.end.len() - 1);
        match find(&self.start_finder, self.start.len(), &buf[..limit], &mut scan.start) {
            Some(s) => Some(Event::Start(s)),
            None => end_at.map(Event::End),
        }
    }
}

/// Finds `finder`'s needle in `hay`, starting at `*scan`, and moves `*scan` to the first place
/// a complete match could still begin.
fn find(finder: &Finder<'_>, needle_len: usize, hay: &[u8], scan: &mut usize) -> Option<usize> {
    let from = (*scan).min(hay.len());
    if let Some(i) = finder.find(&hay[from..]) {
        *scan = from + i;
        Some(from + i)
    } else {
        // A match may still begin in the last `needle_len - 1` bytes once more bytes arrive.
        *scan = (*scan).max((hay.len() + 1).saturating_sub(needle_len));
        None
    }
}

/// Removes `n` bytes from the front of `buf`, keeping the scan offsets relative to it.
fn consume(buf: &mut BytesMut, scan: &mut Scan, n: usize) {
    buf.advance(n);
    scan.start = scan.start.saturating_sub(n);
    scan.end = scan.end.saturating_sub(n);
}

fn decode_delimited(
    d: &Delims,
    scan: &mut Scan,
    state: &mut DelimState,
    max: usize,
    buf: &mut BytesMut,
) -> Option<Decoded> {
    loop {
        match state {
            DelimState::Between => {
                match find(&d.start_finder, d.start.len(), buf, &mut scan.start) {
                    Some(0) => {
                        consume(buf, scan, d.start.len());
                        *state = DelimState::InFrame;
                    }
                    Some(s) => {
                        // Garbage that ends in this buffer: one rejection for the whole run.
                        let mut g = Discard::new(RejectKind::Malformed(OUTSIDE_FRAME));
                        g.take(&buf[..s]);
                        consume(buf, scan, s);
                        return Some(Decoded::Rejected(g.finish()));
                    }
                    None => {
                        // Keep what could be the beginning of a `start`; the rest is garbage
                        // whose run goes on until a `start` shows up.
                        let keep = d.start.len().saturating_sub(1);
                        if buf.len() > keep {
                            let n = buf.len() - keep;
                            let mut g = Discard::new(RejectKind::Malformed(OUTSIDE_FRAME));
                            g.take(&buf[..n]);
                            consume(buf, scan, n);
                            *state = DelimState::Discarding { discard: g, until_end: false };
                        }
                        return None;
                    }
                }
            }
            DelimState::InFrame => match d.first_event(scan, buf, true) {
                Some(Event::End(e)) => {
                    let total = e + d.end.len();
                    *state = d.initial();
                    if e <= max {
                        let frame = buf.split_to(e).freeze();
                        scan.start = scan.start.saturating_sub(e);
                        scan.end = scan.end.saturating_sub(e);
                        consume(buf, scan, d.end.len());
                        return Some(Decoded::Frame(frame));
                    }
                    let mut r = Discard::new(RejectKind::Oversize);
                    r.take(&d.start);
                    r.take(&buf[..total]);
                    consume(buf, scan, total);
                    return Some(Decoded::Rejected(r.finish()));
                }
                Some(Event::Start(s)) => {
                    let kind = if s > max {
                        RejectKind::Oversize
                    } else {
                        RejectKind::Malformed(STARTED_AGAIN)
                    };
                    let mut r = Discard::new(kind);
                    r.take(&d.start);
                    r.take(&buf[..s]);
                    consume(buf, scan, s);
                    *state = DelimState::Between;
                    return Some(Decoded::Rejected(r.finish()));
                }
                None => {
                    // No delimiter completes in `buf`, so any later one begins after
                    // `buf.len() - its length`: once that is past `max`, the frame is
                    // oversize whatever comes. Stop buffering it; count it instead.
                    if buf.len() < max.saturating_add(d.longest()) {
                        return None;
                    }
                    let n = buf.len() - (d.longest() - 1);
                    let mut r = Discard::new(RejectKind::Oversize);
                    r.take(&d.start);
                    r.take(&buf[..n]);
                    consume(buf, scan, n);
                    *state = DelimState::Discarding { discard: r, until_end: true };
                    return None;
                }
            },
            DelimState::Discarding { discard, until_end } => {
                if let Some(event) = d.first_event(scan, buf, *until_end) {
                    let (n, next) = match event {
                        Event::End(e) => (e + d.end.len(), d.initial()),
                        Event::Start(s) => (s, DelimState::Between),
                    };
                    discard.take(&buf[..n]);
                    consume(buf, scan, n);
                    let rejection = discard.finish();
                    *state = next;
                    return Some(Decoded::Rejected(rejection));
                }
                let keep = if *until_end { d.longest() } else { d.start.len() }.saturating_sub(1);
                if buf.len() > keep {
                    let n = buf.len() - keep;
                    discard.take(&buf[..n]);
                    consume(buf, scan, n);
                }
                return None;
            }
        }
    }
}
