//! # ASTM E1381 (CLSI LIS1-A) link layer, as a pure state machine
//!
//! How clinical analyzers hand results to a laboratory information system over RS-232 or TCP.
//! No I/O and no clock here: the caller feeds received bytes, reports timer expiries and the
//! buffer's answer, and carries out the [`Action`]s (bytes to send, a timer to arm, a message
//! to store).
//!
//! ## Frames
//!
//! `<STX> FN text <ETB|ETX> C1 C2 <CR> <LF>`: `FN` is the frame number, an ASCII digit `1`…`7`
//! then `0`, `1`, … (the first frame after the establishment phase is `1`); `text` at most
//! [`MAX_FRAME_TEXT`] bytes; `ETB` ends an intermediate frame, `ETX` the last frame of a record;
//! `C1 C2` the checksum — the sum of the bytes from `FN` through `ETB`/`ETX` modulo 256, as two
//! upper-case hexadecimal digits. Numbering runs on through the whole transmission (ENQ …
//! EOT), across the messages it carries. Each E1394 record (ending with `CR`) is sent as one frame, or
//! as intermediate frames and a last one when it is longer ([`frames_of`]).
//!
//! ## What one stored message is
//!
//! One E1394 **message**: the records from a Header (`H`) record through the Terminator (`L`)
//! record, each ending with `CR`, concatenated — exactly the text of the frames, without the
//! framing. A transmission (ENQ … EOT) may carry several messages.
//!
//! ## Receiver (a source)
//!
//! Neutral until `ENQ`; answers `ACK` (or `NAK` while the buffer is full: the sender waits and
//! tries again). Then each frame is checked: a good frame with the expected number is `ACK`ed;
//! the frame before it again (our `ACK` was lost) is `ACK`ed and ignored; anything else —
//! checksum, number, length, shape — is `NAK`ed, and the sender retransmits. The frame that
//! ends the `L` record completes a message: the receiver emits [`Action::Store`] and holds that
//! frame's `ACK` until the caller reports the message durable ([`Receiver::stored`]), or
//! answers `NAK` when it could not be stored ([`Receiver::refused`]; the sender retransmits the
//! frame and the message completes again). `EOT` ends the transmission. Records received
//! after the last `L` record — a transmission the sender abandoned (it gave up after a
//! timeout or six `NAK`s and sent `EOT`), or a sender that sends no terminator — are **not**
//! a message: they are discarded ([`Action::Discard`], for the operator to see), as E1381
//! asks, and an abandoned message comes again whole in the next transmission. So no `ACK`
//! ever answers a stored message before it is durable. Without a frame for
//! [`RECEIVER_TIMEOUT`] the receiver returns to neutral and discards an unfinished message
//! the same way.
//!
//! ## Sender (a destination)
//!
//! One message per transmission, as an instrument sends: `ENQ`; on `ACK` the frames one by one,
//! each answered before the next; a `NAK`ed frame is sent again, at most
//! [`MAX_RETRANSMISSIONS`] times; then `EOT` and [`SendAction::Delivered`] — the message is Done
//! only once its last frame was acknowledged. An answer that is neither `ACK`, `NAK` nor `EOT`
//! (a garbled `ACK`) counts as a `NAK`, as E1381 asks — the receiver takes the repeated frame
//! once — but only its first byte: the rest of the bytes read with it are dropped, so a burst
//! of noise cannot make the sender run ahead of the receiver's answers. An `ENQ` answered
//! `NAK`, a frame refused too
//! often, or no answer within [`SENDER_TIMEOUT`] gives the attempt up
//! ([`SendAction::Failed`]): the caller tries again later from the first frame. A lost final
//! `ACK` therefore sends the message again: at least once, like every destination. On
//! contention (the receiver sends `ENQ` too) the sender keeps priority, waits
//! [`CONTENTION_WAIT`] and asks again.

use std::time::Duration;

