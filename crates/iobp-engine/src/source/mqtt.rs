//! `mqtt` source: subscribes to the broker on a persistent session and acknowledges each
//! message to the broker (`PUBACK` for `QoS` 1, `PUBREC` for `QoS` 2) only once it is durable here.
//!
//! A message the broker sent that is not yet durable when the connection fails, or the
//! process dies, is not acknowledged: the broker sends it again on the next connection
//! (at-least-once; a copy of a message that had become durable is stored again). While the
//! buffer is full, what arrived is held and stored as soon as there is room (never
//! acknowledged before); the broker stops sending once its window of unacknowledged messages
//! to us is full, and queues the rest.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iobp_config::MqttSpec;
use iobp_log::Commit;
use tokio::time::Instant;

use crate::connector::{Ended, Progress, Session};
use crate::mqtt::{Broker, Conn, Incoming, Role};
use crate::side::{IntakeError, SideCtx, SideError};
use crate::stats::Side;

/// Messages taken into one batch when several are waiting.
const BATCH: usize = 256;
/// Batches waiting for their fdatasync while receiving continues.
const WINDOW: usize = 8;
/// How often storing is tried again while the buffer is full.
const FULL_RETRY: Duration = Duration::from_millis(200);
/// Messages shown in the Live View per batch.
const SHOWN: usize = 16;

pub(crate) async fn source(ctx: SideCtx, spec: MqttSpec) {
    let broker = Broker::new(spec, Role::Subscribe, &ctx.pair);
    crate::connector::run(ctx, Side::Source, broker, Subscribing).await;
}

/// Takes a subscription's messages into the buffer on one client session.
struct Subscribing;

/// A batch queued into the buffer, acknowledged to the broker once durable.
struct Waiting {
    commit: Commit,
    messages: Vec<Incoming>,
    bytes: u64,
}

impl Session<Conn> for Subscribing {
    fn about(&self, peer: &str) -> String {
        format!("subscription at {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        mut conn: Conn,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        let mut waiting: VecDeque<Waiting> = VecDeque::with_capacity(WINDOW);
        let result = loop {
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => break Ok(Ended::Cancelled),
                r = first_commit(&mut waiting), if !waiting.is_empty() => {
                    let Some(w) = waiting.pop_front() else { continue };
                    match r {
                        Ok(seqs) => {
                            if let Err(e) = acknowledge(ctx, &conn, &w, *seqs.end(), peer) {
                                break Err(e);
                            }
                            progress.made();
                        }
                        Err(e) => break Err(SideError::Buffer { doing: "storing", source: e }),
                    }
                }
                m = conn.next(), if waiting.len() < WINDOW => {
                    let first = match m {
                        Ok(m) => m,
                        Err(e) => break Err(e),
                    };
                    let mut messages = vec![first];
                    while messages.len() < BATCH {
                        match conn.try_next() {
                            Some(Ok(m)) => messages.push(m),
                            Some(Err(e)) => {
                                // Store what came before the failure; the broker sends
                                // everything unacknowledged again anyway.
                                tracing::debug!(pair = %ctx.pair, "MQTT session ended: {e}");
                                break;
                            }
                            None => break,
                        }
                    }
                    match store(ctx, messages).await {
                        Ok(Some(w)) => waiting.push_back(w),
                        Ok(None) => break Ok(Ended::Cancelled),
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        wind_down(ctx, &conn, &mut waiting, peer).await;
        conn.close().await;
        result
    }
}

/// Queues `messages` into the buffer; while it is full, tries again until there is room or
/// the pair stops (`None`: nothing was stored, and nothing is acknowledged).
async fn store(ctx: &SideCtx, messages: Vec<Incoming>) -> Result<Option<Waiting>, SideError> {
    let payloads: Vec<Bytes> = messages.iter().map(|m| m.payload().clone()).collect();
    let bytes = payloads.iter().map(|p| p.len() as u64).sum();
    let mut reported = false;
    loop {
        match ctx.intake(&payloads).await {
            Ok(commit) => return Ok(Some(Waiting { commit, messages, bytes })),
            Err(IntakeError::Full(why)) => {
                if !reported {
                    ctx.error(
                        Side::Source,
                        format!("{why}: messages are held at the broker until there is room"),
                    );
                    reported = true;
                }
                if !crate::side::pause(&ctx.cancel, FULL_RETRY).await {
                    return Ok(None);
                }
            }
            Err(IntakeError::Broken(e)) => {
                return Err(SideError::Buffer { doing: "storing", source: e });
            }
        }
    }
}

/// The batch `w`, durable through `last_seq`: counted, shown, and acknowledged to the broker.
fn acknowledge(
    ctx: &SideCtx,
    conn: &Conn,
    w: &Waiting,
    last_seq: u64,
    peer: &Arc<str>,
) -> Result<(), SideError> {
    let count = w.messages.len() as u64;
    let shown: Vec<Bytes> =
        w.messages.iter().rev().take(SHOWN).rev().map(|m| m.payload().clone()).collect();
    let first_shown = last_seq + 1 - shown.len() as u64;
    ctx.accepted_counts(count, w.bytes, &shown, first_shown, Some(peer));
    for m in &w.messages {
        conn.ack(m)?;
    }
    Ok(())
}

/// Resolves when the oldest batch is durable (never, if none waits).
async fn first_commit(
    waiting: &mut VecDeque<Waiting>,
) -> iobp_log::Result<std::ops::RangeInclusive<u64>> {
    match waiting.front_mut() {
        Some(w) => (&mut w.commit).await,
        None => std::future::pending().await,
    }
}

/// The session ends: batches already queued are acknowledged once durable (within the
/// wind-down time), so the broker does not send them again; the rest it sends again.
async fn wind_down(ctx: &SideCtx, conn: &Conn, waiting: &mut VecDeque<Waiting>, peer: &Arc<str>) {
    let deadline = Instant::now() + crate::source::stream::WIND_DOWN;
    while let Some(mut w) = waiting.pop_front() {
        match tokio::time::timeout_at(deadline, &mut w.commit).await {
            Ok(Ok(seqs)) => {
                // Counted even if the acknowledgement cannot leave: the message is stored.
                let _ = acknowledge(ctx, conn, &w, *seqs.end(), peer);
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
}
