//! ASTM E1381 link layer: golden frames (checksums, ETB/ETX, numbering 7 → 0), the receiver's
//! answers to good, bad, repeated and out-of-order frames, its ACK held until the message is
//! durable, and a property test against a sender model that corrupts frames and loses ACKs at
//! random: every message stored exactly once, in order.

use iobp_codec::astm::{
    ACK, Action, CR, ENQ, EOT, ETB, ETX, FrameError, LF, MAX_FRAME_TEXT, NAK, RECEIVER_TIMEOUT,
    Receiver, STX, checksum, encode_frame, frames_from, frames_of, parse_frame,
};
use proptest::prelude::*;

fn frame(number: u8, text: &str, last: bool) -> Vec<u8> {
    encode_frame(number, text.as_bytes(), last)
}

#[test]
fn checksums_of_published_example_frames() {
    // Frames as analyzers send them (the checksum covers FN through ETX).
    let cases: [(&[u8], &[u8; 2]); 3] = [
        (b"7L|1|N\r\x03", b"0A"),
        (b"1H|\\^&|||CT-90^00-15 ^00001^^^^BD934079||||||||E1394-97|20171104070923\r\x03", b"58"),
        (b"3O|1|||||20171104070923|||||N||||||||||||||F|||||\r\x03", b"A4"),
    ];
    for (body, want) in cases {
        assert_eq!(&checksum(body), want, "{}", String::from_utf8_lossy(body));
    }
    assert_eq!(frame(7, "L|1|N\r", true), b"\x027L|1|N\r\x030A\r\n".to_vec());
}

#[test]
fn a_message_goes_one_record_per_frame_numbered_from_1_and_wrapping_after_7() {
    let records: Vec<String> = (0..10).map(|i| format!("R|{i}|^^^GLU|5.{i}\r")).collect();
    let message = records.concat();
    let frames = frames_of(message.as_bytes());
    assert_eq!(frames.len(), 10);
    let numbers: Vec<u8> = frames.iter().map(|f| parse_frame(f).expect("frame").number).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6, 7, 0, 1, 2]);
    for (f, r) in frames.iter().zip(&records) {
        let p = parse_frame(f).expect("frame");
        assert!(p.last);
        assert_eq!(p.text, r.as_bytes());
    }
}

#[test]
fn a_long_record_is_split_into_intermediate_frames_of_240_bytes() {
    let record = format!("R|1|{}\r", "x".repeat(600));
    let frames = frames_of(record.as_bytes());
    assert_eq!(frames.len(), 3);
    let parsed: Vec<_> = frames.iter().map(|f| parse_frame(f).expect("frame")).collect();
    assert_eq!(parsed.iter().map(|p| p.text.len()).collect::<Vec<_>>(), [240, 240, 125]);
    assert_eq!(parsed.iter().map(|p| p.last).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(frames[0][frames[0].len() - 5], ETB);
    assert_eq!(frames[2][frames[2].len() - 5], ETX);
    let joined: Vec<u8> = parsed.iter().flat_map(|p| p.text.to_vec()).collect();
    assert_eq!(joined, record.as_bytes());
    // A last record without CR gets one.
    assert_eq!(parse_frame(&frames_of(b"L|1")[0]).expect("frame").text, b"L|1\r");
}

#[test]
fn malformed_frames_are_refused_with_the_reason() {
    let good = frame(1, "H|\\^&\r", true);
    let mut bad_sum = good.clone();
    let n = bad_sum.len();
    bad_sum[n - 3] = if bad_sum[n - 3] == b'0' { b'1' } else { b'0' };
    assert!(matches!(parse_frame(&bad_sum), Err(FrameError::Checksum { .. })));
    let mut bad_number = good.clone();
    bad_number[1] = b'8';
    assert_eq!(parse_frame(&bad_number), Err(FrameError::Number(b'8')));
    assert!(matches!(parse_frame(&good[..good.len() - 1]), Err(FrameError::Shape(_))));
    assert!(matches!(parse_frame(b"\x02"), Err(FrameError::Shape(_))));
    let long = encode_frame(1, &vec![b'x'; MAX_FRAME_TEXT + 1], true);
    assert_eq!(parse_frame(&long), Err(FrameError::TooLong(MAX_FRAME_TEXT + 1)));
    // Lower-case checksum digits are accepted.
    let mut lower = frame(7, "L|1|N\r", true);
    let n = lower.len();
    lower[n - 4..n - 2].make_ascii_lowercase();
    assert!(parse_frame(&lower).is_ok());
}

/// Bytes the receiver sent in `actions`.
fn sent(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| if let Action::Send(b) = a { Some(b.clone()) } else { None })
        .flatten()
        .collect()
}

