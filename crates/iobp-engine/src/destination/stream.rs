//! Delivery over one connected byte stream (a `tcp_client` destination's connection, the
//! receiver connected to a `tcp_server` destination; later serial ports and TLS streams).
//!
//! Reads batches of Pending records from the buffer in FIFO order, frames them with this
//! side's framing and writes them. A record becomes Done:
//! - `ack: none` — once written to the connection (one write per batch);
//! - `ack: mllp` / `byte` — once the receiver confirmed it (stop-and-wait, with a timeout).
//!   A negative answer returns it to Pending and it is sent again after a backoff; a timeout
//!   or a garbled answer drops the connection (its state is unknown) and it is sent again on
//!   the next one.
//!
//! While idle it keeps reading the connection, so a receiver that closes its side is noticed
//! at once — not discovered later by writing messages into a dead connection.
//!
//! A message this side's framing cannot carry (it contains the delimiter, or is too long for
//! the length prefix) is undeliverable: it is reported with a hex preview and its sequence
//! number, counted, and marked Done so that the queue moves on; it stays in the buffer for the
//! retention period, visible in the message browser.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use iobp_codec::hl7::{parse_ack, parse_msh};
use iobp_codec::{Decoded, Deframer, Encoder, Framing};
use iobp_config::{AckSpec, FramingSpec};
use iobp_log::Batch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::backoff::Backoff;
use crate::connector::{Ended, Progress, Session};
use crate::side::{SideCtx, SideError, framing_of, pause};
use crate::stats::{Rejected, Side, hex_preview};
use crate::trace::{TraceEvent, TraceKind};

/// Records per batch read from the buffer.
pub(crate) const BATCH_RECORDS: usize = 4096;
/// Payload bytes per batch (at least one record).
pub(crate) const BATCH_BYTES: usize = 1024 * 1024;
/// Default: a receiver that takes longer than this to accept a batch is considered stuck.
pub(crate) const WRITE_TIMEOUT_MS: u64 = 30_000;

/// The session of a byte-stream destination on one connection (see the module
/// documentation); the connector loop returns what is in flight to Pending when it ends.
#[derive(Debug, Clone)]
pub(crate) struct StreamDelivery {
    pub framing: FramingSpec,
    pub ack: AckSpec,
    /// Milliseconds a receiver may take to accept a batch ([`WRITE_TIMEOUT_MS`] if `None`).
    pub write_timeout: Option<u64>,
}

impl<S> Session<S> for StreamDelivery
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn about(&self, peer: &str) -> String {
        format!("delivery to {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        io: S,
        peer: &Arc<str>,
        _progress: &Progress,
    ) -> Result<Ended, SideError> {
        let Some(framing) = framing_of(&self.framing) else {
            // The ASTM link protocol: a dialog with the receiver, not a framing.
            let limit = Duration::from_millis(self.write_timeout.unwrap_or(WRITE_TIMEOUT_MS));
            return super::astm::deliver(ctx, io, peer, limit).await;
        };
        deliver(ctx, io, peer, framing, &self.ack, self.write_timeout).await
    }
}

