//! Any sequence of frames encodes and decodes back to itself, split anywhere; arbitrary bytes
//! never make the decoder panic or return a record outside its frame.

use iobp_relay::{DataWriter, Frame, decode};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Hello(u64),
    Resume(u64),
    Data(u64, Vec<(u64, Vec<u8>)>),
    Ack(u64),
    Busy(u64, u32, String),
    Ping(u64),
    Error(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..).prop_map(Op::Hello),
        any::<u64>().prop_map(Op::Resume),
        (
            0u64..1000,
            prop::collection::vec((1u64..50, prop::collection::vec(any::<u8>(), 0..40)), 0..20)
        )
            .prop_map(|(prev, recs)| {
                // Turn gaps into increasing numbers above prev.
                let mut p = prev;
                let recs = recs
                    .into_iter()
                    .map(|(gap, b)| {
                        p += gap;
                        (p, b)
                    })
                    .collect();
                Op::Data(prev, recs)
            }),
        any::<u64>().prop_map(Op::Ack),
        (any::<u64>(), any::<u32>(), "\\PC{0,20}").prop_map(|(a, b, c)| Op::Busy(a, b, c)),
        any::<u64>().prop_map(Op::Ping),
        "\\PC{0,30}".prop_map(Op::Error),
    ]
}

fn encode(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Hello(s) => iobp_relay::encode_hello(out, *s),
        Op::Resume(p) => iobp_relay::encode_resume(out, *p),
        Op::Data(prev, recs) => {
            let mut w = DataWriter::begin(out, *prev, 7, 8);
            for (p, b) in recs {
                w.push(out, *p, b).expect("fits");
            }
            w.finish(out);
        }
        Op::Ack(t) => iobp_relay::encode_ack(out, *t),
        Op::Busy(p, r, why) => iobp_relay::encode_busy(out, *p, *r, why),
        Op::Ping(n) => iobp_relay::encode_ping(out, *n),
        Op::Error(m) => iobp_relay::encode_error(out, m),
    }
}

fn matches(op: &Op, f: &Frame<'_>) -> bool {
    match (op, f) {
        (Op::Hello(s), Frame::Hello { version: 1, stream }) => s == stream,
        (Op::Resume(p), Frame::Resume { position }) => p == position,
        (Op::Data(prev, recs), Frame::Data(d)) => {
            d.prev == *prev
                && d.records().map(|(p, b)| (p, b.to_vec())).collect::<Vec<_>>() == *recs
        }
        (Op::Ack(t), Frame::Ack { through }) => t == through,
        (Op::Busy(p, r, why), Frame::Busy { position, retry_after_ms, reason }) => {
            p == position && r == retry_after_ms && why == reason
        }
        (Op::Ping(n), Frame::Ping { nonce }) => n == nonce,
        (Op::Error(m), Frame::Error { message }) => m == message,
        _ => false,
    }
}

proptest! {
    #[test]
    fn frames_round_trip_whatever_the_read_boundaries(
        ops in prop::collection::vec(op(), 0..30),
        chunk in 1usize..200,
    ) {
        let mut wire = Vec::new();
        for o in &ops {
            encode(o, &mut wire);
        }
        // Feed the bytes in chunks, as a socket would deliver them.
        let mut buf = Vec::new();
        let mut got = 0;
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some((f, used)) = decode(&buf).expect("valid frames") {
                prop_assert!(matches(&ops[got], &f), "{:?} vs {:?}", ops[got], f);
                got += 1;
                buf.drain(..used);
            }
        }
        prop_assert_eq!(got, ops.len());
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some((Frame::Data(d), used))) = decode(&bytes) {
            prop_assert!(used <= bytes.len());
            let mut last = d.prev;
            for (p, payload) in d.records() {
                prop_assert!(p > last);
                prop_assert!(payload.len() < used);
                last = p;
            }
        }
    }
}
