//! An ASTM E1381/E1394 analyzer (it sends result messages) and a LIS (it receives them), over
//! the link protocol of `iobp_codec::astm` — the same state machines ioBufferPro's `astm`
//! sides run, driven here by a script and faults a test or an engineer asks for.
//!
//! **Analyzer.** Sends result messages numbered `first ..= first + count - 1`: sample id
//! `S` + the number, eight digits ([`result_message`]), one transmission per message. Faults:
//! a frame sent with a wrong checksum every `corrupt_every` frames (the receiver must `NAK`
//! it; the analyzer retransmits), a received `ACK` garbled every `garble_ack_every` answers
//! (the analyzer treats it as a `NAK` and retransmits; the receiver must take the repeated
//! frame once). A failed attempt is retried after `retry_after`; a lost connection is opened
//! again and the message sent again from its first frame.
//!
//! **LIS.** Receives messages and hands each to the caller (who checks them), answering
//! `ACK`/`NAK` as E1381 asks. Faults: every `garble_ack_every`-th `ACK` goes out garbled (the
//! sender must retransmit the frame, and we take it once), every `nak_every`-th good frame is
//! refused with `NAK` (the sender must send it again).

use std::fmt::Write as _;
use std::time::Duration;

use iobp_codec::astm::{Action, Receiver, SendAction, Sender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::{Endpoint, Error};

/// What the analyzer does.
#[derive(Debug, Clone)]
pub struct AnalyzerOptions {
    /// Messages to send.
    pub count: u64,
    /// The number of the first message (its sample id).
    pub first: u64,
    /// Send every n-th frame with a wrong checksum.
    pub corrupt_every: Option<u64>,
    /// Garble every n-th `ACK` received.
    pub garble_ack_every: Option<u64>,
    /// Add a comment record longer than one frame (split with `ETB`) to every n-th message.
    pub long_every: Option<u64>,
    /// How long to wait for an answer (E1381: 15 s).
    pub answer_timeout: Duration,
    /// Wait before trying a message again after a failed attempt.
    pub retry_after: Duration,
    /// Messages per second at most (`None`: as fast as the receiver answers).
    pub rate: Option<f64>,
    /// Take as long to send as a serial line at this baud rate would (10 bit times per
    /// byte, 8N1): a pseudo-terminal or TCP standing in for an RS-232 line.
    pub line_baud: Option<u32>,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        AnalyzerOptions {
            count: 10,
            first: 1,
            corrupt_every: None,
            garble_ack_every: None,
            long_every: None,
            answer_timeout: iobp_codec::astm::SENDER_TIMEOUT,
            retry_after: Duration::from_secs(1),
            rate: None,
            line_baud: None,
        }
    }
}

/// What the analyzer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalyzerReport {
    /// Messages whose last frame was acknowledged.
    pub delivered: u64,
    /// Frames sent (retransmissions included).
    pub frames: u64,
    /// Frames sent with a wrong checksum on purpose.
    pub corrupted: u64,
    /// `ACK`s garbled on purpose.
    pub garbled: u64,
    /// Attempts given up (`NAK` to `ENQ`, too many `NAK`s, no answer) and tried again.
    pub failed_attempts: u64,
    /// Connections opened.
    pub connections: u64,
}

/// Result message number `n`: header, patient, order (sample id `S` + `n` in eight digits),
/// two results and the terminator; with `long`, a comment record longer than a frame.
#[must_use]
pub fn result_message(n: u64, long: bool) -> Vec<u8> {
    let glucose = 40 + n % 160;
    let sodium = 130 + n % 20;
    let mut m = format!(
        "H|\\^&|||iobufferpro-simulate^analyzer^1|||||||P|1|20261204101500\r\
         P|1||PAT{n}||Doe^Jane\r\
         O|1|S{n:08}||^^^GLU\\^^^NA|R||||||N\r\
         R|1|^^^GLU|{glucose}|mg/dL||N||F||||20261204101500\r\
         R|2|^^^NA|{sodium}|mmol/L||N||F||||20261204101500\r"
    );
    if long {
        m.push_str("C|1|I|");
        for i in 0..60 {
            let _ = write!(m, "note {i} ");
        }
        m.push_str("|G\r");
    }
    m.push_str("L|1|N\r");
    m.into_bytes()
}

/// The sample id of a message made by [`result_message`] (the order record's field 3).
#[must_use]
pub fn sample_number(message: &[u8]) -> Option<u64> {
    let id = iobp_codec::astm::field(message, b'O', 3)?;
    std::str::from_utf8(id.strip_prefix(b"S")?).ok()?.parse().ok()
}