/// Messages the receiver asked to store in `actions`.
fn stores(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| if let Action::Store(m) = a { Some(m.clone()) } else { None })
        .collect()
}

const MESSAGE: &str = "H|\\^&|||Analyzer\rP|1\rO|1|S-100||^^^GLU\rR|1|^^^GLU|5.4|mmol/L\rL|1|N\r";

#[test]
fn a_message_is_stored_and_its_last_frame_acknowledged_only_once_durable() {
    let mut r = Receiver::new(1 << 20);
    let a = r.feed(&[ENQ]);
    assert_eq!(sent(&a), [ACK]);
    assert!(a.contains(&Action::Arm(RECEIVER_TIMEOUT)));
    let frames = frames_of(MESSAGE.as_bytes());
    for f in &frames[..frames.len() - 1] {
        assert_eq!(sent(&r.feed(f)), [ACK]);
    }
    let a = r.feed(frames.last().expect("L"));
    assert_eq!(sent(&a), [] as [u8; 0], "no ACK before the message is durable");
    assert_eq!(stores(&a), [MESSAGE.as_bytes().to_vec()]);
    // Bytes arriving meanwhile wait.
    assert!(r.feed(&[EOT]).is_empty());
    let a = r.stored();
    assert_eq!(sent(&a), [ACK]);
    assert!(!r.busy(), "the EOT that waited was handled: neutral");
}

#[test]
fn a_bad_frame_is_nakked_and_its_retransmission_taken_once() {
    let mut r = Receiver::new(1 << 20);
    r.feed(&[ENQ]);
    let frames = frames_of(MESSAGE.as_bytes());
    let mut corrupt = frames[1].clone();
    corrupt[3] ^= 0x20;
    assert_eq!(sent(&r.feed(&corrupt)), [NAK], "frame 1 expected, and a bad checksum");
    let mut r = Receiver::new(1 << 20);
    r.feed(&[ENQ]);
    assert_eq!(sent(&r.feed(&frames[0])), [ACK]);
    assert_eq!(sent(&r.feed(&corrupt)), [NAK], "bad checksum");
    assert_eq!(sent(&r.feed(&frames[1])), [ACK], "the retransmission");
    assert_eq!(sent(&r.feed(&frames[1])), [ACK], "again (our ACK lost): acknowledged, ignored");
    assert_eq!(sent(&r.feed(&frames[3])), [NAK], "a skipped frame");
    for f in &frames[2..frames.len() - 1] {
        assert_eq!(sent(&r.feed(f)), [ACK]);
    }
    let a = r.feed(frames.last().expect("L"));
    assert_eq!(stores(&a), [MESSAGE.as_bytes().to_vec()], "each record once");
}

#[test]
fn a_message_the_buffer_refuses_is_nakked_and_stored_when_sent_again() {
    let mut r = Receiver::new(1 << 20);
    r.feed(&[ENQ]);
    let frames = frames_of(MESSAGE.as_bytes());
    for f in &frames[..frames.len() - 1] {
        r.feed(f);
    }
    let last = frames.last().expect("L");
    assert_eq!(stores(&r.feed(last)).len(), 1);
    assert_eq!(sent(&r.refused()), [NAK]);
    let a = r.feed(last);
    assert_eq!(stores(&a), [MESSAGE.as_bytes().to_vec()], "complete again");
    assert_eq!(sent(&r.stored()), [ACK]);
    // The buffer full at the next ENQ: NAK, the analyzer waits.
    r.feed(&[EOT]);
    r.set_accepting(false);
    assert_eq!(sent(&r.feed(&[ENQ])), [NAK]);
    r.set_accepting(true);
    assert_eq!(sent(&r.feed(&[ENQ])), [ACK]);
}

#[test]
fn a_transmission_that_stops_is_dropped_after_the_timeout_and_restarts_cleanly() {
    let mut r = Receiver::new(1 << 20);
    r.feed(&[ENQ]);
    let frames = frames_of(MESSAGE.as_bytes());
    r.feed(&frames[0]);
    r.feed(&frames[1]);
    let a = r.timed_out();
    assert!(a.contains(&Action::Disarm));
    assert!(stores(&a).is_empty(), "an unfinished message is not stored");
    assert!(!r.busy());
    r.feed(&[ENQ]);
    for f in &frames[..frames.len() - 1] {
        assert_eq!(sent(&r.feed(f)), [ACK]);
    }
    assert_eq!(stores(&r.feed(frames.last().expect("L"))), [MESSAGE.as_bytes().to_vec()]);
}

