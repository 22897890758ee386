//! The `nats` destination: publishes the buffer, in FIFO order, to a JetStream subject.
//!
//! Every message carries `Nats-Msg-Id: <log id, 16 hex digits>:<sequence>`, so a message sent
//! again after a lost acknowledgement is dropped by the stream's duplicate window instead of
//! stored twice. Up to `in_flight` messages are published ahead of their PubAcks (a window, in
//! order); a message is marked Done only once its own PubAck arrived (a PubAck that reports a
//! duplicate counts: the stream has it), and strictly in order. Any failure — a publish error,
//! a PubAck that does not come in time, no stream for the subject, the connection lost — ends
//! the session; the connector loop returns everything unacknowledged to Pending and it is sent
//! again, in order, on the next connection.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use iobp_config::NatsSpec;
use iobp_log::Batch;

use crate::connector::{Ended, Progress, Session};
use crate::destination::stream::undeliverable;
use crate::nats::{Check, NatsLink, NatsOpener};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;

/// Payload bytes read from the buffer at once (at least one record).
const READ_BYTES: usize = 1024 * 1024;

/// Runs a `nats` destination until the pair stops.
pub(crate) async fn destination(ctx: SideCtx, spec: NatsSpec) {
    let subject = spec.subject.replace("{pair}", &ctx.pair);
    let window = usize::try_from(spec.in_flight()).unwrap_or(1).max(1);
    let opener = NatsOpener::new(spec, Check::Publish { subject: subject.clone() });
    crate::connector::run(ctx, Side::Destination, opener, Publish { subject, window }).await;
}

/// The delivering session on one NATS connection.
struct Publish {
    subject: String,
    window: usize,
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// A message published and not yet acknowledged.
struct InFlight {
    seq: u64,
    bytes: u64,
    ack: AckFuture,
}

impl Session<NatsLink> for Publish {
    fn about(&self, peer: &str) -> String {
        format!("delivery to {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        mut link: NatsLink,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        let mut window: VecDeque<InFlight> = VecDeque::with_capacity(self.window);
        let mut batch = Batch::default();
        let log_id = ctx.log.id();
        let js = link.js.clone();
        loop {
            // Publish while the window has room and the buffer has messages.
            while window.len() < self.window {
                let room = self.window - window.len();
                match ctx.log.read_batch_into(&mut batch, room, READ_BYTES) {
                    Ok(()) => {}
                    Err(iobp_log::Error::Corrupt(c)) => {
                        ctx.error(Side::Destination, format!("buffer damage skipped: {c}"));
                        continue;
                    }
                    Err(e) => {
                        return Err(SideError::Buffer { doing: "reading the buffer", source: e });
                    }
                }
                if batch.is_empty() {
                    break;
                }
                for r in batch.iter() {
                    let msg = async_nats::jetstream::message::PublishMessage::build()
                        .payload(Bytes::copy_from_slice(r.payload))
                        .message_id(format!("{log_id:016x}:{}", r.seq));
                    let sent = tokio::select! {
                        biased;
                        () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
                        e = link.lost() => return Err(e),
                        s = js.send_publish(self.subject.clone(), msg) => s,
                    };
                    match sent {
                        Ok(ack) => window.push_back(InFlight {
                            seq: r.seq,
                            bytes: r.payload.len() as u64,
                            ack: ack.into_future(),
                        }),
                        // Larger than the server takes: set aside, never a pair stuck on it.
                        Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                            undeliverable(ctx, r.seq, r.payload, &e)?;
                        }
                        Err(e) => return Err(publish_error(r.seq, &e)),
                    }
                }
                let shown = batch.iter().map(|r| (Some(r.seq), r.payload));
                ctx.feed.record(
                    Side::Destination,
                    Some(peer),
                    shown.collect::<Vec<_>>().into_iter(),
                );
            }
            let room = window.len() < self.window;
            let acked = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
                e = link.lost() => return Err(e),
                acked = front(&mut window) => acked,
                r = ctx.log.readable(), if room => {
                    r.map_err(SideError::buffer("buffer"))?;
                    continue;
                }
            };
            let Some(done) = window.pop_front() else { continue };
            // Ok also when the PubAck reports a duplicate: the stream has the message from an
            // earlier attempt, which is what Done promises.
            if let Err(e) = acked {
                return Err(publish_error(done.seq, &e));
            }
            ctx.log.ack_through(done.seq).map_err(SideError::buffer("buffer"))?;
            ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
            ctx.stats.sent_bytes.fetch_add(done.bytes, Ordering::Relaxed);
            progress.made();
        }
    }
}

/// The PubAck of the oldest message in flight (pending forever when none is).
async fn front(window: &mut VecDeque<InFlight>) -> Result<PublishAck, PublishError> {
    match window.front_mut() {
        Some(f) => f.ack.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A publish that failed, by kind: the server's refusal or silence is the peer's; an answer
/// that cannot be read is a protocol fault.
fn publish_error(seq: u64, e: &PublishError) -> SideError {
    match e.kind() {
        PublishErrorKind::StreamNotFound => SideError::Peer(format!(
            "message {seq}: no JetStream stream captures the subject (no responders)"
        )),
        PublishErrorKind::TimedOut => {
            SideError::Peer(format!("message {seq}: JetStream did not acknowledge it in time"))
        }
        PublishErrorKind::BrokenPipe => {
            SideError::Peer(format!("message {seq}: the connection was lost before its PubAck"))
        }
        PublishErrorKind::Other
            if std::error::Error::source(e)
                .is_some_and(<dyn std::error::Error + 'static>::is::<serde_json::Error>) =>
        {
            SideError::Protocol(format!("message {seq}: unreadable PubAck: {e}"))
        }
        _ => SideError::Peer(format!("message {seq}: JetStream refused it: {e}")),
    }
}
