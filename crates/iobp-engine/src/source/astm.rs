//! A byte-stream source speaking the ASTM E1381 link protocol (`"framing": {"type": "astm"}`
//! on a `tcp_server`, `tcp_client` or `serial` source): the instrument (an analyzer) sends,
//! this side answers. The protocol itself is [`iobp_codec::astm::Receiver`]; this module is
//! its I/O, timers and the buffer.
//!
//! **Durability.** Each E1394 message (Header … Terminator) is one stored message. The `ACK`
//! of its last frame is written only once the message's commit resolved (fdatasync done):
//! an instrument whose message was acknowledged can forget it. A message whose commit fails
//! gets a `NAK` instead, and the instrument sends the frame again. Records that never became
//! a complete message (the instrument abandoned the transmission) are not stored: they are
//! shown as rejected, with a preview, and the instrument sends the message again whole.
//!
//! **Buffer full.** The last frame is answered `NAK` (the instrument retransmits it, at most
//! six times, then ends the transmission and tries later) and every `ENQ` for
//! [`REFUSE_ENQ_FOR`] after that is answered `NAK` too (the instrument waits and asks again);
//! each refusal is counted. Nothing is acknowledged that was not stored.
//!
//! **Flow.** While a message waits for its commit nothing is read: the instrument waits for
//! the answer to its frame anyway (stop-and-wait), so this costs nothing and bounds what a
//! connection holds to one message (`max_message_bytes`).
//!
//! **Stop.** A message waiting for its commit gets until [`WIND_DOWN`]; if it became durable
//! it is counted and acknowledged, else it is not acknowledged (the instrument sends it again).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use iobp_codec::astm::{Action, Receiver};
use iobp_log::Commit;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::stream::WIND_DOWN;
use crate::connector::Ended;
use crate::side::{IntakeError, SideCtx, SideError, sleep_until_opt};
use crate::stats::{Rejected, Side, hex_preview};

/// After a message was refused because the buffer is full, `ENQ` is answered `NAK` this long:
/// the instrument waits and asks again, instead of sending a whole message to be refused.
pub(crate) const REFUSE_ENQ_FOR: Duration = Duration::from_secs(1);
/// Answers to the instrument must leave within this; a peer that does not read them is gone.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// The receiving side's state besides the protocol machine.
struct Link {
    /// The message the receiver completed, not yet queued into the buffer.
    to_store: Option<Bytes>,
    /// The message queued into the buffer, waiting for its commit (its `ACK` is held).
    committing: Option<(Commit, Bytes)>,
    /// The protocol timer (E1381's 30 s receiver timeout).
    timer: Option<Instant>,
    /// When `ENQ` is accepted again after a refusal.
    accept_at: Option<Instant>,
    /// Bytes to send to the instrument.
    out: Vec<u8>,
}

/// Serves one connection until it ends (see the module documentation).
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &SideCtx,
    io: S,
    peer: &Arc<str>,
    max_message_bytes: usize,
    idle_timeout: Option<Duration>,
) -> Result<Ended, SideError> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut rx = Receiver::new(max_message_bytes);
    let mut link =
        Link { to_store: None, committing: None, timer: None, accept_at: None, out: Vec::new() };
    let mut buf = vec![0u8; 4096];
    let mut last_activity = Instant::now();
    loop {
        let reading = link.committing.is_none() && !rx.awaits_answer();
        let idle_at = idle_timeout.filter(|_| reading && !rx.busy()).map(|t| last_activity + t);
        let actions = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                link.wind_down(ctx, &mut rx, &mut wr, peer).await;
                return Ok(Ended::Cancelled);
            }
            done = commit_of(&mut link.committing) => {
                let Some((commit, message)) = link.committing.take() else { continue };
                match done {
                    Ok(()) => {
                        let seq = *commit.seqs().start();
                        ctx.accepted_counts(1, message.len() as u64, &[message], seq, Some(peer));
                        rx.stored()
                    }
                    Err(e) => {
                        ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
                        let actions = rx.refused();
                        link.carry_out(ctx, actions, peer);
                        link.flush(&mut wr).await?;
                        return Err(SideError::Buffer { doing: "buffer failed", source: e });
                    }
                }
            }
            () = sleep_until_opt(link.accept_at) => {
                link.accept_at = None;
                rx.set_accepting(true);
                Vec::new()
            }
            () = sleep_until_opt(link.timer) => {
                link.timer = None;
                rx.timed_out()
            }
            () = sleep_until_opt(idle_at) => return Ok(Ended::IdleTimeout),
            n = rd.read(&mut buf), if reading => match n {
                Err(e) => return Err(SideError::Peer(format!("read: {e}"))),
                Ok(0) => {
                    if rx.busy() {
                        ctx.error(
                            Side::Source,
                            format!(
                                "{peer} closed the connection in the middle of a transmission; \
                                 its unfinished message was not acknowledged (the instrument \
                                 sends it again)"
                            ),
                        );
                    }
                    return Ok(Ended::PeerClosed);
                }
                Ok(n) => {
                    last_activity = Instant::now();
                    rx.feed(&buf[..n])
                }
            },
        };
        link.carry_out(ctx, actions, peer);
        link.store(ctx, &mut rx, peer).await?;
        link.flush(&mut wr).await?;
    }
}

