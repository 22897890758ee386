//! Property tests: the deframer against byte-at-a-time reference models written straight from
//! the documented rules (so any chunking must give the reference's events), encoder/deframer
//! round trips, and arbitrary input staying bounded and accounted for.

mod support;

use std::time::Duration;

use iobp_codec::bytes::BytesMut;
use iobp_codec::{
    Decoded, Deframer, EncodeError, Encoder, FlushReason, Framing, INCOMPLETE_AT_EOF,
    OUTSIDE_FRAME, RejectKind, STARTED_AGAIN,
};
use proptest::prelude::*;
use support::{
    chunks, drain, eof, frame, frames_only, rejected, rejected_len, run, run_counting_eof,
};

/// The delimited rules, one byte at a time, with unbounded memory: a delimiter counts when
/// its last byte arrives; inside a frame `end` is checked before `start`.
fn reference_delimited(start: &[u8], end: &[u8], max: usize, input: &[u8]) -> Vec<Decoded> {
    enum St {
        Outside(Vec<u8>),
        In(Vec<u8>),
    }
    let initial = || if start.is_empty() { St::In(Vec::new()) } else { St::Outside(Vec::new()) };
    let with_start = |p: &[u8]| [start, p].concat();
    let mut st = initial();
    let mut out = Vec::new();
    for &b in input {
        match &mut st {
            St::Outside(g) => {
                g.push(b);
                if g.ends_with(start) {
                    let n = g.len() - start.len();
                    if n > 0 {
                        out.push(rejected(RejectKind::Malformed(OUTSIDE_FRAME), &g[..n]));
                    }
                    st = St::In(Vec::new());
                }
            }
            St::In(p) => {
                p.push(b);
                if p.ends_with(end) {
                    let n = p.len() - end.len();
                    out.push(if n <= max {
                        frame(&p[..n])
                    } else {
                        rejected(RejectKind::Oversize, &with_start(p))
                    });
                    st = initial();
                } else if !start.is_empty() && p.ends_with(start) {
                    let n = p.len() - start.len();
                    let kind = if n > max {
                        RejectKind::Oversize
                    } else {
                        RejectKind::Malformed(STARTED_AGAIN)
                    };
                    out.push(rejected(kind, &with_start(&p[..n])));
                    st = St::In(Vec::new());
                }
            }
        }
    }
    match st {
        St::Outside(g) if g.is_empty() => {}
        St::Outside(g) => out.push(rejected(RejectKind::Malformed(OUTSIDE_FRAME), &g)),
        St::In(p) if start.is_empty() => {
            if p.len() > max {
                out.push(rejected(RejectKind::Oversize, &p));
            } else if !p.is_empty() {
                out.push(frame(&p));
            }
        }
        St::In(p) => {
            let kind = if p.len() > max {
                RejectKind::Oversize
            } else {
                RejectKind::Malformed(INCOMPLETE_AT_EOF)
            };
            out.push(rejected(kind, &with_start(&p)));
        }
    }
    out
}

/// The length-prefixed rules over the whole input.
fn reference_prefixed(width: usize, max: usize, input: &[u8]) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        if rest.len() < width {
            out.push(rejected(RejectKind::Malformed(INCOMPLETE_AT_EOF), rest));
            break;
        }
        let n = rest[..width].iter().fold(0usize, |n, &b| (n << 8) | usize::from(b));
        if n > max {
            let take = (width + n).min(rest.len());
            out.push(rejected_len(RejectKind::Oversize, take as u64, &rest[..take]));
            rest = &rest[take..];
        } else if rest.len() < width + n {
            out.push(rejected(RejectKind::Malformed(INCOMPLETE_AT_EOF), rest));
            break;
        } else {
            out.push(frame(&rest[width..width + n]));
            rest = &rest[width + n..];
        }
    }
    out
}

/// Bytes of the stream the events of a run account for (their sum must be the stream's
/// length): a frame with its framing bytes — except a last line delivered at end of stream,
/// which has no `end` — and a rejection with its `len`.
fn accounted(framing: &Framing, (events, at_eof): &(Vec<Decoded>, usize)) -> u64 {
    let overhead = match framing {
        Framing::Delimited { start, end } => (start.len() + end.len()) as u64,
        Framing::LengthPrefixed { width } => u64::from(*width),
        _ => 0,
    };
    let mut total: u64 = events
        .iter()
        .map(|e| match e {
            Decoded::Frame(f) => f.len() as u64 + overhead,
            Decoded::Rejected(r) => r.len,
        })
        .sum();
    if let (Framing::Delimited { end, .. }, Some(Decoded::Frame(_))) = (framing, events.last())
        && *at_eof > 0
    {
        total -= end.len() as u64;
    }
    total
}