/// Start of a frame.
pub const STX: u8 = 0x02;
/// End of the last frame of a record.
pub const ETX: u8 = 0x03;
/// End of transmission.
pub const EOT: u8 = 0x04;
/// Enquiry: a sender asks to transmit.
pub const ENQ: u8 = 0x05;
/// Positive acknowledgement.
pub const ACK: u8 = 0x06;
/// Negative acknowledgement.
pub const NAK: u8 = 0x15;
/// End of an intermediate frame.
pub const ETB: u8 = 0x17;
/// Carriage return: ends a record, and precedes `LF` at the end of a frame.
pub const CR: u8 = 0x0D;
/// Line feed: the last byte of a frame.
pub const LF: u8 = 0x0A;

/// Text bytes in one frame, at most.
pub const MAX_FRAME_TEXT: usize = 240;
/// A frame on the wire, at most: `STX`, `FN`, text, `ETB`/`ETX`, two checksum digits, `CR LF`.
pub const MAX_FRAME_BYTES: usize = MAX_FRAME_TEXT + 7;
/// A receiver returns to neutral after this long without a frame (E1381: 30 s).
pub const RECEIVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The checksum of a frame's body (`FN` through `ETB`/`ETX`): the sum modulo 256 as two
/// upper-case hexadecimal digits.
#[must_use]
pub fn checksum(body: &[u8]) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let sum = body.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    [HEX[usize::from(sum >> 4)], HEX[usize::from(sum & 0x0F)]]
}

/// The number of the frame after the one numbered `n` (`7` is followed by `0`).
#[must_use]
pub fn next_number(n: u8) -> u8 {
    (n + 1) % 8
}

/// One frame on the wire, numbered `number` (0–7), carrying `text`.
#[must_use]
pub fn encode_frame(number: u8, text: &[u8], last: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(text.len() + 7);
    f.push(STX);
    f.push(b'0' + number % 8);
    f.extend_from_slice(text);
    f.push(if last { ETX } else { ETB });
    let c = checksum(&f[1..]);
    f.extend_from_slice(&c);
    f.extend_from_slice(&[CR, LF]);
    f
}

/// The frames that carry `message` (E1394 records, each ending with `CR`; a last record
/// without one gets it), numbered from 1 (the first message of a transmission): each record
/// in one frame, or in intermediate frames of [`MAX_FRAME_TEXT`] bytes and a last one.
#[must_use]
pub fn frames_of(message: &[u8]) -> Vec<Vec<u8>> {
    frames_from(message, 1).0
}

/// Like [`frames_of`], numbered from `first` (a later message of the same transmission goes
/// on from the number after the previous message's last frame); also returns that next number.
#[must_use]
pub fn frames_from(message: &[u8], first: u8) -> (Vec<Vec<u8>>, u8) {
    let mut frames = Vec::new();
    let mut number = first % 8;
    for record in records(message) {
        let mut rest: &[u8] = &record;
        loop {
            let (text, more) = rest.split_at(rest.len().min(MAX_FRAME_TEXT));
            frames.push(encode_frame(number, text, more.is_empty()));
            number = next_number(number);
            if more.is_empty() {
                break;
            }
            rest = more;
        }
    }
    (frames, number)
}

/// The records of `message`, each with its `CR` (added to a last record without one).
fn records(message: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for piece in message.split_inclusive(|b| *b == CR) {
        let mut r = piece.to_vec();
        if r.last() != Some(&CR) {
            r.push(CR);
        }
        out.push(r);
    }
    out
}

/// Why a message cannot be sent with the link protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Nothing to send.
    #[error("an empty message")]
    Empty,
    /// A control character E1381 reserves for the link (it would end or corrupt a frame).
    #[error(
        "byte {byte:#04x} at offset {offset} is a link control character E1381 does not allow in a message's text"
    )]
    Restricted {
        /// The byte.
        byte: u8,
        /// Where in the message.
        offset: usize,
    },
}

/// The control characters E1381 reserves: `SOH STX ETX EOT ENQ ACK DLE NAK SYN ETB LF DC1–DC4`.
#[must_use]
pub fn is_restricted(b: u8) -> bool {
    matches!(b, 0x01..=0x06 | 0x10..=0x17 | LF)
}

