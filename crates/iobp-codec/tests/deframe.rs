//! The deframer's behaviour rules, one per test: messages, empty frames, rejections and
//! resynchronisation, end of stream, idle gaps, and the buffer bound.

mod support;

use std::time::Duration;

use iobp_codec::bytes::BytesMut;
use iobp_codec::{
    Decoded, Deframer, FlushReason, Framing, INCOMPLETE_AT_EOF, OUTSIDE_FRAME, RejectKind,
    STARTED_AGAIN,
};
use support::{chunks, drain, eof, frame, frames_only, rejected, rejected_len, run};

const OVERSIZE: RejectKind = RejectKind::Oversize;
const OUTSIDE: RejectKind = RejectKind::Malformed(OUTSIDE_FRAME);
const AGAIN: RejectKind = RejectKind::Malformed(STARTED_AGAIN);
const INCOMPLETE: RejectKind = RejectKind::Malformed(INCOMPLETE_AT_EOF);

fn flag() -> Framing {
    Framing::Delimited { start: vec![0x7E], end: vec![0x7E] }
}

#[test]
fn line_framing_yields_each_line_and_empty_lines() {
    let events = run(&Framing::line(b"\n"), 100, &[b"a\n\nbc\n"]);
    assert_eq!(events, [frame(b"a"), frame(b""), frame(b"bc")]);
}

#[test]
fn last_line_without_newline_is_a_message_at_eof() {
    let mut d = Deframer::new(Framing::line(b"\n"), 100);
    let mut buf = BytesMut::from(&b"a\nlast"[..]);
    assert_eq!(d.decode(&mut buf), Some(frame(b"a")));
    assert_eq!(d.decode(&mut buf), None, "an unterminated line waits");
    assert_eq!(d.flush(&mut buf, FlushReason::Eof), Some(frame(b"last")));
    assert_eq!(d.flush(&mut buf, FlushReason::Eof), None);
}

#[test]
fn multi_byte_end_may_be_split_across_reads() {
    let crlf = Framing::line(b"\r\n");
    let events = run(&crlf, 100, &[b"ab\r", b"\ncd\r", b"\n", b"e\rf\r\n"]);
    assert_eq!(events, [frame(b"ab"), frame(b"cd"), frame(b"e\rf")]);
    let events = run(&Framing::mllp(), 100, &[b"\x0bab\x1c", b"\r\x0b\x1c", b"x\x1c\r"]);
    assert_eq!(events, [frame(b"ab"), frame(b"\x1cx")]);
}

#[test]
fn empty_frames_are_delivered() {
    assert_eq!(run(&Framing::mllp(), 100, &[b"\x0b\x1c\r"]), [frame(b"")]);
    assert_eq!(run(&Framing::stx_etx(), 100, &[b"\x02\x03\x02a\x03"]), [frame(b""), frame(b"a")]);
    assert_eq!(run(&Framing::line(b"\r\n"), 100, &[b"\r\n\r\n"]), [frame(b""), frame(b"")]);
}

#[test]
fn garbage_between_frames_is_one_rejection_however_it_arrives() {
    let wire = b"\x0bone\x1c\rxyz\r\n\x0btwo\x1c\r";
    let expected = [frame(b"one"), rejected(OUTSIDE, b"xyz\r\n"), frame(b"two")];
    assert_eq!(run(&Framing::mllp(), 100, &[wire]), expected);
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(run(&Framing::mllp(), 100, &bytes), expected);
}

#[test]
fn a_long_run_of_garbage_is_discarded_as_it_comes_and_reported_once() {
    let mut d = Deframer::new(Framing::mllp(), 100);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for _ in 0..100 {
        buf.extend_from_slice(&[b'g'; 100]);
        drain(&mut d, &mut buf, &mut events);
        assert!(buf.is_empty(), "garbage is not buffered");
    }
    buf.extend_from_slice(b"\x0bok\x1c\r");
    drain(&mut d, &mut buf, &mut events);
    assert_eq!(events, [rejected_len(OUTSIDE, 10_000, &[b'g'; 64]), frame(b"ok")]);
}

#[test]
fn a_start_before_the_end_rejects_the_partial_frame_and_begins_a_new_one() {
    let events = run(&Framing::mllp(), 100, &[b"\x0babc\x0bdef\x1c\r"]);
    assert_eq!(events, [rejected(AGAIN, b"\x0babc"), frame(b"def")]);
}

