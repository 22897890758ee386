//! HL7 v2: reading MSH, building ACKs (golden bytes), reading ACK replies, and the round trip
//! build → parse on any input.

use iobp_codec::hl7::{AckCode, AckReply, Msh, build_ack, parse_ack, parse_msh};
use iobp_codec::{Encoder, Framing};
use proptest::prelude::*;

/// A realistic ADT^A01 (admit) message, segments ended by `\r`.
const ADT_A01: &[u8] = b"MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|\
198808181126|SECURITY|ADT^A01^ADT_A01|MSG00001|P|2.8||\r\
EVN|A01|200708181123||\r\
PID|1||PATID1234^^^GOOD HEALTH HOSPITAL^MR~123456789^^^USSSA^SS||EVERYMAN^ADAM^A^III||19610615|M||\
C|2222 HOME STREET^^GREENSBORO^NC^27401-1020|GL|(555) 555-2004|(555)555-2004||S||\
PATID12345001^2^M10^ADT1^AN^A|444333333|987654^NC|\r\
NK1|1|NUCLEAR^NELDA^W|SPO^SPOUSE||||NK^NEXT OF KIN\r\
PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR||||ADM|A0|\r";

#[test]
fn parse_msh_reads_the_fields_needed_to_answer() {
    let msh = parse_msh(ADT_A01).expect("HL7");
    assert_eq!(
        msh,
        Msh {
            field_sep: b'|',
            encoding_chars: "^~\\&".into(),
            sending_app: "ADT1".into(),
            sending_facility: "GOOD HEALTH HOSPITAL".into(),
            receiving_app: "GHH LAB, INC.".into(),
            receiving_facility: "GOOD HEALTH HOSPITAL".into(),
            message_type: "ADT".into(),
            trigger_event: "A01".into(),
            control_id: "MSG00001".into(),
            processing_id: "P".into(),
            version: "2.8".into(),
        }
    );
}

#[test]
fn golden_ack_for_an_adt_a01() {
    let ack = build_ack(ADT_A01, AckCode::AA, None, "20260101120000", "ACK00001");
    assert_eq!(
        ack,
        b"MSH|^~\\&|GHH LAB, INC.|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|\
20260101120000||ACK^A01^ACK|ACK00001|P|2.8\r\
MSA|AA|MSG00001\r"
    );
    let reply = parse_ack(&ack).expect("an ACK");
    assert_eq!(reply, AckReply { code: AckCode::AA, control_id: "MSG00001".into(), text: None });
}

#[test]
fn golden_negative_ack_with_escaped_text_and_err_segment() {
    let text = "PID-3 missing | bad ^ value & more ~ \\ end\r";
    let ack = build_ack(ADT_A01, AckCode::AE, Some(text), "20260101120000", "ACK00002");
    assert_eq!(
        ack,
        b"MSH|^~\\&|GHH LAB, INC.|GOOD HEALTH HOSPITAL|ADT1|GOOD HEALTH HOSPITAL|\
20260101120000||ACK^A01^ACK|ACK00002|P|2.8\r\
MSA|AE|MSG00001|PID-3 missing \\F\\ bad \\S\\ value \\T\\ more \\R\\ \\E\\ end\\X0D\\\r\
ERR|||207^Application internal error^HL70357|E||||\
PID-3 missing \\F\\ bad \\S\\ value \\T\\ more \\R\\ \\E\\ end\\X0D\\\r"
    );
    let reply = parse_ack(&ack).expect("an ACK");
    assert_eq!(reply.code, AckCode::AE);
    assert_eq!(reply.control_id, "MSG00001");
    assert_eq!(reply.text.as_deref(), Some(text));
}

#[test]
fn accepting_ack_with_text_has_no_err_segment() {
    let ack = build_ack(ADT_A01, AckCode::CA, Some("stored"), "1", "2");
    assert!(ack.ends_with(b"MSA|CA|MSG00001|stored\r"), "{}", String::from_utf8_lossy(&ack));
}

#[test]
fn ack_for_something_that_is_not_hl7_is_minimal_and_valid() {
    let ack = build_ack(b"hello world", AckCode::AR, None, "20260101", "7");
    assert_eq!(ack, b"MSH|^~\\&|||||20260101||ACK|7|P|2.5\rMSA|AR|\r");
    let reply = parse_ack(&ack).expect("an ACK");
    assert_eq!((reply.code, reply.control_id.as_str()), (AckCode::AR, ""));
    let ack = build_ack(b"", AckCode::AE, Some("not HL7"), "20260101", "8");
    assert_eq!(
        ack,
        b"MSH|^~\\&|||||20260101||ACK|8|P|2.5\rMSA|AE||not HL7\r\
ERR|||207^Application internal error^HL70357|E||||not HL7\r"
    );
}