/// Checks that `message` can be sent: not empty, no restricted character (records are
/// separated by `CR`, which is allowed).
///
/// # Errors
/// [`MessageError`] naming the first offending byte.
pub fn check_message(message: &[u8]) -> Result<(), MessageError> {
    if message.is_empty() {
        return Err(MessageError::Empty);
    }
    match message.iter().position(|b| is_restricted(*b)) {
        Some(offset) => Err(MessageError::Restricted { byte: message[offset], offset }),
        None => Ok(()),
    }
}

/// A frame read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Its number, 0–7.
    pub number: u8,
    /// Its text.
    pub text: &'a [u8],
    /// Ended with `ETX` (the last frame of a record), not `ETB`.
    pub last: bool,
}

/// Why a frame is refused (`NAK`ed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not `STX FN … ETB|ETX C1 C2 CR LF`.
    #[error("not a frame: {0}")]
    Shape(&'static str),
    /// The frame number is not a digit 0–7.
    #[error("frame number {0:#04x} is not 0-7")]
    Number(u8),
    /// More than [`MAX_FRAME_TEXT`] bytes of text.
    #[error("{0} bytes of text, more than 240")]
    TooLong(usize),
    /// The checksum does not match.
    #[error("checksum {got} where the frame sums to {expected}")]
    Checksum {
        /// What the frame's bytes sum to.
        expected: String,
        /// What the frame says.
        got: String,
    },
}

/// Reads one frame: `raw` from its `STX` through its `LF`.
///
/// # Errors
/// [`FrameError`] when it is not a well-formed frame.
pub fn parse_frame(raw: &[u8]) -> Result<Frame<'_>, FrameError> {
    let n = raw.len();
    if n < 7 {
        return Err(FrameError::Shape("too short"));
    }
    if raw[0] != STX {
        return Err(FrameError::Shape("no STX"));
    }
    if raw[n - 2] != CR || raw[n - 1] != LF {
        return Err(FrameError::Shape("no CR LF at the end"));
    }
    let end = n - 5;
    let last = match raw[end] {
        ETX => true,
        ETB => false,
        _ => return Err(FrameError::Shape("no ETB or ETX before the checksum")),
    };
    let number = match raw[1] {
        d @ b'0'..=b'7' => d - b'0',
        other => return Err(FrameError::Number(other)),
    };
    let text = &raw[2..end];
    if text.len() > MAX_FRAME_TEXT {
        return Err(FrameError::TooLong(text.len()));
    }
    let expected = checksum(&raw[1..=end]);
    let got = [raw[n - 4], raw[n - 3]];
    if !got.eq_ignore_ascii_case(&expected) {
        return Err(FrameError::Checksum {
            expected: String::from_utf8_lossy(&expected).into_owned(),
            got: String::from_utf8_lossy(&got).into_owned(),
        });
    }
    Ok(Frame { number, text, last })
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the peer.
    Send(Vec<u8>),
    /// Store this message (an E1394 message's records); then call [`Receiver::stored`], or
    /// [`Receiver::refused`] when it could not be stored.
    Store(Vec<u8>),
    /// (Re)arm the timer: call [`Receiver::timed_out`] if nothing arrives for this long.
    Arm(Duration),
    /// No timer is needed (neutral).
    Disarm,
    /// Records that do not form a complete message (no terminator record before `EOT`, a new
    /// header or the timeout): not stored; shown to the operator with the reason.
    Discard {
        /// The records received.
        records: Vec<u8>,
        /// Why they are not a message.
        why: String,
    },
    /// Something the operator should see: a frame refused, a timeout, bytes out of place.
    Note(String),
}

/// Where the receiver is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between transmissions: waiting for `ENQ`.
    Neutral,
    /// In a transmission: collecting a frame's bytes (none yet while `frame` is empty).
    Receiving,
    /// The frame that ends a message is good; its `ACK` waits for the caller's answer.
    Storing,
}

