//! HL7 v2 acknowledgements: read the MSH of a message, build its ACK, read an ACK reply.
//!
//! Only what store-and-forward needs: a source with `ack: mllp` answers each message once it is
//! durable ([`build_ack`]); a destination with `ack: mllp` waits for the receiver's answer
//! ([`parse_ack`]) and compares its MSA-2 with the control id of the message it sent
//! ([`parse_msh`]).
//!
//! Segments are separated by `\r` (`\n` and `\r\n` are tolerated on input; output always uses
//! `\r`). Field texts taken from a message are kept *raw*: escape sequences and component
//! separators stay as sent, so they can be copied into an answer byte for byte (bytes that are
//! not UTF-8 appear as U+FFFD in the `String`s, but [`build_ack`] copies the original bytes).

/// Field separator of an ACK for a message that is not HL7.
const DEFAULT_FIELD_SEP: u8 = b'|';
/// Encoding characters of an ACK for a message that is not HL7: component, repetition,
/// escape, subcomponent.
const DEFAULT_ENCODING: &[u8] = b"^~\\&";
/// MSH-11 of an ACK when the original has none.
const DEFAULT_PROCESSING_ID: &[u8] = b"P";
/// MSH-12 of an ACK when the original has none.
const DEFAULT_VERSION: &[u8] = b"2.5";
/// ERR-3 of a negative ACK: HL7 table 0357 code 207, "Application internal error" — the
/// generic code, as the buffer does not know the receiving application's reasons.
const ERR_CODE: &[u8] = b"207";
const ERR_CODE_TEXT: &[u8] = b"Application internal error";
const ERR_CODE_SYSTEM: &[u8] = b"HL70357";

/// Fields of the MSH segment needed to answer a message. Texts are raw (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Msh {
    /// MSH-1, usually `|`.
    pub field_sep: u8,
    /// MSH-2: component, repetition, escape and subcomponent characters (and, from v2.7,
    /// truncation), usually `^~\&`.
    pub encoding_chars: String,
    /// MSH-3.
    pub sending_app: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-5.
    pub receiving_app: String,
    /// MSH-6.
    pub receiving_facility: String,
    /// MSH-9, first component (e.g. `ADT`).
    pub message_type: String,
    /// MSH-9, second component (e.g. `A01`); empty if absent.
    pub trigger_event: String,
    /// MSH-10, the message control id the sender expects back in MSA-2.
    pub control_id: String,
    /// MSH-11 (e.g. `P`); empty if absent.
    pub processing_id: String,
    /// MSH-12 (e.g. `2.5`); empty if absent.
    pub version: String,
}

/// Acknowledgement codes (HL7 table 0008): application level `AA`/`AE`/`AR`, commit level
/// (enhanced mode) `CA`/`CE`/`CR`.
#[allow(clippy::upper_case_acronyms)] // The codes as they appear on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept.
    AA,
    /// Application error: the sender should retry.
    AE,
    /// Application reject.
    AR,
    /// Commit accept.
    CA,
    /// Commit error.
    CE,
    /// Commit reject.
    CR,
}

impl AckCode {
    /// Whether the receiver took the message (`AA`, `CA`).
    pub fn is_accept(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }

    /// The two-letter code.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// The code for its two letters (exact, upper case), or `None`.
    pub fn parse(code: &[u8]) -> Option<AckCode> {
        Some(match code {
            b"AA" => AckCode::AA,
            b"AE" => AckCode::AE,
            b"AR" => AckCode::AR,
            b"CA" => AckCode::CA,
            b"CE" => AckCode::CE,
            b"CR" => AckCode::CR,
            _ => return None,
        })
    }
}

