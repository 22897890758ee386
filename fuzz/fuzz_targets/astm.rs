//! The ASTM E1381 receiver and sender on arbitrary bytes and answers: never panic; the
//! receiver answers only ACK or NAK and never asks to store a message larger than its limit;
//! the sender reports a message delivered only after sending its frames; frame parsing agrees
//! with frame encoding.
#![no_main]

use iobp_codec::astm::{ACK, Action, NAK, Receiver, SendAction, Sender, encode_frame, parse_frame};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let _ = parse_frame(data);
    // Layout: chunks of [control u8][len u8][bytes]; the control says what the caller
    // answers after feeding the chunk (stored, refused, a timeout, buffer full or not).
    let mut r = Receiver::new(LIMIT);
    // A sender answered by the same bytes: never panics, delivers only after frames went out.
    let mut s = Sender::new();
    let mut frames_out = 0usize;
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
        if !s.busy() {
            s.start(b"H|\\^&\rR|1|^^^GLU|5.4\rL|1|N\r");
            frames_out = 0;
        }
        let mut sent = s.feed(chunk);
        if control & 0x20 != 0 {
            sent.extend(s.timed_out());
        }
        for a in &sent {
            match a {
                SendAction::Send(b) if b.first() == Some(&0x02) => frames_out += 1,
                SendAction::Delivered => assert!(frames_out >= 3, "delivered before its frames"),
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
