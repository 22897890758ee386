//! Numbered messages over a framing: the `lines` simulator (newline-framed text lines) and
//! the `mllp` simulator (HL7 v2 messages in MLLP frames, acknowledged with HL7 ACKs). One
//! mechanism for both: a sender of numbered messages, paced and, for MLLP, stop-and-wait on
//! the receiver's ACK; and a verifying receiver that reports any message lost, repeated or out
//! of order.
//!
//! **Numbering.** Line `n` is `line <n, ten digits> <padding>`; HL7 message `n` is an
//! `ADT^A01` whose control id (MSH-10) is `n` ([`message`]). The receiver reads the number
//! back ([`number_of`]) and checks that each is the one after the last (a repeat of an earlier
//! number is a duplicate — at-least-once delivery may legitimately produce them after a
//! failure — a skipped number is a loss).

use std::time::Duration;

use bytes::BytesMut;
use iobp_codec::hl7::{AckCode, build_ack, parse_ack, parse_msh};
use iobp_codec::{Decoded, Deframer, Encoder, Framing};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::Error;

/// Which simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text lines ending with `\n`.
    Lines,
    /// HL7 v2 in MLLP frames, each answered with an HL7 ACK.
    Mllp,
}

impl Kind {
    fn framing(self) -> Framing {
        match self {
            Kind::Lines => Framing::line(b"\n"),
            Kind::Mllp => Framing::mllp(),
        }
    }
}

/// Message `n` of `kind`, `size` bytes at least (padding added to lines).
#[must_use]
pub fn message(kind: Kind, n: u64, size: usize) -> Vec<u8> {
    match kind {
        Kind::Lines => {
            let mut m = format!("line {n:010}").into_bytes();
            if m.len() < size {
                m.push(b' ');
                m.resize(size, b'x');
            }
            m
        }
        Kind::Mllp => format!(
            "MSH|^~\\&|SIMULATE|LAB|IOBP|HOSP|20261204101500||ADT^A01|{n}|P|2.5\r\
             EVN|A01|20261204101500\r\
             PID|1||{n}^^^HOSP^MR||Doe^Jane||19800101|F\r\
             PV1|1|I|WARD^101^1\r"
        )
        .into_bytes(),
    }
}

/// The number a message made by [`message`] carries.
#[must_use]
pub fn number_of(kind: Kind, m: &[u8]) -> Option<u64> {
    match kind {
        Kind::Lines => {
            let rest = m.strip_prefix(b"line ")?;
            let digits = rest.get(..10)?;
            std::str::from_utf8(digits).ok()?.parse().ok()
        }
        Kind::Mllp => parse_msh(m)?.control_id.parse().ok(),
    }
}

/// What the sender does.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// Lines or HL7.
    pub kind: Kind,
    /// Messages to send.
    pub count: u64,
    /// The number of the first.
    pub first: u64,
    /// Messages per second at most (`None`: as fast as the link takes them).
    pub rate: Option<f64>,
    /// Bytes per line at least (lines only).
    pub size: usize,
    /// How long to wait for an HL7 ACK before sending the message again.
    pub ack_timeout: Duration,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            kind: Kind::Lines,
            count: 10,
            first: 1,
            rate: None,
            size: 0,
            ack_timeout: Duration::from_secs(10),
        }
    }
}

/// What the sender did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderReport {
    /// Messages sent (and, for MLLP, accepted with `AA`/`CA`).
    pub sent: u64,
    /// HL7 messages sent again after a refusal (`AE`/`AR`) or a timeout.
    pub resent: u64,
}