/// Delivers until the connection fails, the peer closes it or the pair stops.
async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &SideCtx,
    io: S,
    peer: &Arc<str>,
    framing: Framing,
    ack: &AckSpec,
    write_timeout: Option<u64>,
) -> Result<Ended, SideError> {
    let write_timeout = Duration::from_millis(write_timeout.unwrap_or(WRITE_TIMEOUT_MS));
    let (mut rd, mut wr) = tokio::io::split(io);
    let encoder = Encoder::new(framing);
    let mut replies = Replies::new(ack);
    let mut batch = Batch::default();
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut nak_backoff = Backoff::new(ctx.retry);
    // Explicit refusals of the message at the head of the queue: (its sequence number, how
    // many), for the dead-letter policy.
    let mut refusals: (u64, u32) = (u64::MAX, 0);
    loop {
        if !ctx.next_batch(&mut batch, BATCH_RECORDS, BATCH_BYTES)? {
            continue;
        }
        if batch.is_empty() {
            // Idle: wait for data, while watching the connection.
            tokio::select! {
                () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
                r = ctx.log.readable() => { r.map_err(SideError::buffer("buffer"))?; }
                n = rd.read_buf(&mut replies.buf) => match n {
                    Ok(0) => return Ok(Ended::PeerClosed),
                    Ok(_) => replies.unexpected(ctx),
                    Err(e) => return Err(SideError::Peer(format!("connection lost: {e}"))),
                },
            }
            continue;
        }
        if replies.mode_none() && encoder.gap().is_none() {
            send_batch(ctx, &encoder, &batch, &mut out, &mut wr, peer, write_timeout).await?;
            continue;
        }
        // One record at a time: acknowledged protocols, or idle-gap framing.
        for r in batch.iter() {
            out.clear();
            if let Err(e) = encoder.encode(r.payload, &mut out) {
                undeliverable(ctx, r.seq, r.payload, &e)?;
                continue;
            }
            write(&mut wr, &out, write_timeout).await?;
            let answer = match replies.wait(ctx, &mut rd, r.payload).await? {
                Reply::None => None,
                // Unacknowledged, it returns to Pending with whatever else is in flight.
                Reply::Stopped => return Ok(Ended::Cancelled),
                Reply::Accepted(answer) => {
                    nak_backoff.reset();
                    Some(answer)
                }
                Reply::Rejected(why) => {
                    let n = if refusals.0 == r.seq { refusals.1 + 1 } else { 1 };
                    refusals = (r.seq, n);
                    ctx.trace_delivery(
                        TraceKind::Refused,
                        (r.seq, r.seq),
                        Some(peer),
                        Some(why.clone()),
                        None,
                    );
                    if park_if_due(ctx, r.seq, r.payload, n, &why).await? {
                        nak_backoff.reset();
                        continue;
                    }
                    ctx.log.requeue_from(r.seq).map_err(SideError::buffer("buffer"))?;
                    ctx.stats.retries.fetch_add(1, Ordering::Relaxed);
                    ctx.error(
                        Side::Destination,
                        format!("receiver refused message {}: {why}; retrying", r.seq),
                    );
                    if !pause(&ctx.cancel, nak_backoff.next_delay()).await {
                        return Ok(Ended::Cancelled);
                    }
                    break;
                }
            };
            ctx.log.ack(r.seq).map_err(SideError::buffer("buffer"))?;
            let one = [(Some(r.seq), r.payload)].into_iter();
            delivered(ctx, (r.seq, r.seq), r.payload.len() as u64, one, peer, answer);
            if let Some(gap) = encoder.gap() {
                tokio::time::sleep(gap).await;
            }
        }
    }
}

/// The dead-letter policy: after the configured number of explicit refusals of the same
/// message, it is parked (durably, in the pair's parked log) and marked Done here, and
/// delivery goes on with the next. Returns whether it was parked. A full parked list holds the
/// message (retried, strict FIFO) and says so.
async fn park_if_due(
    ctx: &SideCtx,
    seq: u64,
    payload: &[u8],
    refusals: u32,
    why: &str,
) -> Result<bool, SideError> {
    let Some((parked, after)) = &ctx.parked else { return Ok(false) };
    if refusals < *after {
        return Ok(false);
    }
    if ctx.stats.parked.load(Ordering::Relaxed) >= crate::parked::MAX_PARKED as u64 {
        ctx.error(
            Side::Destination,
            format!(
                "message {seq} was refused {refusals} times ({why}) but {} messages are parked \
                 already: it is retried until some are re-sent or discarded",
                crate::parked::MAX_PARKED
            ),
        );
        return Ok(false);
    }
    // Durable among the parked first, then Done here: a crash between parks it twice at
    // worst, never loses it.
    parked
        .append(&crate::parked::park_record(seq, payload))
        .await
        .map_err(SideError::buffer("parking a message"))?;
    ctx.log.ack(seq).map_err(SideError::buffer("buffer"))?;
    ctx.stats.parked.fetch_add(1, Ordering::Relaxed);
    let mut ev = TraceEvent::new(TraceKind::Parked, seq, seq);
    ev.err = Some(why.to_string());
    ev.n = Some(u64::from(refusals));
    // On the delivery task: never wait for the trace (a full queue drops it, shown as a gap).
    ctx.trace.record(ev);
    ctx.stats.parked_total.fetch_add(1, Ordering::Relaxed);
    ctx.error(
        Side::Destination,
        format!(
            "message {seq} parked after {refusals} refusals by the receiver ({why}); delivery \
             goes on with the next"
        ),
    );
    Ok(true)
}

