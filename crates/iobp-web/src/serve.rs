//! The portals' accept loop, for plain TCP and HTTPS alike: [`serve_portal`].
//!
//! Contract:
//! - Every accepted connection is admitted by the portal's [`ConnectionGate`] before anything
//!   else is done for it (a TLS handshake included); a refused one is closed at once, one
//!   replaced by a newer one (see [`crate::limits`]) as soon as its task sees it; both are
//!   logged at most once per [`REFUSAL_LOG_INTERVAL`] per portal.
//! - The admission ([`ConnectionPermit`]) travels with the connection's I/O object, so an
//!   upgraded connection (a relay link) stays counted until it closes.
//! - HTTP/1.1, as served before this module existed. A client has
//!   [`PortalLimits::header_read_timeout`] for a request line and its headers; hyper 1.x starts
//!   that timer whenever it starts to read a head, so it also bounds the wait for the next
//!   request on a kept-alive connection. A connection on which nothing moves for
//!   [`PortalLimits::idle_timeout`] is closed (a stalled request body; a client that no
//!   longer reads its SSE stream). Requests' head and read buffer are bounded by
//!   [`MAX_BUFFER_BYTES`].
//! - HTTPS: at most [`tls::MAX_HANDSHAKES`] handshakes at once, each within
//!   [`tls::HANDSHAKE_TIMEOUT`] (waiting for its turn included).
//! - Handlers find the client's address as `ConnectInfo<SocketAddr>`.
//! - Shutdown (the watch turns `true`): no connection is accepted any more; idle ones are
//!   closed at once, those with a request in progress get [`SHUTDOWN_GRACE`] to finish it (an
//!   SSE stream never finishes) and are then closed; [`serve_portal`] returns when all are.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::limits::{ConnectionGate, ConnectionPermit, ConnectionSignals, PortalLimits, Refusal};
use crate::tls;

/// At most one log line about refused connections per portal this often.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// What open connections get at shutdown to finish their response.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// hyper's read buffer (and so the largest request head) and write buffer per connection.
/// hyper's default is ~400 KiB; 64 KiB holds any head a browser sends (cookies included) and
/// keeps a full portal's buffers at a few tens of MiB.
pub const MAX_BUFFER_BYTES: usize = 64 * 1024;

/// What every connection task of one portal shares.
struct Shared {
    router: Router,
    tls: Option<(TlsAcceptor, Arc<Semaphore>)>,
    limits: PortalLimits,
}

/// Serves `router` on `listener` (over TLS with `tls`) through `gate`, until `shutdown`
/// turns `true` and the open connections have finished or been closed.
pub async fn serve_portal(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<iobp_tls::rustls::ServerConfig>>,
    gate: Arc<ConnectionGate>,
    mut shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        router,
        tls: tls.map(|c| (TlsAcceptor::from(c), Arc::new(Semaphore::new(tls::MAX_HANDSHAKES)))),
        limits: gate.limits(),
    });
    // Every connection task holds a receiver; `closed()` resolves when the last one ended.
    let (all_closed, open) = watch::channel(());
    let mut refusals = RefusalLog::default();
    let mut accept_error_logged = None;
    loop {
        let (stream, addr) = tokio::select! {
            () = stopping(&mut shutdown) => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    accept_failed(&gate, &e, &mut accept_error_logged).await;
                    continue;
                }
            },
        };
        let evicted = gate.evicted();
        match gate.admit(addr.ip()) {
            Ok(permit) => {
                if gate.evicted() != evicted {
                    refusals.note(&gate, addr, None);
                }
                let (shared, shutdown, open) = (shared.clone(), shutdown.clone(), open.clone());
                tokio::spawn(async move {
                    connection(stream, addr, permit, &shared, shutdown).await;
                    drop(open);
                });
            }
            // Dropping the socket closes it now: its descriptor is back at once.
            Err(why) => refusals.note(&gate, addr, Some(&why)),
        }
    }
    drop(listener);
    drop(open);
    all_closed.closed().await;
}

