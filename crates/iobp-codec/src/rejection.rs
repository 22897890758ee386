//! Frames that were not delivered as messages: what the engine counts, logs and keeps for
//! operators, with a bounded preview instead of the (possibly huge) bytes.

use std::fmt::{self, Write as _};

/// At most this many leading bytes of a rejected frame are kept in [`Rejection::preview`].
pub const PREVIEW_BYTES: usize = 64;

/// Reason of [`RejectKind::Malformed`] for bytes between frames (before a `start` sequence).
pub const OUTSIDE_FRAME: &str = "bytes outside a frame";
/// Reason of [`RejectKind::Malformed`] for a frame cut short by a new `start` sequence.
pub const STARTED_AGAIN: &str = "frame started again before it ended";
/// Reason of [`RejectKind::Malformed`] for a partial frame when the stream ended.
pub const INCOMPLETE_AT_EOF: &str = "incomplete frame at end of stream";

/// A frame that was not delivered as a message: counted, logged with a hex preview, and kept by
/// the engine for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Why it was rejected.
    pub kind: RejectKind,
    /// Total bytes of the rejected frame / garbage that were discarded, framing bytes
    /// (start, end, length prefix) included.
    pub len: u64,
    /// The first bytes of it (at most [`PREVIEW_BYTES`]), framing bytes included.
    pub preview: Vec<u8>,
}

/// Why a frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// The message was longer than `max_message_bytes`.
    Oversize,
    /// The bytes did not follow the framing; the text says how (one of [`OUTSIDE_FRAME`],
    /// [`STARTED_AGAIN`], [`INCOMPLETE_AT_EOF`]).
    Malformed(&'static str),
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectKind::Oversize => f.write_str("frame longer than max_message_bytes"),
            RejectKind::Malformed(why) => f.write_str(why),
        }
    }
}

impl Rejection {
    /// The preview for a log line or the operator's view, in this format:
    ///
    /// - each preview byte as two lowercase hex digits, separated by single spaces;
    /// - then ` …` if the rejected bytes were longer than the preview;
    /// - then two spaces and the same bytes as text between `|` bars, where bytes
    ///   `0x20..=0x7E` show as themselves and every other byte as `.`.
    ///
    /// `len: 100, preview: b"\x0bMSH"` gives `0b 4d 53 48 …  |.MSH|`. An empty preview gives
    /// `(empty)`.
    pub fn hex_preview(&self) -> String {
        if self.preview.is_empty() {
            return "(empty)".to_owned();
        }
        let mut s = String::with_capacity(self.preview.len() * 4 + 8);
        for (i, b) in self.preview.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
        }
        if self.len > self.preview.len() as u64 {
            s.push_str(" …");
        }
        s.push_str("  |");
        s.extend(
            self.preview
                .iter()
                .map(|&b| if (0x20..=0x7E).contains(&b) { char::from(b) } else { '.' }),
        );
        s.push('|');
        s
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes): {}", self.kind, self.len, self.hex_preview())
    }
}

/// A rejection being accumulated while its bytes are discarded: a count and the preview, never
/// the bytes themselves — this is what keeps discarding bounded.
#[derive(Debug)]
pub(crate) struct Discard {
    kind: RejectKind,
    len: u64,
    preview: Vec<u8>,
}

impl Discard {
    pub(crate) fn new(kind: RejectKind) -> Discard {
        Discard { kind, len: 0, preview: Vec::new() }
    }

    /// Counts `bytes` as discarded, keeping the first of them for the preview.
    pub(crate) fn take(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let room = PREVIEW_BYTES.saturating_sub(self.preview.len()).min(bytes.len());
        self.preview.extend_from_slice(&bytes[..room]);
    }

    pub(crate) fn finish(&mut self) -> Rejection {
        Rejection {
            kind: self.kind,
            len: std::mem::take(&mut self.len),
            preview: std::mem::take(&mut self.preview),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_preview_format() {
        let r = Rejection { kind: RejectKind::Oversize, len: 100, preview: b"\x0bMSH".to_vec() };
        assert_eq!(r.hex_preview(), "0b 4d 53 48 …  |.MSH|");
        let r = Rejection {
            kind: RejectKind::Malformed(OUTSIDE_FRAME),
            len: 3,
            preview: vec![b'a', 0x7F, b' '],
        };
        assert_eq!(r.hex_preview(), "61 7f 20  |a. |");
        assert_eq!(
            r.to_string(),
            "bytes outside a frame (3 bytes): 61 7f 20  |a. |",
            "Display adds the reason and length"
        );
        let r = Rejection { kind: RejectKind::Oversize, len: 0, preview: vec![] };
        assert_eq!(r.hex_preview(), "(empty)");
    }

    #[test]
    fn discard_keeps_only_the_preview_and_counts_everything() {
        let mut d = Discard::new(RejectKind::Oversize);
        d.take(&[1; 40]);
        d.take(&[2; 40]);
        d.take(&[3; 1000]);
        let r = d.finish();
        assert_eq!(r.len, 1080);
        assert_eq!(r.preview.len(), PREVIEW_BYTES);
        assert_eq!(&r.preview[..40], &[1; 40]);
        assert_eq!(&r.preview[40..], &[2; 24]);
    }
}
