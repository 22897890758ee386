//! Golden bytes: what each framing puts on the wire, written out literally, and read back.

mod support;

use iobp_codec::{Encoder, Framing};
use support::{frame, run};

/// Encodes `payload`, checks the exact bytes, and checks they decode back to `payload`.
fn golden(framing: Framing, payload: &[u8], wire: &[u8]) {
    assert_eq!(run(&framing, 1 << 20, &[wire]), [frame(payload)], "{framing:?}");
    let encoder = Encoder::new(framing);
    let mut out = Vec::new();
    encoder.encode(payload, &mut out).expect("encodable");
    assert_eq!(out, wire, "{:?}", encoder.framing());
}

#[test]
fn mllp_frame() {
    golden(
        Framing::mllp(),
        b"MSH|^~\\&|LAB|H|EMR|H|20260101||ORU^R01|42|P|2.5\rOBX|1|NM|GLU||5.4\r",
        b"\x0bMSH|^~\\&|LAB|H|EMR|H|20260101||ORU^R01|42|P|2.5\rOBX|1|NM|GLU||5.4\r\x1c\x0d",
    );
    golden(Framing::mllp(), b"", &[0x0B, 0x1C, 0x0D]);
}

#[test]
fn stx_etx_frame() {
    golden(Framing::stx_etx(), b"1H|\\^&|||cobas\r", b"\x021H|\\^&|||cobas\r\x03");
}

#[test]
fn line_frame() {
    golden(Framing::line(b"\n"), b"temp=21.5", b"temp=21.5\n");
    golden(Framing::line(b"\r\n"), b"OK", b"OK\r\n");
}

#[test]
fn custom_delimited_frame() {
    golden(
        Framing::Delimited { start: b"<m>".to_vec(), end: b"</m>".to_vec() },
        b"hi",
        b"<m>hi</m>",
    );
    golden(
        Framing::Delimited { start: vec![0x7E], end: vec![0x7E] },
        b"\x01\x02",
        b"\x7e\x01\x02\x7e",
    );
}

#[test]
fn one_byte_length_prefix() {
    golden(Framing::LengthPrefixed { width: 1 }, b"hello", b"\x05hello");
    golden(Framing::LengthPrefixed { width: 1 }, b"", b"\x00");
    let max = [0xAB; 255];
    golden(Framing::LengthPrefixed { width: 1 }, &max, &[&[0xFF][..], &max].concat());
}

#[test]
fn two_byte_length_prefix() {
    golden(Framing::LengthPrefixed { width: 2 }, b"hello", b"\x00\x05hello");
    let p = [b'z'; 300];
    golden(Framing::LengthPrefixed { width: 2 }, &p, &[&[0x01, 0x2C][..], &p].concat());
}

#[test]
fn four_byte_length_prefix() {
    golden(Framing::LengthPrefixed { width: 4 }, b"hello", b"\x00\x00\x00\x05hello");
    let p = vec![7u8; 70_000];
    golden(Framing::LengthPrefixed { width: 4 }, &p, &[&[0x00, 0x01, 0x11, 0x70][..], &p].concat());
}

#[test]
fn raw_and_idle_gap_are_the_bytes_themselves() {
    golden(Framing::Raw, b"\x0b\x1c\r\n\x00", b"\x0b\x1c\r\n\x00");
    let mut out = Vec::new();
    let idle = Framing::IdleGap { gap: std::time::Duration::from_millis(40) };
    Encoder::new(idle).encode(b"\x02data\x03", &mut out).expect("encodable");
    assert_eq!(out, b"\x02data\x03");
}