/// The receiving side of the link (see the module docs).
#[derive(Debug)]
pub struct Receiver {
    state: State,
    /// Bytes of the frame being received (from its `STX`).
    frame: Vec<u8>,
    /// The number the next new frame must carry.
    expected: u8,
    /// The text of the current record's intermediate frames.
    record: Vec<u8>,
    /// Records of the current message, complete.
    message: Vec<u8>,
    /// The message's size bound (a longer one is refused: `NAK`, and the note).
    max_message_bytes: usize,
    /// The text of the frame whose `ACK` waits for [`Receiver::stored`].
    held: Vec<u8>,
    /// Bytes that arrived while storing, handled after the answer.
    later: Vec<u8>,
    /// Whether the buffer can take a message now (`ENQ` answered `NAK` while not).
    accepting: bool,
}

impl Receiver {
    /// A receiver in the neutral state; messages longer than `max_message_bytes` are refused.
    #[must_use]
    pub fn new(max_message_bytes: usize) -> Self {
        Receiver {
            state: State::Neutral,
            frame: Vec::new(),
            expected: 1,
            record: Vec::new(),
            message: Vec::new(),
            max_message_bytes,
            held: Vec::new(),
            later: Vec::new(),
            accepting: true,
        }
    }

    /// Whether a transmission is in progress (not neutral).
    #[must_use]
    pub fn busy(&self) -> bool {
        self.state != State::Neutral
    }

    /// Whether the last [`Action::Store`] holds its frame's `ACK`: the receiver waits for
    /// [`Receiver::stored`] or [`Receiver::refused`] and buffers what arrives meanwhile.
    #[must_use]
    pub fn awaits_answer(&self) -> bool {
        self.state == State::Storing
    }