/// Resolves once shutdown began (or its sender is gone). Holds no borrow of the watch's value
/// when it returns, so the connection futures stay `Send`.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Rate-limited log of refused and replaced connections.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    refused: u64,
    evicted: u64,
}

impl RefusalLog {
    /// Logs what happened since the last line, if it is time.
    fn note(&mut self, gate: &ConnectionGate, addr: SocketAddr, why: Option<&Refusal>) {
        if self.last.is_some_and(|t| t.elapsed() < REFUSAL_LOG_INTERVAL) {
            return;
        }
        let (refused, evicted) = (gate.refused(), gate.evicted());
        let l = gate.limits();
        let latest = why.map_or_else(String::new, |w| format!(", the latest from {addr}: {w}"));
        tracing::warn!(
            portal = gate.portal().as_str(),
            "in the last {} s: refused {} connection(s){latest}; replaced {} that had sent no \
             request (at most {} per portal, {} per address; {} held now)",
            REFUSAL_LOG_INTERVAL.as_secs(),
            refused - self.refused,
            evicted - self.evicted,
            l.per_portal,
            l.per_address,
            gate.open()
        );
        (self.last, self.refused, self.evicted) = (Some(Instant::now()), refused, evicted);
    }
}

/// After a failed accept: a client that gave up meanwhile is nothing; anything else (out of
/// descriptors above all) is logged (at most once per [`REFUSAL_LOG_INTERVAL`]) and waited
/// out a little, instead of spinning.
async fn accept_failed(gate: &ConnectionGate, e: &std::io::Error, logged: &mut Option<Instant>) {
    use std::io::ErrorKind as K;
    if matches!(e.kind(), K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused) {
        return;
    }
    if logged.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
        tracing::warn!(portal = gate.portal().as_str(), "accepting a portal connection: {e}");
        *logged = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One admitted connection, from the TLS handshake (if any) to its close.
async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    permit: ConnectionPermit,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let signals = permit.signals().clone();
    let io = Tracked { io: stream, activity: activity.clone(), _permit: permit };
    let conn = Conn { addr, shared, activity: &activity, signals: &signals };
    tokio::select! {
        // Replaced by a newer connection before it sent a request: closed now.
        () = signals.evicted() => {
            tracing::debug!(%addr, "closing a portal connection without a request to make room");
        }
        () = async {
            match &shared.tls {
                None => conn.http(io, shutdown).await,
                Some((acceptor, handshakes)) => {
                    let tls = tokio::select! {
                        () = stopping(&mut shutdown) => return,
                        t = tls::handshake(acceptor, handshakes, io, addr) => t,
                    };
                    if let Some(tls) = tls {
                        conn.http(tls, shutdown).await;
                    }
                }
            }
        } => {}
    }
}

/// One connection's context while it speaks HTTP.
struct Conn<'a> {
    addr: SocketAddr,
    shared: &'a Shared,
    activity: &'a Activity,
    signals: &'a Arc<ConnectionSignals>,
}

impl Conn<'_> {
    /// Serves HTTP/1.1 on `io` until the client closes, a timeout strikes or shutdown's grace
    /// ends.
    async fn http<IO>(&self, io: IO, mut shutdown: watch::Receiver<bool>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (addr, router, signals) = (self.addr, self.shared.router.clone(), self.signals.clone());
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            signals.requested();
            req.extensions_mut().insert(ConnectInfo(addr));
            tower::ServiceExt::oneshot(router.clone(), req)
        });
        let limits = &self.shared.limits;
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(MAX_BUFFER_BYTES)
            // max_buf_size alone lets a head that arrives in one read grow the buffer past it.
            .max_header_size(MAX_BUFFER_BYTES);
        let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        tokio::pin!(conn);
        let idle = limits.idle_timeout;
        let mut closing_at: Option<Instant> = None;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%addr, "portal connection ended: {e}");
                    }
                    return;
                }
                () = stopping(&mut shutdown), if closing_at.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing_at = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                () = tokio::time::sleep_until(closing_at.unwrap_or_else(Instant::now)),
                    if closing_at.is_some() => return,
                () = tokio::time::sleep_until(self.activity.last() + idle) => {
                    if self.activity.last().elapsed() >= idle {
                        tracing::debug!(%addr, "closing a portal connection idle for {idle:?}");
                        return;
                    }
                }
            }
        }
    }
}

