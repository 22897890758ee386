//! TCP connections of the TCP sides and of the relay client: one [`Stream`] type for plain and
//! TLS connections, so each session is written and called once whatever the transport's
//! security; the keepalive every such connection gets; how `tcp_client` sides connect
//! ([`Dial`]) and `tcp_server` sides listen ([`listen`], [`Accepted`]).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use iobp_config::{TcpClientSpec, TcpServerSpec, TlsSpec};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::connector::{Ended, Opened, Opener, Progress, Session, Shape};
use crate::side::{SideCtx, SideError};

/// A TCP connection, plain or TLS (client or server end).
#[derive(Debug)]
pub(crate) enum Stream {
    /// No TLS.
    Plain(TcpStream),
    /// TLS; boxed because a TLS connection's state is large and most connections are plain.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Plain(s)
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(s)))
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(s)))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Connects over TCP, refusing a connection to itself. With nothing listening on a loopback
/// port in the system's ephemeral range, the system may pick that same port as the
/// connection's own, and TCP's simultaneous open joins the socket to itself: every write would
/// come back to it — and count as delivered where no acknowledgement is asked for. Every
/// outgoing TCP connection of a side (and a failover probe, which would see a dead primary as
/// alive) goes through here.
pub(crate) async fn connect_tcp<A: tokio::net::ToSocketAddrs>(
    addr: A,
) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect(addr).await?;
    if let (Ok(local), Ok(peer)) = (tcp.local_addr(), tcp.peer_addr())
        && local == peer
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connected to itself: nothing listens there, and the system chose that port for the \
             connection's own end",
        ));
    }
    Ok(tcp)
}

/// Turns on TCP keepalive so that a peer that vanished (power loss, cable pulled) is noticed
/// within about a minute and a half even when no data flows.
pub(crate) fn keepalive(stream: &TcpStream) {
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let ka = ka.with_retries(3);
    let sock = socket2::SockRef::from(stream);
    let _ = sock.set_tcp_keepalive(&ka);
    let _ = stream.set_nodelay(true);
}

/// Connects to a TCP server, with TLS if configured: the opener of `tcp_client` sides.
pub(crate) struct Dial {
    addr: String,
    host: String,
    tls: TlsSpec,
    timeout: Duration,
    tls_note: &'static str,
}

impl Dial {
    pub(crate) fn new(spec: &TcpClientSpec) -> Self {
        Dial {
            addr: format!("{}:{}", spec.host, spec.port),
            host: spec.host.clone(),
            tls: spec.tls.clone(),
            timeout: Duration::from_millis(spec.connect_timeout_ms.unwrap_or(10_000)),
            tls_note: if spec.tls.enabled { " (TLS)" } else { "" },
        }
    }
}

impl Opener for Dial {
    type Io = Stream;

    fn shape(&self) -> Shape {
        Shape::Dial
    }

    fn opening(&self) -> Option<String> {
        Some(format!("connecting to {}{}", self.addr, self.tls_note))
    }

    async fn open(&mut self) -> Result<Opened<Stream>, SideError> {
        let addr = &self.addr;
        // Built at every attempt, so a replaced CA or client certificate is used at the next
        // connection.
        let tls = crate::tls::connector(&self.tls, &self.host)
            .map_err(|e| e.within(&format!("TLS for {addr}")))?;
        let tcp = match tokio::time::timeout(self.timeout, connect_tcp(addr.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SideError::Peer(format!("cannot connect to {addr}: {e}"))),
            Err(_) => {
                return Err(SideError::Peer(format!(
                    "cannot connect to {addr}: timed out after {} ms",
                    self.timeout.as_millis()
                )));
            }
        };
        keepalive(&tcp);
        let stream = match tls {
            None => Stream::from(tcp),
            Some((connector, name)) => {
                crate::tls::connect(&connector, name, tcp).await.map_err(|e| e.within(addr))?.into()
            }
        };
        let detail = format!("connected to {addr}{}", self.tls_note);
        Ok(Opened::new(stream, addr.as_str().into(), detail))
    }
}

/// Binds a `tcp_server` side's listener, with its TLS acceptor if it uses TLS.
pub(crate) async fn listen(
    spec: &TcpServerSpec,
) -> Result<(TcpListener, Option<TlsAcceptor>), SideError> {
    let addr = format!("{}:{}", spec.host, spec.port);
    let acceptor =
        crate::tls::acceptor(&spec.tls).map_err(|e| e.within(&format!("TLS for {addr}")))?;
    // Another program on the port is a problem of this host, retried like a peer's.
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| SideError::Peer(format!("cannot listen on {addr}: {e}")))?;
    Ok((listener, acceptor))
}

/// An accepted TCP connection whose TLS handshake, if its side uses TLS, is still to come.
pub(crate) struct Accepted {
    pub tcp: TcpStream,
    pub tls: Option<TlsAcceptor>,
}

impl Accepted {
    /// The connection, after its TLS handshake (bounded in time) if it has one.
    pub(crate) async fn handshake(self) -> Result<Stream, SideError> {
        match self.tls {
            None => Ok(self.tcp.into()),
            Some(acceptor) => Ok(crate::tls::accept(&acceptor, self.tcp).await?.into()),
        }
    }
}

/// Runs `S` on an accepted connection after its TLS handshake, which thereby happens in the
/// connection's own task: a slow or silent client never holds up the next one.
pub(crate) struct AfterHandshake<S>(pub S);

impl<S: Session<Stream>> Session<Accepted> for AfterHandshake<S> {
    fn about(&self, peer: &str) -> String {
        self.0.about(peer)
    }

    async fn run(
        &self,
        ctx: &SideCtx,
        io: Accepted,
        peer: &Arc<str>,
        progress: &Progress,
    ) -> Result<Ended, SideError> {
        let stream = io.handshake().await?;
        self.0.run(ctx, stream, peer, progress).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::Stream;

    #[tokio::test]
    async fn a_plain_stream_carries_bytes_both_ways() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut s = Stream::from(tokio::net::TcpStream::connect(addr).await.expect("connect"));
            s.write_all(b"ping").await.expect("write");
            let mut answer = [0u8; 4];
            s.read_exact(&mut answer).await.expect("read");
            answer
        });
        let (accepted, _) = listener.accept().await.expect("accept");
        let mut s = Stream::from(accepted);
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");
        s.write_all(b"pong").await.expect("write");
        assert_eq!(&client.await.expect("client"), b"pong");
    }
}
