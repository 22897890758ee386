//! A byte-stream destination speaking the ASTM E1381 link protocol (`"framing": {"type":
//! "astm"}` on a `tcp_client`, `tcp_server` or `serial` destination): this side sends as an
//! instrument does, to a laboratory information system (LIS). The protocol itself is
//! [`iobp_codec::astm::Sender`]; this module is its I/O, timers and the buffer.
//!
//! Each stored message goes as one transmission — `ENQ`, its frames (≤ 240 characters of
//! text, numbered, with checksums) one by one, `EOT` — in FIFO order. It is **Done only once
//! its last frame was acknowledged**. A `NAK`ed frame is sent again up to six times; a refused
//! `ENQ`, a frame refused too often or no answer within 15 s gives the attempt up: the
//! message returns to Pending, the side waits its backoff and sends it again from its first
//! frame (at least once: a lost final `ACK` sends the message again, as with every
//! destination). A message the protocol cannot carry (a link control character in its text)
//! is undeliverable: reported, counted and marked Done so the queue moves on.
//!
//! Between messages the connection is watched: a LIS that closes it is noticed at once, and
//! an `ENQ` from the LIS (it wants to send, e.g. a query) is answered `NAK`: this side only
//! sends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iobp_codec::astm::{ENQ, NAK, SendAction, Sender, check_message};
use iobp_log::Batch;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use super::stream::{BATCH_BYTES, delivered, undeliverable, write};
use crate::backoff::Backoff;
use crate::connector::Ended;
use crate::side::{SideCtx, SideError, pause, sleep_until_opt};
use crate::stats::Side;
use crate::trace::TraceKind;

/// Messages read from the buffer at a time: each is one transmission anyway.
const BATCH_RECORDS: usize = 64;

/// How one transmission ended.
enum Outcome {
    Delivered,
    Failed(String),
    Stopped,
}

/// Delivers until the connection fails, the peer closes it or the pair stops.
pub(crate) async fn deliver<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &SideCtx,
    io: S,
    peer: &Arc<str>,
    write_timeout: Duration,
) -> Result<Ended, SideError> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut sender = Sender::new();
    let mut batch = Batch::default();
    let mut buf = vec![0u8; 1024];
    let mut backoff = Backoff::new(ctx.retry);
    loop {
        if !ctx.next_batch(&mut batch, BATCH_RECORDS, BATCH_BYTES)? {
            continue;
        }
        if batch.is_empty() {
            tokio::select! {
                () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
                r = ctx.log.readable() => { r.map_err(SideError::buffer("buffer"))?; }
                n = rd.read(&mut buf) => match n {
                    Ok(0) => return Ok(Ended::PeerClosed),
                    Ok(n) => {
                        if buf[..n].contains(&ENQ) {
                            write(&mut wr, &[NAK], write_timeout).await?;
                        }
                    }
                    Err(e) => return Err(SideError::Peer(format!("connection lost: {e}"))),
                },
            }
            continue;
        }
        for r in batch.iter() {
            if let Err(e) = check_message(r.payload) {
                undeliverable(ctx, r.seq, r.payload, &e)?;
                continue;
            }
            let actions = sender.start(r.payload);
            match transmit(ctx, &mut sender, actions, &mut rd, &mut wr, &mut buf, write_timeout)
                .await?
            {
                Outcome::Delivered => {
                    backoff.reset();
                    ctx.log.ack(r.seq).map_err(SideError::buffer("buffer"))?;
                    let items = [(Some(r.seq), r.payload)].into_iter();
                    let answer = Some("ACK (last frame)".to_string());
                    delivered(ctx, (r.seq, r.seq), r.payload.len() as u64, items, peer, answer);
                }
                // Unacknowledged, it returns to Pending with whatever else is in flight.
                Outcome::Stopped => return Ok(Ended::Cancelled),
                Outcome::Failed(why) => {
                    let range = (r.seq, r.seq);
                    ctx.trace_delivery(
                        TraceKind::Returned,
                        range,
                        Some(peer),
                        None,
                        Some(why.clone()),
                    );
                    ctx.log.requeue_from(r.seq).map_err(SideError::buffer("buffer"))?;
                    ctx.stats.retries.fetch_add(1, Ordering::Relaxed);
                    ctx.error(
                        Side::Destination,
                        format!("{peer} did not accept message {}: {why}; retrying", r.seq),
                    );
                    if !pause(&ctx.cancel, backoff.next_delay()).await {
                        return Ok(Ended::Cancelled);
                    }
                    break;
                }
            }
        }
    }
}

/// Runs one transmission to its end.
async fn transmit<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    ctx: &SideCtx,
    sender: &mut Sender,
    mut actions: Vec<SendAction>,
    rd: &mut R,
    wr: &mut W,
    buf: &mut [u8],
    write_timeout: Duration,
) -> Result<Outcome, SideError> {
    let mut timer: Option<Instant> = None;
    let mut out = Vec::new();
    loop {
        let mut ended = None;
        for a in actions.drain(..) {
            match a {
                SendAction::Send(bytes) => out.extend_from_slice(&bytes),
                SendAction::Arm(d) => timer = Some(Instant::now() + d),
                SendAction::Disarm => timer = None,
                SendAction::Delivered => ended = Some(Outcome::Delivered),
                SendAction::Failed(why) => ended = Some(Outcome::Failed(why)),
            }
        }
        if !out.is_empty() {
            write(wr, &out, write_timeout).await?;
            out.clear();
        }
        if let Some(outcome) = ended {
            return Ok(outcome);
        }
        actions = tokio::select! {
            () = ctx.cancel.cancelled() => {
                // Courtesy: end the transmission so the LIS returns to neutral at once.
                let _ = write(wr, &[iobp_codec::astm::EOT], Duration::from_millis(200)).await;
                return Ok(Outcome::Stopped);
            }
            () = sleep_until_opt(timer) => {
                timer = None;
                sender.timed_out()
            }
            n = rd.read(buf) => match n {
                Ok(0) => {
                    return Err(SideError::Peer(
                        "the receiver closed the connection in the middle of a transmission".into(),
                    ));
                }
                Ok(n) => sender.feed(&buf[..n]),
                Err(e) => return Err(SideError::Peer(format!("connection lost: {e}"))),
            },
        };
    }
}
