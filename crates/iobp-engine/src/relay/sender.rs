//! The sending end: relays this pair's buffer over one connection.
//!
//! 1. `Hello` with the buffer's identity; the receiver answers `Resume` with the last record
//!    it has durably. Everything up to that is marked Done here (it arrived in an earlier
//!    session whose acknowledgement was lost); everything after is sent.
//! 2. Records go out in `Data` frames, up to [`WINDOW`] frames unacknowledged (pipelining),
//!    each naming the record before it (`prev`).
//! 3. An `Ack` marks records Done here: the receiver sends it only once they are durable
//!    there. `Busy` (the receiver's buffer is full) returns the records after its position to
//!    Pending and pauses sending for the time it asks.
//!
//! Whatever ends the session, records not acknowledged return to Pending (the caller) and
//! are sent again on the next connection; the receiver drops those it already has.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iobp_log::Batch;
use iobp_relay::{DataFull, DataWriter, Frame};
use tokio::time::Instant;

use super::{FrameReader, HANDSHAKE_TIMEOUT, RelayIo, fail, protocol, write_all};
use crate::connector::{Ended, Progress, Session};
use crate::destination::stream::undeliverable;
use crate::side::{SideCtx, SideError, sleep_until_opt};
use crate::stats::Side;
use crate::trace::TraceKind;

/// Frames sent and not yet acknowledged.
pub(crate) const WINDOW: usize = 8;
/// Records read from the buffer per frame.
const FRAME_RECORDS: usize = 8192;
/// Payload bytes per frame (at least one record).
const FRAME_BYTES: usize = 1024 * 1024;

/// The sending session on one relay connection.
pub(crate) struct RelaySend;

impl Session<Box<dyn RelayIo>> for RelaySend {
    fn about(&self, peer: &str) -> String {
        format!("relay to {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        io: Box<dyn RelayIo>,
        peer: &Arc<str>,
        _progress: &Progress,
    ) -> Result<Ended, SideError> {
        send(ctx, io, peer).await
    }
}

struct InFlight {
    first: u64,
    last: u64,
    count: u64,
    bytes: u64,
}

/// Relays the buffer until the connection fails, the peer closes it or the pair stops.
async fn send<S: RelayIo>(ctx: &SideCtx, io: S, peer: &Arc<str>) -> Result<Ended, SideError> {
    let (rd, mut wr) = tokio::io::split(io);
    let mut frames = FrameReader::new(rd);
    let mut out = Vec::with_capacity(FRAME_BYTES + 64 * 1024);
    iobp_relay::encode_hello(&mut out, ctx.log.id());
    write_all(&mut wr, &out).await?;
    let position = tokio::select! {
        () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, resume(&mut frames, &mut wr)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(SideError::Peer("the receiver did not answer Hello".into())),
        },
    };
    // Anything handed out by an earlier session goes out again (or is skipped, below).
    ctx.log.requeue_all();
    let durable = ctx.log.stats().durable_seq;
    if position > durable {
        let msg = format!(
            "the receiver has records up to {position} of this buffer, which holds only {durable}"
        );
        return Err(fail(&mut wr, protocol(msg)).await);
    }
    let mut session = Sending {
        last_sent: position,
        skip_through: position,
        acked: position,
        unacked: VecDeque::new(),
        paused_until: None,
        batch: Batch::default(),
        last_heard: Instant::now(),
    };
    let every = Duration::from_secs(iobp_relay::PING_INTERVAL_S);
    let mut ping = tokio::time::interval_at(Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Send while the window and the buffer allow.
        while session.can_send() {
            match session.fill(ctx, &mut out, peer)? {
                0 => break,
                _ => write_all(&mut wr, &out).await?,
            }
        }
        let wait_data = session.can_send();
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
            f = frames.next() => {
                let Some(bytes) = f? else { return Ok(Ended::PeerClosed) };
                session.last_heard = Instant::now();
                let frame = match iobp_relay::decode(&bytes) {
                    Ok(Some((frame, _))) => frame,
                    Ok(None) => return Err(protocol("incomplete frame")),
                    Err(e) => return Err(fail(&mut wr, protocol(e)).await),
                };
                match frame {
                    Frame::Ack { through } => {
                        if let Err(e) = session.acked(ctx, through) {
                            return Err(fail(&mut wr, e).await);
                        }
                    }
                    Frame::Busy { position, retry_after_ms, reason } => {
                        if let Err(e) = session.busy(ctx, position, retry_after_ms, reason) {
                            return Err(fail(&mut wr, e).await);
                        }
                    }
                    Frame::Ping { nonce } => {
                        out.clear();
                        iobp_relay::encode_pong(&mut out, nonce);
                        write_all(&mut wr, &out).await?;
                    }
                    Frame::Pong { .. } => {}
                    Frame::Error { message } => {
                        return Err(SideError::Peer(format!("the receiver reported: {message}")));
                    }
                    other => {
                        let msg = protocol(format!("unexpected {} from the receiver", name(&other)));
                        return Err(fail(&mut wr, msg).await);
                    }
                }
            }
            () = sleep_until_opt(session.paused_until) => session.paused_until = None,
            _ = ping.tick() => {
                if session.last_heard.elapsed() > Duration::from_secs(iobp_relay::IDLE_TIMEOUT_S) {
                    return Err(SideError::Peer(format!(
                        "the receiver has been silent for {} s",
                        iobp_relay::IDLE_TIMEOUT_S
                    )));
                }
                out.clear();
                iobp_relay::encode_ping(&mut out, iobp_relay_nonce());
                write_all(&mut wr, &out).await?;
            }
            r = ctx.log.readable(), if wait_data => {
                r.map_err(SideError::buffer("buffer"))?;
            }
        }
    }
}

