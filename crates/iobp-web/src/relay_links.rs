//! Open relay connections by user, so that revoking a user's tokens (password or role change,
//! deletion) also cuts the connections those tokens opened — at once, not at the peer's next
//! reconnect. A relay link can stay open for days; without this, a relay user deleted by an
//! Admin would go on pushing or pulling until the link broke by itself.
//!
//! The cut works below the protocol: the upgraded connection is wrapped in [`Revocable`],
//! which fails every read and write with `ConnectionAborted` once revoked and wakes the task
//! blocked on it. The engine then treats it like any lost connection (the sender keeps its
//! messages In-Flight → Pending; nothing committed is affected), and the peer's reconnect meets
//! the revoked token and the login refusal.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The revocation signal of one connection.
#[derive(Debug, Default)]
struct Revocation {
    revoked: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Revocation {
    fn revoke(&self) {
        self.revoked.store(true, Ordering::Release);
        self.reader.wake();
        self.writer.wake();
    }

    /// `Some(error)` once revoked; otherwise registers `cx` to be woken by a revocation.
    fn check(&self, waker: &AtomicWaker, cx: &Context<'_>) -> Option<io::Error> {
        if self.revoked.load(Ordering::Acquire) {
            return Some(revoked());
        }
        waker.register(cx.waker());
        // A revocation between the load and the registration would otherwise go unseen.
        self.revoked.load(Ordering::Acquire).then(revoked)
    }
}

fn revoked() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the relay user's tokens were revoked")
}

/// The open relay connections, by user.
#[derive(Debug, Default)]
pub struct RelayLinks {
    next: AtomicU64,
    open: Mutex<HashMap<u64, (String, Arc<Revocation>)>>,
}

impl RelayLinks {
    /// Wraps a connection opened by `username` so that [`RelayLinks::revoke_user`] cuts it.
    pub fn track<IO>(self: &Arc<Self>, username: &str, io: IO) -> Revocable<IO> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let revocation = Arc::new(Revocation::default());
        self.lock().insert(id, (username.to_string(), revocation.clone()));
        Revocable { io, revocation, links: self.clone(), id }
    }

    /// Cuts every open connection of `username`.
    pub fn revoke_user(&self, username: &str) -> usize {
        let mut open = self.lock();
        let before = open.len();
        open.retain(|_, (user, r)| {
            let cut = user == username;
            if cut {
                r.revoke();
            }
            !cut
        });
        before - open.len()
    }

    /// How many relay connections are open (the tests' view).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no relay connection is open (the tests' view).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (String, Arc<Revocation>)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection that [`RelayLinks::revoke_user`] can cut; it leaves the registry when dropped.
#[derive(Debug)]
pub struct Revocable<IO> {
    io: IO,
    revocation: Arc<Revocation>,
    links: Arc<RelayLinks>,
    id: u64,
}

impl<IO> Drop for Revocable<IO> {
    fn drop(&mut self) {
        self.links.lock().remove(&self.id);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Revocable<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.revocation.check(&this.revocation.reader, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Revocable<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.revocation.check(&this.revocation.writer, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.revocation.check(&this.revocation.writer, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.revocation.check(&this.revocation.writer, cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing is always allowed: a revoked connection still gets a clean shutdown.
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::RelayLinks;

    #[tokio::test]
    async fn revoking_a_user_cuts_a_blocked_read_and_later_writes() {
        let links = Arc::new(RelayLinks::default());
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (other, _keep) = tokio::io::duplex(64);
        let mut conn = links.track("relay-a", ours);
        let mut kept = links.track("relay-b", other);
        assert_eq!(links.len(), 2);
        // Data flows until the revocation.
        theirs.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 2];
        conn.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"hi");
        // A read blocked on an idle connection is woken and fails.
        let blocked = tokio::spawn(async move {
            let mut b = [0u8; 1];
            let r = conn.read(&mut b).await;
            (r.map_err(|e| e.kind()), conn)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(links.revoke_user("relay-a"), 1);
        let (r, mut conn) = tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(r, Err(std::io::ErrorKind::ConnectionAborted));
        let w = conn.write_all(b"more").await.map_err(|e| e.kind());
        assert_eq!(w, Err(std::io::ErrorKind::ConnectionAborted));
        // Another user's connection is untouched, and a dropped connection leaves the registry.
        assert_eq!(links.len(), 1);
        kept.write_all(b"x").await.expect("still open");
        drop(conn);
        drop(kept);
        assert!(links.is_empty());
        assert_eq!(links.revoke_user("nobody"), 0);
    }
}
