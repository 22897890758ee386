//! The [`Encoder`]: frames outgoing messages so the receiver's deframer gets them back exactly.
//!
//! Its one rule: it never writes bytes that would decode differently. A message the framing
//! cannot carry is an error for the engine to report as undeliverable — never altered, never
//! dropped silently.

use std::time::Duration;

use memchr::memmem::Finder;

use crate::framing::{Framing, InvalidFraming};

/// Frames outgoing messages for a destination.
#[derive(Debug, Clone)]
pub struct Encoder {
    framing: Framing,
    rule: Rule,
}

#[derive(Debug, Clone)]
enum Rule {
    Raw,
    IdleGap(Duration),
    Prefixed { width: usize, max: u64 },
    // Boxed: memmem finders are large.
    Delimited(Box<Delims>),
    Invalid(InvalidFraming),
}

#[derive(Debug, Clone)]
struct Delims {
    start: Vec<u8>,
    end: Vec<u8>,
    start_finder: Finder<'static>,
    end_finder: Finder<'static>,
}

/// Why [`Encoder::encode`] refused a message. Nothing was written to `out`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message is longer than the length prefix can announce.
    #[error("message of {len} bytes is longer than the length prefix allows ({max} bytes)")]
    TooLong {
        /// Length of the message.
        len: usize,
        /// Largest length the prefix can hold (255, 65 535 or 4 294 967 295).
        max: u64,
    },
    /// The message contains a delimiter of the framing (an `end`, or a `start` of a framing
    /// that has one) that would cut or corrupt the frame at the receiver.
    #[error("message contains a framing delimiter at byte {offset}")]
    ContainsDelimiter {
        /// Offset in the message where the delimiter begins.
        offset: usize,
    },
    /// An empty message cannot be sent with idle-gap framing: the receiver would see nothing.
    #[error("an empty message cannot be sent with idle-gap framing")]
    Empty,
    /// The framing itself is unusable (see [`Framing::validate`]).
    #[error(transparent)]
    InvalidFraming(#[from] InvalidFraming),
}

impl Encoder {
    /// An encoder for `framing`. An invalid framing (see [`Framing::validate`]) makes every
    /// [`encode`](Encoder::encode) fail with [`EncodeError::InvalidFraming`].
    pub fn new(framing: Framing) -> Encoder {
        let rule = match (&framing, framing.validate()) {
            (_, Err(e)) => Rule::Invalid(e),
            (Framing::Raw, Ok(())) => Rule::Raw,
            (Framing::IdleGap { gap }, Ok(())) => Rule::IdleGap(*gap),
            (Framing::LengthPrefixed { width }, Ok(())) => {
                let width = usize::from(*width);
                Rule::Prefixed { width, max: u64::MAX >> (64 - 8 * width) }
            }
            (Framing::Delimited { start, end }, Ok(())) => Rule::Delimited(Box::new(Delims {
                start_finder: Finder::new(start).into_owned(),
                end_finder: Finder::new(end).into_owned(),
                start: start.clone(),
                end: end.clone(),
            })),
        };
        Encoder { framing, rule }
    }

    /// The framing this encoder writes.
    pub fn framing(&self) -> &Framing {
        &self.framing
    }

