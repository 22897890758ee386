//! `udp` destination: each message is sent as one datagram. UDP has no delivery
//! confirmation; a message is Done once the socket accepted it. A send error (for example
//! "connection refused" reported by ICMP for an earlier datagram) returns the batch's
//! unsent messages to Pending and retries after a backoff.

use std::sync::Arc;

use iobp_config::UdpSpec;
use iobp_log::Batch;
use tokio::net::UdpSocket;

use super::return_in_flight;
use super::stream::{BATCH_BYTES, BATCH_RECORDS, delivered, undeliverable};
use crate::backoff::Backoff;
use crate::side::{SideCtx, pause};
use crate::stats::{Color, Side};

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

pub(crate) async fn destination(ctx: SideCtx, spec: UdpSpec) {
    let status = &ctx.stats.destination;
    let mut backoff = Backoff::new(ctx.retry);
    let target = format!("{}:{}", spec.host, spec.port);
    let peer: Arc<str> = target.clone().into();
    'connect: loop {
        let socket = match open(&target).await {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("cannot send to {target}: {e}");
                ctx.error(Side::Destination, msg.clone());
                status.set(Color::Red, msg);
                if !pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        status.set(Color::Green, format!("sending to udp {target}"));
        let mut batch = Batch::default();
        loop {
            match ctx.log.read_batch_into(&mut batch, BATCH_RECORDS, BATCH_BYTES) {
                Ok(()) => {}
                // Reported once; the next read continues after the damage.
                Err(iobp_log::Error::Corrupt(c)) => {
                    ctx.error(Side::Destination, format!("buffer damage skipped: {c}"));
                    continue;
                }
                Err(e) => {
                    // A read error can repeat: back off (observing the stop) instead of spinning.
                    return_in_flight(&ctx);
                    let msg = format!("reading the buffer: {e}");
                    ctx.error(Side::Destination, msg.clone());
                    status.set(Color::Red, msg);
                    if matches!(e, iobp_log::Error::Closed)
                        || !pause(&ctx.cancel, backoff.next_delay()).await
                    {
                        return;
                    }
                    continue 'connect;
                }
            }
            if batch.is_empty() {
                tokio::select! {
                    () = ctx.cancel.cancelled() => { return_in_flight(&ctx); return; }
                    r = ctx.log.readable() => if r.is_err() { return_in_flight(&ctx); return; },
                }
                continue;
            }
            for r in batch.iter() {
                if r.payload.len() > MAX_DATAGRAM {
                    let why = format!("{} bytes do not fit in one UDP datagram", r.payload.len());
                    if undeliverable(&ctx, r.seq, r.payload, &why).is_err() {
                        return_in_flight(&ctx);
                    }
                    continue;
                }
                if let Err(e) = socket.send(r.payload).await {
                    return_in_flight(&ctx);
                    let msg = format!("send to {target}: {e}");
                    ctx.error(Side::Destination, msg.clone());
                    status.set(Color::Red, msg);
                    if !pause(&ctx.cancel, backoff.next_delay()).await {
                        return;
                    }
                    continue 'connect;
                }
                let _ = ctx.log.ack(r.seq);
                delivered(
                    &ctx,
                    1,
                    r.payload.len() as u64,
                    [(Some(r.seq), r.payload)].into_iter(),
                    &peer,
                );
            }
            backoff.reset();
        }
    }
}

async fn open(target: &str) -> std::io::Result<UdpSocket> {
    let addr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let bind = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(addr).await?;
    Ok(socket)
}
