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

/// How a relay session on a connection this side opened ended.
pub(crate) enum SessionEnd {
    /// The pair is stopping.
    Cancelled,
    /// The connection ended: why, for the status line.
    Closed(String),
}

/// For a side with a `url`: connects to the remote instance again and again (with the pair's
/// backoff) and runs `session` on each connection, until the pair stops. Shows the side's
/// status (connecting Yellow, connected Green, failed Red with the reason).
pub(crate) async fn connect_loop<F, Fut>(
    ctx: &crate::side::SideCtx,
    side: crate::stats::Side,
    spec: &iobp_config::RemoteSpec,
    mode: RelayMode,
    mut session: F,
) where
    F: FnMut(Box<dyn RelayIo>, Arc<str>) -> Fut,
    Fut: std::future::Future<Output = SessionEnd>,
{
    use crate::stats::Color;
    let status = ctx.stats.side(side);
    let mut backoff = crate::backoff::Backoff::new(ctx.retry);
    let mut client = match client::Client::new(spec) {
        Ok(c) => c,
        Err(e) => {
            ctx.error(side, e.clone());
            status.set(Color::Red, e);
            ctx.cancel.cancelled().await;
            return;
        }
    };
    let peer: Arc<str> = format!("{} channel {}", client.authority(), spec.channel_id).into();
    let doing = match mode {
        RelayMode::Push => "sending to",
        RelayMode::Pull => "receiving from",
    };
    loop {
        status.set(Color::Yellow, format!("connecting to {peer}"));
        let why = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            r = client.open(mode) => match r {
                Err(e) => e,
                Ok(io) => {
                    backoff.reset();
                    status.peer_up(&peer);
                    status.set(Color::Green, format!("relay: {doing} {peer}"));
                    let end = session(io, peer.clone()).await;
                    status.peer_down(&peer);
                    match end {
                        SessionEnd::Cancelled => return,
                        SessionEnd::Closed(why) => why,
                    }
                }
            },
        };
        ctx.error(side, why.clone());
        status.set(Color::Red, why);
        if !crate::side::pause(&ctx.cancel, backoff.next_delay()).await {
            return;
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
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(n) = iobp_relay::needed(&self.buf) {
                if n - iobp_relay::FRAME_HEADER_LEN > iobp_relay::MAX_FRAME_BODY as usize {
                    return Err(format!("protocol error: a frame of {n} bytes is too large"));
                }
                if self.buf.len() >= n {
                    return Ok(Some(self.buf.split_to(n).freeze()));
                }
                self.buf.reserve(n - self.buf.len());
            } else if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let read = self.rd.read_buf(&mut self.buf).await.map_err(|e| format!("read: {e}"))?;
            if read == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err("the connection closed in the middle of a frame".into())
                };
            }
        }
    }
}

/// Writes `buf` and flushes, within [`WRITE_TIMEOUT`].
pub(crate) async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, buf: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, async {
        wr.write_all(buf).await?;
        wr.flush().await
    })
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err(format!("the peer took no data for {} s", WRITE_TIMEOUT.as_secs())),
    }
}

/// Sends an `Error` frame (best effort) and returns the message as the session's error.
pub(crate) async fn fail<W: AsyncWrite + Unpin>(wr: &mut W, message: String) -> String {
    let mut out = Vec::new();
    iobp_relay::encode_error(&mut out, &message);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = wr.write_all(&out).await;
        let _ = wr.flush().await;
    })
    .await;
    message
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