    /// Tells the receiver whether the buffer can take messages: while it cannot, an `ENQ` is
    /// answered `NAK` (the sender waits and asks again).
    pub fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    /// Handles received bytes; returns what to do, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        for &b in bytes {
            self.byte(b, &mut out);
        }
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Action>) {
        match self.state {
            State::Neutral => match b {
                ENQ if self.accepting => {
                    self.state = State::Receiving;
                    self.expected = 1;
                    self.frame.clear();
                    self.record.clear();
                    self.message.clear();
                    out.push(Action::Send(vec![ACK]));
                    out.push(Action::Arm(RECEIVER_TIMEOUT));
                }
                ENQ => {
                    out.push(Action::Send(vec![NAK]));
                    out.push(Action::Note("ENQ answered NAK: the buffer is full".into()));
                }
                // Line noise or the tail of an abandoned transmission: ignored, as E1381 asks.
                _ => {}
            },
            State::Receiving => {
                if self.frame.is_empty() {
                    match b {
                        STX => self.frame.push(STX),
                        EOT => self.end_of_transmission(out),
                        // A repeated ENQ, stray CR/LF or noise between frames.
                        _ => {}
                    }
                    return;
                }
                self.frame.push(b);
                if b == LF && self.frame.len() >= 2 && self.frame[self.frame.len() - 2] == CR {
                    let raw = std::mem::take(&mut self.frame);
                    self.frame_received(&raw, out);
                } else if self.frame.len() > MAX_FRAME_BYTES {
                    // Never ends as a frame: refuse it and wait for the retransmission.
                    self.frame.clear();
                    out.push(Action::Send(vec![NAK]));
                    out.push(Action::Note("frame longer than 247 bytes refused".into()));
                    out.push(Action::Arm(RECEIVER_TIMEOUT));
                }
            }
            State::Storing => self.later.push(b),
        }
    }

    fn frame_received(&mut self, raw: &[u8], out: &mut Vec<Action>) {
        out.push(Action::Arm(RECEIVER_TIMEOUT));
        let frame = match parse_frame(raw) {
            Ok(f) => f,
            Err(e) => {
                out.push(Action::Send(vec![NAK]));
                out.push(Action::Note(format!("frame refused: {e}")));
                return;
            }
        };
        if frame.number != self.expected {
            if next_number(frame.number) == self.expected {
                // Our ACK was lost and the sender repeats the frame we have: ACK, ignore.
                out.push(Action::Send(vec![ACK]));
            } else {
                out.push(Action::Send(vec![NAK]));
                out.push(Action::Note(format!(
                    "frame {} refused: frame {} expected",
                    frame.number, self.expected
                )));
            }
            return;
        }
        let size = self.message.len() + self.record.len() + frame.text.len();
        if size > self.max_message_bytes {
            out.push(Action::Send(vec![NAK]));
            out.push(Action::Note(format!(
                "message longer than {} bytes refused",
                self.max_message_bytes
            )));
            return;
        }
        if !frame.last {
            self.record.extend_from_slice(frame.text);
            self.expected = next_number(self.expected);
            out.push(Action::Send(vec![ACK]));
            return;
        }
        let mut record = std::mem::take(&mut self.record);
        record.extend_from_slice(frame.text);
        if record.first() == Some(&b'L') {
            // The terminator: the message is complete; its ACK waits for durability.
            let mut message = self.message.clone();
            message.extend_from_slice(&record);
            self.held = record;
            self.state = State::Storing;
            out.push(Action::Disarm);
            out.push(Action::Store(message));
        } else {
            if record.first() == Some(&b'H') && !self.message.is_empty() {
                // A new header without a terminator before it: the previous records are no
                // complete message.
                out.push(Action::Discard {
                    records: std::mem::take(&mut self.message),
                    why: "a new header record before the terminator record".into(),
                });
            }
            self.message.extend_from_slice(&record);
            self.expected = next_number(self.expected);
            out.push(Action::Send(vec![ACK]));
        }
    }

    fn end_of_transmission(&mut self, out: &mut Vec<Action>) {
        let mut unfinished = std::mem::take(&mut self.message);
        unfinished.extend_from_slice(&self.record);
        self.reset();
        out.push(Action::Disarm);
        if !unfinished.is_empty() {
            out.push(Action::Discard {
                records: unfinished,
                why: "EOT before the terminator record (the sender abandoned the message, or \
                      sends no terminator)"
                    .into(),
            });
        }
    }

    fn reset(&mut self) {
        self.state = State::Neutral;
        self.frame.clear();
        self.record.clear();
        self.message.clear();
        self.expected = 1;
    }

    /// The message of the last [`Action::Store`] is durable: answers its last frame's `ACK`
    /// and goes on with what arrived meanwhile.
    pub fn stored(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Storing {
            self.state = State::Receiving;
            self.message.clear();
            self.held.clear();
            self.expected = next_number(self.expected);
            out.push(Action::Send(vec![ACK]));
            out.push(Action::Arm(RECEIVER_TIMEOUT));
        }
        let later = std::mem::take(&mut self.later);
        out.extend(self.feed(&later));
        out
    }

    /// The message of the last [`Action::Store`] could not be stored (the buffer is full):
    /// the held frame is answered `NAK`, so the sender sends it again and the message
    /// completes again.
    pub fn refused(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Storing {
            self.state = State::Receiving;
            self.held.clear();
            out.push(Action::Send(vec![NAK]));
            out.push(Action::Arm(RECEIVER_TIMEOUT));
        }
        let later = std::mem::take(&mut self.later);
        out.extend(self.feed(&later));
        out
    }

    /// The timer armed by the last [`Action::Arm`] expired: back to neutral; an unfinished
    /// message is dropped (the sender restarts it).
    pub fn timed_out(&mut self) -> Vec<Action> {
        if self.state != State::Receiving {
            return Vec::new();
        }
        let mut unfinished = std::mem::take(&mut self.message);
        unfinished.extend_from_slice(&self.record);
        self.reset();
        let mut out = vec![Action::Disarm];
        if unfinished.is_empty() {
            out.push(Action::Note("no frame for 30 s: back to neutral".into()));
        } else {
            out.push(Action::Discard {
                records: unfinished,
                why: "no frame for 30 s: the unfinished message is dropped (the sender sends \
                      it again)"
                    .into(),
            });
        }
        out
    }
}