#[test]
fn when_start_equals_end_occurrences_alternately_open_and_close() {
    let events = run(&flag(), 100, &[b"\x7ea\x7e\x7eb\x7e\x7e\x7e"]);
    assert_eq!(events, [frame(b"a"), frame(b"b"), frame(b"")]);
    // A shared flag between frames is not a second opening: "b" lies outside a frame.
    let events = run(&flag(), 100, &[b"\x7ea\x7eb\x7e"]);
    assert_eq!(events, [frame(b"a"), rejected(OUTSIDE, b"b"), rejected(INCOMPLETE, b"\x7e")]);
}

#[test]
fn oversize_delimited_frame_resyncs_after_its_end() {
    let mut wire = vec![0x0B];
    wire.extend_from_slice(&[b'x'; 20]);
    wire.extend_from_slice(b"\x1c\r\x0bok\x1c\r");
    let expected = [rejected(OVERSIZE, &wire[..23]), frame(b"ok")];
    // Whether the oversize frame arrives in one read or in pieces.
    assert_eq!(run(&Framing::mllp(), 10, &[&wire]), expected);
    let pieces: Vec<&[u8]> = wire.chunks(3).collect();
    assert_eq!(run(&Framing::mllp(), 10, &pieces), expected);
}

#[test]
fn oversize_delimited_frame_resyncs_at_the_next_start() {
    let mut wire = vec![0x0B];
    wire.extend_from_slice(&[b'x'; 20]);
    wire.extend_from_slice(b"\x0bok\x1c\r");
    let expected = [rejected(OVERSIZE, &wire[..21]), frame(b"ok")];
    assert_eq!(run(&Framing::mllp(), 10, &[&wire]), expected);
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(run(&Framing::mllp(), 10, &bytes), expected);
}

#[test]
fn oversize_line_resyncs_after_the_newline() {
    let events = run(&Framing::line(b"\n"), 4, &[b"abcd\ntoolong\nok\n"]);
    assert_eq!(events, [frame(b"abcd"), rejected(OVERSIZE, b"toolong\n"), frame(b"ok")]);
}

#[test]
fn length_prefixed_frames_including_empty_ones() {
    let f = Framing::LengthPrefixed { width: 2 };
    let events = run(&f, 100, &[b"\x00\x00\x00\x03abc\x00", b"\x01z"]);
    assert_eq!(events, [frame(b""), frame(b"abc"), frame(b"z")]);
}

#[test]
fn length_prefixed_oversize_is_skipped_by_counting_not_buffering() {
    let f = Framing::LengthPrefixed { width: 4 };
    let mut d = Deframer::new(f, 16);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    buf.extend_from_slice(&1_000_000u32.to_be_bytes());
    for i in 0..250u8 {
        buf.extend_from_slice(&[i; 4000]);
        drain(&mut d, &mut buf, &mut events);
        assert!(buf.is_empty(), "skipped bytes are not kept");
    }
    buf.extend_from_slice(b"\x00\x00\x00\x02ok");
    drain(&mut d, &mut buf, &mut events);
    let mut first = 1_000_000u32.to_be_bytes().to_vec();
    first.extend_from_slice(&[0; 60]);
    assert_eq!(events, [rejected_len(OVERSIZE, 1_000_004, &first), frame(b"ok")]);
}

#[test]
fn a_prefix_announcing_4_gib_allocates_nothing_and_is_reported_at_eof() {
    let events = run(&Framing::LengthPrefixed { width: 4 }, 1024, &[b"\xff\xff\xff\xffabc"]);
    assert_eq!(events, [rejected(OVERSIZE, b"\xff\xff\xff\xffabc")]);
}

#[test]
fn a_partial_frame_at_eof_is_incomplete() {
    let cases: [(Framing, &[u8]); 5] = [
        (Framing::mllp(), b"\x0babc"),
        (Framing::mllp(), b"\x0babc\x1c"),
        (Framing::stx_etx(), b"\x02"),
        (Framing::LengthPrefixed { width: 2 }, b"\x00\x05ab"),
        (Framing::LengthPrefixed { width: 4 }, b"\x00"),
    ];
    for (f, wire) in cases {
        assert_eq!(run(&f, 100, &[wire]), [rejected(INCOMPLETE, wire)], "{f:?}");
    }
}