/// Sends the messages over `endpoint`, opening it again after a failure, until all are
/// delivered. `progress` is called after each delivered message.
///
/// # Errors
/// The link cannot be opened at all.
pub async fn run_analyzer(
    endpoint: &Endpoint,
    opts: &AnalyzerOptions,
    mut progress: impl FnMut(&AnalyzerReport),
) -> Result<AnalyzerReport, Error> {
    let mut report = AnalyzerReport::default();
    let mut failures = 0u32;
    while report.delivered < opts.count {
        let mut io = match endpoint.next().await {
            Ok(io) => {
                failures = 0;
                io
            }
            Err(_) if failures < 50 => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        report.connections += 1;
        match analyzer_on(&mut io, opts, &mut report, &mut progress).await {
            Ok(()) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Ok(report)
}

/// Sends messages from `report.delivered` on over one connection until all are delivered or
/// the connection fails.
///
/// # Errors
/// The connection failed (the caller opens it again; the message in progress goes again).
pub async fn analyzer_on<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    opts: &AnalyzerOptions,
    report: &mut AnalyzerReport,
    progress: &mut impl FnMut(&AnalyzerReport),
) -> Result<(), Error> {
    let mut sender = Sender::new();
    let mut buf = vec![0u8; 1024];
    let started = Instant::now();
    let mut answers = 0u64;
    let mut line_free = Instant::now();
    while report.delivered < opts.count {
        if let Some(rate) = opts.rate.filter(|r| *r > 0.0) {
            #[allow(clippy::cast_precision_loss)]
            let due = started + Duration::from_secs_f64(report.delivered as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        let n = opts.first + report.delivered;
        let long = every(opts.long_every, n);
        let message = result_message(n, long);
        let mut actions = sender.start(&message);
        let mut timer: Option<Instant> = None;
        // Only frames' ACKs are garbled (a garbled ACK to ENQ would just cost a timeout).
        let mut in_transfer = false;
        let delivered = loop {
            let mut ended = None;
            let mut out = Vec::new();
            for a in actions.drain(..) {
                match a {
                    SendAction::Send(mut bytes) => {
                        if bytes.len() > 1 {
                            in_transfer = true;
                            report.frames += 1;
                            if every(opts.corrupt_every, report.frames) {
                                // A wrong checksum: the receiver must refuse the frame.
                                let i = bytes.len() - 4;
                                bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
                                report.corrupted += 1;
                            }
                        }
                        out.extend_from_slice(&bytes);
                    }
                    SendAction::Arm(_) => timer = Some(Instant::now() + opts.answer_timeout),
                    SendAction::Disarm => timer = None,
                    SendAction::Delivered => ended = Some(true),
                    SendAction::Failed(_) => ended = Some(false),
                }
            }
            if !out.is_empty() {
                io.write_all(&out).await.map_err(io_error)?;
                io.flush().await.map_err(io_error)?;
                if let Some(baud) = opts.line_baud.filter(|b| *b > 0) {
                    // The line's own clock: a timer wakes late by up to a millisecond, so
                    // a write starts where the line's previous one ended unless the line
                    // was idle for longer (waiting for an answer).
                    #[allow(clippy::cast_precision_loss)] // a delay
                    let takes = Duration::from_secs_f64(out.len() as f64 * 10.0 / f64::from(baud));
                    let now = Instant::now();
                    let starts =
                        if line_free + Duration::from_millis(2) < now { now } else { line_free };
                    line_free = starts + takes;
                    tokio::time::sleep_until(line_free).await;
                }
            }
            if let Some(d) = ended {
                break d;
            }
            actions = tokio::select! {
                () = sleep_until_opt(timer) => {
                    timer = None;
                    sender.timed_out()
                }
                n = io.read(&mut buf) => {
                    let n = n.map_err(io_error)?;
                    if n == 0 {
                        return Err(Error::Protocol("the receiver closed the connection".into()));
                    }
                    let mut got = buf[..n].to_vec();
                    if got[0] == iobp_codec::astm::ACK && in_transfer && sender.busy() {
                        answers += 1;
                        if every(opts.garble_ack_every, answers) {
                            got[0] = b'?';
                            report.garbled += 1;
                        }
                    }
                    sender.feed(&got)
                }
            };
        };
        if delivered {
            report.delivered += 1;
            progress(report);
        } else {
            report.failed_attempts += 1;
            tokio::time::sleep(opts.retry_after).await;
        }
    }
    Ok(())
}

/// What the LIS does.
#[derive(Debug, Clone, Default)]
pub struct LisOptions {
    /// Garble every n-th `ACK` sent.
    pub garble_ack_every: Option<u64>,
    /// Refuse every n-th good frame with `NAK`.
    pub nak_every: Option<u64>,
}

/// What the LIS saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LisReport {
    /// Messages received.
    pub messages: u64,
    /// `ACK`s garbled on purpose.
    pub garbled: u64,
    /// Good frames refused on purpose.
    pub nakked: u64,
    /// Frames refused because they were bad (checksum, number, shape).
    pub bad_frames: u64,
    /// Incomplete messages discarded.
    pub discarded: u64,
}

/// Receives over one connection until the peer closes it or `on_message` returns `false`;
/// each complete message is given to `on_message` (then acknowledged).
///
/// # Errors
/// The connection failed.
pub async fn lis_on<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    opts: &LisOptions,
    report: &mut LisReport,
    on_message: &mut impl FnMut(Vec<u8>) -> bool,
) -> Result<(), Error> {
    let mut rx = Receiver::new(16 << 20);
    let mut buf = vec![0u8; 4096];
    let mut timer: Option<Instant> = None;
    let mut acks = 0u64;
    let mut good_frames = 0u64;
    loop {
        // Only frames' ACKs are refused or garbled, not the ACK to ENQ.
        let mut enq = false;
        let actions = tokio::select! {
            () = sleep_until_opt(timer) => {
                timer = None;
                rx.timed_out()
            }
            n = io.read(&mut buf) => {
                let n = n.map_err(io_error)?;
                if n == 0 {
                    return Ok(());
                }
                enq = buf[..n].contains(&iobp_codec::astm::ENQ);
                rx.feed(&buf[..n])
            }
        };
        let mut queue = actions;
        let mut out = Vec::new();
        let mut stop = false;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for a in queue {
                match a {
                    Action::Send(bytes) => {
                        let mut bytes = bytes;
                        if bytes == [iobp_codec::astm::ACK] && rx.busy() && !enq {
                            acks += 1;
                            good_frames += 1;
                            if every(opts.nak_every, good_frames) {
                                // Refused although good: the sender must send it again. (An
                                // ACK to ENQ counts too: the sender then tries again later.)
                                bytes = vec![iobp_codec::astm::NAK];
                                report.nakked += 1;
                            } else if every(opts.garble_ack_every, acks) {
                                bytes = vec![b'?'];
                                report.garbled += 1;
                            }
                        } else if bytes == [iobp_codec::astm::NAK] {
                            report.bad_frames += 1;
                        }
                        out.extend_from_slice(&bytes);
                    }
                    Action::Arm(d) => timer = Some(Instant::now() + d),
                    Action::Disarm => timer = None,
                    Action::Note(_) => {}
                    Action::Discard { .. } => report.discarded += 1,
                    Action::Store(message) => {
                        report.messages += 1;
                        if !on_message(message) {
                            stop = true;
                        }
                        next.extend(rx.stored());
                    }
                }
            }
            queue = next;
        }
        if !out.is_empty() {
            io.write_all(&out).await.map_err(io_error)?;
            io.flush().await.map_err(io_error)?;
        }
        if stop {
            return Ok(());
        }
    }
}

/// Receives over `endpoint`, opening it again after each connection ends, until
/// `on_message` returns `false`.
///
/// # Errors
/// The link cannot be opened.
pub async fn run_lis(
    endpoint: &Endpoint,
    opts: &LisOptions,
    mut on_message: impl FnMut(Vec<u8>) -> bool,
) -> Result<LisReport, Error> {
    let mut report = LisReport::default();
    loop {
        let mut io = endpoint.next().await?;
        let mut stop = false;
        let mut take = |m: Vec<u8>| {
            let go_on = on_message(m);
            stop |= !go_on;
            go_on
        };
        // A failed connection is opened again: the sender sends its message again.
        let _ = lis_on(&mut io, opts, &mut report, &mut take).await;
        if stop {
            return Ok(report);
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Whether the `n`-th event is one of every `k`-th.
fn every(k: Option<u64>, n: u64) -> bool {
    k.is_some_and(|k| k > 0 && n.is_multiple_of(k))
}

#[allow(clippy::needless_pass_by_value)] // a `map_err` adapter
fn io_error(e: std::io::Error) -> Error {
    Error::Protocol(format!("connection: {e}"))
}
