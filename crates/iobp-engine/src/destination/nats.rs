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

use std::future::IntoFuture;
use std::sync::Arc;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use bytes::Bytes;
use iobp_config::NatsSpec;

use crate::connector::{Ended, Progress, Session};
use crate::destination::stream::undeliverable;
use crate::destination::window::{self, Confirmation, Publisher};
use crate::nats::{Check, NatsLink, NatsOpener};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;

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

impl Session<NatsLink> for Publish {
    fn about(&self, peer: &str) -> String {
        format!("delivery to {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        link: NatsLink,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        let mut publisher = OnLink { link, subject: &self.subject };
        window::deliver(ctx, peer, self.window, &mut publisher, progress).await
    }
}

/// Publishing through JetStream on one connection.
struct OnLink<'a> {
    link: NatsLink,
    subject: &'a str,
}

impl Publisher for OnLink<'_> {
    async fn publish(
        &mut self,
        ctx: &SideCtx,
        seq: u64,
        id: String,
        payload: &[u8],
    ) -> Result<Option<Confirmation>, SideError> {
        let msg = async_nats::jetstream::message::PublishMessage::build()
            .payload(Bytes::copy_from_slice(payload))
            .message_id(id);
        let js = self.link.js.clone();
        // The client may wait for room while reconnecting: a lost connection ends the wait.
        let sent = tokio::select! {
            biased;
            e = self.link.lost() => return Err(e),
            s = js.send_publish(self.subject.to_string(), msg) => s,
        };
        match sent {
            // Ok also when the PubAck reports a duplicate: the stream has the message from an
            // earlier attempt, which is what Done promises.
            Ok(ack) => {
                let ack = ack.into_future();
                Ok(Some(Box::pin(async move {
                    ack.await.map(drop).map_err(|e| publish_error(seq, &e))
                })))
            }
            // Larger than the server takes: set aside, never a pair stuck on it.
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                undeliverable(ctx, seq, payload, &e)?;
                Ok(None)
            }
            Err(e) => Err(publish_error(seq, &e)),
        }
    }

    async fn lost(&mut self) -> SideError {
        self.link.lost().await
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
