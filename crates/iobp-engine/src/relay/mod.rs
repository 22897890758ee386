//! The relay between ioBufferPro instances (`remote_icombuffer` sides): the two ends of the
//! protocol of [`iobp_relay`] over any byte stream, the HTTP client that opens one, and the hub
//! through which the web layer hands over connections that remote instances opened.
//!
//! - [`sender::send`] relays this pair's buffer: records become Done only when the receiver
//!   acknowledged them, which it does only once they are durable there.
//! - [`receiver::receive`] appends what a sender relays, with the sender's numbers as tags
//!   ([`iobp_log::Log::try_append_tagged`]): a resend is never stored twice, even across
//!   crashes of either side.
//!
//! Which instance connects (push or pull) only decides who opens the connection.

pub(crate) mod client;
pub(crate) mod receiver;
pub(crate) mod sender;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::side::SideError;

/// A connection the relay can run over.
pub trait RelayIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> RelayIo for T {}

/// What the connecting instance wants from this one: it sends (`Push`: this instance's
/// `remote_icombuffer` source without `url` receives) or receives (`Pull`: this instance's
/// destination without `url` sends). The protocol crate's type, so both ends agree.
pub use iobp_relay::http::Direction as RelayMode;

/// Why a relay connection was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayRefusal {
    /// No pair with this id.
    #[error("no channel pair with id `{0}`")]
    NoSuchChannel(String),
    /// The pair has no side that takes this kind of connection.
    #[error("{0}")]
    WrongSide(String),
    /// The pair is stopped (or stopping).
    #[error("channel pair `{0}` is stopped")]
    Stopped(String),
}

/// Relay sessions one channel takes at most in one mode, waiting hand-overs included. Pushes
/// run side by side (one per sending instance: a few at most), a pull replaces the previous
/// one; without a bound, a relay user could open sessions until the descriptors ran out.
pub const MAX_SESSIONS_PER_CHANNEL: usize = 4;

/// Why a relay connection was not handed over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandOverError {
    /// No running side takes it (see [`RelayRefusal`]).
    #[error(transparent)]
    Refused(#[from] RelayRefusal),
    /// The channel already has its most sessions in this mode.
    #[error(
        "channel `{channel}` already has {limit} relay {} sessions open",
        mode.as_str()
    )]
    Busy {
        /// The channel id.
        channel: String,
        /// Push or pull.
        mode: RelayMode,
        /// [`MAX_SESSIONS_PER_CHANNEL`].
        limit: usize,
    },
}

/// A connection handed over by the web layer.
pub(crate) struct Incoming {
    pub io: Box<dyn RelayIo>,
    pub peer: Arc<str>,
}

type SideKey = (String, RelayMode);

/// Running `remote_icombuffer` sides without `url`, by pair id: where the web layer hands
/// connections to.
#[derive(Default)]
pub(crate) struct RelayHub {
    sides: Mutex<HashMap<SideKey, mpsc::Sender<Incoming>>>,
    /// Sessions per channel and mode, from the hand-over until the connection is dropped.
    sessions: Arc<Mutex<HashMap<SideKey, usize>>>,
}

/// A relay connection counted for its channel until it is dropped (its session ended, or it
/// was never taken).
struct Counted {
    io: Box<dyn RelayIo>,
    sessions: Arc<Mutex<HashMap<SideKey, usize>>>,
    key: SideKey,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut sessions = lock(&self.sessions);
        if let Some(n) = sessions.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                sessions.remove(&self.key);
            }
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl std::fmt::Debug for RelayHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHub").finish_non_exhaustive()
    }
}