#[test]
fn ack_without_trigger_or_version_uses_defaults() {
    let ack = build_ack(b"MSH|^~\\&|A|B|C|D|t||ACK|X1\r", AckCode::AA, None, "t2", "Y");
    assert_eq!(ack, b"MSH|^~\\&|C|D|A|B|t2||ACK|Y|P|2.5\rMSA|AA|X1\r");
}

#[test]
fn ack_uses_the_original_separators() {
    let original = b"MSH#$%*!#APP$1#FAC#RAPP#RFAC#t##ORU$R01#id$9#T#2.3\rOBX#1\r";
    let msh = parse_msh(original).expect("HL7 with unusual separators");
    assert_eq!((msh.field_sep, msh.encoding_chars.as_str()), (b'#', "$%*!"));
    assert_eq!((msh.sending_app.as_str(), msh.control_id.as_str()), ("APP$1", "id$9"));
    let ack = build_ack(original, AckCode::AE, Some("a#b$c"), "ts", "n");
    assert_eq!(
        ack,
        b"MSH#$%*!#RAPP#RFAC#APP$1#FAC#ts##ACK$R01$ACK#n#T#2.3\r\
MSA#AE#id$9#a*F*b*S*c\r\
ERR###207$Application internal error$HL70357#E####a*F*b*S*c\r"
    );
    let reply = parse_ack(&ack).expect("an ACK");
    assert_eq!(reply.control_id, "id$9");
    assert_eq!(reply.text.as_deref(), Some("a#b$c"));
}

#[test]
fn newline_and_crlf_segment_separators_are_tolerated() {
    for sep in ["\n", "\r\n"] {
        let msg = format!("\nMSH|^~\\&|A|B|C|D|t||ORU^R01|C7|P|2.5{sep}OBX|1{sep}");
        let msh = parse_msh(msg.as_bytes()).expect("HL7");
        assert_eq!((msh.control_id.as_str(), msh.version.as_str()), ("C7", "2.5"));
        let reply = format!("MSH|^~\\&|C|D|A|B|t||ACK|9|P|2.5{sep}MSA|AA|C7{sep}");
        assert_eq!(parse_ack(reply.as_bytes()).expect("ACK").control_id, "C7");
    }
}