#[test]
fn records_without_a_terminator_are_discarded_at_eot_never_stored() {
    let mut r = Receiver::new(1 << 20);
    r.feed(&[ENQ]);
    for f in frames_of(b"H|\\^&\rR|1|^^^GLU|5.4\r") {
        assert_eq!(sent(&r.feed(&f)), [ACK]);
    }
    let a = r.feed(&[EOT]);
    assert!(stores(&a).is_empty(), "an abandoned transmission is no message");
    assert!(
        a.iter().any(|x| matches!(x, Action::Discard { records, .. } if records == b"H|\\^&\rR|1|^^^GLU|5.4\r")),
        "shown to the operator: {a:?}"
    );
    assert!(!r.busy());
}

#[test]
fn a_garbled_answer_counts_as_a_nak_once_per_read() {
    use iobp_codec::astm::{SendAction, Sender};
    let mut s = Sender::new();
    s.start(MESSAGE.as_bytes());
    let first = s.feed(&[ACK]);
    let again = s.feed(b"?!#");
    assert_eq!(
        again.iter().filter(|a| matches!(a, SendAction::Send(_))).collect::<Vec<_>>(),
        first.iter().filter(|a| matches!(a, SendAction::Send(_))).collect::<Vec<_>>(),
        "the frame once more, not three times"
    );
}

#[test]
fn noise_between_frames_and_before_enq_is_ignored_and_an_endless_frame_nakked() {
    let mut r = Receiver::new(1 << 20);
    assert!(r.feed(b"garbage\r\n").is_empty());
    r.feed(&[ENQ]);
    assert!(r.feed(&[CR, LF, 0x00]).is_empty());
    let mut endless = vec![STX, b'1'];
    endless.extend(std::iter::repeat_n(b'x', 300));
    assert_eq!(sent(&r.feed(&endless)), [NAK]);
}

#[test]
fn a_message_over_the_size_limit_is_refused() {
    let mut r = Receiver::new(10);
    r.feed(&[ENQ]);
    let frames = frames_of(MESSAGE.as_bytes());
    assert_eq!(sent(&r.feed(&frames[0])), [NAK], "longer than 10 bytes");
}