/// A sender waits this long for an answer to `ENQ` or to a frame (E1381: 15 s).
pub const SENDER_TIMEOUT: Duration = Duration::from_secs(15);
/// After contention (both sides sent `ENQ`), the instrument side waits this long before its
/// next `ENQ` (E1381: at least 1 s; the computer system side yields and receives).
pub const CONTENTION_WAIT: Duration = Duration::from_secs(1);
/// A frame is sent again after a `NAK` at most this many times (E1381: 6), then the
/// transmission is given up.
pub const MAX_RETRANSMISSIONS: u32 = 6;

/// What the caller of a [`Sender`] must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendAction {
    /// Send these bytes to the peer.
    Send(Vec<u8>),
    /// (Re)arm the timer: call [`Sender::timed_out`] if no answer arrives for this long.
    Arm(Duration),
    /// No timer is needed.
    Disarm,
    /// The message was accepted: its last frame was acknowledged (mark it Done).
    Delivered,
    /// This attempt is given up (the reason says why); the message is not delivered: try
    /// again after the backoff, from its first frame.
    Failed(String),
}

/// Where the sender is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// Nothing to send, or between attempts.
    Idle,
    /// `ENQ` sent; waiting for `ACK`.
    Establishing,
    /// Both sides sent `ENQ`: waiting [`CONTENTION_WAIT`] before asking again.
    Contention,
    /// Frame `index` sent; waiting for its answer.
    Transfer { index: usize, retransmissions: u32 },
}

/// The sending side of the link, as an instrument sends (it keeps priority on contention):
/// one message per transmission — `ENQ`, its frames one by one, `EOT`.
#[derive(Debug)]
pub struct Sender {
    state: Sending,
    frames: Vec<Vec<u8>>,
}

impl Default for Sender {
    fn default() -> Self {
        Self::new()
    }
}

impl Sender {
    /// An idle sender.
    #[must_use]
    pub fn new() -> Self {
        Sender { state: Sending::Idle, frames: Vec::new() }
    }

    /// Whether a transmission is in progress.
    #[must_use]
    pub fn busy(&self) -> bool {
        self.state != Sending::Idle
    }

    /// Starts sending `message` (E1394 records): asks for the line with `ENQ`. A message
    /// already in progress is abandoned.
    pub fn start(&mut self, message: &[u8]) -> Vec<SendAction> {
        self.frames = frames_of(message);
        self.state = Sending::Establishing;
        vec![SendAction::Send(vec![ENQ]), SendAction::Arm(SENDER_TIMEOUT)]
    }

