//! Arbitrary bytes in arbitrary reads through every framing with a small maximum: never panics,
//! every frame is within the maximum, the buffer stays within its bound, every byte of the
//! stream is accounted for, and (except for raw, whose messages are the reads) where the reads
//! are cut changes nothing.
#![no_main]

use std::time::Duration;

use iobp_codec::bytes::BytesMut;
use iobp_codec::{Decoded, Deframer, FlushReason, Framing, PREVIEW_BYTES};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 64;

/// Events of one run, and how many of them came from `flush(Eof)`.
struct Run {
    events: Vec<Decoded>,
    at_eof: usize,
}

/// Feeds `stream` in reads whose sizes come from `seed`; for idle-gap framing the idle timer
/// fires after some reads.
fn run(framing: &Framing, stream: &[u8], mut seed: u32) -> Run {
    let mut d = Deframer::new(framing.clone(), MAX);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift: cheap, deterministic read sizes from 1 to 2 * MAX + 8.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed as usize % (2 * MAX + 8) + 1).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        drain(&mut d, &mut buf, &mut events, stream.len());
        if seed & 0x100 != 0 {
            while let Some(e) = d.flush(&mut buf, FlushReason::Idle) {
                push(&d, &mut events, e, stream.len());
            }
        }
    }
    let before = events.len();
    while let Some(e) = d.flush(&mut buf, FlushReason::Eof) {
        push(&d, &mut events, e, stream.len());
    }
    assert!(buf.is_empty(), "eof leaves nothing behind");
    let at_eof = events.len() - before;
    Run { events, at_eof }
}

fn drain(d: &mut Deframer, buf: &mut BytesMut, events: &mut Vec<Decoded>, total: usize) {
    while let Some(e) = d.decode(buf) {
        push(d, events, e, total);
    }
    assert!(buf.len() <= d.max_buffered(), "buffer {} over bound {}", buf.len(), d.max_buffered());
    assert!(d.max_buffered() < MAX + 4);
}

fn push(d: &Deframer, events: &mut Vec<Decoded>, e: Decoded, total: usize) {
    match &e {
        Decoded::Frame(f) => assert!(f.len() <= d.max_message_bytes()),
        Decoded::Rejected(r) => {
            assert!(r.preview.len() <= PREVIEW_BYTES);
            assert!(r.preview.len() as u64 <= r.len && r.len > 0);
        }
    }
    events.push(e);
    // Every event accounts for at least one byte: more events than bytes means a loop.
    assert!(events.len() <= total, "more events than bytes");
}

/// Bytes of the stream the events account for: frames with their framing bytes (a last line
/// delivered at end of stream has no end), rejections with their `len`.
fn accounted(framing: &Framing, run: &Run) -> u64 {
    let overhead = match framing {
        Framing::Delimited { start, end } => (start.len() + end.len()) as u64,
        Framing::LengthPrefixed { width } => u64::from(*width),
        _ => 0,
    };
    let mut total: u64 = run
        .events
        .iter()
        .map(|e| match e {
            Decoded::Frame(f) => f.len() as u64 + overhead,
            Decoded::Rejected(r) => r.len,
        })
        .sum();
    if let (Framing::Delimited { end, .. }, Some(Decoded::Frame(_))) = (framing, run.events.last())
    {
        if run.at_eof > 0 {
            total -= end.len() as u64;
        }
    }
    total
}

fuzz_target!(|data: &[u8]| {
    // Layout: [seed u8][custom delimiter lengths u8][custom start][custom end][stream].
    let [seed, lens, rest @ ..] = data else { return };
    let (start_len, end_len) = (usize::from(lens & 3), usize::from((lens >> 2) & 3) + 1);
    if rest.len() < start_len + end_len {
        return;
    }
    let (start, rest) = rest.split_at(start_len);
    let (end, stream) = rest.split_at(end_len);
    let framings = [
        Framing::Raw,
        Framing::IdleGap { gap: Duration::from_millis(10) },
        Framing::line(b"\n"),
        Framing::line(b"\r\n"),
        Framing::mllp(),
        Framing::stx_etx(),
        Framing::Delimited { start: vec![0x7E], end: vec![0x7E] },
        Framing::Delimited { start: start.to_vec(), end: end.to_vec() },
        Framing::LengthPrefixed { width: 1 },
        Framing::LengthPrefixed { width: 2 },
        Framing::LengthPrefixed { width: 4 },
    ];
    for framing in &framings {
        let chunked = run(framing, stream, u32::from(*seed) * 0x9E37 + 1);
        assert_eq!(accounted(framing, &chunked), stream.len() as u64, "{framing:?}");
        match framing {
            Framing::Raw | Framing::IdleGap { .. } => {
                let bytes: Vec<u8> = chunked
                    .events
                    .iter()
                    .flat_map(|e| match e {
                        Decoded::Frame(f) => f.to_vec(),
                        Decoded::Rejected(_) => panic!("{framing:?} never rejects"),
                    })
                    .collect();
                assert_eq!(bytes, stream, "{framing:?} delivers every byte in order");
            }
            _ => {
                let other = run(framing, stream, u32::from(*seed) * 0x85EB + 7);
                assert_eq!(chunked.events, other.events, "{framing:?}: reads changed the events");
            }
        }
    }
});
