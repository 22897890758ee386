//! `udp` source: one datagram is one message. UDP cannot be held back, so a datagram that
//! cannot be stored (buffer full) is counted as refused and raises an alarm — never dropped
//! silently.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;
use iobp_config::UdpSpec;
use tokio::net::UdpSocket;

use crate::backoff::Backoff;
use crate::side::{IntakeError, SideCtx, pause};
use crate::stats::{Color, Rejected, Side, hex_preview};

/// Datagrams taken per batch when several are waiting.
const BATCH: usize = 256;

pub(crate) async fn source(ctx: SideCtx, spec: UdpSpec) {
    let status = &ctx.stats.source;
    let mut backoff = Backoff::new(ctx.retry);
    let addr = format!("{}:{}", spec.host, spec.port);
    let socket = loop {
        match UdpSocket::bind(&addr).await {
            Ok(s) => break s,
            Err(e) => {
                let msg = format!("cannot listen on udp {addr}: {e}");
                ctx.error(Side::Source, msg.clone());
                status.set(Color::Red, msg);
                if !pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
            }
        }
    };
    status.set(Color::Green, format!("listening on udp {addr}"));
    let max = iobp_config::DEFAULT_MAX_MESSAGE_BYTES as usize;
    let mut buf = vec![0u8; 65_536];
    loop {
        let first = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut batch: Vec<(Bytes, std::net::SocketAddr)> = Vec::new();
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                Ok((n, from)) if n > max => ctx.stats.reject(
                    &ctx.pair,
                    Rejected {
                        at: SystemTime::now(),
                        side: Side::Source,
                        reason: "oversize datagram".into(),
                        len: n as u64,
                        preview: hex_preview(&buf[..n]),
                        seq: None,
                        peer: Some(from.to_string()),
                    },
                ),
                Ok((n, from)) => batch.push((Bytes::copy_from_slice(&buf[..n]), from)),
                Err(e) => ctx.error(Side::Source, format!("udp receive on {addr}: {e}")),
            }
            if batch.len() < BATCH {
                next = match socket.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                    r => Some(r),
                };
            }
        }
        if batch.is_empty() {
            continue;
        }
        let frames: Vec<Bytes> = batch.iter().map(|(b, _)| b.clone()).collect();
        let peer: Option<Arc<str>> = batch.last().map(|(_, a)| a.to_string().into());
        let outcome = match ctx.intake(&frames).await {
            Ok(commit) => commit.await.map_err(|e| IntakeError::Broken(e.to_string())),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(seqs) => {
                let bytes = frames.iter().map(|f| f.len() as u64).sum();
                ctx.accepted_counts(
                    frames.len() as u64,
                    bytes,
                    &frames,
                    *seqs.start(),
                    peer.as_ref(),
                );
            }
            Err(IntakeError::Full(why)) => {
                ctx.stats.refused.fetch_add(frames.len() as u64, Ordering::Relaxed);
                ctx.error(Side::Source, format!("{why}: refused {} UDP datagram(s)", frames.len()));
            }
            Err(IntakeError::Broken(e)) => {
                ctx.stats.refused.fetch_add(frames.len() as u64, Ordering::Relaxed);
                ctx.error(
                    Side::Source,
                    format!("buffer unavailable, refused {} datagram(s): {e}", frames.len()),
                );
                if !pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
            }
        }
    }
}