/// `ack: none`: frame the whole batch into one buffer, write it, mark it Done.
async fn send_batch<W: AsyncWrite + Unpin>(
    ctx: &SideCtx,
    encoder: &Encoder,
    batch: &Batch,
    out: &mut Vec<u8>,
    wr: &mut W,
    peer: &Arc<str>,
    write_timeout: Duration,
) -> Result<(), SideError> {
    out.clear();
    let mut bytes = 0u64;
    // Runs of consecutive records written (one, unless some were undeliverable).
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for r in batch.iter() {
        if let Err(e) = encoder.encode(r.payload, out) {
            undeliverable(ctx, r.seq, r.payload, &e)?;
            continue;
        }
        bytes += r.payload.len() as u64;
        match runs.last_mut() {
            Some(run) if run.1 + 1 == r.seq => run.1 = r.seq,
            _ => runs.push((r.seq, r.seq)),
        }
    }
    write(wr, out, write_timeout).await?;
    if let Some(last) = batch.last_seq() {
        ctx.log.ack_through(last).map_err(SideError::buffer("buffer"))?;
    }
    let shown = batch.iter().map(|r| (Some(r.seq), r.payload));
    let mut runs = runs.into_iter();
    if let Some(first) = runs.next() {
        // The bytes and the feed once; the count and the trace per run.
        delivered(ctx, first, bytes, shown, peer, None);
        for run in runs {
            ctx.stats.sent.fetch_add(run.1 + 1 - run.0, Ordering::Relaxed);
            ctx.trace_delivery(TraceKind::Delivered, run, Some(peer), None, None);
        }
    }
    Ok(())
}

