//! `tcp_server` and `tcp_client` sources, with or without TLS.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iobp_config::{TcpClientSpec, TcpServerSpec};
use tokio::net::{TcpListener, TcpStream};

use super::stream::{Ended, WhenFull, serve};
use crate::backoff::Backoff;
use crate::net::{Stream, keepalive};
use crate::side::{SideCtx, pause};
use crate::stats::{Color, Side};

/// Listens and serves every connection (up to `max_connections`) concurrently, each with its
/// own framing state. Connections over the limit are closed at once and counted.
pub(crate) async fn server(ctx: SideCtx, spec: TcpServerSpec) {
    let status = &ctx.stats.source;
    let mut backoff = Backoff::new(ctx.retry);
    let addr = format!("{}:{}", spec.host, spec.port);
    let tls_note = if spec.tls.enabled { " (TLS)" } else { "" };
    let (listener, acceptor) = loop {
        status.set(Color::Yellow, format!("binding {addr}"));
        let bound = match crate::tls::acceptor(&spec.tls) {
            Err(e) => Err(format!("TLS for {addr}: {e}")),
            Ok(acceptor) => match TcpListener::bind(&addr).await {
                Ok(l) => Ok((l, acceptor)),
                Err(e) => Err(format!("cannot listen on {addr}: {e}")),
            },
        };
        match bound {
            Ok(x) => break x,
            Err(msg) => {
                ctx.error(Side::Source, msg.clone());
                status.set(Color::Red, msg);
                if !pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
            }
        }
    };
    // Listening is healthy for a source: senders come and go.
    let waiting = format!("listening on {addr}{tls_note}, no sender connected");
    status.set(Color::Green, waiting.clone());
    let limit = Arc::new(tokio::sync::Semaphore::new(spec.max_connections as usize));
    let spec = Arc::new(spec);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = ctx.cancel.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            a = listener.accept() => a,
        };
        let (stream, peer_addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: pause instead of spinning.
                ctx.error(Side::Source, format!("accept on {addr}: {e}"));
                if !pause(&ctx.cancel, Duration::from_millis(100)).await {
                    break;
                }
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            ctx.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            ctx.error(
                Side::Source,
                format!(
                    "refused connection from {peer_addr}: limit of {} connections reached",
                    spec.max_connections
                ),
            );
            drop(stream);
            continue;
        };
        keepalive(&stream);
        let conn = Connection {
            ctx: ctx.clone(),
            spec: spec.clone(),
            acceptor: acceptor.clone(),
            waiting: waiting.clone(),
            tls_note,
        };
        tasks.spawn(async move {
            let _permit = permit;
            conn.serve(stream, peer_addr).await;
        });
    }
    // Stopping: connections finish their queued batches (bounded wait inside `serve`).
    while tasks.join_next().await.is_some() {}
}

/// One accepted sender connection of a `tcp_server` source.
struct Connection {
    ctx: SideCtx,
    spec: Arc<TcpServerSpec>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    /// The status line when no sender is connected.
    waiting: String,
    tls_note: &'static str,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer_addr: std::net::SocketAddr) {
        let Connection { ctx, spec, acceptor, waiting, tls_note } = self;
        let peer: Arc<str> = peer_addr.to_string().into();
        let idle = spec.idle_timeout_s.map(Duration::from_secs);
        let status = &ctx.stats.source;
        status.peer_up(&peer);
        status.set(Color::Green, format!("{} sender(s) connected{tls_note}", status.connections()));
        let stream: Result<Stream, String> = match &acceptor {
            Some(a) => crate::tls::accept(a, stream).await.map(Stream::from),
            None => Ok(stream.into()),
        };
        let result = match stream {
            Ok(s) => serve(&ctx, s, &peer, &spec.framing, &spec.ack, idle, WhenFull::Hold).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(Ended::IdleTimeout) => {
                tracing::info!(pair = &*ctx.pair, %peer, "closed idle connection");
            }
            Ok(_) => {}
            Err(e) => ctx.error(Side::Source, format!("connection from {peer}: {e}")),
        }
        status.peer_down(&peer);
        if ctx.cancel.is_cancelled() {
            return;
        }
        match status.connections() {
            0 => status.set(Color::Green, waiting),
            n => status.set(Color::Green, format!("{n} sender(s) connected{tls_note}")),
        }
    }
}

/// Connects to a server and reads messages from it; reconnects with backoff.
pub(crate) async fn client(ctx: SideCtx, spec: TcpClientSpec) {
    let status = &ctx.stats.source;
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
                        status.peer_up(&peer);
                        status.set(Color::Green, format!("connected to {addr}{tls_note}"));
                        let stream: Result<Stream, String> = match tls {
                            Some((c, name)) => {
                                crate::tls::connect(&c, name, stream).await.map(Stream::from)
                            }
                            None => Ok(stream.into()),
                        };
                        let ended = match stream {
                            Ok(s) => {
                                backoff.reset();
                                let (framing, ack) = (&spec.framing, &spec.ack);
                                serve(&ctx, s, &peer, framing, ack, None, WhenFull::Hold).await
                            }
                            Err(e) => Err(e),
                        };
                        status.peer_down(&peer);
                        match ended {
                            Ok(Ended::Cancelled) => return,
                            Ok(_) => format!("{addr} closed the connection"),
                            Err(e) => format!("connection to {addr}: {e}"),
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
        ctx.error(Side::Source, why.clone());
        status.set(Color::Red, why);
        if !pause(&ctx.cancel, backoff.next_delay()).await {
            return;
        }
    }
}
