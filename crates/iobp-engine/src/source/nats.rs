//! The `nats` source: a durable JetStream pull consumer (explicit acks) on `stream`, filtered
//! by `subject`.
//!
//! Messages are stored as an **idempotent producer** (the tagged appends the relay uses): the
//! producer is a number derived from the stream and consumer names ([`origin`]) and each
//! record's tag is the message's stream sequence, so a message JetStream delivers again (its
//! ack was lost, `ack_wait` expired, we stopped between storing and acknowledging) is skipped,
//! never stored twice. A message is acknowledged to JetStream only once its append is durable;
//! while the buffer is full nothing is acknowledged and the batch waits, so JetStream keeps
//! (and redelivers) it.
//!
//! Tags must only grow, so a message must never be stored after a later one unless the earlier
//! one is already stored: a session takes messages in delivery order and never skips one
//! (it ends instead), and at the start of each session the consumer is made to deliver from
//! the first message not yet stored here when it holds unacknowledged messages from before
//! ([`sync_consumer`]) — else JetStream could deliver new messages before the redelivery of
//! older ones, and those would then look like duplicates.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use iobp_config::NatsSpec;

use crate::connector::{Ended, Progress, Session};
use crate::nats::{Check, NatsLink, NatsOpener};
use crate::side::{SideCtx, SideError, pause};
use crate::stats::{Rejected, Side, hex_preview};

/// Messages taken from JetStream and stored in one append, at most (also the pull batch).
const BATCH: usize = 256;
/// Payload bytes per pull batch.
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long a pull request waits on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// The server's heartbeat during a pull; a missing one ends the session.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);
/// While the buffer is full, the append is tried again after this.
const FULL_RETRY: Duration = Duration::from_millis(500);
/// Messages of a batch shown in the live feed.
const SHOWN: usize = 8;

/// Runs a `nats` source until the pair stops.
pub(crate) async fn source(ctx: SideCtx, spec: NatsSpec) {
    let consumer = spec.consumer_name(&ctx.pair);
    let stream = spec.stream.clone();
    let session = Consume {
        origin: origin(&stream, &consumer),
        stream: stream.clone(),
        consumer: consumer.clone(),
        subject: spec.subject.clone(),
        ack_wait: Duration::from_secs(spec.ack_wait_s()),
    };
    let opener = NatsOpener::new(spec, Check::Consume { stream, consumer });
    // Boxed: the session's future (consumer set-up, the pull stream) is large.
    Box::pin(crate::connector::run(ctx, Side::Source, opener, session)).await;
}

/// The producer number of a consumer's messages in the buffer: FNV-1a (64 bit) of
/// `nats\0<stream>\0<consumer>`. It depends only on names — not on the server, the URL or the
/// connection — so any server of a cluster, a restarted server or a new connection continues
/// the same producer, whose tags are the stream's own sequence numbers.
pub(crate) fn origin(stream: &str, consumer: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in b"nats\0".iter().chain(stream.as_bytes()).chain(b"\0").chain(consumer.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    h.max(1)
}

/// The consuming session on one NATS connection.
struct Consume {
    origin: u64,
    stream: String,
    consumer: String,
    subject: String,
    ack_wait: Duration,
}

impl Session<NatsLink> for Consume {
    fn about(&self, peer: &str) -> String {
        format!("consuming {} from {peer}", self.stream)
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        mut link: NatsLink,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        let js = link.js.clone();
        let consumer = tokio::select! {
            () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
            e = link.lost() => return Err(e),
            c = self.sync_consumer(ctx, &js) => c?,
        };
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .max_bytes_per_batch(BATCH_BYTES)
            .expires(PULL_EXPIRES)
            .heartbeat(PULL_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| {
                SideError::Peer(format!("pulling from consumer {}: {e}", self.consumer))
            })?;
        let mut held: Vec<jetstream::Message> = Vec::with_capacity(BATCH);
        let mut full_reported = false;
        loop {
            let first = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
                e = link.lost() => return Err(e),
                m = messages.next() => m,
            };
            held.push(self.message(first)?);
            // What else already arrived, up to a batch: stored with one append and one sync.
            while held.len() < BATCH {
                match messages.next().now_or_never() {
                    Some(m) => held.push(self.message(m)?),
                    None => break,
                }
            }
            match self.store(ctx, &held, peer, &mut full_reported).await? {
                Stored::Yes => {}
                Stored::Cancelled => return Ok(Ended::Cancelled),
            }
            // Durable here: only now may JetStream forget them.
            for m in held.drain(..) {
                m.ack().await.map_err(|e| {
                    SideError::Peer(format!("acknowledging a message to JetStream failed: {e}"))
                })?;
            }
            progress.made();
        }
    }
}