/// When a connection last read or wrote a byte.
struct Activity {
    start: Instant,
    /// Milliseconds from `start`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A portal connection's socket: notes activity for the idle timeout and holds the
/// connection's admission until it is closed, upgraded or not.
struct Tracked<IO> {
    io: IO,
    activity: Arc<Activity>,
    _permit: ConnectionPermit,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::Router;
    use axum::extract::ConnectInfo;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::Instant;

    use super::serve_portal;
    use crate::Portal;
    use crate::limits::{ConnectionGate, PortalLimits};

    /// A portal with short timeouts: its address and the shutdown switch.
    async fn portal(limits: PortalLimits) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
        let router = Router::new()
            .route(
                "/addr",
                get(|ConnectInfo(a): ConnectInfo<SocketAddr>| async move { a.to_string() }),
            )
            .route("/body", post(|body: String| async move { body.len().to_string() }));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let gate = ConnectionGate::new(Portal::Ops, limits);
        tokio::spawn(serve_portal(listener, router, None, gate, stopped));
        (addr, stop)
    }

    /// Reads until the server closes the connection (or 10 s pass): what it sent, and when.
    async fn until_closed(s: &mut TcpStream) -> (String, Instant) {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        (String::from_utf8_lossy(&out).into_owned(), Instant::now())
    }

    fn short(header: u64, idle: u64) -> PortalLimits {
        PortalLimits {
            header_read_timeout: Duration::from_millis(header),
            idle_timeout: Duration::from_millis(idle),
            ..PortalLimits::default()
        }
    }

    #[tokio::test]
    async fn handlers_see_the_client_address_and_the_header_timeout_bounds_keep_alive_waits() {
        let (addr, _stop) = portal(short(500, 60_000)).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /addr HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.expect("answer");
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        let me = s.local_addr().expect("local").to_string();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with(&me), "{answer}");
        // Kept alive, idle: closed once the header-read timeout passed.
        let answered = Instant::now();
        let (_, closed) = until_closed(&mut s).await;
        let waited = closed - answered;
        assert!(waited >= Duration::from_millis(400), "closed after {waited:?}");
        assert!(waited < Duration::from_secs(3), "not closed by the header timeout: {waited:?}");
    }

    #[tokio::test]
    async fn a_stalled_request_body_is_closed_after_the_idle_timeout() {
        let (addr, _stop) = portal(short(300, 700)).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let sent = Instant::now();
        s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .expect("send");
        let (_, closed) = until_closed(&mut s).await;
        let waited = closed - sent;
        assert!(waited >= Duration::from_millis(600), "closed after {waited:?}");
        assert!(waited < Duration::from_secs(3), "not closed for idleness: {waited:?}");
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_lets_a_request_in_progress_finish() {
        let (addr, stop) = portal(short(5_000, 60_000)).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // A request in progress when the shutdown begins...
        s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nh")
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(true).expect("stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...still gets its answer, then the connection closes.
        s.write_all(b"i").await.expect("send the rest");
        let (answer, _) = until_closed(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with('2'), "{answer}");
        // Nothing new is accepted.
        let refused = match TcpStream::connect(addr).await {
            Err(_) => true,
            Ok(mut late) => {
                let _ = late.write_all(b"GET /addr HTTP/1.1\r\nHost: x\r\n\r\n").await;
                until_closed(&mut late).await.0.is_empty()
            }
        };
        assert!(refused, "a connection after the shutdown was served");
    }
}