/// Removes a side's registration when its task ends.
pub(crate) struct Registration {
    hub: Arc<RelayHub>,
    key: (String, RelayMode),
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.hub.sides).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RelayHub {
    /// Registers the running side of `pair` that takes `mode` connections.
    pub(crate) fn register(
        self: &Arc<Self>,
        pair: &str,
        mode: RelayMode,
    ) -> (Registration, mpsc::Receiver<Incoming>) {
        let (tx, rx) = mpsc::channel(4);
        let key = (pair.to_string(), mode);
        lock(&self.sides).insert(key.clone(), tx);
        (Registration { hub: self.clone(), key }, rx)
    }

    /// Whether `channel` may take another session in `mode` ([`MAX_SESSIONS_PER_CHANNEL`]).
    pub(crate) fn room(&self, channel: &str, mode: RelayMode) -> Result<(), HandOverError> {
        let key = (channel.to_string(), mode);
        let open = lock(&self.sessions).get(&key).copied().unwrap_or(0);
        if open >= MAX_SESSIONS_PER_CHANNEL {
            return Err(HandOverError::Busy {
                channel: channel.to_string(),
                mode,
                limit: MAX_SESSIONS_PER_CHANNEL,
            });
        }
        Ok(())
    }

    /// Hands a connection to the side of `channel` that takes `mode` connections; it counts
    /// for the channel until it is dropped.
    pub(crate) fn hand_over(
        &self,
        channel: &str,
        mode: RelayMode,
        incoming: Incoming,
    ) -> Result<(), HandOverError> {
        let key = (channel.to_string(), mode);
        let stopped = || HandOverError::Refused(RelayRefusal::Stopped(channel.to_string()));
        let tx = lock(&self.sides).get(&key).cloned().ok_or_else(stopped)?;
        let io = {
            let mut sessions = lock(&self.sessions);
            let n = sessions.entry(key.clone()).or_insert(0);
            if *n >= MAX_SESSIONS_PER_CHANNEL {
                return Err(HandOverError::Busy {
                    channel: channel.to_string(),
                    mode,
                    limit: MAX_SESSIONS_PER_CHANNEL,
                });
            }
            *n += 1;
            Box::new(Counted { io: incoming.io, sessions: self.sessions.clone(), key })
        };
        // A failed send drops the connection, and with it its count.
        tx.try_send(Incoming { io, peer: incoming.peer }).map_err(|_| stopped())
    }
}

/// Opens relay connections to a remote instance, one at a time (a side with a `url`): the
/// opener of such sides for the connector loop. The remote's token is kept between
/// connections.
pub(crate) struct Dial {
    mode: RelayMode,
    /// The client, or why the side's settings cannot make one (a configuration error: the
    /// loop reports it and waits for an edit).
    client: Result<client::Client, SideError>,
    peer: Arc<str>,
}

impl Dial {
    /// Push: this side sends; pull: it receives.
    pub(crate) fn new(spec: &iobp_config::RemoteSpec, mode: RelayMode) -> Self {
        let client = client::Client::new(spec);
        let authority = client.as_ref().map_or("?", |c| c.authority());
        let peer = format!("{authority} channel {}", spec.channel_id).into();
        Dial { mode, client, peer }
    }
}

impl crate::connector::Opener for Dial {
    type Io = Box<dyn RelayIo>;

    fn shape(&self) -> crate::connector::Shape {
        crate::connector::Shape::Dial
    }

    fn opening(&self) -> Option<String> {
        self.client.is_ok().then(|| format!("connecting to {}", self.peer))
    }

    fn closed(&self, peer: &str) -> String {
        format!("{peer} closed the relay")
    }

    async fn open(&mut self) -> Result<crate::connector::Opened<Self::Io>, SideError> {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(unusable) => {
                let again = SideError::Config(unusable.to_string());
                return Err(std::mem::replace(unusable, again));
            }
        };
        let io = client.open(self.mode).await?;
        let doing = match self.mode {
            RelayMode::Push => "sending to",
            RelayMode::Pull => "receiving from",
        };
        let detail = format!("relay: {doing} {}", self.peer);
        Ok(crate::connector::Opened::new(io, self.peer.clone(), detail))
    }
}

/// Takes the relay connections remote instances open to a channel of this instance (a side
/// without `url`), as the web layer hands them over: pushes are served side by side, a newer
/// pull takes over from an older one.
pub(crate) struct Hub {
    _registration: Registration,
    incoming: mpsc::Receiver<Incoming>,
    mode: RelayMode,
    channel: String,
}

impl Hub {
    /// Registers the side of `channel` that takes `mode` connections, until it is dropped.
    pub(crate) fn new(hub: &Arc<RelayHub>, channel: &str, mode: RelayMode) -> Self {
        let (registration, incoming) = hub.register(channel, mode);
        Hub { _registration: registration, incoming, mode, channel: channel.to_string() }
    }
}

impl crate::connector::Opener for Hub {
    type Io = Box<dyn RelayIo>;

    fn shape(&self) -> crate::connector::Shape {
        match self.mode {
            // The hub bounds the sessions of a channel (MAX_SESSIONS_PER_CHANNEL).
            RelayMode::Push => crate::connector::Shape::Concurrent { limit: None },
            RelayMode::Pull => crate::connector::Shape::Newest,
        }
    }

    fn waiting(&self) -> String {
        match self.mode {
            RelayMode::Push => {
                format!("relay: waiting for remote instances to push to channel {}", self.channel)
            }
            RelayMode::Pull => {
                format!("relay: waiting for a remote instance to pull channel {}", self.channel)
            }
        }
    }

    fn connected(&self, n: u64) -> String {
        format!("relay: {n} instance(s) pushing")
    }

    fn closed(&self, peer: &str) -> String {
        format!("{peer} closed the relay")
    }