pub(crate) async fn write<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
    limit: Duration,
) -> Result<(), SideError> {
    match tokio::time::timeout(limit, async {
        wr.write_all(buf).await?;
        wr.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(SideError::Peer(format!("write failed: {e}"))),
        Err(_) => {
            Err(SideError::Peer(format!("receiver did not take data for {} ms", limit.as_millis())))
        }
    }
}

/// Messages `first..=last` are delivered and Done (`answer`: the receiver's, where it
/// acknowledges): counted, shown (`items`), traced.
pub(crate) fn delivered<'a>(
    ctx: &SideCtx,
    (first, last): (u64, u64),
    bytes: u64,
    items: impl ExactSizeIterator<Item = (Option<u64>, &'a [u8])>,
    peer: &Arc<str>,
    answer: Option<String>,
) {
    ctx.stats.sent.fetch_add(last + 1 - first, Ordering::Relaxed);
    ctx.stats.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
    ctx.feed.record(Side::Destination, Some(peer), items);
    ctx.trace_delivery(TraceKind::Delivered, (first, last), Some(peer), answer, None);
}

/// Reports a message this side cannot carry and marks it Done so the queue moves on.
pub(crate) fn undeliverable(
    ctx: &SideCtx,
    seq: u64,
    payload: &[u8],
    why: &dyn std::fmt::Display,
) -> Result<(), SideError> {
    ctx.stats.reject(
        &ctx.pair,
        Rejected {
            at: SystemTime::now(),
            side: Side::Destination,
            reason: format!("undeliverable to this destination: {why}"),
            len: payload.len() as u64,
            preview: hex_preview(payload),
            seq: Some(seq),
            peer: None,
        },
    );
    ctx.log.ack(seq).map_err(SideError::buffer("buffer"))?;
    let mut ev = TraceEvent::new(TraceKind::Undeliverable, seq, seq);
    ev.err = Some(why.to_string());
    ctx.trace.record(ev);
    // Counted only once Done, as `sent` is: the pair's accounting adds both up against the
    // buffer's Done records.
    ctx.stats.undeliverable.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// An answer from the receiver that is neither an acknowledgement nor a refusal.
struct ReplyError(String);

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

enum Reply {
    /// No acknowledgement expected.
    None,
    /// The pair is stopping: the answer will not be waited for.
    Stopped,
    /// What the receiver answered (`ACK 0x06`, `AA`).
    Accepted(String),
    Rejected(String),
}

/// Reads the receiver's acknowledgements.
struct Replies {
    mode: AckSpec,
    buf: BytesMut,
    mllp: Deframer,
}

impl Replies {
    fn new(mode: &AckSpec) -> Self {
        Replies {
            mode: mode.clone(),
            buf: BytesMut::with_capacity(4096),
            mllp: Deframer::new(Framing::mllp(), 1024 * 1024),
        }
    }

    fn mode_none(&self) -> bool {
        matches!(self.mode, AckSpec::None)
    }

    /// Bytes arrived while nothing was expected: receivers that talk back without an ack mode
    /// configured are tolerated; the bytes are dropped after a note in the log.
    fn unexpected(&mut self, ctx: &SideCtx) {
        tracing::debug!(
            pair = &*ctx.pair,
            len = self.buf.len(),
            "ignoring bytes from the receiver"
        );
        self.buf.clear();
    }

    async fn wait<R: AsyncRead + Unpin>(
        &mut self,
        ctx: &SideCtx,
        rd: &mut R,
        sent: &[u8],
    ) -> Result<Reply, SideError> {
        let timeout = Duration::from_millis(self.mode.timeout_ms());
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(r) = self
                .parse(sent)
                .map_err(|e| SideError::Protocol(format!("garbled acknowledgement: {e}")))?
            {
                return Ok(r);
            }
            let n = tokio::select! {
                () = ctx.cancel.cancelled() => return Ok(Reply::Stopped),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(SideError::Peer(format!(
                        "no acknowledgement within {} ms",
                        timeout.as_millis()
                    )));
                }
                n = rd.read_buf(&mut self.buf) => {
                    n.map_err(|e| SideError::Peer(format!("connection lost: {e}")))?
                }
            };
            if n == 0 {
                return Err(SideError::Peer(
                    "receiver closed the connection before acknowledging".into(),
                ));
            }
        }
    }

    fn parse(&mut self, sent: &[u8]) -> Result<Option<Reply>, ReplyError> {
        match &self.mode {
            AckSpec::None => Ok(Some(Reply::None)),
            AckSpec::Byte { ack, nak, .. } => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let b = self.buf[0];
                let _ = self.buf.split_to(1);
                if b == *ack {
                    Ok(Some(Reply::Accepted(format!("ACK 0x{b:02x}"))))
                } else if b == *nak {
                    Ok(Some(Reply::Rejected(format!("NAK 0x{b:02x}"))))
                } else {
                    Err(ReplyError(format!(
                        "expected ACK 0x{ack:02x} or NAK 0x{nak:02x}, got 0x{b:02x}"
                    )))
                }
            }
            AckSpec::Mllp { .. } => match self.mllp.decode(&mut self.buf) {
                None => Ok(None),
                Some(Decoded::Rejected(r)) => {
                    Err(ReplyError(format!("not an MLLP frame: {}", r.hex_preview())))
                }
                Some(Decoded::Frame(f)) => {
                    let reply = parse_ack(&f).ok_or_else(|| {
                        ReplyError(format!("no MSA segment in reply: {}", hex_preview(&f)))
                    })?;
                    let expected = parse_msh(sent).map(|m| m.control_id).unwrap_or_default();
                    if !expected.is_empty()
                        && !reply.control_id.is_empty()
                        && reply.control_id != expected
                    {
                        return Err(ReplyError(format!(
                            "acknowledgement for message `{}` while waiting for `{expected}`",
                            reply.control_id
                        )));
                    }
                    let text = reply.text.unwrap_or_default();
                    let answer = format!("{} {text}", reply.code.as_str()).trim().to_string();
                    if reply.code.is_accept() {
                        Ok(Some(Reply::Accepted(answer)))
                    } else {
                        Ok(Some(Reply::Rejected(answer)))
                    }
                }
            },
        }
    }
}
