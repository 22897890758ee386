//! `mqtt` destination: publishes each message to the broker, in order, with up to `in_flight`
//! publishes awaiting their acknowledgement; a message is Done only once the broker
//! acknowledged it (`PUBACK` for `QoS` 1, `PUBCOMP` for `QoS` 2), and Done strictly in order.
//!
//! Each publish carries the message's id, `<buffer id>:<sequence number>` (MQTT 5: the user
//! property `iobp-id`), so a message published again after a reconnect — everything not yet
//! acknowledged returns to Pending and goes again, in order — is recognisable downstream.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use iobp_config::MqttSpec;
use iobp_log::Batch;

use crate::connector::{Ended, Progress, Session};
use crate::mqtt::{Broker, Confirmation, Conn, Role};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;

pub(crate) async fn destination(ctx: SideCtx, mut spec: MqttSpec) {
    // The topic as published (and shown in the status), the template filled in.
    spec.topic = spec.topic.replace("{pair}", &ctx.pair);
    let window = usize::from(spec.in_flight.unwrap_or(iobp_config::DEFAULT_MQTT_IN_FLIGHT));
    let session = Publishing { topic: spec.topic.clone(), qos: spec.qos, window };
    let broker = Broker::new(spec, Role::Publish, &ctx.pair);
    crate::connector::run(ctx, Side::Destination, broker, session).await;
}

/// Publishes the buffer on one client session.
struct Publishing {
    topic: String,
    qos: u8,
    window: usize,
}

/// A publish awaiting the broker's acknowledgement.
struct Unconfirmed {
    seq: u64,
    bytes: u64,
    confirmed: Confirmation,
}

impl Session<Conn> for Publishing {
    fn about(&self, peer: &str) -> String {
        format!("publishing to {peer} ({})", self.topic)
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        mut conn: Conn,
        peer: &Arc<str>,
        _progress: &Progress,
    ) -> Result<Ended, SideError> {
        // Everything handed out on an earlier connection goes again, first, in order.
        ctx.log.requeue_all();
        let log_id = ctx.log.id();
        let mut waiting: VecDeque<Unconfirmed> = VecDeque::with_capacity(self.window);
        let mut batch = Batch::default();
        let result = loop {
            // Publish while the window and the buffer allow.
            let room = self.window - waiting.len();
            if room > 0 {
                match ctx.log.read_batch_into(&mut batch, room, 1024 * 1024) {
                    Ok(()) => {}
                    Err(iobp_log::Error::Corrupt(c)) => {
                        ctx.error(Side::Destination, format!("buffer damage skipped: {c}"));
                        continue;
                    }
                    Err(e) => {
                        break Err(SideError::Buffer { doing: "reading the buffer", source: e });
                    }
                }
                let mut failed = None;
                for r in batch.iter() {
                    let id = format!("{log_id:016x}:{}", r.seq);
                    let payload = Bytes::copy_from_slice(r.payload);
                    match conn.publish(&self.topic, payload, self.qos, id).await {
                        Ok(confirmed) => waiting.push_back(Unconfirmed {
                            seq: r.seq,
                            bytes: r.payload.len() as u64,
                            confirmed,
                        }),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                if !batch.is_empty() {
                    let shown = batch.iter().map(|r| (Some(r.seq), r.payload));
                    ctx.feed.record(Side::Destination, Some(peer), shown);
                    continue;
                }
            }
            let room = waiting.len() < self.window;
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => break Ok(Ended::Cancelled),
                r = first_confirmed(&mut waiting), if !waiting.is_empty() => {
                    if let Err(e) = r {
                        break Err(e);
                    }
                    if let Err(e) = confirm_ready(ctx, &mut waiting) {
                        break Err(e);
                    }
                }
                m = conn.next() => match m {
                    Err(e) => break Err(e),
                    Ok(_) => break Err(SideError::Protocol(
                        "the broker sent a message to a session that subscribed to nothing".into(),
                    )),
                },
                r = ctx.log.readable(), if room => {
                    if let Err(e) = r {
                        break Err(SideError::buffer("buffer")(e));
                    }
                }
            }
        };
        conn.close().await;
        result
    }
}

/// Resolves when the oldest publish is acknowledged (never, if none waits).
async fn first_confirmed(waiting: &mut VecDeque<Unconfirmed>) -> Result<(), SideError> {
    match waiting.front_mut() {
        Some(w) => (&mut w.confirmed).await,
        None => std::future::pending().await,
    }
}

/// Marks Done the acknowledged publishes at the front (the first has just been acknowledged;
/// later ones that were acknowledged meanwhile follow without waiting).
fn confirm_ready(ctx: &SideCtx, waiting: &mut VecDeque<Unconfirmed>) -> Result<(), SideError> {
    let Some(first) = waiting.pop_front() else { return Ok(()) };
    let (mut through, mut n, mut bytes) = (first.seq, 1u64, first.bytes);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    while let Some(next) = waiting.front_mut() {
        match next.confirmed.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(())) => {
                through = next.seq;
                n += 1;
                bytes += next.bytes;
                waiting.pop_front();
            }
            std::task::Poll::Ready(Err(e)) => {
                ctx.log.ack_through(through).map_err(SideError::buffer("buffer"))?;
                count(ctx, n, bytes);
                return Err(e);
            }
            std::task::Poll::Pending => break,
        }
    }
    ctx.log.ack_through(through).map_err(SideError::buffer("buffer"))?;
    count(ctx, n, bytes);
    Ok(())
}

fn count(ctx: &SideCtx, n: u64, bytes: u64) {
    ctx.stats.sent.fetch_add(n, Ordering::Relaxed);
    ctx.stats.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
}
