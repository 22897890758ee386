//! Delivery with a window of acknowledgements outstanding, for destinations whose next hop
//! confirms each message by itself (a broker's PUBACK, JetStream's PubAck): one mechanism for
//! the `mqtt` and `nats` destinations.
//!
//! The contract: records are published in buffer order while fewer than `window` await their
//! confirmation; a record is marked Done only once its own confirmation arrived **and** every
//! earlier one's did (Done strictly in order, `ack_through`); the first failure — a refusal
//! in a confirmation, a publish error, the connection lost — ends the session, and the
//! connector loop returns everything unconfirmed to Pending, to be published again, in order,
//! with the same message id. A record the next hop can never take is set aside by the
//! publisher (no confirmation to wait for), never a stuck pair.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use iobp_log::Batch;

use crate::connector::{Ended, Progress};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;
use crate::trace::TraceKind;

/// Payload bytes read from the buffer at once (at least one record).
const READ_BYTES: usize = 1024 * 1024;

/// Resolves once the next hop confirmed one message (an error: it refused it, or the
/// confirmation cannot come).
pub(crate) type Confirmation = Pin<Box<dyn Future<Output = Result<(), SideError>> + Send>>;

/// One connection's way of publishing.
pub(crate) trait Publisher: Send {
    /// Publishes record `seq` with message id `id`; `Ok(None)`: the record was set aside
    /// (the next hop can never take it), nothing to wait for.
    fn publish(
        &mut self,
        ctx: &SideCtx,
        seq: u64,
        id: String,
        payload: &[u8],
    ) -> impl Future<Output = Result<Option<Confirmation>, SideError>> + Send;

    /// Resolves with the reason when the connection is lost (or the peer broke the protocol).
    fn lost(&mut self) -> impl Future<Output = SideError> + Send;
}

/// A publish awaiting its confirmation.
struct Unconfirmed {
    seq: u64,
    bytes: u64,
    confirmed: Confirmation,
}

/// Delivers the buffer through `publisher` with up to `window` confirmations outstanding,
/// until the pair stops (`Ended::Cancelled`) or the first failure.
pub(crate) async fn deliver<P: Publisher>(
    ctx: &SideCtx,
    peer: &Arc<str>,
    window: usize,
    publisher: &mut P,
    progress: &Progress,
) -> Result<Ended, SideError> {
    let window = window.max(1);
    let log_id = ctx.log.id();
    let mut waiting: VecDeque<Unconfirmed> = VecDeque::with_capacity(window);
    let mut batch = Batch::default();
    loop {
        // Publish while the window and the buffer allow.
        while waiting.len() < window {
            if !ctx.next_batch(&mut batch, window - waiting.len(), READ_BYTES)? {
                continue;
            }
            if batch.is_empty() {
                break;
            }
            for r in batch.iter() {
                let id = format!("{log_id:016x}:{}", r.seq);
                let sent = tokio::select! {
                    biased;
                    () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
                    p = publisher.publish(ctx, r.seq, id, r.payload) => p?,
                };
                if let Some(confirmed) = sent {
                    let bytes = r.payload.len() as u64;
                    waiting.push_back(Unconfirmed { seq: r.seq, bytes, confirmed });
                }
            }
            ctx.feed.record(
                Side::Destination,
                Some(peer),
                batch.iter().map(|r| (Some(r.seq), r.payload)),
            );
        }
        let room = waiting.len() < window;
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
            e = publisher.lost() => return Err(e),
            r = first_confirmed(&mut waiting) => {
                r?;
                confirm_ready(ctx, &mut waiting, peer)?;
                progress.made();
            }
            r = ctx.log.readable(), if room => {
                r.map_err(SideError::buffer("buffer"))?;
            }
        }
    }
}

/// Resolves when the oldest publish is confirmed (never, if none waits).
async fn first_confirmed(waiting: &mut VecDeque<Unconfirmed>) -> Result<(), SideError> {
    match waiting.front_mut() {
        Some(w) => (&mut w.confirmed).await,
        None => std::future::pending().await,
    }
}

/// Marks Done the confirmed publishes at the front (the first has just been confirmed; later
/// ones confirmed meanwhile follow without waiting), then fails with the first refusal among
/// them, if any, after marking Done what came before it.
fn confirm_ready(
    ctx: &SideCtx,
    waiting: &mut VecDeque<Unconfirmed>,
    peer: &Arc<str>,
) -> Result<(), SideError> {
    let Some(first) = waiting.pop_front() else { return Ok(()) };
    let (mut through, mut n, mut bytes) = (first.seq, 1u64, first.bytes);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut refused = None;
    while let Some(next) = waiting.front_mut() {
        match next.confirmed.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(())) => {
                through = next.seq;
                n += 1;
                bytes += next.bytes;
                waiting.pop_front();
            }
            std::task::Poll::Ready(Err(e)) => {
                refused = Some(e);
                break;
            }
            std::task::Poll::Pending => break,
        }
    }
    ctx.log.ack_through(through).map_err(SideError::buffer("buffer"))?;
    ctx.stats.sent.fetch_add(n, Ordering::Relaxed);
    ctx.stats.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
    ctx.trace_delivery(TraceKind::Delivered, (first.seq, through), Some(peer), None, None);
    refused.map_or(Ok(()), Err)
}