#[test]
fn parse_msh_refuses_what_is_not_hl7() {
    for bad in [
        &b""[..],
        b"MSH",
        b"MSA|AA|1",
        b"MSHx^~\\&|",
        b"MSH|^~\\|A",
        b"MSH|^~\\^|A",
        b"PID|1\rMSH|^~\\&|A",
        b"msh|^~\\&|A",
    ] {
        assert_eq!(parse_msh(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn parse_ack_reads_replies_from_other_systems() {
    let reply = parse_ack(b"MSH|^~\\&|R|F|S|F|20260101||ACK^R01^ACK|1|P|2.4\rMSA|AR|C99\r");
    assert_eq!(reply, Some(AckReply { code: AckCode::AR, control_id: "C99".into(), text: None }));
    // Text from ERR-8 when MSA-3 is empty.
    let reply =
        parse_ack(b"MSH|^~\\&|R\rMSA|AE|C1\rERR|||207|E||||disk \\T\\ full\r").expect("ACK");
    assert_eq!(reply.text.as_deref(), Some("disk & full"));
    // No MSH: the character after MSA is the field separator.
    let reply = parse_ack(b"MSA|CA|C2|ok\r").expect("ACK");
    assert_eq!(
        (reply.code, reply.control_id.as_str(), reply.text.as_deref()),
        (AckCode::CA, "C2", Some("ok"))
    );
    assert_eq!(parse_ack(b"MSH|^~\\&|R\rMSA|XX|C1\r"), None, "unknown code");
    assert_eq!(parse_ack(b"MSH|^~\\&|R\rPID|1\r"), None, "no MSA");
    assert_eq!(parse_ack(b"garbage"), None);
}

#[test]
fn ack_codes() {
    let all = [AckCode::AA, AckCode::AE, AckCode::AR, AckCode::CA, AckCode::CE, AckCode::CR];
    let accepting: Vec<bool> = all.iter().map(|c| c.is_accept()).collect();
    assert_eq!(accepting, [true, false, false, true, false, false]);
    for c in all {
        assert_eq!(AckCode::parse(c.as_str().as_bytes()), Some(c));
        assert_eq!(c.to_string(), c.as_str());
    }
}

#[test]
fn an_ack_can_always_be_sent_over_mllp() {
    let ack = build_ack(ADT_A01, AckCode::AE, Some("bad \x0b\x1c\r bytes"), "t", "1");
    let mut wire = Vec::new();
    Encoder::new(Framing::mllp()).encode(&ack, &mut wire).expect("control bytes are escaped");
}

#[test]
fn an_ack_for_fields_ending_in_mllp_bytes_can_be_sent_over_mllp() {
    // MSH-10 and MSH-12 end in 0x1C: copied raw, the ACK would hold 0x1C 0x0D (the MLLP
    // trailer) and could not be framed, so the sender got no answer at all.
    let original = b"MSH|^~\\&|LAB|A|HIS|B|20260101||ORU^R01|CTRL\x1c|P|2.5\x1c\rPID|1";
    let ack = build_ack(original, AckCode::AA, None, "20260101", "1");
    let mut wire = Vec::new();
    Encoder::new(Framing::mllp()).encode(&ack, &mut wire).expect("the ACK can be framed");
    assert!(!ack.contains(&0x1c), "{}", String::from_utf8_lossy(&ack));
    let reply = parse_ack(&ack).expect("parses");
    assert_eq!(reply.code, AckCode::AA);
}

fn code() -> impl Strategy<Value = AckCode> {
    prop::sample::select(vec![
        AckCode::AA,
        AckCode::AE,
        AckCode::AR,
        AckCode::CA,
        AckCode::CE,
        AckCode::CR,
    ])
}

/// Messages that are often HL7-like: an MSH with random separators and field contents.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let field =
        prop::collection::vec(prop::sample::select(b"ab1|^~\\&#$\r\n\xff\x1c\x0b".to_vec()), 0..8);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        (prop::sample::select(b"|#!$%".to_vec()), prop::collection::vec(field, 0..14)).prop_map(
            |(fs, fields)| {
                let mut m = b"MSH".to_vec();
                m.push(fs);
                m.extend_from_slice(if fs == b'|' { b"^~\\&" } else { b"^~\\&#" });
                for f in fields {
                    m.push(fs);
                    m.extend_from_slice(&f);
                }
                m
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, .. ProptestConfig::default() })]

    #[test]
    fn every_ack_parses_back_with_its_code_and_the_original_control_id(
        original in message(),
        code in code(),
        text in proptest::option::of(".{0,20}"),
        timestamp in ".{0,16}",
        ack_id in ".{0,12}",
    ) {
        let ack = build_ack(&original, code, text.as_deref(), &timestamp, &ack_id);
        let reply = parse_ack(&ack).expect("an ACK always parses back");
        prop_assert_eq!(reply.code, code);
        // Control bytes in the control id come back as HL7 hex escapes (raw, a 0x1C could
        // close the MLLP frame around the ACK).
        let expected_id: String = parse_msh(&original)
            .map(|m| m.control_id)
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_control() { format!("\\X{:02X}\\", c as u32) } else { c.to_string() })
            .collect();
        prop_assert_eq!(reply.control_id, expected_id);
        prop_assert_eq!(reply.text, text.filter(|t| !t.is_empty()));
        // The ACK itself is HL7 and answers with the ack control id as given.
        let msh = parse_msh(&ack).expect("the ACK is HL7");
        prop_assert_eq!(msh.message_type, "ACK");
        // And it is always frameable for MLLP.
        prop_assert!(Encoder::new(Framing::mllp()).encode(&ack, &mut Vec::new()).is_ok());
    }
}

#[test]
fn fields_by_segment_and_hl7_number() {
    use iobp_codec::hl7::field;
    let m = b"MSH|^~\\&|LAB|A|HIS|B|20261204||ORU^R01|CTRL42|P|2.5\rPID|1||12345^^^HOSP^MR||Doe^Jane\rOBX|1|ST|GLU||5.4\r";
    assert_eq!(field(m, "MSH", 10), Some(&b"CTRL42"[..]), "the control id");
    assert_eq!(field(m, "MSH", 9), Some(&b"ORU^R01"[..]));
    assert_eq!(field(m, "MSH", 1), Some(&b"|"[..]));
    assert_eq!(field(m, "PID", 3), Some(&b"12345^^^HOSP^MR"[..]));
    assert_eq!(field(m, "OBX", 5), Some(&b"5.4"[..]));
    assert_eq!(field(m, "NTE", 1), None, "no such segment");
    assert_eq!(field(m, "PID", 40), None, "no such field");
    assert_eq!(field(b"H|\\^&\rO|1|S1\r", "MSH", 10), None, "not HL7");
    assert_eq!(
        field(b"MSH#^~\\&#A#B#C#D#T##ADT^A01#77#P#2.5\r", "MSH", 10),
        Some(&b"77"[..]),
        "its own separator"
    );
}