/// Waits for the receiver's `Resume` (answering pings).
async fn resume<R, W>(frames: &mut FrameReader<R>, wr: &mut W) -> Result<u64, SideError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    loop {
        let Some(bytes) = frames.next().await? else {
            return Err(SideError::Peer("the receiver closed the connection before Resume".into()));
        };
        match iobp_relay::decode(&bytes) {
            Ok(Some((Frame::Resume { position }, _))) => return Ok(position),
            Ok(Some((Frame::Ping { nonce }, _))) => {
                let mut out = Vec::new();
                iobp_relay::encode_pong(&mut out, nonce);
                write_all(wr, &out).await?;
            }
            Ok(Some((Frame::Error { message }, _))) => {
                return Err(SideError::Peer(format!("the receiver reported: {message}")));
            }
            Ok(Some((other, _))) => {
                let msg = protocol(format!("expected Resume, got {}", name(&other)));
                return Err(fail(wr, msg).await);
            }
            Ok(None) => return Err(protocol("incomplete frame")),
            Err(e) => return Err(fail(wr, protocol(e)).await),
        }
    }
}

struct Sending {
    /// `pseq` of the last record sent (the next frame's `prev`).
    last_sent: u64,
    /// Records up to this are already at the receiver (`Resume`): marked Done, not sent.
    skip_through: u64,
    /// Last record the receiver acknowledged.
    acked: u64,
    unacked: VecDeque<InFlight>,
    paused_until: Option<Instant>,
    batch: Batch,
    last_heard: Instant,
}

impl Sending {
    fn can_send(&self) -> bool {
        self.unacked.len() < WINDOW && self.paused_until.is_none()
    }

    /// Reads a batch and encodes it as one `Data` frame into `out`; returns the number of
    /// records in it (0: nothing to send now).
    fn fill(
        &mut self,
        ctx: &SideCtx,
        out: &mut Vec<u8>,
        peer: &Arc<str>,
    ) -> Result<usize, SideError> {
        loop {
            if !ctx.next_batch(&mut self.batch, FRAME_RECORDS, FRAME_BYTES)? {
                continue;
            }
            if self.batch.is_empty() {
                return Ok(0);
            }
            // Records the receiver reported having: Done without sending.
            if let Some(last_skipped) =
                self.batch.iter().map(|r| r.seq).take_while(|s| *s <= self.skip_through).last()
            {
                ctx.log.ack_through(last_skipped).map_err(SideError::buffer("buffer"))?;
                let (n, b) = self
                    .batch
                    .iter()
                    .take_while(|r| r.seq <= last_skipped)
                    .fold((0u64, 0u64), |(n, b), r| (n + 1, b + r.payload.len() as u64));
                ctx.stats.sent.fetch_add(n, Ordering::Relaxed);
                ctx.stats.sent_bytes.fetch_add(b, Ordering::Relaxed);
                if let Some(first) = self.batch.first_seq() {
                    ctx.trace_delivery(
                        TraceKind::Delivered,
                        (first, last_skipped),
                        Some(peer),
                        None,
                        Some("the receiving instance had it already".into()),
                    );
                }
                if self.batch.last_seq() == Some(last_skipped) {
                    continue;
                }
            }
            out.clear();
            let mut w = DataWriter::begin(out, self.last_sent, 0, 0);
            let (mut count, mut bytes, mut last_ts) = (0u64, 0u64, 0u64);
            for r in self.batch.iter().filter(|r| r.seq > self.skip_through) {
                match w.push(out, r.seq, r.payload) {
                    Ok(()) => {}
                    // Validation keeps such records out of relaying pairs, but the buffer may
                    // hold one from before an edit: reported and set aside like any message a
                    // destination cannot carry, never a pair stuck on it.
                    Err(DataFull::RecordTooLarge) => {
                        let why = format!(
                            "{} bytes; one relay record carries at most {}",
                            r.payload.len(),
                            iobp_relay::MAX_RECORD_BYTES
                        );
                        undeliverable(ctx, r.seq, r.payload, &why)?;
                        continue;
                    }
                    // The frame's bounds are those of the batch.
                    Err(DataFull::Full | DataFull::OutOfOrder) => {
                        return Err(protocol(format!(
                            "record {} does not fit a relay frame",
                            r.seq
                        )));
                    }
                }
                count += 1;
                bytes += r.payload.len() as u64;
                last_ts = r.timestamp_us;
            }
            if count == 0 {
                // Everything in this batch was set aside.
                out.clear();
                continue;
            }
            let backlog = ctx.log.stats().pending;
            w.set_lag(out, backlog, last_ts);
            let first = self.last_sent + 1;
            self.last_sent = w.last_pseq();
            w.finish(out);
            self.unacked.push_back(InFlight { first, last: self.last_sent, count, bytes });
            let shown = self.batch.iter().filter(|r| r.seq > self.skip_through);
            let shown: Vec<_> = shown.map(|r| (Some(r.seq), r.payload)).collect();
            ctx.feed.record(Side::Destination, Some(peer), shown.into_iter());
            return Ok(usize::try_from(count).unwrap_or(usize::MAX));
        }
    }