#[test]
fn a_partial_frame_already_too_long_at_eof_is_oversize() {
    let mut wire = vec![0x0B];
    wire.extend_from_slice(&[b'x'; 100]);
    assert_eq!(run(&Framing::mllp(), 4, &[&wire]), [rejected(OVERSIZE, &wire)]);
    // Just over the limit, before the deframer could be sure (a delimiter might still come).
    assert_eq!(run(&Framing::mllp(), 4, &[b"\x0babcde"]), [rejected(OVERSIZE, b"\x0babcde")]);
    assert_eq!(run(&Framing::line(b"\n"), 4, &[b"abcdefgh"]), [rejected(OVERSIZE, b"abcdefgh")]);
    assert_eq!(run(&Framing::line(b"\r\n"), 4, &[b"abcd\r"]), [rejected(OVERSIZE, b"abcd\r")]);
    assert_eq!(run(&Framing::line(b"\n"), 4, &[b"abcd"]), [frame(b"abcd")]);
}

#[test]
fn garbage_pending_at_eof_is_reported() {
    assert_eq!(run(&Framing::mllp(), 100, &[b"junk"]), [rejected(OUTSIDE, b"junk")]);
    let events = run(&Framing::mllp(), 100, &[b"\x0ba\x1c\rjunk"]);
    assert_eq!(events, [frame(b"a"), rejected(OUTSIDE, b"junk")]);
}

#[test]
fn raw_cuts_at_max_and_never_drops_a_byte() {
    let events = run(&Framing::Raw, 4, &[b"abcdefghij", b"k", b""]);
    assert_eq!(events, [frame(b"abcd"), frame(b"efgh"), frame(b"ij"), frame(b"k")]);
}

#[test]
fn idle_gap_ends_a_message_on_idle_and_cuts_at_max() {
    let gap = Duration::from_millis(20);
    let mut d = Deframer::new(Framing::IdleGap { gap }, 8);
    assert_eq!(d.idle_gap(), Some(gap));
    let mut buf = BytesMut::from(&b"abc"[..]);
    assert_eq!(d.decode(&mut buf), None);
    buf.extend_from_slice(b"de");
    assert_eq!(d.decode(&mut buf), None);
    assert_eq!(d.flush(&mut buf, FlushReason::Idle), Some(frame(b"abcde")));
    assert_eq!(d.flush(&mut buf, FlushReason::Idle), None);
    buf.extend_from_slice(&[b'z'; 20]);
    let mut events = Vec::new();
    drain(&mut d, &mut buf, &mut events);
    assert_eq!(events, [frame(&[b'z'; 8]), frame(&[b'z'; 8])]);
    assert_eq!(d.flush(&mut buf, FlushReason::Idle), Some(frame(&[b'z'; 4])));
    buf.extend_from_slice(b"tail");
    assert_eq!(d.flush(&mut buf, FlushReason::Eof), Some(frame(b"tail")));
}

#[test]
fn idle_does_nothing_for_other_framings() {
    for f in
        [Framing::Raw, Framing::line(b"\n"), Framing::mllp(), Framing::LengthPrefixed { width: 1 }]
    {
        let mut d = Deframer::new(f.clone(), 100);
        assert_eq!(d.idle_gap(), None);
        let mut buf = BytesMut::from(&b"\x05abc"[..]);
        assert_eq!(d.flush(&mut buf, FlushReason::Idle), None, "{f:?}");
        assert_eq!(&buf[..], b"\x05abc", "{f:?}: bytes untouched");
    }
}

#[test]
fn flush_first_returns_what_decode_still_would() {
    let mut d = Deframer::new(Framing::line(b"\n"), 100);
    let mut buf = BytesMut::from(&b"a\nb\nc"[..]);
    let mut events = Vec::new();
    eof(&mut d, &mut buf, &mut events);
    assert_eq!(events, [frame(b"a"), frame(b"b"), frame(b"c")]);
}

#[test]
fn the_deframer_is_reusable_after_eof() {
    let mut d = Deframer::new(Framing::mllp(), 100);
    let mut buf = BytesMut::from(&b"\x0bhalf"[..]);
    let mut events = Vec::new();
    eof(&mut d, &mut buf, &mut events);
    buf.extend_from_slice(b"\x0bwhole\x1c\r");
    drain(&mut d, &mut buf, &mut events);
    assert_eq!(events, [rejected(INCOMPLETE, b"\x0bhalf"), frame(b"whole")]);
}

