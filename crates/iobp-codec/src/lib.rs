//! # iobp-codec: what one message is on a byte stream, and HL7 acknowledgements
//!
//! TCP connections and serial ports carry bytes; ioBufferPro stores and forwards *messages*.
//! This crate draws the line between them: a [`Deframer`] cuts one incoming stream into
//! messages ([`Decoded::Frame`]) and rejected bytes ([`Decoded::Rejected`]); an [`Encoder`]
//! frames outgoing messages for a destination (re-framing is protocol translation); the
//! [`hl7`] module reads and writes HL7 v2 ACKs for `ack: mllp`.
//!
//! It knows nothing of networks, clocks, async or files: pure functions and state machines over
//! bytes. The caller reads into a `bytes::BytesMut`, feeds it to the deframer, arms a timer when
//! told to ([`Deframer::idle_gap`]) and reports the end of the stream ([`FlushReason::Eof`]).
//!
//! ## The contract
//!
//! **What a message is**, per [`Framing`]:
//!
//! | framing | a message is |
//! |---|---|
//! | `Raw` | every chunk of bytes the caller read (cut into pieces of at most `max_message_bytes`); byte-transparent: the concatenation of messages is the stream |
//! | `Delimited { start, end }` | the bytes after `start` up to the first `end` (both removed); with an empty `start` (line framing) the bytes up to the next `end`, and a last line without `end` at end of stream |
//! | `LengthPrefixed { width }` | a big-endian length of `width` (1, 2, 4) bytes, then that many bytes |
//! | `IdleGap { gap }` | the bytes received until `gap` of silence, cut at `max_message_bytes` |
//!
//! Delimiters are recognised in the order their last byte arrives: inside a frame, whichever of
//! `end` and `start` *completes* first decides; if both complete on the same byte, `end` wins.
//! So when `start == end` (e.g. both `0x7E`), occurrences alternately open and close a frame,
//! and `7E 7E` between frames is an empty frame. Empty frames are delivered (an empty line,
//! MLLP `0B 1C 0D`): the engine decides what to do with them.
//!
//! **Rejections.** Bytes that are not a deliverable message are never dropped silently: each
//! bad frame or run of garbage becomes one [`Rejection`] (kind, byte count, a
//! [`PREVIEW_BYTES`]-byte preview), emitted when the bad frame is over (at the resync point) or
//! by `flush(Eof)`. Counting all frames' bytes (with their framing; a last line delivered at
//! end of stream has no `end`) and all rejections' `len` gives back the length of the stream.
//!
//! - [`RejectKind::Oversize`]: a frame whose payload exceeds `max_message_bytes`. The deframer
//!   stops buffering it as soon as that is certain and discards (counting, keeping the
//!   preview) until it can resynchronise: `Delimited` after the next `end`, or at the next
//!   `start` if one completes first; `LengthPrefixed` by skipping exactly the announced length.
//!   `Raw` and `IdleGap` never reject: they cut the message at `max_message_bytes` and go on.
//! - [`RejectKind::Malformed`] (only for `Delimited` with a non-empty `start`):
//!   [`OUTSIDE_FRAME`] for bytes before a `start` — a whole run of them is one rejection;
//!   [`STARTED_AGAIN`] when a `start` completes before the `end` of the current frame: the
//!   partial frame is rejected and a new frame begins at that `start`.
//! - At end of stream ([`FlushReason::Eof`]): a partial frame of a framing with a start marker
//!   or a length prefix is [`INCOMPLETE_AT_EOF`] (or `Oversize` if already too long);
//!   `Raw`, `IdleGap` and line-like framings deliver the remaining bytes as a last message.
//!
//! **Chunking does not matter.** For every framing but `Raw` (whose messages *are* the reads),
//! any way of splitting the stream into reads gives the same events; for `IdleGap`, given the
//! same idle points.
//!
//! **Bounded.** Once [`Deframer::decode`] has returned `None`, `buf` holds at most
//! [`Deframer::max_buffered`] bytes: `max_message_bytes` plus the longest delimiter or the
//! prefix width, minus one. A rejected frame costs a counter and a 64-byte preview, however
//! long it is; a length prefix announcing 4 GiB allocates nothing. Scanning remembers where it
//! stopped, so feeding one byte at a time stays linear.
//!
//! **What the encoder refuses** ([`EncodeError`]), rather than altering a message: a payload
//! too long for the length prefix; a payload that would not decode back as itself with a
//! delimited framing (it contains `end`, or `start` when there is one — `0x1C 0x0D` or `0x0B`
//! inside an MLLP message, a newline inside a line); an empty payload with idle-gap framing;
//! anything when the framing is invalid ([`Framing::validate`]). Every payload it accepts
//! decodes back to itself (given a receiver whose `max_message_bytes` is large enough, and for
//! idle-gap framing, a sender that keeps [`Encoder::gap`] after each message); for `Raw`, the
//! stream is the concatenation of the payloads.
//!
//! ## Example
//!
//! ```
//! use iobp_codec::bytes::BytesMut;
//! use iobp_codec::{Decoded, Deframer, Encoder, FlushReason, Framing, RejectKind};
//!
//! let mut wire = Vec::new();
//! let encoder = Encoder::new(Framing::mllp());
//! encoder.encode(b"MSH|^~\\&|first", &mut wire).expect("frameable");
//! wire.extend_from_slice(b"noise");
//! encoder.encode(b"MSH|^~\\&|second", &mut wire).expect("frameable");
//!
//! let mut deframer = Deframer::new(Framing::mllp(), 1024);
//! let mut buf = BytesMut::new();
//! let mut events = Vec::new();
//! for read in wire.chunks(7) {
//!     buf.extend_from_slice(read);
//!     while let Some(event) = deframer.decode(&mut buf) {
//!         events.push(event);
//!     }
//! }
//! while let Some(event) = deframer.flush(&mut buf, FlushReason::Eof) {
//!     events.push(event);
//! }
//! assert_eq!(events.len(), 3);
//! assert_eq!(events[0], Decoded::Frame(b"MSH|^~\\&|first".as_slice().into()));
//! let Decoded::Rejected(r) = &events[1] else { panic!("garbage is reported") };
//! assert_eq!((r.kind, r.len), (RejectKind::Malformed("bytes outside a frame"), 5));
//! assert_eq!(r.hex_preview(), "6e 6f 69 73 65  |noise|");
//! assert_eq!(events[2], Decoded::Frame(b"MSH|^~\\&|second".as_slice().into()));
//! ```

#![warn(missing_docs)]

pub mod astm;
mod deframer;
mod encoder;
mod framing;
pub mod hl7;
mod rejection;

pub use crate::deframer::{Decoded, Deframer, FlushReason};
pub use crate::encoder::{EncodeError, Encoder};
pub use crate::framing::{DEFAULT_MAX_MESSAGE_BYTES, Framing, InvalidFraming};
pub use crate::rejection::{
    INCOMPLETE_AT_EOF, OUTSIDE_FRAME, PREVIEW_BYTES, RejectKind, Rejection, STARTED_AGAIN,
};
/// The `bytes` crate this API uses (`BytesMut` in, `Bytes` out), re-exported so callers use
/// the same version.
pub use bytes;
