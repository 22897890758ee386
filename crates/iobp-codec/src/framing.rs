//! What one message is on a byte stream: the [`Framing`] shared by the [`Deframer`] (reading)
//! and the [`Encoder`] (writing), and its validation.
//!
//! [`Deframer`]: crate::Deframer
//! [`Encoder`]: crate::Encoder

use std::time::Duration;

/// Default upper bound of one message, in bytes (1 MiB), as the specification's
/// `max_message_bytes` default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How a byte stream is cut into messages.
///
/// The crate documentation states, for each variant, what a message is, when a frame is
/// rejected and how the stream resynchronises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// Byte-transparent: every chunk of bytes read becomes one message (split at
    /// `max_message_bytes`); bytes are never changed or dropped.
    Raw,
    /// Message = bytes between `start` and `end` sequences. `start` may be empty (then a
    /// message is everything up to `end`). `end` must not be empty.
    ///
    /// [`Framing::line`] is `Delimited { start: [], end: b"\n" }`, [`Framing::mllp`] is
    /// `{ [0x0B], [0x1C, 0x0D] }`, [`Framing::stx_etx`] is `{ [0x02], [0x03] }`.
    /// When `start == end` (e.g. both `0x7E`), occurrences alternately open and close a frame.
    Delimited {
        /// The sequence that opens a frame; empty for line-like framings.
        start: Vec<u8>,
        /// The sequence that closes a frame.
        end: Vec<u8>,
    },
    /// Big-endian length prefix of `width` bytes (1, 2 or 4), then that many payload bytes.
    LengthPrefixed {
        /// Size of the length prefix in bytes: 1, 2 or 4.
        width: u8,
    },
    /// A message ends after `gap` of silence (the caller owns the clock: it calls
    /// [`Deframer::flush`](crate::Deframer::flush) with [`FlushReason::Idle`](crate::FlushReason::Idle)),
    /// or at `max_message_bytes`.
    IdleGap {
        /// The silence that ends a message.
        gap: Duration,
    },
}

impl Framing {
    /// Line framing: a message is everything up to `delimiter` (typically `b"\n"` or
    /// `b"\r\n"`); the delimiter is not part of the message.
    pub fn line(delimiter: &[u8]) -> Framing {
        Framing::Delimited { start: Vec::new(), end: delimiter.to_vec() }
    }

    /// HL7 Minimal Lower Layer Protocol: `0x0B` message `0x1C 0x0D`.
    pub fn mllp() -> Framing {
        Framing::Delimited { start: vec![0x0B], end: vec![0x1C, 0x0D] }
    }

    /// STX/ETX framing: `0x02` message `0x03`.
    pub fn stx_etx() -> Framing {
        Framing::Delimited { start: vec![0x02], end: vec![0x03] }
    }

    /// Checks the framing is usable for both reading and writing. Configuration should refuse
    /// a framing that fails this. If one is used anyway, the [`Encoder`](crate::Encoder)
    /// refuses every message with [`EncodeError::InvalidFraming`](crate::EncodeError::InvalidFraming),
    /// and the [`Deframer`](crate::Deframer) decodes an empty `end` or a bad width as
    /// [`Framing::Raw`] (never losing a byte) and anything else by the rules.
    ///
    /// Refused: a `Delimited` framing with an empty `end`; a `start` that occurs inside `end`
    /// before its last byte (every frame would look started again before it ended, so nothing
    /// could be sent); a `LengthPrefixed` width other than 1, 2 or 4; an `IdleGap` of zero.
    pub fn validate(&self) -> Result<(), InvalidFraming> {
        match self {
            Framing::Delimited { start, end } => {
                if end.is_empty() {
                    return Err(InvalidFraming { reason: "the end sequence must not be empty" });
                }
                if !start.is_empty() && memchr::memmem::find(&end[..end.len() - 1], start).is_some()
                {
                    return Err(InvalidFraming {
                        reason: "the start sequence must not occur inside the end sequence",
                    });
                }
                Ok(())
            }
            Framing::LengthPrefixed { width } if ![1, 2, 4].contains(width) => {
                Err(InvalidFraming { reason: "the length prefix width must be 1, 2 or 4 bytes" })
            }
            Framing::IdleGap { gap } if gap.is_zero() => {
                Err(InvalidFraming { reason: "the idle gap must be longer than zero" })
            }
            Framing::Raw | Framing::LengthPrefixed { .. } | Framing::IdleGap { .. } => Ok(()),
        }
    }
}

/// A [`Framing`] that cannot be used (see [`Framing::validate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid framing: {reason}")]
pub struct InvalidFraming {
    /// Why, for the operator.
    pub reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_framings_are_the_documented_bytes() {
        assert_eq!(
            Framing::line(b"\r\n"),
            Framing::Delimited { start: vec![], end: b"\r\n".to_vec() }
        );
        assert_eq!(
            Framing::mllp(),
            Framing::Delimited { start: vec![0x0B], end: vec![0x1C, 0x0D] }
        );
        assert_eq!(Framing::stx_etx(), Framing::Delimited { start: vec![0x02], end: vec![0x03] });
    }

    #[test]
    fn validate_accepts_the_usual_framings() {
        for f in [
            Framing::Raw,
            Framing::line(b"\n"),
            Framing::mllp(),
            Framing::stx_etx(),
            Framing::Delimited { start: vec![0x7E], end: vec![0x7E] },
            Framing::Delimited { start: b"\n".to_vec(), end: b"\r\n".to_vec() },
            Framing::LengthPrefixed { width: 1 },
            Framing::LengthPrefixed { width: 2 },
            Framing::LengthPrefixed { width: 4 },
            Framing::IdleGap { gap: Duration::from_millis(50) },
        ] {
            assert_eq!(f.validate(), Ok(()), "{f:?}");
        }
    }

    #[test]
    fn validate_refuses_unusable_framings() {
        for f in [
            Framing::line(b""),
            Framing::Delimited { start: vec![1], end: vec![] },
            Framing::Delimited { start: b"A".to_vec(), end: b"AB".to_vec() },
            Framing::Delimited { start: b"\r".to_vec(), end: b"x\r\n".to_vec() },
            Framing::LengthPrefixed { width: 0 },
            Framing::LengthPrefixed { width: 3 },
            Framing::LengthPrefixed { width: 8 },
            Framing::IdleGap { gap: Duration::ZERO },
        ] {
            assert!(f.validate().is_err(), "{f:?}");
        }
    }
}