#[test]
fn buffer_stays_bounded_under_a_flood_without_delimiters() {
    let max = 1024;
    for f in [
        Framing::Raw,
        Framing::line(b"\n"),
        Framing::line(b"\r\n"),
        Framing::mllp(),
        Framing::stx_etx(),
        flag(),
        Framing::Delimited { start: b"<<<".to_vec(), end: b">>>>".to_vec() },
        Framing::LengthPrefixed { width: 1 },
        Framing::LengthPrefixed { width: 2 },
        Framing::LengthPrefixed { width: 4 },
        Framing::IdleGap { gap: Duration::from_millis(5) },
    ] {
        let mut d = Deframer::new(f.clone(), max);
        assert!(d.max_buffered() < max + 4, "{f:?}");
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        // Starts a frame where the framing has a start marker, then floods it.
        buf.extend_from_slice(b"\x0b\x02\x7e<<<");
        for _ in 0..256 {
            buf.extend_from_slice(&[b'x'; 4096]);
            drain(&mut d, &mut buf, &mut events); // asserts buf.len() <= max_buffered()
        }
        eof(&mut d, &mut buf, &mut events);
    }
}

#[test]
fn feeding_one_byte_at_a_time_is_linear() {
    // 300 KB inside one frame: rescanning the buffer on every byte would be ~4.5e10 byte
    // comparisons and this test would not finish; remembering the scan offset makes it quick.
    let mut wire = vec![0x0B];
    wire.extend(std::iter::repeat_n(b'x', 300_000));
    wire.extend_from_slice(b"\x1c\r");
    let mut d = Deframer::new(Framing::mllp(), iobp_codec::DEFAULT_MAX_MESSAGE_BYTES);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for b in &wire {
        buf.extend_from_slice(std::slice::from_ref(b));
        while let Some(e) = d.decode(&mut buf) {
            events.push(e);
        }
    }
    assert_eq!(frames_only(&events), [vec![b'x'; 300_000]]);
}

#[test]
fn an_invalid_framing_decodes_as_raw() {
    for f in [Framing::line(b""), Framing::LengthPrefixed { width: 3 }] {
        assert_eq!(run(&f, 4, &[b"abcdef"]), [frame(b"abcd"), frame(b"ef")], "{f:?}");
    }
}

#[test]
fn a_zero_maximum_is_taken_as_one() {
    let d = Deframer::new(Framing::Raw, 0);
    assert_eq!(d.max_message_bytes(), 1);
    assert_eq!(run(&Framing::Raw, 0, &[b"ab"]), [frame(b"a"), frame(b"b")]);
}

#[test]
fn rejections_carry_a_readable_preview() {
    let events = run(&Framing::mllp(), 100, &[b"\x0bMSH|partial"]);
    let [Decoded::Rejected(r)] = &events[..] else { panic!("one rejection: {events:?}") };
    assert_eq!(r.hex_preview(), "0b 4d 53 48 7c 70 61 72 74 69 61 6c  |.MSH|partial|");
    let long = [b'a'; 100];
    let events = run(&Framing::line(b"\n"), 10, &[&long, b"\n"]);
    let [Decoded::Rejected(r)] = &events[..] else { panic!("one rejection: {events:?}") };
    assert_eq!(r.len, 101);
    assert!(r.hex_preview().starts_with("61 61 "));
    assert!(r.hex_preview().ends_with(&format!(" …  |{}|", "a".repeat(64))));
}

#[test]
fn chunking_does_not_change_the_events_on_a_mixed_stream() {
    let wire: &[u8] = b"junk\x0bone\x1c\r\x0b\x1c\r\x0btwo\x0bthree\x1c\rmore junk\x0b0123456789abcdef\x1c\r\x0bend";
    let whole = run(&Framing::mllp(), 12, &[wire]);
    assert_eq!(whole.len(), 8, "{whole:?}");
    for step in 1..wire.len() {
        let cuts: Vec<usize> = (step..wire.len()).step_by(step).collect();
        assert_eq!(run(&Framing::mllp(), 12, &chunks(wire, &cuts)), whole, "reads of {step}");
    }
}
