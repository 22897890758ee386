//! The ASTM E1381 receiver on arbitrary bytes and answers: never panics, answers each frame
//! with at most one ACK or NAK, never asks to store a message larger than its limit, and
//! frame parsing agrees with frame encoding.
#![no_main]

use iobp_codec::astm::{ACK, Action, NAK, Receiver, encode_frame, parse_frame};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let _ = parse_frame(data);
    // Layout: chunks of [control u8][len u8][bytes]; the control says what the caller
    // answers after feeding the chunk (stored, refused, a timeout, buffer full or not).
    let mut r = Receiver::new(LIMIT);
    let mut rest = data;
    while let [control, len, tail @ ..] = rest {
        let (chunk, after) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = after;
        r.set_accepting(control & 0x10 == 0);
        let mut actions = r.feed(chunk);
        let asked = actions.iter().any(|a| matches!(a, Action::Store(_)));
        match control & 0x03 {
            0 if asked => actions.extend(r.stored()),
            1 if asked => actions.extend(r.refused()),
            2 => actions.extend(r.timed_out()),
            _ => {}
        }
        for a in &actions {
            match a {
                Action::Store(m) => assert!(m.len() <= LIMIT, "a message over the limit"),
                Action::Send(b) => assert!(b.iter().all(|x| *x == ACK || *x == NAK)),
                _ => {}
            }
        }
        // A frame encoded from the chunk parses back to it.
        if chunk.len() <= 240 {
            let f = encode_frame(control % 8, chunk, control & 0x80 != 0);
            let p = parse_frame(&f).expect("an encoded frame parses");
            assert_eq!((p.number, p.text, p.last), (control % 8, chunk, control & 0x80 != 0));
        }
    }
});
