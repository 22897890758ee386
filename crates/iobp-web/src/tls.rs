//! HTTPS for the portals: the TLS handshake of an admitted connection, at most
//! [`MAX_HANDSHAKES`] at a time and each within [`HANDSHAKE_TIMEOUT`] (the wait for its turn
//! included), so one slow or hostile client cannot hold the port. The accept loop
//! ([`crate::serve`]) runs the handshakes concurrently, each in its connection's task.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once, per portal.
pub const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of `io`, or `None` (logged at debug level) if the handshake failed or took
/// too long.
pub(crate) async fn handshake<IO>(
    acceptor: &TlsAcceptor,
    handshakes: &Semaphore,
    io: IO,
    addr: SocketAddr,
) -> Option<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        // The semaphore is never closed.
        let _turn = handshakes.acquire().await.ok()?;
        match acceptor.accept(io).await {
            Ok(tls) => Some(tls),
            Err(e) => {
                tracing::debug!(%addr, "TLS handshake failed: {e}");
                None
            }
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.unwrap_or_else(|_| {
        tracing::debug!(%addr, "TLS handshake timed out");
        None
    })
}