/// Resolves with the waiting commit's outcome; never without one.
async fn commit_of(committing: &mut Option<(Commit, Bytes)>) -> iobp_log::Result<()> {
    match committing {
        Some((commit, _)) => commit.await.map(|_| ()),
        None => std::future::pending().await,
    }
}

impl Link {
    /// Carries out the receiver's actions (a message to store waits for [`Link::store`]).
    fn carry_out(&mut self, ctx: &SideCtx, actions: Vec<Action>, peer: &Arc<str>) {
        for a in actions {
            match a {
                Action::Send(bytes) => self.out.extend_from_slice(&bytes),
                Action::Arm(d) => self.timer = Some(Instant::now() + d),
                Action::Disarm => self.timer = None,
                Action::Note(note) => ctx.error(Side::Source, format!("{peer}: {note}")),
                Action::Store(message) => self.to_store = Some(Bytes::from(message)),
                Action::Discard { records, why } => {
                    ctx.stats.reject(
                        &ctx.pair,
                        Rejected {
                            at: SystemTime::now(),
                            side: Side::Source,
                            reason: format!("incomplete ASTM message not stored: {why}"),
                            len: records.len() as u64,
                            preview: hex_preview(&records),
                            seq: None,
                            peer: Some(peer.to_string()),
                        },
                    );
                }
            }
        }
    }

    /// Queues a completed message into the buffer; a full buffer refuses it (`NAK`).
    async fn store(
        &mut self,
        ctx: &SideCtx,
        rx: &mut Receiver,
        peer: &Arc<str>,
    ) -> Result<(), SideError> {
        let Some(message) = self.to_store.take() else { return Ok(()) };
        match ctx.intake(std::slice::from_ref(&message)).await {
            Ok(commit) => {
                self.committing = Some((commit, message));
                Ok(())
            }
            Err(IntakeError::Full(why)) => {
                ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
                ctx.error(
                    Side::Source,
                    format!(
                        "{why}: a message from {peer} was refused (its last frame answered NAK; \
                         the instrument sends it again)"
                    ),
                );
                rx.set_accepting(false);
                self.accept_at = Some(Instant::now() + REFUSE_ENQ_FOR);
                let actions = rx.refused();
                self.carry_out(ctx, actions, peer);
                // Bytes that arrived while it was stored may have completed it again: stored
                // at the next step, after the NAK went out.
                Ok(())
            }
            Err(IntakeError::Broken(e)) => {
                ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
                let actions = rx.refused();
                self.carry_out(ctx, actions, peer);
                Err(SideError::Buffer { doing: "buffer unavailable", source: e })
            }
        }
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> Result<(), SideError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let sent = tokio::time::timeout(ANSWER_TIMEOUT, async {
            wr.write_all(&self.out).await?;
            wr.flush().await
        })
        .await;
        self.out.clear();
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SideError::Peer(format!("answering the instrument: {e}"))),
            Err(_) => Err(SideError::Peer(format!(
                "the instrument did not take our answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The pair stops: a message waiting for its commit gets until [`WIND_DOWN`]; if it
    /// became durable it is counted and its `ACK` sent, else nothing is acknowledged.
    async fn wind_down<W: AsyncWrite + Unpin>(
        &mut self,
        ctx: &SideCtx,
        rx: &mut Receiver,
        wr: &mut W,
        peer: &Arc<str>,
    ) {
        let deadline = Instant::now() + WIND_DOWN;
        if self.to_store.take().is_some() {
            ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        let Some((mut commit, message)) = self.committing.take() else { return };
        let durable = tokio::time::timeout_at(deadline, &mut commit).await;
        if let Ok(Ok(_)) = durable {
            let seq = *commit.seqs().start();
            ctx.accepted_counts(1, message.len() as u64, &[message], seq, Some(peer));
            // Its ACK goes; nothing after it is taken.
            if let Some(ack) = rx.stored().into_iter().find_map(|a| match a {
                Action::Send(bytes) => Some(bytes),
                _ => None,
            }) {
                self.out = ack;
                let _ = tokio::time::timeout_at(deadline, self.flush(wr)).await;
            }
        } else {
            ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            ctx.error(
                Side::Source,
                format!(
                    "a message from {peer} was not confirmed durable within {} s of the pair \
                     stopping; not acknowledged (the instrument sends it again)",
                    WIND_DOWN.as_secs()
                ),
            );
            if durable.is_err() {
                let bytes = message.len() as u64;
                ctx.count_if_stored_later(async move { commit.await.map(Some) }, 1, bytes);
            }
        }
    }
}
