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
use std::sync::atomic::Ordering;
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
    let session = Subscribing { drop_duplicates: spec.drop_duplicates };
    let broker = Broker::new(spec, Role::Subscribe, &ctx.pair);
    crate::connector::run(ctx, Side::Source, broker, session).await;
}

/// Takes a subscription's messages into the buffer on one client session.
struct Subscribing {
    /// Store messages carrying another ioBufferPro's id as that sender's idempotent producer.
    drop_duplicates: bool,
}

/// A batch queued into the buffer, acknowledged to the broker once durable.
struct Waiting {
    /// The batch's appends, in order (one per run of messages from one sender when
    /// duplicates are dropped, else one), each with whether it stored anything new; removed
    /// as each becomes durable.
    commits: VecDeque<(Commit, bool)>,
    /// The log sequence number of the last message stored, once known (durable).
    last_seq: Option<u64>,
    /// Every message of the batch: acknowledged to the broker once all commits resolved.
    messages: Vec<Incoming>,
    /// Messages stored now, their payload bytes, and the last of them (for the Live View).
    stored: u64,
    bytes: u64,
    shown: VecDeque<Bytes>,
    /// Copies of messages the buffer already held (dropped).
    duplicates: u64,
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
                        Ok(()) => {
                            if let Err(e) = acknowledge(ctx, &conn, &w, peer) {
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
                    match store(ctx, messages, self.drop_duplicates).await {
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

/// What one append stores: plain payloads, or records of one sending ioBufferPro (its buffer
/// id, and each message's sequence number there as the tag).
enum Run {
    Plain(Vec<Bytes>),
    From(u64, Vec<(u64, Bytes)>),
}

/// A run of messages and how many of the batch's messages it covers, of which how many are
/// copies dropped inside the batch (older than what the run already holds).
struct Covered {
    run: Run,
    messages: usize,
    copies: u64,
}

/// Splits `messages` into runs, in order; with `drop_duplicates`, consecutive messages of one
/// sender form a tagged run.
fn runs(messages: &[Incoming], drop_duplicates: bool) -> Vec<Covered> {
    let mut out: Vec<Covered> = Vec::new();
    for m in messages {
        let payload = m.payload().clone();
        let sender = drop_duplicates.then(|| m.sender_id()).flatten();
        match (sender, out.last_mut()) {
            (Some((origin, tag)), Some(c)) if matches!(&c.run, Run::From(o, _) if *o == origin) => {
                c.messages += 1;
                if let Run::From(_, records) = &mut c.run {
                    if records.last().is_some_and(|(last, _)| tag <= *last) {
                        c.copies += 1;
                    } else {
                        records.push((tag, payload));
                    }
                }
            }
            (Some((origin, tag)), _) => out.push(Covered {
                run: Run::From(origin, vec![(tag, payload)]),
                messages: 1,
                copies: 0,
            }),
            (None, Some(Covered { run: Run::Plain(payloads), messages, .. })) => {
                payloads.push(payload);
                *messages += 1;
            }
            (None, _) => {
                out.push(Covered { run: Run::Plain(vec![payload]), messages: 1, copies: 0 });
            }
        }
    }
    out
}

/// Queues `messages` into the buffer; while it is full, tries again until there is room or
/// the pair stops (`None`: nothing was stored, and nothing is acknowledged; when the pair
/// stops after some runs were queued, the batch is cut to the messages they cover).
async fn store(
    ctx: &SideCtx,
    mut messages: Vec<Incoming>,
    drop_duplicates: bool,
) -> Result<Option<Waiting>, SideError> {
    let mut w = Waiting {
        commits: VecDeque::new(),
        last_seq: None,
        messages: Vec::new(),
        stored: 0,
        bytes: 0,
        shown: VecDeque::with_capacity(SHOWN),
        duplicates: 0,
    };
    let mut covered = 0;
    let mut reported = false;
    for Covered { run, messages: n, copies } in runs(&messages, drop_duplicates) {
        let (commit, new): (Commit, Vec<Bytes>) = loop {
            let queued = match &run {
                Run::Plain(payloads) => ctx.intake(payloads).await.map(|c| (c, payloads.clone())),
                Run::From(origin, records) => ctx.intake_tagged(*origin, records).await.map(|a| {
                    w.duplicates += a.duplicates as u64;
                    // Duplicates are always a prefix (tags increase): the new ones are the rest.
                    let new = records[a.duplicates..].iter().map(|(_, p)| p.clone()).collect();
                    (a.commit, new)
                }),
            };
            match queued {
                Ok(queued) => break queued,
                Err(IntakeError::Full(why)) => {
                    if !reported {
                        ctx.error(
                            Side::Source,
                            format!("{why}: messages are held at the broker until there is room"),
                        );
                        reported = true;
                    }
                    if !crate::side::pause(&ctx.cancel, FULL_RETRY).await {
                        if w.commits.is_empty() {
                            return Ok(None);
                        }
                        messages.truncate(covered);
                        w.messages = messages;
                        return Ok(Some(w));
                    }
                }
                Err(IntakeError::Broken(e)) => {
                    return Err(SideError::Buffer { doing: "storing", source: e });
                }
            }
        };
        covered += n;
        w.duplicates += copies;
        w.commits.push_back((commit, !new.is_empty()));
        w.stored += new.len() as u64;
        for p in new {
            w.bytes += p.len() as u64;
            if w.shown.len() == SHOWN {
                w.shown.pop_front();
            }
            w.shown.push_back(p);
        }
    }
    w.messages = messages;
    Ok(Some(w))
}

/// The batch `w`, durable: what it stored counted and shown, its copies counted as dropped,
/// and every message acknowledged to the broker.
fn acknowledge(ctx: &SideCtx, conn: &Conn, w: &Waiting, peer: &Arc<str>) -> Result<(), SideError> {
    if let Some(last) = w.last_seq {
        let shown: Vec<Bytes> = w.shown.iter().cloned().collect();
        let first_shown = last + 1 - shown.len() as u64;
        ctx.accepted_counts(w.stored, w.bytes, &shown, first_shown, Some(peer));
    }
    if w.duplicates > 0 {
        ctx.stats.duplicates_dropped.fetch_add(w.duplicates, Ordering::Relaxed);
    }
    for m in &w.messages {
        conn.ack(m)?;
    }
    Ok(())
}

/// Resolves when every append of the oldest batch is durable (never, if none waits).
/// Cancellation-safe: an append is removed once durable.
async fn first_commit(waiting: &mut VecDeque<Waiting>) -> iobp_log::Result<()> {
    let Some(w) = waiting.front_mut() else { return std::future::pending().await };
    durable(w).await
}

/// Waits for `w`'s appends, oldest first, noting the last sequence number stored.
async fn durable(w: &mut Waiting) -> iobp_log::Result<()> {
    while let Some((commit, stores)) = w.commits.front_mut() {
        let seqs = commit.await?;
        if *stores {
            w.last_seq = Some(*seqs.end());
        }
        w.commits.pop_front();
    }
    Ok(())
}

/// The session ends: batches already queued are acknowledged once durable (within the
/// wind-down time), so the broker does not send them again; the rest it sends again.
async fn wind_down(ctx: &SideCtx, conn: &Conn, waiting: &mut VecDeque<Waiting>, peer: &Arc<str>) {
    let deadline = Instant::now() + crate::source::stream::WIND_DOWN;
    while let Some(mut w) = waiting.pop_front() {
        if let Ok(Ok(())) = tokio::time::timeout_at(deadline, durable(&mut w)).await {
            // Counted even if the acknowledgement cannot leave: the message is stored.
            let _ = acknowledge(ctx, conn, &w, peer);
            continue;
        }
        // Not acknowledged: the broker sends these again. What still becomes durable is in
        // the buffer all the same, and counted as received then.
        for mut w in std::iter::once(w).chain(waiting.drain(..)) {
            let (n, b) = (w.stored, w.bytes);
            ctx.count_if_stored_later(async move { durable(&mut w).await.map(|()| None) }, n, b);
        }
        break;
    }
}
