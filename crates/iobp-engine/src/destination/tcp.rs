//! `tcp_client` and `tcp_server` destinations.
//!
//! `tcp_server` with several receivers: the most recently connected receiver gets the
//! messages and any earlier one is closed. A receiver that reconnects after a network
//! problem thereby takes over at once, instead of waiting for its dead predecessor's
//! connection to time out. Messages in flight on the replaced connection return to Pending
//! and go to the new receiver (at-least-once; counted as retries).

use std::sync::Arc;
use std::time::Duration;

use iobp_config::{TcpClientSpec, TcpServerSpec};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::return_in_flight;
use super::stream::{Ended, deliver};
use crate::backoff::Backoff;
use crate::side::{SideCtx, keepalive, pause};
use crate::stats::{Color, Side};

pub(crate) async fn client(ctx: SideCtx, spec: TcpClientSpec) {
    let status = &ctx.stats.destination;
    let mut backoff = Backoff::new(ctx.retry);
    let addr = format!("{}:{}", spec.host, spec.port);
    let timeout = Duration::from_millis(spec.connect_timeout_ms.unwrap_or(10_000));
    loop {
        status.set(Color::Yellow, format!("connecting to {addr}"));
        let connected = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            c = tokio::time::timeout(timeout, TcpStream::connect(&addr)) => c,
        };
        let why = match connected {
            Ok(Ok(stream)) => {
                backoff.reset();
                keepalive(&stream);
                let peer: Arc<str> = addr.clone().into();
                status.peer_up(&peer);
                status.set(Color::Green, format!("connected to {addr}"));
                let ended =
                    deliver(&ctx, stream, &peer, &spec.framing, &spec.ack, spec.write_timeout_ms)
                        .await;
                return_in_flight(&ctx);
                status.peer_down(&peer);
                match ended {
                    Ok(Ended::Cancelled) => return,
                    Ok(Ended::PeerClosed) => format!("{addr} closed the connection"),
                    Err(e) => format!("delivery to {addr}: {e}"),
                }
            }
            Ok(Err(e)) => format!("cannot connect to {addr}: {e}"),
            Err(_) => {
                format!("cannot connect to {addr}: timed out after {} ms", timeout.as_millis())
            }
        };
        ctx.error(Side::Destination, why.clone());
        status.set(Color::Red, why);
        if !pause(&ctx.cancel, backoff.next_delay()).await {
            return;
        }
    }
}

pub(crate) async fn server(ctx: SideCtx, spec: TcpServerSpec) {
    let status = &ctx.stats.destination;
    let mut backoff = Backoff::new(ctx.retry);
    let addr = format!("{}:{}", spec.host, spec.port);
    let listener = loop {
        status.set(Color::Yellow, format!("binding {addr}"));
        match TcpListener::bind(&addr).await {
            Ok(l) => break l,
            Err(e) => {
                let msg = format!("cannot listen on {addr}: {e}");
                ctx.error(Side::Destination, msg.clone());
                status.set(Color::Red, msg);
                if !pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
            }
        }
    };
    // Accepting runs beside delivery so that a newer receiver can take over mid-stream.
    let (tx, mut rx) = mpsc::channel::<(TcpStream, String)>(4);
    let accept_cancel = ctx.cancel.clone();
    let accept_ctx = ctx.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            let r = tokio::select! {
                () = accept_cancel.cancelled() => return,
                r = listener.accept() => r,
            };
            match r {
                Ok((s, a)) => {
                    keepalive(&s);
                    if tx.send((s, a.to_string())).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    accept_ctx.error(Side::Destination, format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let waiting = format!("listening on {addr}, waiting for a receiver");
    status.set(Color::Yellow, waiting.clone());
    let mut next: Option<(TcpStream, String)> = None;
    loop {
        let (stream, peer) = if let Some(c) = next.take() {
            c
        } else {
            tokio::select! {
                () = ctx.cancel.cancelled() => break,
                c = rx.recv() => match c { Some(c) => c, None => break },
            }
        };
        let peer: Arc<str> = peer.into();
        status.peer_up(&peer);
        status.set(Color::Green, format!("receiver {peer} connected"));
        let outcome = tokio::select! {
            ended = deliver(&ctx, stream, &peer, &spec.framing, &spec.ack, spec.write_timeout_ms) => Some(ended),
            newer = rx.recv() => { next = newer; None }
        };
        return_in_flight(&ctx);
        status.peer_down(&peer);
        match outcome {
            Some(Ok(Ended::Cancelled)) => break,
            Some(Ok(Ended::PeerClosed)) => {
                tracing::info!(pair = &*ctx.pair, %peer, "receiver disconnected");
            }
            Some(Err(e)) => ctx.error(Side::Destination, format!("delivery to {peer}: {e}")),
            None => tracing::info!(pair = &*ctx.pair, %peer, "a newer receiver takes over"),
        }
        if next.is_none() {
            status.set(Color::Yellow, waiting.clone());
        }
    }
    acceptor.abort();
}