fn named_delimited() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop_oneof![
        Just((vec![0x0B], vec![0x1C, 0x0D])),
        Just((vec![0x02], vec![0x03])),
        Just((vec![], b"\n".to_vec())),
        Just((vec![], b"\r\n".to_vec())),
        Just((vec![0x7E], vec![0x7E])),
    ]
}

/// Any delimiters over a 3-letter alphabet: overlaps, ties, `start == end`, `start` inside
/// `end` and every other corner case turn up.
fn any_delimited() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let letters = || prop::sample::select(b"abc".to_vec());
    (prop::collection::vec(letters(), 0..=2), prop::collection::vec(letters(), 1..=3))
}

/// Input bytes drawn mostly from the delimiters' bytes, so frames actually form.
fn input_for(start: &[u8], end: &[u8], len: usize) -> impl Strategy<Value = Vec<u8>> + use<> {
    let mut alphabet: Vec<u8> = [start, end, b"xy"].concat();
    alphabet.sort_unstable();
    alphabet.dedup();
    prop::collection::vec(prop::sample::select(alphabet), 0..len)
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..200, 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, .. ProptestConfig::default() })]

    #[test]
    fn delimited_matches_the_reference_for_any_chunking(
        (start, end, input) in prop_oneof![named_delimited(), any_delimited()]
            .prop_flat_map(|(s, e)| (Just(s.clone()), Just(e.clone()), input_for(&s, &e, 160))),
        max in 1usize..12,
        cuts in cuts(),
    ) {
        let framing = Framing::Delimited { start: start.clone(), end: end.clone() };
        let expected = reference_delimited(&start, &end, max, &input);
        let counted = run_counting_eof(&framing, max, &chunks(&input, &cuts));
        prop_assert_eq!(&counted.0, &expected);
        prop_assert_eq!(accounted(&framing, &counted), input.len() as u64);
    }

    #[test]
    fn length_prefixed_matches_the_reference_for_any_chunking(
        width in prop::sample::select(vec![1usize, 2, 4]),
        // Small lengths are likely: prefix bytes are mostly zero.
        input in prop::collection::vec(prop_oneof![3 => Just(0u8), 2 => 0u8..8, 1 => any::<u8>()], 0..160),
        max in 1usize..12,
        cuts in cuts(),
    ) {
        let framing = Framing::LengthPrefixed { width: u8::try_from(width).expect("small") };
        let expected = reference_prefixed(width, max, &input);
        let counted = run_counting_eof(&framing, max, &chunks(&input, &cuts));
        prop_assert_eq!(&counted.0, &expected);
        prop_assert_eq!(accounted(&framing, &counted), input.len() as u64);
    }

    #[test]
    fn idle_gap_cuts_at_idle_points_and_max_whatever_the_reads(
        bursts in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..40), cuts()), 0..6),
        max in 1usize..12,
    ) {
        let mut d = Deframer::new(Framing::IdleGap { gap: Duration::from_millis(10) }, max);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut expected = Vec::new();
        for (burst, cuts) in &bursts {
            for read in chunks(burst, cuts) {
                buf.extend_from_slice(read);
                drain(&mut d, &mut buf, &mut got);
            }
            while let Some(e) = d.flush(&mut buf, FlushReason::Idle) {
                got.push(e);
            }
            expected.extend(burst.chunks(max).map(frame));
        }
        eof(&mut d, &mut buf, &mut got);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn raw_delivers_every_byte_in_order_in_pieces_of_at_most_max(
        input in prop::collection::vec(any::<u8>(), 0..300),
        max in 1usize..40,
        cuts in cuts(),
    ) {
        let got = run(&Framing::Raw, max, &chunks(&input, &cuts));
        prop_assert!(got.iter().all(|e| matches!(e, Decoded::Frame(f) if !f.is_empty())));
        prop_assert_eq!(frames_only(&got).concat(), input);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        framing in prop_oneof![
            Just(Framing::Raw),
            Just(Framing::IdleGap { gap: Duration::from_millis(1) }),
            prop::sample::select(vec![1u8, 2, 4]).prop_map(|width| Framing::LengthPrefixed { width }),
            prop_oneof![named_delimited(), any_delimited()]
                .prop_map(|(start, end)| Framing::Delimited { start, end }),
        ],
        input in prop::collection::vec(any::<u8>(), 0..400),
        max in 1usize..64,
        cuts in cuts(),
    ) {
        // `run` checks the buffer bound after every read, frame sizes and previews.
        let counted = run_counting_eof(&framing, max, &chunks(&input, &cuts));
        prop_assert_eq!(accounted(&framing, &counted), input.len() as u64);
        if !matches!(framing, Framing::Raw | Framing::IdleGap { .. }) {
            let whole = run(&framing, max, &[&input]);
            prop_assert_eq!(&counted.0, &whole, "chunking changed the events");
        }
    }

    #[test]
    fn what_the_encoder_accepts_decodes_back_to_itself(
        framing in prop_oneof![
            Just(Framing::Raw),
            Just(Framing::IdleGap { gap: Duration::from_millis(1) }),
            prop::sample::select(vec![1u8, 2, 4]).prop_map(|width| Framing::LengthPrefixed { width }),
            prop_oneof![named_delimited(), any_delimited()]
                .prop_map(|(start, end)| Framing::Delimited { start, end })
                .prop_filter("encodable", |f| f.validate().is_ok()),
        ],
        payloads in prop::collection::vec(
            prop_oneof![
                4 => prop::collection::vec(prop::sample::select(b"abcxy\x0b\x1c\r\n\x02\x03\x7e".to_vec()), 0..20),
                1 => prop::collection::vec(any::<u8>(), 250..300),
            ],
            0..8,
        ),
        cuts in cuts(),
    ) {
        let encoder = Encoder::new(framing.clone());
        let mut d = Deframer::new(framing.clone(), 1000);
        let mut buf = BytesMut::new();
        let mut wire = Vec::new();
        let mut accepted = Vec::new();
        let mut got = Vec::new();
        for p in &payloads {
            let before = wire.len();
            match encoder.encode(p, &mut wire) {
                Ok(()) => accepted.push(p.clone()),
                Err(e) => {
                    prop_assert_eq!(wire.len(), before, "nothing written on error");
                    check_refusal(&framing, p, &e)?;
                    continue;
                }
            }
            if matches!(framing, Framing::IdleGap { .. }) {
                // The sender keeps the gap after each message; the receiver's timer fires.
                for read in chunks(&wire[before..], &cuts) {
                    buf.extend_from_slice(read);
                    drain(&mut d, &mut buf, &mut got);
                }
                while let Some(e) = d.flush(&mut buf, FlushReason::Idle) {
                    got.push(e);
                }
            }
        }
        if !matches!(framing, Framing::IdleGap { .. }) {
            for read in chunks(&wire, &cuts) {
                buf.extend_from_slice(read);
                drain(&mut d, &mut buf, &mut got);
            }
        }
        eof(&mut d, &mut buf, &mut got);
        prop_assert!(got.iter().all(|e| matches!(e, Decoded::Frame(_))), "no rejections: {:?}", got);
        if framing == Framing::Raw {
            prop_assert_eq!(frames_only(&got).concat(), accepted.concat());
        } else {
            prop_assert_eq!(frames_only(&got), accepted);
        }
    }
}

/// A refusal is justified: the payload really could not be carried.
fn check_refusal(framing: &Framing, payload: &[u8], e: &EncodeError) -> Result<(), TestCaseError> {
    match (framing, e) {
        (Framing::LengthPrefixed { width }, EncodeError::TooLong { len, max }) => {
            prop_assert_eq!(*len, payload.len());
            prop_assert_eq!(*max, (1u64 << (8 * u32::from(*width))) - 1);
            prop_assert!(payload.len() as u64 > *max);
        }
        (Framing::IdleGap { .. }, EncodeError::Empty) => prop_assert!(payload.is_empty()),
        (Framing::Delimited { start, end }, EncodeError::ContainsDelimiter { offset }) => {
            prop_assert!(*offset < payload.len());
            // Framed anyway, it would not come back as itself.
            let wire = [start.as_slice(), payload, end].concat();
            let events = run(framing, 1000, &[&wire]);
            prop_assert_ne!(events, vec![frame(payload)]);
        }
        _ => prop_assert!(false, "unexpected refusal {:?} for {:?}", e, framing),
    }
    Ok(())
}
