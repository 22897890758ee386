//! HL7 parsing and ACK building on arbitrary bytes: never panics, and every ACK parses back
//! with its code, the original's control id (empty when the original is not HL7; control bytes
//! in it as HL7 hex escapes) and its text, and can be framed for MLLP.
#![no_main]

use iobp_codec::hl7::{AckCode, Msh, build_ack, parse_ack, parse_msh};
use iobp_codec::{Encoder, Framing};
use libfuzzer_sys::fuzz_target;

const CODES: [AckCode; 6] =
    [AckCode::AA, AckCode::AE, AckCode::AR, AckCode::CA, AckCode::CE, AckCode::CR];

fuzz_target!(|data: &[u8]| {
    let _ = parse_msh(data);
    let _ = parse_ack(data);

    // Layout: [selector u8][text length u8][text][message]; the text and the caller-supplied
    // fields are arbitrary too, so escaping is exercised.
    let [selector, text_len, rest @ ..] = data else { return };
    let (text, original) = rest.split_at(usize::from(*text_len).min(rest.len()));
    let text = String::from_utf8_lossy(text);
    let code = CODES[usize::from(selector % 6)];
    let text = (selector & 0x80 != 0).then_some(text.as_ref());
    let ack = build_ack(original, code, text, text.unwrap_or("20260101120000"), "ACK|1^\r");

    let reply = parse_ack(&ack).expect("an ACK always parses back");
    assert_eq!(reply.code, code);
    let expected = parse_msh(original).map(|m| as_copied(&m)).unwrap_or_default();
    assert_eq!(reply.control_id, expected);
    assert_eq!(reply.text.as_deref(), text.filter(|t| !t.is_empty()));
    assert!(parse_msh(&ack).is_some(), "the ACK is HL7");
    Encoder::new(Framing::mllp()).encode(&ack, &mut Vec::new()).expect("an ACK is frameable");
});

/// The original's control id as an ACK carries it: control bytes become HL7 hex escapes
/// (`\X1C\`, with the original's escape character), so that the ACK can always be framed for
/// MLLP. The codec's property test
/// `every_ack_parses_back_with_its_code_and_the_original_control_id` expects the same.
fn as_copied(msh: &Msh) -> String {
    let escape = msh.encoding_chars.chars().nth(2).unwrap_or('\\');
    msh.control_id
        .chars()
        .map(|c| {
            if c.is_ascii_control() {
                format!("{escape}X{:02X}{escape}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}