    /// The receiver has everything up to `through` durably.
    fn acked(&mut self, ctx: &SideCtx, through: u64) -> Result<(), SideError> {
        if through > self.last_sent {
            return Err(protocol(format!(
                "acknowledgement of {through}, but only {} was sent",
                self.last_sent
            )));
        }
        if through <= self.acked {
            return Ok(());
        }
        ctx.log.ack_through(through).map_err(SideError::buffer("buffer"))?;
        ctx.trace_delivery(
            TraceKind::Delivered,
            (self.acked + 1, through),
            None,
            Some("stored by the receiving instance".into()),
            None,
        );
        self.acked = through;
        let (mut n, mut b) = (0, 0);
        while let Some(f) = self.unacked.front_mut() {
            if f.last <= through {
                n += f.count;
                b += f.bytes;
                self.unacked.pop_front();
                continue;
            }
            if f.first <= through {
                // The receiver stores large frames in parts and acknowledges each part.
                let k = (through - f.first + 1).min(f.count);
                let kb = f.bytes * k / f.count.max(1);
                n += k;
                b += kb;
                f.first = through + 1;
                f.count -= k;
                f.bytes -= kb;
            }
            break;
        }
        ctx.stats.sent.fetch_add(n, Ordering::Relaxed);
        ctx.stats.sent_bytes.fetch_add(b, Ordering::Relaxed);
        Ok(())
    }

    /// The receiver could not store what follows `position`: send it again later. (Records
    /// up to `position` are queued there and will be acknowledged as usual.)
    fn busy(
        &mut self,
        ctx: &SideCtx,
        position: u64,
        retry_ms: u32,
        reason: &str,
    ) -> Result<(), SideError> {
        if position > self.last_sent {
            return Err(protocol(format!(
                "Busy at {position}, but only {} was sent",
                self.last_sent
            )));
        }
        let position = position.max(self.acked);
        if position < self.last_sent {
            ctx.log.requeue_from(position + 1).map_err(SideError::buffer("buffer"))?;
            let mut returned = 0;
            while let Some(f) = self.unacked.pop_back() {
                if f.last <= position {
                    self.unacked.push_back(f);
                    break;
                }
                if f.first > position {
                    returned += f.count;
                    continue;
                }
                // Stored in part: the head stays in flight (its Ack comes), the tail goes again.
                let kept = (position - f.first + 1).min(f.count);
                let bytes = f.bytes * kept / f.count.max(1);
                returned += f.count - kept;
                self.unacked.push_back(InFlight {
                    first: f.first,
                    last: position,
                    count: kept,
                    bytes,
                });
                break;
            }
            ctx.stats.retries.fetch_add(returned, Ordering::Relaxed);
            self.last_sent = position;
        }
        let wait = Duration::from_millis(u64::from(retry_ms))
            .clamp(Duration::from_millis(50), Duration::from_secs(60));
        ctx.error(
            Side::Destination,
            format!(
                "the remote buffer is full ({reason}); sending again in {} ms",
                wait.as_millis()
            ),
        );
        self.paused_until = Some(Instant::now() + wait);
        Ok(())
    }
}

fn name(f: &Frame<'_>) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Resume { .. } => "Resume",
        Frame::Data(_) => "Data",
        Frame::Ack { .. } => "Ack",
        Frame::Busy { .. } => "Busy",
        Frame::Ping { .. } => "Ping",
        Frame::Pong { .. } => "Pong",
        Frame::Error { .. } => "Error",
    }
}

pub(crate) fn frame_name(f: &Frame<'_>) -> &'static str {
    name(f)
}

fn iobp_relay_nonce() -> u64 {
    super::now_us()
}