enum Stored {
    Yes,
    Cancelled,
}

impl Consume {
    /// One item of the pull stream, or why the session ends.
    fn message(
        &self,
        m: Option<Result<jetstream::Message, pull::MessagesError>>,
    ) -> Result<jetstream::Message, SideError> {
        match m {
            Some(Ok(m)) => Ok(m),
            Some(Err(e)) => {
                Err(SideError::Peer(format!("pulling from consumer {}: {e}", self.consumer)))
            }
            None => Err(SideError::Peer(format!("consumer {}: the pull ended", self.consumer))),
        }
    }

    /// Stores `held` (those not stored before) durably; waits while the buffer is full.
    async fn store(
        &self,
        ctx: &SideCtx,
        held: &[jetstream::Message],
        peer: &Arc<str>,
        full_reported: &mut bool,
    ) -> Result<Stored, SideError> {
        let mut records: Vec<(u64, Bytes)> = Vec::with_capacity(held.len());
        for m in held {
            let seq = m
                .info()
                .map_err(|e| {
                    SideError::Protocol(format!("a message without JetStream metadata: {e}"))
                })?
                .stream_sequence;
            // A redelivery within the batch of a message it already holds: stored once.
            if records.last().is_some_and(|(last, _)| seq <= *last) {
                ctx.stats.duplicates_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if m.payload.len() > iobp_log::format::MAX_RECORD_PAYLOAD as usize {
                // Cannot be stored: kept for operators, and JetStream told to stop sending it.
                self.too_large(ctx, m, seq, peer).await?;
                continue;
            }
            records.push((seq, m.payload.clone()));
        }
        if records.is_empty() {
            return Ok(Stored::Yes);
        }
        let appended = loop {
            match ctx.log.append_tagged_queued(self.origin, &records).await {
                Ok(a) => {
                    ctx.stats.clear_full();
                    *full_reported = false;
                    break a;
                }
                Err(iobp_log::Error::Full { scope, used, limit, needed }) => {
                    ctx.stats.set_full(needed);
                    if !*full_reported {
                        *full_reported = true;
                        ctx.error(
                            Side::Source,
                            format!(
                                "buffer full ({scope} limit: {used} of {limit} bytes used): \
                                 messages stay in JetStream, unacknowledged, until there is room"
                            ),
                        );
                    }
                    if !pause(&ctx.cancel, FULL_RETRY).await {
                        return Ok(Stored::Cancelled);
                    }
                }
                Err(e) => {
                    return Err(SideError::Buffer {
                        doing: "storing JetStream messages",
                        source: e,
                    });
                }
            }
        };
        if appended.duplicates > 0 {
            ctx.stats.duplicates_dropped.fetch_add(appended.duplicates as u64, Ordering::Relaxed);
        }
        appended.commit.await.map_err(SideError::buffer("storing JetStream messages"))?;
        if let Some(range) = appended.appended {
            // Duplicates are always a prefix (tags increase), so the new ones are the rest.
            let new = &records[records.len() - appended_len(&range)..];
            let bytes = new.iter().map(|(_, p)| p.len() as u64).sum();
            let shown: Vec<Bytes> =
                new.iter().skip(new.len().saturating_sub(SHOWN)).map(|(_, p)| p.clone()).collect();
            let first_shown = range.end() + 1 - shown.len() as u64;
            ctx.accepted_counts(new.len() as u64, bytes, &shown, first_shown, Some(peer));
        }
        Ok(Stored::Yes)
    }

    /// A message larger than the buffer takes: rejected and terminated in JetStream.
    async fn too_large(
        &self,
        ctx: &SideCtx,
        m: &jetstream::Message,
        seq: u64,
        peer: &Arc<str>,
    ) -> Result<(), SideError> {
        ctx.stats.reject(
            &ctx.pair,
            Rejected {
                at: std::time::SystemTime::now(),
                side: Side::Source,
                reason: format!(
                    "JetStream message {seq} of stream {} is larger than a buffer record",
                    self.stream
                ),
                len: m.payload.len() as u64,
                preview: hex_preview(&m.payload),
                seq: None,
                peer: Some(peer.to_string()),
            },
        );
        m.ack_with(jetstream::AckKind::Term)
            .await
            .map_err(|e| SideError::Peer(format!("terminating message {seq} failed: {e}")))
    }

    /// The durable consumer, made to deliver from the first message not stored here when it
    /// could otherwise skip one: it holds unacknowledged messages from an earlier session (their
    /// redelivery could come after newer messages), it is behind what is stored, or its settings
    /// differ from the side's. Otherwise it is used as it is. Created when missing: from the
    /// first message not stored here, or the start of the stream.
    async fn sync_consumer(
        &self,
        ctx: &SideCtx,
        js: &jetstream::Context,
    ) -> Result<jetstream::consumer::PullConsumer, SideError> {
        let peer = |what: &str, e: &dyn std::fmt::Display| {
            SideError::Peer(format!(
                "{what} consumer {} on stream {}: {e}",
                self.consumer, self.stream
            ))
        };
        let stored = ctx
            .log
            .durable_producer_position(self.origin)
            .await
            .map_err(SideError::buffer("reading the buffer's position"))?;
        let stream = js
            .get_stream_no_info(self.stream.as_str())
            .await
            .map_err(|e| SideError::Peer(format!("JetStream stream `{}`: {e}", self.stream)))?;
        let start = match stream.consumer_info(self.consumer.as_str()).await {
            Ok(info) => {
                let c = &info.config;
                let fits = c.ack_policy == AckPolicy::Explicit
                    && c.ack_wait == self.ack_wait
                    && c.filter_subject == self.subject;
                let floor = info.ack_floor.stream_sequence;
                if fits && info.num_ack_pending == 0 && floor >= stored {
                    return stream
                        .get_consumer::<pull::Config>(&self.consumer)
                        .await
                        .map_err(|e| peer("opening", &e));
                }
                // Everything up to the ack floor was stored here once (acknowledged only
                // after): resume after whichever is further.
                stream.delete_consumer(&self.consumer).await.map_err(|e| peer("resetting", &e))?;
                tracing::info!(
                    pair = &*ctx.pair,
                    consumer = self.consumer,
                    from = stored.max(floor) + 1,
                    "JetStream consumer reset to the first message not stored"
                );
                stored.max(floor) + 1
            }
            Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => stored + 1,
            Err(e) => return Err(peer("looking up", &e)),
        };
        let deliver_policy = if start <= 1 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: start }
        };
        stream
            .create_consumer(pull::Config {
                durable_name: Some(self.consumer.clone()),
                filter_subject: self.subject.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: self.ack_wait,
                deliver_policy,
                // Room for the pull batches in flight; more would only be redelivered.
                max_ack_pending: i64::try_from(BATCH * 4).unwrap_or(1024),
                description: Some("ioBufferPro nats source".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| peer("creating", &e))
    }
}

fn appended_len(r: &std::ops::RangeInclusive<u64>) -> usize {
    usize::try_from(r.end() - r.start() + 1).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_depends_on_stream_and_consumer_only_and_is_stable() {
        let a = super::origin("ORDERS", "iobp-p1");
        assert_eq!(a, super::origin("ORDERS", "iobp-p1"));
        assert_ne!(a, super::origin("ORDERS", "iobp-p2"));
        assert_ne!(a, super::origin("ORDERSi", "obp-p1"), "the separator keeps names apart");
        // Pinned: a different number would store every redelivered message again after an
        // upgrade.
        assert_eq!(a, 0x9185_1aac_2e34_ddac);
    }
}
