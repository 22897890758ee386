//! `udp` destination: each message is sent as one datagram. UDP has no delivery
//! confirmation; a message is Done once the socket accepted it. A send error (for example
//! "connection refused" reported by ICMP for an earlier datagram) returns the batch's
//! unsent messages to Pending and retries after a backoff, on a new socket (the connector
//! loop, with UDP as a connectionless transport: its backoff starts over only once
//! datagrams left).

use std::sync::Arc;

use iobp_config::UdpSpec;
use iobp_log::Batch;
use tokio::net::UdpSocket;

use super::stream::{BATCH_BYTES, BATCH_RECORDS, delivered, undeliverable};
use crate::connector::{Ended, Opened, Opener, Progress, Session, Shape};
use crate::side::{SideCtx, SideError};
use crate::stats::Side;

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

pub(crate) async fn destination(ctx: SideCtx, spec: UdpSpec) {
    let target = Target(format!("{}:{}", spec.host, spec.port));
    crate::connector::run(ctx, Side::Destination, target, Datagrams).await;
}

/// Where datagrams go: a socket connected to `host:port`.
struct Target(String);

impl Opener for Target {
    type Io = UdpSocket;

    fn shape(&self) -> Shape {
        Shape::Dial
    }

    fn connectionless(&self) -> bool {
        true
    }

    async fn open(&mut self) -> Result<Opened<UdpSocket>, SideError> {
        let target = &self.0;
        let socket = open(target)
            .await
            .map_err(|e| SideError::Peer(format!("cannot send to {target}: {e}")))?;
        Ok(Opened::new(socket, target.as_str().into(), format!("sending to udp {target}")))
    }
}

/// Sends the buffer, one datagram per message.
struct Datagrams;

impl Session<UdpSocket> for Datagrams {
    fn about(&self, peer: &str) -> String {
        format!("send to {peer}")
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        socket: UdpSocket,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        let mut batch = Batch::default();
        loop {
            if !ctx.next_batch(&mut batch, BATCH_RECORDS, BATCH_BYTES)? {
                continue;
            }
            if batch.is_empty() {
                tokio::select! {
                    () = ctx.cancel.cancelled() => return Ok(Ended::Cancelled),
                    r = ctx.log.readable() => { r.map_err(SideError::buffer("buffer"))?; }
                }
                continue;
            }
            // Datagrams sent since the last one set aside: counted, shown and traced together.
            let mut run: Option<(u64, u64)> = None;
            let mut bytes = 0u64;
            for r in batch.iter() {
                if r.payload.len() > MAX_DATAGRAM {
                    sent(ctx, &batch, run.take(), std::mem::take(&mut bytes), peer);
                    let why = format!("{} bytes do not fit in one UDP datagram", r.payload.len());
                    if undeliverable(ctx, r.seq, r.payload, &why).is_err() {
                        crate::destination::return_in_flight(ctx, Some(peer), || {
                            "the buffer failed".to_string()
                        });
                    }
                    continue;
                }
                if let Err(e) = socket.send(r.payload).await {
                    sent(ctx, &batch, run, bytes, peer);
                    return Err(SideError::Peer(e.to_string()));
                }
                let _ = ctx.log.ack(r.seq);
                run = Some(run.map_or((r.seq, r.seq), |(a, _)| (a, r.seq)));
                bytes += r.payload.len() as u64;
            }
            sent(ctx, &batch, run, bytes, peer);
            progress.made();
        }
    }
}

/// Datagrams `run` of `batch` were sent (and marked Done).
fn sent(ctx: &SideCtx, batch: &Batch, run: Option<(u64, u64)>, bytes: u64, peer: &Arc<str>) {
    let Some((a, b)) = run else { return };
    let shown: Vec<(Option<u64>, &[u8])> = batch
        .iter()
        .filter(|r| (a..=b).contains(&r.seq))
        .map(|r| (Some(r.seq), r.payload))
        .collect();
    delivered(ctx, (a, b), bytes, shown.into_iter(), peer, None);
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