    /// Appends the framed `payload` to `out`. On error `out` is left as it was.
    ///
    /// Errors: [`EncodeError::TooLong`] for a payload too long for the length prefix width;
    /// [`EncodeError::ContainsDelimiter`] for a payload that would not decode back as itself
    /// with a delimited framing — one containing `end`, or `start` when the framing has one
    /// (e.g. `0x1C 0x0D` or `0x0B` inside an MLLP message, a newline inside a line), including
    /// a delimiter that would only form together with the closing `end`; [`EncodeError::Empty`]
    /// for an empty payload with idle-gap framing.
    pub fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match &self.rule {
            Rule::IdleGap(_) if payload.is_empty() => return Err(EncodeError::Empty),
            Rule::Raw | Rule::IdleGap(_) => out.extend_from_slice(payload),
            Rule::Prefixed { width, max } => {
                let len = payload.len() as u64;
                if len > *max {
                    return Err(EncodeError::TooLong { len: payload.len(), max: *max });
                }
                out.extend_from_slice(&len.to_be_bytes()[8 - width..]);
                out.extend_from_slice(payload);
            }
            Rule::Delimited(d) => {
                let Delims { start, end, start_finder, end_finder } = &**d;
                // Write the frame, then check it the way the receiver will read it: after
                // `start`, the first delimiter to complete must be the closing `end`. So no
                // `end` and no `start` may lie in `payload + end[..end.len() - 1]`.
                let base = out.len();
                out.extend_from_slice(start);
                let body = out.len();
                out.extend_from_slice(payload);
                out.extend_from_slice(end);
                let region = &out[body..out.len() - 1];
                let bad_end = end_finder.find(region);
                let bad_start = if start.is_empty() { None } else { start_finder.find(region) };
                let first = match (bad_end, bad_start) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Some(offset) = first {
                    out.truncate(base);
                    return Err(EncodeError::ContainsDelimiter { offset });
                }
            }
            Rule::Invalid(e) => return Err(EncodeError::InvalidFraming(*e)),
        }
        Ok(())
    }

    /// For idle-gap framing: the silence the sender must keep after each message so the
    /// receiver sees the boundary. `None` for other framings.
    pub fn gap(&self) -> Option<Duration> {
        match self.rule {
            Rule::IdleGap(gap) => Some(gap),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: Framing, payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
        let mut out = b"prev".to_vec();
        let r = Encoder::new(f).encode(payload, &mut out);
        if r.is_err() {
            assert_eq!(out, b"prev", "out is untouched on error");
        }
        r.map(|()| out[4..].to_vec())
    }

    #[test]
    fn mllp_refuses_end_or_start_inside_the_message() {
        assert_eq!(
            enc(Framing::mllp(), b"MSH|a\x1c\rb"),
            Err(EncodeError::ContainsDelimiter { offset: 5 })
        );
        assert_eq!(
            enc(Framing::mllp(), b"MSH\x0b"),
            Err(EncodeError::ContainsDelimiter { offset: 3 })
        );
        // A lone 0x1C or 0x0D is fine: only the pair closes a frame.
        assert_eq!(enc(Framing::mllp(), b"a\x1cb\rc"), Ok(b"\x0ba\x1cb\rc\x1c\r".to_vec()));
    }

    #[test]
    fn line_refuses_its_delimiter_inside_the_message() {
        assert_eq!(
            enc(Framing::line(b"\n"), b"one\ntwo"),
            Err(EncodeError::ContainsDelimiter { offset: 3 })
        );
        assert_eq!(enc(Framing::line(b"\r\n"), b"a\rb\nc"), Ok(b"a\rb\nc\r\n".to_vec()));
    }

    #[test]
    fn delimiter_formed_with_the_closing_end_is_refused() {
        // "xab" + "aba" = "xababa": the receiver would see "aba" end the frame at byte 1.
        let f = Framing::Delimited { start: vec![], end: b"aba".to_vec() };
        assert_eq!(enc(f, b"xab"), Err(EncodeError::ContainsDelimiter { offset: 1 }));
        // "abc\r" + "\r\n" is fine: the first "\r\n" is the closing one.
        assert_eq!(enc(Framing::line(b"\r\n"), b"abc\r"), Ok(b"abc\r\r\n".to_vec()));
    }

    #[test]
    fn length_prefix_refuses_what_it_cannot_announce() {
        let f1 = Framing::LengthPrefixed { width: 1 };
        assert_eq!(enc(f1.clone(), &[7; 255]).map(|v| v.len()), Ok(256));
        assert_eq!(enc(f1, &[7; 256]), Err(EncodeError::TooLong { len: 256, max: 255 }));
        assert_eq!(
            enc(Framing::LengthPrefixed { width: 2 }, &vec![0; 65_536]),
            Err(EncodeError::TooLong { len: 65_536, max: 65_535 })
        );
    }

    #[test]
    fn raw_and_idle_gap_write_the_bytes_unchanged() {
        assert_eq!(enc(Framing::Raw, b"\x0b\x1c\r\n"), Ok(b"\x0b\x1c\r\n".to_vec()));
        assert_eq!(enc(Framing::Raw, b""), Ok(vec![]));
        let gap = Duration::from_millis(30);
        assert_eq!(enc(Framing::IdleGap { gap }, b"abc"), Ok(b"abc".to_vec()));
        assert_eq!(enc(Framing::IdleGap { gap }, b""), Err(EncodeError::Empty));
        assert_eq!(Encoder::new(Framing::IdleGap { gap }).gap(), Some(gap));
        assert_eq!(Encoder::new(Framing::mllp()).gap(), None);
    }

    #[test]
    fn invalid_framing_refuses_everything() {
        let e = enc(Framing::LengthPrefixed { width: 3 }, b"x").expect_err("invalid");
        assert!(matches!(e, EncodeError::InvalidFraming(_)), "{e:?}");
        assert!(enc(Framing::line(b""), b"x").is_err());
    }
}
