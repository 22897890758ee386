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
use crate::net::{Stream, keepalive};
use crate::side::{SideCtx, pause};
use crate::stats::{Color, Side};

pub(crate) async fn client(ctx: SideCtx, spec: TcpClientSpec) {
    let status = &ctx.stats.destination;
    let mut backoff = Backoff::new(ctx.retry);
    let addr = format!("{}:{}", spec.host, spec.port);
    let tls_note = if spec.tls.enabled { " (TLS)" } else { "" };
    let timeout = Duration::from_millis(spec.connect_timeout_ms.unwrap_or(10_000));
    loop {
        status.set(Color::Yellow, format!("connecting to {addr}{tls_note}"));
        let why = match crate::tls::connector(&spec.tls, &spec.host) {
            Err(e) => format!("TLS for {addr}: {e}"),
            Ok(tls) => {
                let connected = tokio::select! {
                    () = ctx.cancel.cancelled() => return,
                    c = tokio::time::timeout(timeout, TcpStream::connect(&addr)) => c,
                };
                match connected {
                    Ok(Ok(stream)) => {
                        keepalive(&stream);
                        let peer: Arc<str> = addr.clone().into();
                        let (framing, ack, write_timeout) =
                            (&spec.framing, &spec.ack, spec.write_timeout_ms);
                        let stream: Result<Stream, String> = match tls {
                            Some((c, name)) => {
                                crate::tls::connect(&c, name, stream).await.map(Stream::from)
                            }
                            None => Ok(stream.into()),
                        };
                        let ended = match stream {
                            Ok(s) => {
                                backoff.reset();
                                status.peer_up(&peer);
                                status.set(Color::Green, format!("connected to {addr}{tls_note}"));
                                let r = deliver(&ctx, s, &peer, framing, ack, write_timeout).await;
                                status.peer_down(&peer);
                                r
                            }
                            Err(e) => Err(e),
                        };
                        return_in_flight(&ctx);
                        match ended {
                            Ok(Ended::Cancelled) => return,
                            Ok(Ended::PeerClosed) => format!("{addr} closed the connection"),
                            Err(e) => format!("delivery to {addr}: {e}"),
                        }
                    }
                    Ok(Err(e)) => format!("cannot connect to {addr}: {e}"),
                    Err(_) => format!(
                        "cannot connect to {addr}: timed out after {} ms",
                        timeout.as_millis()
                    ),
                }
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
    let (listener, acceptor) = loop {
        status.set(Color::Yellow, format!("binding {addr}"));
        let bound = match crate::tls::acceptor(&spec.tls) {
            Err(e) => Err(format!("TLS for {addr}: {e}")),
            Ok(a) => match TcpListener::bind(&addr).await {
                Ok(l) => Ok((l, a)),
                Err(e) => Err(format!("cannot listen on {addr}: {e}")),
            },
        };
        match bound {
            Ok(x) => break x,
            Err(msg) => {
                ctx.error(Side::Destination, msg.clone());
                status.set(Color::Red, msg);
                if !pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
            }
        }
    };
    // Accepting runs beside delivery so that a newer receiver can take over mid-stream.
    let (tx, mut rx) = mpsc::channel::<(Stream, String)>(4);
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
                    let stream = match &acceptor {
                        None => Stream::from(s),
                        // Handshakes run here, one at a time: receivers are few, and a slow
                        // one only delays the next receiver, never delivery to the current.
                        Some(acc) => match crate::tls::accept(acc, s).await {
                            Ok(t) => Stream::from(t),
                            Err(e) => {
                                accept_ctx.error(Side::Destination, format!("receiver {a}: {e}"));
                                continue;
                            }
                        },
                    };
                    if tx.send((stream, a.to_string())).await.is_err() {
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
    let mut next: Option<(Stream, String)> = None;
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
        let (framing, ack, write_timeout) = (&spec.framing, &spec.ack, spec.write_timeout_ms);
        let outcome = tokio::select! {
            ended = deliver(&ctx, stream, &peer, framing, ack, write_timeout) => Some(ended),
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