impl std::fmt::Display for AckCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HL7 ACK reply, as read by [`parse_ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckReply {
    /// MSA-1.
    pub code: AckCode,
    /// MSA-2 (raw): the control id of the message being acknowledged.
    pub control_id: String,
    /// MSA-3, or if empty ERR-8, with HL7 escapes resolved; `None` if both are empty.
    pub text: Option<String>,
}

/// The separators of one message.
#[derive(Debug, Clone, Copy)]
struct Seps {
    field: u8,
    component: u8,
    repetition: u8,
    escape: u8,
    subcomponent: u8,
    truncation: Option<u8>,
}

impl Seps {
    fn new(field: u8, encoding: &[u8]) -> Seps {
        let at = |i: usize| encoding.get(i).copied().unwrap_or(DEFAULT_ENCODING[i]);
        Seps {
            field,
            component: at(0),
            repetition: at(1),
            escape: at(2),
            subcomponent: at(3),
            truncation: encoding.get(4).copied(),
        }
    }

    fn default_seps() -> Seps {
        Seps::new(DEFAULT_FIELD_SEP, DEFAULT_ENCODING)
    }
}

/// An MSH segment split into raw fields.
struct RawMsh<'a> {
    field_sep: u8,
    encoding: &'a [u8],
    /// MSH-3 onwards (`fields[0]` is MSH-3), up to MSH-12.
    fields: Vec<&'a [u8]>,
}

impl<'a> RawMsh<'a> {
    /// MSH-`n` for `n >= 3`; empty if absent.
    fn field(&self, n: usize) -> &'a [u8] {
        n.checked_sub(3).and_then(|i| self.fields.get(i)).copied().unwrap_or_default()
    }

    fn seps(&self) -> Seps {
        Seps::new(self.field_sep, self.encoding)
    }

    /// Component `c` (1-based) of MSH-`n`.
    fn component(&self, n: usize, c: usize) -> &'a [u8] {
        let sep = self.seps().component;
        self.field(n).split(|&b| b == sep).nth(c - 1).unwrap_or_default()
    }
}

/// Segments of a message: split at `\r` or `\n`, empty ones (from `\r\n`) skipped.
fn segments(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    message.split(|&b| b == b'\r' || b == b'\n').filter(|s| !s.is_empty())
}

/// MSH-2 must be 4 or 5 distinct punctuation characters, none the field separator: otherwise
/// the fields cannot be trusted (and an answer using them could not be read back).
fn valid_encoding(encoding: &[u8], field_sep: u8) -> bool {
    (4..=5).contains(&encoding.len())
        && encoding.iter().all(|&b| b.is_ascii_punctuation() && b != field_sep)
        && encoding.iter().enumerate().all(|(i, b)| !encoding[i + 1..].contains(b))
}

fn raw_msh(message: &[u8]) -> Option<RawMsh<'_>> {
    // Leading whitespace (a stray newline before MSH) is tolerated.
    let first = message.iter().position(|b| !b.is_ascii_whitespace())?;
    let segment = segments(&message[first..]).next()?;
    let (&field_sep, rest) = segment.strip_prefix(b"MSH")?.split_first()?;
    if !field_sep.is_ascii_punctuation() {
        return None;
    }
    let mut fields = rest.split(move |&b| b == field_sep);
    let encoding = fields.next().unwrap_or_default();
    if !valid_encoding(encoding, field_sep) {
        return None;
    }
    Some(RawMsh { field_sep, encoding, fields: fields.take(10).collect() })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses the MSH segment at the start of an HL7 v2 message (segments separated by `\r`;
/// `\n` and `\r\n` tolerated; leading whitespace skipped). `None` if it is not HL7: no leading
/// `MSH` followed by a punctuation character as field separator, or MSH-2 is not 4 or 5
/// distinct punctuation characters different from the field separator.
pub fn parse_msh(message: &[u8]) -> Option<Msh> {
    let m = raw_msh(message)?;
    Some(Msh {
        field_sep: m.field_sep,
        encoding_chars: text(m.encoding),
        sending_app: text(m.field(3)),
        sending_facility: text(m.field(4)),
        receiving_app: text(m.field(5)),
        receiving_facility: text(m.field(6)),
        message_type: text(m.component(9, 1)),
        trigger_event: text(m.component(9, 2)),
        control_id: text(m.field(10)),
        processing_id: text(m.field(11)),
        version: text(m.field(12)),
    })
}

/// Builds the (unframed) HL7 ACK for `original`.
///
/// - MSH: the original's field separator and encoding characters; sending and receiving
///   application and facility swapped (copied byte for byte); MSH-7 = `timestamp`; MSH-9 =
///   `ACK^<trigger>^ACK` (just `ACK` when the original has no trigger); MSH-10 =
///   `ack_control_id`; MSH-11/12 copied from the original (defaults `P` and `2.5`).
/// - `MSA|<code>|<original control id>[|<text>]`.
/// - When `code` is not accepting and there is a text:
///   `ERR|||207^Application internal error^HL70357|E||||<text>` (v2.5 layout: ERR-3 error
///   code from table 0357, ERR-4 severity, ERR-8 user message).
///
/// Every segment ends with `\r`. `text`, `timestamp` and `ack_control_id` are escaped per HL7
/// (field, component, repetition, escape, subcomponent and truncation characters become
/// `\F\ \S\ \R\ \E\ \T\ \P\`; control characters such as CR, LF or the MLLP bytes become
/// `\Xhh\`), so whatever they contain, the ACK stays well-formed and frameable. An empty text
/// counts as none.
///
/// If `original` is not HL7 ([`parse_msh`] is `None`), the ACK is a minimal valid one with the
/// separators `|^~\&` and an empty original control id.
pub fn build_ack(
    original: &[u8],
    code: AckCode,
    text: Option<&str>,
    timestamp: &str,
    ack_control_id: &str,
) -> Vec<u8> {
    let msh = raw_msh(original);
    let seps = msh.as_ref().map_or_else(Seps::default_seps, RawMsh::seps);
    let encoding = msh.as_ref().map_or(DEFAULT_ENCODING, |m| m.encoding);
    let field = |n: usize| msh.as_ref().map_or(&[][..], |m| m.field(n));
    let or_default = |v: &'static [u8], n: usize| if field(n).is_empty() { v } else { field(n) };
    let trigger = msh.as_ref().map_or(&[][..], |m| m.component(9, 2));
    let text = text.filter(|t| !t.is_empty());
    let fs = seps.field;

    // Control bytes in the original's fields (a 0x0B or 0x1C would close or open an MLLP
    // frame around the ACK) are copied as HL7 hex escapes, so the ACK can always be framed.
    let encoding =
        if encoding.iter().any(u8::is_ascii_control) { DEFAULT_ENCODING } else { encoding };
    let mut out = Vec::with_capacity(128 + original.len().min(256));
    out.extend_from_slice(b"MSH");
    out.push(fs);
    out.extend_from_slice(encoding);
    for f in [field(5), field(6), field(3), field(4)] {
        out.push(fs);
        copy_field_into(&mut out, f, seps);
    }
    out.push(fs);
    escape_into(&mut out, timestamp.as_bytes(), seps);
    out.push(fs); // MSH-8, security: empty.
    out.push(fs);
    out.extend_from_slice(b"ACK");
    if !trigger.is_empty() {
        out.push(seps.component);
        copy_field_into(&mut out, trigger, seps);
        out.push(seps.component);
        out.extend_from_slice(b"ACK");
    }
    out.push(fs);
    escape_into(&mut out, ack_control_id.as_bytes(), seps);
    out.push(fs);
    copy_field_into(&mut out, or_default(DEFAULT_PROCESSING_ID, 11), seps);
    out.push(fs);
    copy_field_into(&mut out, or_default(DEFAULT_VERSION, 12), seps);
    out.push(b'\r');

    out.extend_from_slice(b"MSA");
    out.push(fs);
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(fs);
    copy_field_into(&mut out, field(10), seps);
    if let Some(t) = text {
        out.push(fs);
        escape_into(&mut out, t.as_bytes(), seps);
    }
    out.push(b'\r');

    if let (false, Some(t)) = (code.is_accept(), text) {
        out.extend_from_slice(b"ERR");
        out.extend_from_slice(&[fs, fs, fs]);
        out.extend_from_slice(ERR_CODE);
        out.push(seps.component);
        out.extend_from_slice(ERR_CODE_TEXT);
        out.push(seps.component);
        out.extend_from_slice(ERR_CODE_SYSTEM);
        out.push(fs);
        out.push(b'E');
        out.extend_from_slice(&[fs, fs, fs, fs]);
        escape_into(&mut out, t.as_bytes(), seps);
        out.push(b'\r');
    }
    out
}

/// Parses an HL7 ACK reply: finds the first MSA segment; `None` if there is none or MSA-1 is
/// not a known [`AckCode`]. The separators come from the reply's MSH; without one, the
/// character after `MSA` is taken as field separator and `^~\&` as encoding characters.
pub fn parse_ack(message: &[u8]) -> Option<AckReply> {
    let msh = raw_msh(message);
    let mut msa = None;
    let mut err_text: &[u8] = &[];
    let mut seps = msh.as_ref().map_or_else(Seps::default_seps, RawMsh::seps);
    for segment in segments(message) {
        let Some((&sep, rest)) = segment.get(3..).and_then(<[u8]>::split_first) else {
            continue;
        };
        let sep_ok = if msh.is_some() { sep == seps.field } else { sep.is_ascii_punctuation() };
        if !sep_ok {
            continue;
        }
        let name = &segment[..3];
        if name == b"MSA" && msa.is_none() {
            if msh.is_none() {
                seps.field = sep;
            }
            msa = Some(rest);
        } else if name == b"ERR" && err_text.is_empty() {
            err_text = rest.split(|&b| b == sep).nth(7).unwrap_or_default();
        }
    }
    let mut fields = msa?.split(|&b| b == seps.field);
    let code = AckCode::parse(fields.next().unwrap_or_default().trim_ascii())?;
    let control_id = text(fields.next().unwrap_or_default());
    let msa_text = fields.next().unwrap_or_default();
    let raw_text = if msa_text.is_empty() { err_text } else { msa_text };
    let text = (!raw_text.is_empty()).then(|| unescape(raw_text, seps));
    Some(AckReply { code, control_id, text })
}

/// Appends `value` with HL7 escapes for the separators and for control characters.
/// Copies an already-encoded field as it is (its separators and escapes keep their meaning),
/// except control bytes, which become `\Xhh\` hex escapes.
fn copy_field_into(out: &mut Vec<u8>, value: &[u8], seps: Seps) {
    for &b in value {
        if b.is_ascii_control() {
            hex_escape_into(out, b, seps);
        } else {
            out.push(b);
        }
    }
}

fn hex_escape_into(out: &mut Vec<u8>, b: u8, seps: Seps) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[
        seps.escape,
        b'X',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 0xF)],
        seps.escape,
    ]);
}

fn escape_into(out: &mut Vec<u8>, value: &[u8], seps: Seps) {
    for &b in value {
        let code = if b == seps.field {
            b'F'
        } else if b == seps.component {
            b'S'
        } else if b == seps.repetition {
            b'R'
        } else if b == seps.escape {
            b'E'
        } else if b == seps.subcomponent {
            b'T'
        } else if Some(b) == seps.truncation {
            b'P'
        } else if b.is_ascii_control() {
            hex_escape_into(out, b, seps);
            continue;
        } else {
            out.push(b);
            continue;
        };
        out.extend_from_slice(&[seps.escape, code, seps.escape]);
    }
}

/// Resolves the HL7 escapes `\F\ \S\ \R\ \E\ \T\ \P\ \Xhh..\`; other sequences (formatting,
/// character sets) and unterminated ones are kept as they are.
fn unescape(value: &[u8], seps: Seps) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.iter().position(|&b| b == seps.escape) {
        out.extend_from_slice(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(len) = after.iter().position(|&b| b == seps.escape) else {
            out.extend_from_slice(&rest[i..]);
            rest = &[];
            break;
        };
        let seq = &after[..len];
        match seq {
            b"F" => out.push(seps.field),
            b"S" => out.push(seps.component),
            b"R" => out.push(seps.repetition),
            b"E" => out.push(seps.escape),
            b"T" => out.push(seps.subcomponent),
            b"P" if seps.truncation.is_some() => out.push(seps.truncation.unwrap_or_default()),
            [b'X', hex @ ..] if !hex.is_empty() && hex.len() % 2 == 0 => match hex_bytes(hex) {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => out.extend_from_slice(&rest[i..i + len + 2]),
            },
            _ => out.extend_from_slice(&rest[i..i + len + 2]),
        }
        rest = &after[len + 1..];
    }
    out.extend_from_slice(rest);
    text(&out)
}

fn hex_bytes(hex: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    hex.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// Field `n` of the first `segment` segment of an HL7 v2 message, whole (components not
/// split), with HL7 numbering: `field(m, "MSH", 10)` is the message control id (MSH-1 is the
/// field separator itself, MSH-2 the encoding characters), `field(m, "PID", 3)` the patient
/// identifier list. `None` when the message is not HL7, or has no such segment or field.
#[must_use]
pub fn field<'a>(message: &'a [u8], segment: &str, n: usize) -> Option<&'a [u8]> {
    let msh = raw_msh(message)?;
    let sep = msh.field_sep;
    let seg = segments(message).find(|s| {
        s.len() > segment.len() && s.starts_with(segment.as_bytes()) && s[segment.len()] == sep
    })?;
    if segment == "MSH" {
        // MSH-1 is the separator, so MSH-n is the n-1-th piece after splitting.
        return match n {
            0 => None,
            1 => Some(&seg[3..4]),
            _ => seg.split(|&b| b == sep).nth(n - 1),
        };
    }
    seg.split(|&b| b == sep).nth(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_and_unescape_round_trip() {
        let seps = Seps::new(b'|', b"^~\\&#");
        let mut out = Vec::new();
        escape_into(&mut out, b"a|b^c~d\\e&f#g\r\n\x0b\x1c", seps);
        assert_eq!(
            out,
            b"a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\P\\g\\X0D\\\\X0A\\\\X0B\\\\X1C\\".to_vec()
        );
        assert_eq!(unescape(&out, seps), "a|b^c~d\\e&f#g\r\n\x0b\x1c");
    }

    #[test]
    fn unknown_or_broken_escapes_are_kept() {
        let seps = Seps::default_seps();
        assert_eq!(unescape(b"x\\.br\\y", seps), "x\\.br\\y");
        assert_eq!(unescape(b"x\\Xzz\\y", seps), "x\\Xzz\\y");
        assert_eq!(unescape(b"tail\\F", seps), "tail\\F");
        assert_eq!(unescape(b"\\X414243\\", seps), "ABC");
        assert_eq!(unescape(b"\\P\\", seps), "\\P\\", "no truncation character declared");
    }

    #[test]
    fn encoding_characters_are_checked() {
        assert!(valid_encoding(b"^~\\&", b'|'));
        assert!(valid_encoding(b"^~\\&#", b'|'));
        assert!(!valid_encoding(b"^~\\", b'|'));
        assert!(!valid_encoding(b"^~\\^", b'|'));
        assert!(!valid_encoding(b"^~\\|", b'|'));
        assert!(!valid_encoding(b"^~\\a", b'|'));
    }
}
