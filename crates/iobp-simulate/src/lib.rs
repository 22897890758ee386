//! # Device simulators
//!
//! The other end of a channel pair before the real device is wired, and the peers of the
//! project's own end-to-end tests: one implementation serves both (`iobufferpro simulate
//! <kind>` runs the same code the tests drive).
//!
//! Each simulator talks over a [`Link`]: a TCP connection it opens, a TCP port it listens on
//! (one peer at a time), or a serial port. The protocol state machines are the codecs' own
//! (`iobp_codec::astm`, MLLP framing): a simulator is I/O, timers and a script around them.
//! The Modbus device ([`modbus`]) is the exception: it speaks the protocol itself (its module
//! docs say why), serving any TCP client side by side or one serial line.

pub mod modbus;

pub mod astm;
pub mod framed;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How a simulator reaches its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Connect to `host:port`.
    Connect(String),
    /// Listen on `host:port` and serve one peer at a time.
    Listen(String),
    /// A serial port (a device path, or a pseudo-terminal in tests) at this baud rate, 8N1,
    /// no flow control.
    Serial { path: String, baud: u32 },
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Connect(a) => write!(f, "tcp connect {a}"),
            Link::Listen(a) => write!(f, "tcp listen {a}"),
            Link::Serial { path, baud } => write!(f, "serial {path} at {baud} baud"),
        }
    }
}

/// Why a simulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The link could not be opened or failed.
    #[error("{link}: {source}")]
    Link {
        /// Which link.
        link: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The peer broke the protocol or the run's expectations (a verifying receiver saw a
    /// message out of order, a sender gave up).
    #[error("{0}")]
    Protocol(String),
}

/// A byte stream to the peer: a TCP connection or a serial port.
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A serial port.
    Serial(serial2_tokio::SerialPort),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Serial(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Serial(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Serial(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Serial(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A link opened once: a listener stays bound between peers.
pub struct Endpoint {
    link: Link,
    listener: Option<TcpListener>,
}

impl Endpoint {
    /// Binds a listening link at once (so a test knows the port is ready); other links open
    /// at [`Endpoint::next`].
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn new(link: Link) -> Result<Self, Error> {
        let listener = match &link {
            Link::Listen(addr) => {
                Some(TcpListener::bind(addr).await.map_err(|e| link_error(&link, e))?)
            }
            _ => None,
        };
        Ok(Endpoint { link, listener })
    }

    /// The link.
    #[must_use]
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The next connection: connects, accepts one peer, or opens the serial port.
    ///
    /// # Errors
    /// Connecting, accepting or opening failed.
    pub async fn next(&self) -> Result<Stream, Error> {
        let fail = |e| link_error(&self.link, e);
        match (&self.link, &self.listener) {
            (Link::Connect(addr), _) => {
                let s = TcpStream::connect(addr).await.map_err(fail)?;
                s.set_nodelay(true).map_err(fail)?;
                Ok(Stream::Tcp(s))
            }
            (Link::Listen(_), Some(l)) => {
                let (s, _) = l.accept().await.map_err(fail)?;
                s.set_nodelay(true).map_err(fail)?;
                Ok(Stream::Tcp(s))
            }
            (Link::Listen(_), None) => Err(fail(io::Error::other("not bound"))),
            (Link::Serial { path, baud }, _) => {
                let port = serial2_tokio::SerialPort::open(path, *baud).map_err(fail)?;
                Ok(Stream::Serial(port))
            }
        }
    }
}

fn link_error(link: &Link, source: io::Error) -> Error {
    Error::Link { link: link.to_string(), source }
}
