//! Shared by the integration tests: drive a deframer the way the engine does.

#![allow(dead_code)] // Each test binary uses a different part.

use iobp_codec::bytes::BytesMut;
use iobp_codec::{Decoded, Deframer, FlushReason, Framing, RejectKind, Rejection};

/// Feeds `reads` one after the other, draining `decode` after each and checking the buffer
/// bound, then flushes at end of stream. Returns every event in order.
pub fn run(framing: &Framing, max: usize, reads: &[&[u8]]) -> Vec<Decoded> {
    run_counting_eof(framing, max, reads).0
}

/// As [`run`], also returning how many of the events (at the end) came from `flush(Eof)`.
pub fn run_counting_eof(framing: &Framing, max: usize, reads: &[&[u8]]) -> (Vec<Decoded>, usize) {
    let mut d = Deframer::new(framing.clone(), max);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        drain(&mut d, &mut buf, &mut events);
    }
    let before = events.len();
    eof(&mut d, &mut buf, &mut events);
    let at_eof = events.len() - before;
    (events, at_eof)
}

/// Calls `decode` until `None` and checks the documented bounds.
pub fn drain(d: &mut Deframer, buf: &mut BytesMut, events: &mut Vec<Decoded>) {
    while let Some(e) = d.decode(buf) {
        check(d, &e);
        events.push(e);
    }
    assert!(
        buf.len() <= d.max_buffered(),
        "buffer holds {} bytes, bound is {}",
        buf.len(),
        d.max_buffered()
    );
}

/// Calls `flush(Eof)` until `None`; the buffer is empty afterwards.
pub fn eof(d: &mut Deframer, buf: &mut BytesMut, events: &mut Vec<Decoded>) {
    while let Some(e) = d.flush(buf, FlushReason::Eof) {
        check(d, &e);
        events.push(e);
    }
    assert!(buf.is_empty(), "eof leaves nothing behind");
}

fn check(d: &Deframer, e: &Decoded) {
    match e {
        Decoded::Frame(f) => assert!(f.len() <= d.max_message_bytes(), "frame over max"),
        Decoded::Rejected(r) => {
            assert!(r.preview.len() <= iobp_codec::PREVIEW_BYTES);
            assert!(r.preview.len() as u64 <= r.len);
        }
    }
}

/// Splits `data` into reads at the given cut points (sorted and clamped here).
pub fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        out.push(&data[at..c]);
        at = c;
    }
    out.push(&data[at..]);
    out
}

pub fn frame(bytes: &[u8]) -> Decoded {
    Decoded::Frame(bytes.to_vec().into())
}

pub fn rejected(kind: RejectKind, bytes: &[u8]) -> Decoded {
    rejected_len(kind, bytes.len() as u64, bytes)
}

/// A rejection of `len` bytes whose first bytes are `first` (cut to the preview size here).
pub fn rejected_len(kind: RejectKind, len: u64, first: &[u8]) -> Decoded {
    let preview = first[..first.len().min(iobp_codec::PREVIEW_BYTES)].to_vec();
    Decoded::Rejected(Rejection { kind, len, preview })
}

pub fn frames_only(events: &[Decoded]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            Decoded::Frame(f) => Some(f.to_vec()),
            Decoded::Rejected(_) => None,
        })
        .collect()
}