    /// Handles received bytes. While a frame waits for its answer only the first byte
    /// counts (see the module docs).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SendAction> {
        let mut out = Vec::new();
        for &b in bytes {
            let waiting_for_frame_answer = matches!(self.state, Sending::Transfer { .. });
            self.byte(b, &mut out);
            if waiting_for_frame_answer {
                break;
            }
        }
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<SendAction>) {
        match (self.state, b) {
            (Sending::Establishing, ACK) => self.send_frame(0, 0, out),
            (Sending::Establishing, NAK) => {
                self.give_up("the receiver answered ENQ with NAK (busy)", false, out);
            }
            (Sending::Establishing, ENQ) => {
                // Contention: the receiver yields to the instrument, which asks again later.
                self.state = Sending::Contention;
                out.push(SendAction::Arm(CONTENTION_WAIT));
            }
            // ACK, or EOT (the receiver asks to interrupt: E1381 treats it as an ACK; this
            // sender finishes its message first).
            (Sending::Transfer { index, .. }, ACK | EOT) => {
                if index + 1 < self.frames.len() {
                    self.send_frame(index + 1, 0, out);
                } else {
                    self.state = Sending::Idle;
                    self.frames.clear();
                    out.push(SendAction::Send(vec![EOT]));
                    out.push(SendAction::Disarm);
                    out.push(SendAction::Delivered);
                }
            }
            // NAK, or any other character (a garbled answer): the frame goes again.
            (Sending::Transfer { index, retransmissions }, _) => {
                if retransmissions >= MAX_RETRANSMISSIONS {
                    self.give_up("a frame was refused (NAK) 7 times", true, out);
                } else {
                    self.send_frame(index, retransmissions + 1, out);
                }
            }
            // Anything else while establishing or idle (noise, a late answer) is ignored.
            _ => {}
        }
    }

    fn send_frame(&mut self, index: usize, retransmissions: u32, out: &mut Vec<SendAction>) {
        let Some(frame) = self.frames.get(index) else {
            self.give_up("no frame to send", true, out);
            return;
        };
        out.push(SendAction::Send(frame.clone()));
        out.push(SendAction::Arm(SENDER_TIMEOUT));
        self.state = Sending::Transfer { index, retransmissions };
    }

    fn give_up(&mut self, why: &str, end_transmission: bool, out: &mut Vec<SendAction>) {
        self.state = Sending::Idle;
        if end_transmission {
            out.push(SendAction::Send(vec![EOT]));
        }
        out.push(SendAction::Disarm);
        out.push(SendAction::Failed(why.to_string()));
    }

    /// The timer expired: after contention, `ENQ` again; while waiting for an answer, the
    /// transmission is given up (`EOT`).
    pub fn timed_out(&mut self) -> Vec<SendAction> {
        let mut out = Vec::new();
        match self.state {
            Sending::Contention => {
                self.state = Sending::Establishing;
                out.push(SendAction::Send(vec![ENQ]));
                out.push(SendAction::Arm(SENDER_TIMEOUT));
            }
            Sending::Establishing | Sending::Transfer { .. } => {
                self.give_up("no answer within 15 s", true, &mut out);
            }
            Sending::Idle => {}
        }
        out
    }
}

/// The record types of an E1394 message, in order (`"H P O R R L"`): what the Live View
/// shows of an ASTM message at a glance.
#[must_use]
pub fn record_types(message: &[u8]) -> String {
    let mut out = String::new();
    for record in message.split(|b| *b == CR).filter(|r| !r.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        match record.first() {
            Some(c) if c.is_ascii_alphabetic() => out.push(char::from(*c)),
            _ => out.push('?'),
        }
    }
    out
}

/// Field `field` (1-based, E1394 numbering: the record type is field 1) of the first record
/// of type `record` in an E1394 message, without components split: `field(m, b'O', 3)` is the
/// specimen (sample) id of the first order record. Fields are separated by the delimiter the
/// message's header declares (its second byte), `|` without a header.
#[must_use]
pub fn field(message: &[u8], record: u8, field: usize) -> Option<&[u8]> {
    let delimiter = match message {
        [b'H', d, ..] => *d,
        _ => b'|',
    };
    let rec = message
        .split(|b| *b == CR)
        .find(|r| r.first().is_some_and(|c| c.eq_ignore_ascii_case(&record)))?;
    rec.split(|b| *b == delimiter).nth(field.checked_sub(1)?)
}

/// What an operator should see of an E1394 message at a glance — its record types and the
/// sample id of its first order record: `"H P O R R L · sample S00000042"`. `None` when
/// `message` does not look like one (it does not start with a header record `H` and its
/// delimiter, or has no `CR`-separated second record): other protocols' messages get no
/// summary.
#[must_use]
pub fn summary(message: &[u8]) -> Option<String> {
    let looks_like = matches!(message, [b'H', d, ..] if d.is_ascii_punctuation())
        && message.iter().position(|b| *b == CR).is_some_and(|i| i + 1 < message.len());
    if !looks_like {
        return None;
    }
    let mut s = record_types(message);
    if let Some(sample) = field(message, b'O', 3).filter(|s| !s.is_empty()) {
        s.push_str(" · sample ");
        s.push_str(&String::from_utf8_lossy(&sample[..sample.len().min(64)]));
    }
    Some(s)
}