    async fn open(&mut self) -> Result<crate::connector::Opened<Self::Io>, SideError> {
        match self.incoming.recv().await {
            Some(Incoming { io, peer }) => {
                let detail = format!("relay: {peer} is pulling");
                Ok(crate::connector::Opened::new(io, peer, detail))
            }
            // The registration lives as long as this side: nothing more will come.
            None => std::future::pending().await,
        }
    }
}

/// How long the opening exchange (Hello, Resume) may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A peer that takes no bytes for this long is considered stuck.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads whole frames from a connection, with the protocol's size bound.
pub(crate) struct FrameReader<R> {
    rd: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(rd: R) -> Self {
        FrameReader { rd, buf: BytesMut::with_capacity(256 * 1024) }
    }

    /// The next frame's bytes (decode them with [`iobp_relay::decode`]); `None` when the
    /// peer closed the connection between frames. Cancel-safe: what was read stays buffered.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, SideError> {
        loop {
            if let Some(n) = iobp_relay::needed(&self.buf) {
                if n - iobp_relay::FRAME_HEADER_LEN > iobp_relay::MAX_FRAME_BODY as usize {
                    return Err(protocol(format!("a frame of {n} bytes is too large")));
                }
                if self.buf.len() >= n {
                    return Ok(Some(self.buf.split_to(n).freeze()));
                }
                self.buf.reserve(n - self.buf.len());
            } else if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let read = self
                .rd
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| SideError::Peer(format!("read: {e}")))?;
            if read == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(SideError::Peer("the connection closed in the middle of a frame".into()))
                };
            }
        }
    }
}

/// Writes `buf` and flushes, within [`WRITE_TIMEOUT`].
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
) -> Result<(), SideError> {
    match tokio::time::timeout(WRITE_TIMEOUT, async {
        wr.write_all(buf).await?;
        wr.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(SideError::Peer(format!("write: {e}"))),
        Err(_) => {
            Err(SideError::Peer(format!("the peer took no data for {} s", WRITE_TIMEOUT.as_secs())))
        }
    }
}

/// A violation of the relay protocol by the peer ("protocol error: …").
pub(crate) fn protocol(what: impl std::fmt::Display) -> SideError {
    SideError::Protocol(format!("protocol error: {what}"))
}

/// Sends an `Error` frame with the error's text (best effort) and returns the error as the
/// session's.
pub(crate) async fn fail<W: AsyncWrite + Unpin>(wr: &mut W, error: SideError) -> SideError {
    let mut out = Vec::new();
    iobp_relay::encode_error(&mut out, &error.to_string());
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = wr.write_all(&out).await;
        let _ = wr.flush().await;
    })
    .await;
    error
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_us() -> u64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{HandOverError, Incoming, MAX_SESSIONS_PER_CHANNEL, RelayHub, RelayMode};

    fn incoming() -> Incoming {
        let (io, _) = tokio::io::duplex(64);
        Incoming { io: Box::new(io), peer: "test".into() }
    }

    #[tokio::test]
    async fn a_channel_takes_at_most_its_sessions_per_mode_until_one_ends() {
        let hub = Arc::new(RelayHub::default());
        let (_push, mut pushes) = hub.register("ch", RelayMode::Push);
        let (_pull, mut pulls) = hub.register("ch", RelayMode::Pull);
        for _ in 0..MAX_SESSIONS_PER_CHANNEL {
            hub.room("ch", RelayMode::Push).expect("room");
            hub.hand_over("ch", RelayMode::Push, incoming()).expect("taken");
        }
        let busy = hub.hand_over("ch", RelayMode::Push, incoming()).err();
        assert!(matches!(busy, Some(HandOverError::Busy { limit: MAX_SESSIONS_PER_CHANNEL, .. })));
        assert!(hub.room("ch", RelayMode::Push).is_err());
        // The other mode counts apart.
        hub.hand_over("ch", RelayMode::Pull, incoming()).expect("a pull");
        // A session that ends (its connection dropped) makes room.
        let running: Vec<_> = std::iter::from_fn(|| pushes.try_recv().ok()).collect();
        assert_eq!(running.len(), MAX_SESSIONS_PER_CHANNEL);
        drop(running.into_iter().next());
        hub.hand_over("ch", RelayMode::Push, incoming()).expect("room again");
        // A connection no side takes is not counted.
        drop(pulls.try_recv());
        let unknown = hub.hand_over("other", RelayMode::Push, incoming()).err();
        assert!(matches!(unknown, Some(HandOverError::Refused(_))));
        assert!(super::lock(&hub.sessions).get(&("other".to_string(), RelayMode::Push)).is_none());
    }
}