/// Sends messages from `report.sent` on over one connection, until all are sent or the
/// connection fails.
///
/// # Errors
/// The connection failed (the caller opens it again and goes on from `report.sent`).
pub async fn send_on<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    opts: &SenderOptions,
    report: &mut SenderReport,
) -> Result<(), Error> {
    let encoder = Encoder::new(opts.kind.framing());
    let mut acks = Deframer::new(Framing::mllp(), 1 << 20);
    let mut inbox = BytesMut::with_capacity(4096);
    let started = Instant::now();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut sent_since_start = 0u64;
    while report.sent < opts.count {
        let n = opts.first + report.sent;
        let m = message(opts.kind, n, opts.size);
        out.clear();
        encoder.encode(&m, &mut out).map_err(|e| Error::Protocol(format!("message {n}: {e}")))?;
        let mut batched = 0;
        if opts.kind == Kind::Lines && opts.rate.is_none() {
            // Unpaced lines: batch them, as a busy sender's writes would be.
            while out.len() < 32 * 1024 && report.sent + batched + 1 < opts.count {
                batched += 1;
                let m = message(opts.kind, n + batched, opts.size);
                encoder.encode(&m, &mut out).map_err(|e| Error::Protocol(e.to_string()))?;
            }
        }
        if let Some(rate) = opts.rate.filter(|r| *r > 0.0) {
            #[allow(clippy::cast_precision_loss)]
            let due = started + Duration::from_secs_f64(sent_since_start as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        io.write_all(&out).await.map_err(io_error)?;
        io.flush().await.map_err(io_error)?;
        if opts.kind == Kind::Mllp {
            let deadline = Instant::now() + opts.ack_timeout;
            let accepted = loop {
                if let Some(d) = acks.decode(&mut inbox) {
                    let Decoded::Frame(f) = d else { continue };
                    let reply = parse_ack(&f)
                        .ok_or_else(|| Error::Protocol("an answer that is no HL7 ACK".into()))?;
                    break reply.code.is_accept();
                }
                let read = tokio::time::timeout_at(deadline, io.read_buf(&mut inbox)).await;
                match read {
                    Err(_) => break false,
                    Ok(Err(e)) => return Err(io_error(e)),
                    Ok(Ok(0)) => {
                        return Err(Error::Protocol("the receiver closed the connection".into()));
                    }
                    Ok(Ok(_)) => {}
                }
            };
            if !accepted {
                report.resent += 1;
                continue;
            }
        }
        report.sent += 1 + batched;
        sent_since_start += 1 + batched;
    }
    Ok(())
}

/// What the receiver does.
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// Lines or HL7.
    pub kind: Kind,
    /// The number the first message must carry.
    pub first: u64,
    /// MLLP: answer every n-th message `AE` (refused: the sender must send it again).
    pub refuse_every: Option<u64>,
}

/// What the receiver saw: a clean run has only `received` and `in_order`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// Messages taken (refused ones not counted).
    pub received: u64,
    /// Messages with the expected number.
    pub in_order: u64,
    /// Numbers seen again (at-least-once repeats).
    pub duplicates: u64,
    /// Numbers skipped (lost messages).
    pub missing: u64,
    /// Messages whose number could not be read.
    pub unreadable: u64,
    /// MLLP messages refused on purpose.
    pub refused: u64,
    /// The next number expected.
    pub next: u64,
}

impl ReceiverReport {
    /// A report expecting `first`.
    #[must_use]
    pub fn new(first: u64) -> Self {
        ReceiverReport { next: first, ..ReceiverReport::default() }
    }

    /// Checks the next message's number (`None`: unreadable).
    pub fn check(&mut self, n: Option<u64>) {
        self.received += 1;
        match n {
            None => self.unreadable += 1,
            Some(n) if n == self.next => {
                self.in_order += 1;
                self.next += 1;
            }
            Some(n) if n < self.next => self.duplicates += 1,
            Some(n) => {
                self.missing += n - self.next;
                self.next = n + 1;
            }
        }
    }
}

/// Receives over one connection until the peer closes it or `expect` messages arrived in
/// order.
///
/// # Errors
/// The connection failed.
pub async fn receive_on<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    opts: &ReceiverOptions,
    report: &mut ReceiverReport,
    expect: Option<u64>,
) -> Result<(), Error> {
    let mut deframer = Deframer::new(opts.kind.framing(), 16 << 20);
    let ack_encoder = Encoder::new(Framing::mllp());
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut answers = Vec::new();
    let mut seen = 0u64;
    loop {
        if expect.is_some_and(|e| report.in_order >= e) {
            return Ok(());
        }
        let n = io.read_buf(&mut buf).await.map_err(io_error)?;
        if n == 0 {
            return Ok(());
        }
        answers.clear();
        while let Some(d) = deframer.decode(&mut buf) {
            let Decoded::Frame(f) = d else {
                report.unreadable += 1;
                continue;
            };
            if opts.kind == Kind::Mllp {
                seen += 1;
                let refuse = opts.refuse_every.is_some_and(|k| k > 0 && seen.is_multiple_of(k));
                let (code, text) = if refuse {
                    report.refused += 1;
                    (AckCode::AE, Some("refused by the simulator on purpose"))
                } else {
                    (AckCode::AA, None)
                };
                let ack = build_ack(&f, code, text, "20261204101500", &format!("SIMACK{seen}"));
                ack_encoder
                    .encode(&ack, &mut answers)
                    .map_err(|e| Error::Protocol(e.to_string()))?;
                if refuse {
                    continue;
                }
            }
            report.check(number_of(opts.kind, &f));
        }
        if !answers.is_empty() {
            io.write_all(&answers).await.map_err(io_error)?;
            io.flush().await.map_err(io_error)?;
        }
    }
}

#[allow(clippy::needless_pass_by_value)] // a `map_err` adapter
fn io_error(e: std::io::Error) -> Error {
    Error::Protocol(format!("connection: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back() {
        for kind in [Kind::Lines, Kind::Mllp] {
            assert_eq!(number_of(kind, &message(kind, 42, 100)), Some(42));
        }
        assert_eq!(message(Kind::Lines, 7, 64).len(), 64);
    }

    #[test]
    fn the_verifier_names_losses_duplicates_and_order() {
        let mut r = ReceiverReport::new(1);
        for n in [1, 2, 2, 5, 6, 3] {
            r.check(Some(n));
        }
        r.check(None);
        assert_eq!((r.in_order, r.duplicates, r.missing, r.unreadable, r.next), (3, 2, 2, 1, 7));
    }
}