/// What goes wrong with one frame on the way.
#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    /// A byte flipped: the receiver NAKs.
    Corrupt,
    /// The receiver's ACK is lost: the sender sends the frame again.
    AckLost,
    /// The buffer refuses the message (only matters on a message's last frame).
    Refuse,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => Just(Fault::None),
        1 => Just(Fault::Corrupt),
        1 => Just(Fault::AckLost),
        1 => Just(Fault::Refuse),
    ]
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    let record = proptest::collection::vec(0x20u8..0x7F, 1..600).prop_map(|mut r| {
        r.retain(|b| *b != b'L' && *b != b'H');
        r.insert(0, b'R');
        r.push(CR);
        r
    });
    proptest::collection::vec(record, 0..6).prop_map(|records| {
        let mut m = b"H|\\^&\r".to_vec();
        for r in records {
            m.extend(r);
        }
        m.extend_from_slice(b"L|1|N\r");
        m
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A sender model following E1381 (retransmit on NAK, resend when the ACK is lost) through
    /// random faults: every message is stored exactly once, in order, and complete.
    #[test]
    fn every_message_is_stored_exactly_once_in_order_through_random_faults(
        messages in proptest::collection::vec(message(), 1..5),
        faults in proptest::collection::vec(fault(), 64),
    ) {
        let mut r = Receiver::new(1 << 20);
        let mut faults = faults.into_iter().cycle();
        let mut stored: Vec<Vec<u8>> = Vec::new();
        prop_assert_eq!(sent(&r.feed(&[ENQ])), [ACK]);
        let mut number = 1;
        for m in &messages {
            let (frames, next) = frames_from(m, number);
            number = next;
            for f in frames {
                let mut tries = 0;
                loop {
                    tries += 1;
                    prop_assert!(tries < 100, "a frame never got through");
                    // Faults on the first tries only: a link that always fails is not the point.
                    let fault = if tries <= 3 { faults.next().unwrap_or(Fault::None) } else { Fault::None };
                    let mut wire = f.clone();
                    if let Fault::Corrupt = fault {
                        let i = 2 + (tries % (wire.len() - 6));
                        wire[i] ^= 0x01;
                    }
                    let mut actions = r.feed(&wire);
                    let asked = stores(&actions);
                    if !asked.is_empty() {
                        if let Fault::Refuse = fault {
                            actions.extend(r.refused());
                        } else {
                            stored.extend(asked);
                            actions.extend(r.stored());
                        }
                    }
                    let answer = sent(&actions);
                    prop_assert_eq!(answer.len(), 1, "one answer per frame: {:?}", actions);
                    if answer[0] == ACK && !matches!(fault, Fault::AckLost) {
                        break;
                    }
                }
            }
        }
        let a = r.feed(&[EOT]);
        prop_assert!(stores(&a).is_empty());
        prop_assert_eq!(stored, messages);
    }
}

mod sender {
    use iobp_codec::astm::{
        ACK, CONTENTION_WAIT, ENQ, EOT, NAK, Receiver, SENDER_TIMEOUT, SendAction, Sender,
        frames_of, parse_frame,
    };
    use proptest::prelude::*;

    use super::{Action, MESSAGE};

    fn wire(actions: &[SendAction]) -> Vec<Vec<u8>> {
        actions
            .iter()
            .filter_map(|a| if let SendAction::Send(b) = a { Some(b.clone()) } else { None })
            .collect()
    }

    #[test]
    fn a_message_goes_enq_frames_eot_and_is_delivered_on_the_last_ack() {
        let mut s = Sender::new();
        let a = s.start(MESSAGE.as_bytes());
        assert_eq!(a, [SendAction::Send(vec![ENQ]), SendAction::Arm(SENDER_TIMEOUT)]);
        let frames = frames_of(MESSAGE.as_bytes());
        let mut a = s.feed(&[ACK]);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(wire(&a), std::slice::from_ref(f), "frame {i}");
            assert!(!a.contains(&SendAction::Delivered));
            a = s.feed(&[ACK]);
        }
        assert_eq!(wire(&a), [vec![EOT]]);
        assert!(a.contains(&SendAction::Delivered));
        assert!(!s.busy());
    }

    #[test]
    fn a_nakked_frame_is_sent_again_six_times_then_the_attempt_fails() {
        let mut s = Sender::new();
        s.start(MESSAGE.as_bytes());
        let first = wire(&s.feed(&[ACK]));
        for _ in 0..6 {
            assert_eq!(wire(&s.feed(&[NAK])), first, "the same frame again");
        }
        let a = s.feed(&[NAK]);
        assert_eq!(wire(&a), [vec![EOT]]);
        assert!(matches!(a.last(), Some(SendAction::Failed(_))));
        assert!(!s.busy());
    }

    #[test]
    fn busy_receiver_silence_and_contention() {
        let mut s = Sender::new();
        s.start(MESSAGE.as_bytes());
        let a = s.feed(&[NAK]);
        assert!(matches!(a.last(), Some(SendAction::Failed(_))), "ENQ refused: try later");
        assert!(wire(&a).is_empty(), "no EOT before a transmission began");
        s.start(MESSAGE.as_bytes());
        let a = s.timed_out();
        assert_eq!(wire(&a), [vec![EOT]]);
        assert!(matches!(a.last(), Some(SendAction::Failed(_))));
        s.start(MESSAGE.as_bytes());
        assert_eq!(s.feed(&[ENQ]), [SendAction::Arm(CONTENTION_WAIT)], "contention: wait");
        assert_eq!(wire(&s.timed_out()), [vec![ENQ]], "then ask again");
        let frame = wire(&s.feed(&[ACK]));
        assert_eq!(parse_frame(&frame[0]).expect("frame").number, 1);
    }

    /// What happens to one byte string on the wire.
    #[derive(Debug, Clone, Copy)]
    enum Fault {
        None,
        /// A byte of a frame flipped (the receiver NAKs), or an answer garbled (ignored).
        Corrupt,
        /// Lost entirely: the waiting side times out.
        Lost,
        /// The receiver's buffer refuses a completed message.
        Refuse,
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![8 => Just(Fault::None), 1 => Just(Fault::Corrupt), 1 => Just(Fault::Lost), 1 => Just(Fault::Refuse)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// A sender and a receiver over a faulty link, the sender's caller retrying a failed
        /// attempt: every message stored, in order; a message Delivered only once stored; a
        /// message stored twice only when an attempt's final answer was lost (at least once).
        #[test]
        fn sender_and_receiver_deliver_every_message_in_order_through_faults(
            messages in proptest::collection::vec(super::message(), 1..5),
            faults in proptest::collection::vec(fault(), 200),
        ) {
            // Distinct messages, so that a repeat is told from the next message.
            let messages: Vec<Vec<u8>> = messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut u = format!("H|{i}\r").into_bytes();
                    u.extend_from_slice(&m[6..]);
                    u
                })
                .collect();
            let mut faults = faults.into_iter();
            let mut next_fault = || faults.next().unwrap_or(Fault::None);
            let mut r = Receiver::new(1 << 20);
            let mut s = Sender::new();
            let mut stored: Vec<Vec<u8>> = Vec::new();
            for m in &messages {
                let mut attempts = 0;
                'attempt: loop {
                    attempts += 1;
                    prop_assert!(attempts < 50, "never delivered");
                    let mut to_receiver = wire(&s.start(m));
                    let mut steps = 0;
                    loop {
                        steps += 1;
                        prop_assert!(steps < 10_000);
                        // Sender → receiver.
                        let mut answers = Vec::new();
                        for mut bytes in to_receiver.drain(..) {
                            match next_fault() {
                                Fault::Lost => continue,
                                Fault::Corrupt if bytes.len() > 7 => bytes[3] ^= 0x01,
                                _ => {}
                            }
                            let mut actions = r.feed(&bytes);
                            let asked: Vec<Vec<u8>> = actions.iter().filter_map(|a| if let Action::Store(x) = a { Some(x.clone()) } else { None }).collect();
                            if !asked.is_empty() {
                                if let Fault::Refuse = next_fault() {
                                    actions.extend(r.refused());
                                } else {
                                    stored.extend(asked);
                                    actions.extend(r.stored());
                                }
                            }
                            answers.extend(super::sent(&actions));
                        }
                        // Receiver → sender.
                        let reply = match next_fault() {
                            Fault::Lost => Vec::new(),
                            Fault::Corrupt => answers.iter().map(|b| b ^ 0x40).collect(),
                            _ => answers,
                        };
                        let acts = if reply.is_empty() {
                            // Silence: both sides' timers run out.
                            let a = s.timed_out();
                            r.timed_out();
                            a
                        } else {
                            s.feed(&reply)
                        };
                        if acts.contains(&SendAction::Delivered) {
                            prop_assert!(stored.last() == Some(m), "Delivered before it was stored");
                            // The EOT that ends the transmission.
                            for b in wire(&acts) { r.feed(&b); }
                            break 'attempt;
                        }
                        if acts.iter().any(|a| matches!(a, SendAction::Failed(_))) {
                            for b in wire(&acts) { r.feed(&b); }
                            r.timed_out();
                            continue 'attempt;
                        }
                        to_receiver = wire(&acts);
                        if to_receiver.is_empty() && !s.busy() {
                            continue 'attempt;
                        }
                    }
                }
            }
            // Repeats only of the same message in a row (an attempt whose final ACK was lost).
            let mut distinct = stored.clone();
            distinct.dedup();
            prop_assert_eq!(distinct, messages.clone());
        }
    }
}

#[test]
fn e1394_record_types_and_fields_for_operators() {
    use iobp_codec::astm::{field, record_types};
    let m = b"H|\\^&|||Analyzer\rP|1||PAT7\rO|1|S0000042||^^^GLU\rR|1|^^^GLU|5.4|mmol/L\rL|1|N\r";
    assert_eq!(record_types(m), "H P O R L");
    assert_eq!(field(m, b'O', 3), Some(&b"S0000042"[..]), "the sample id");
    assert_eq!(field(m, b'R', 4), Some(&b"5.4"[..]));
    assert_eq!(field(m, b'C', 2), None, "no comment record");
    assert_eq!(field(m, b'O', 0), None);
    assert_eq!(iobp_codec::astm::summary(m).as_deref(), Some("H P O R L · sample S0000042"));
    assert_eq!(iobp_codec::astm::summary(b"MSH|^~\\&|A\rPID|1\r"), None, "HL7 is no ASTM");
    assert_eq!(iobp_codec::astm::summary(b"Hello world\n"), None);
    let custom = b"H!\\^&\rO!1!S9\rL!1\r";
    assert_eq!(field(custom, b'O', 3), Some(&b"S9"[..]), "the header's own delimiter");
}
