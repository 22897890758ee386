//! A stream whose writes are coalesced by a writer task of its own: `poll_write` appends to a
//! bounded buffer and returns, and the writer sends everything that accumulated while its
//! previous write was in the kernel in one system call.
//!
//! Why: a protocol client that writes and flushes every small packet by itself — the MQTT
//! client sends each manual acknowledgement (a 4-byte PUBACK) as one write and one flush —
//! costs one system call and one trip through the loopback or network stack per message. Here
//! the cost is one write per burst, whatever the client does, and nothing waits for a timer
//! (unlike Nagle's algorithm): a lone packet leaves at once.
//!
//! The contract: bytes leave in the order they were written; `poll_write` waits (without
//! losing anything) while [`MAX_BUFFERED`] bytes are queued; `poll_flush` means "handed to
//! the writer", which is what the protocol needs — acknowledgements and publishes are
//! confirmed by the peer's answer, never by a flush; a write error of the writer fails every
//! later call; dropping the stream stops the writer.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::Notify;

/// Bytes queued for the writer at most before `poll_write` waits.
const MAX_BUFFERED: usize = 256 * 1024;

/// The write-behind front of a stream (see the module docs).
pub(crate) struct WriteBehind<S> {
    read: ReadHalf<S>,
    shared: Arc<Shared>,
    writer: tokio::task::JoinHandle<()>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: bytes were queued, or the stream is shutting down.
    queued: Notify,
}

#[derive(Default)]
struct State {
    buf: BytesMut,
    /// Why the writer stopped (its error's kind and text), failing every later call.
    failed: Option<(io::ErrorKind, String)>,
    /// Shut down: the writer sends what is queued, shuts the stream down and ends.
    closing: bool,
    /// A `poll_write` waiting for room.
    blocked: Option<Waker>,
}

impl State {
    fn error(&self) -> Option<io::Error> {
        self.failed.as_ref().map(|(kind, why)| io::Error::new(*kind, why.clone()))
    }
}

impl<S> WriteBehind<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    /// Puts `stream` behind a writer task (spawned on the current runtime).
    pub(crate) fn new(stream: S) -> Self {
        let (read, write) = tokio::io::split(stream);
        let shared =
            Arc::new(Shared { state: Mutex::new(State::default()), queued: Notify::new() });
        let writer = tokio::spawn(write_queued(write, shared.clone()));
        WriteBehind { read, shared, writer }
    }
}

/// The writer: sends whatever is queued, all of it in one write, until closed or failed.
async fn write_queued<S: AsyncWrite>(mut write: WriteHalf<S>, shared: Arc<Shared>) {
    loop {
        let (chunk, closing) = {
            let Ok(mut s) = shared.state.lock() else { return };
            let chunk = s.buf.split();
            if let Some(w) = s.blocked.take() {
                w.wake();
            }
            (chunk, s.closing)
        };
        if chunk.is_empty() {
            if closing {
                let _ = write.shutdown().await;
                return;
            }
            shared.queued.notified().await;
            continue;
        }
        if let Err(e) = write.write_all(&chunk).await {
            if let Ok(mut s) = shared.state.lock() {
                s.failed = Some((e.kind(), e.to_string()));
                if let Some(w) = s.blocked.take() {
                    w.wake();
                }
            }
            return;
        }
    }
}

impl<S> Drop for WriteBehind<S> {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

fn poisoned() -> io::Error {
    io::Error::other("the write-behind buffer's lock was poisoned")
}

impl<S: AsyncRead> AsyncRead for WriteBehind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for WriteBehind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Ok(mut s) = self.shared.state.lock() else { return Poll::Ready(Err(poisoned())) };
        if let Some(e) = s.error() {
            return Poll::Ready(Err(e));
        }
        if s.closing {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "shut down")));
        }
        let room = MAX_BUFFERED.saturating_sub(s.buf.len());
        if room == 0 {
            s.blocked = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(room);
        s.buf.extend_from_slice(&data[..n]);
        drop(s);
        self.shared.queued.notify_one();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Ok(s) = self.shared.state.lock() else { return Poll::Ready(Err(poisoned())) };
        Poll::Ready(s.error().map_or(Ok(()), Err))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Ok(mut s) = self.shared.state.lock() else { return Poll::Ready(Err(poisoned())) };
        s.closing = true;
        drop(s);
        self.shared.queued.notify_one();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::WriteBehind;

    #[tokio::test]
    async fn bytes_leave_in_order_across_many_small_writes_and_flushes() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = WriteBehind::new(a);
        let mut want = Vec::new();
        for i in 0..10_000u16 {
            let [hi, lo] = i.to_be_bytes();
            let packet = [0x40, 0x02, hi, lo];
            want.extend_from_slice(&packet);
            w.write_all(&packet).await.expect("write");
            w.flush().await.expect("flush");
        }
        w.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_full_buffer_holds_the_writer_back_and_loses_nothing() {
        // The peer reads nothing until the end: the buffer fills, writes wait, nothing lost.
        let (a, mut b) = tokio::io::duplex(4096);
        let mut w = WriteBehind::new(a);
        let total = 3 * super::MAX_BUFFERED;
        let writing = tokio::spawn(async move {
            let chunk = vec![7u8; 1000];
            let mut sent = 0;
            while sent < total {
                w.write_all(&chunk).await.expect("write");
                sent += chunk.len();
            }
            w.shutdown().await.expect("shutdown");
            w
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!writing.is_finished(), "held back while the peer reads nothing");
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.expect("read");
        assert_eq!(got.len(), total.div_ceil(1000) * 1000);
        drop(writing.await.expect("writer"));
    }

    #[tokio::test]
    async fn a_write_error_fails_the_calls_that_follow() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut w = WriteBehind::new(a);
        let _ = w.write_all(b"first").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(w.write_all(b"second").await.is_err() || w.flush().await.is_err());
    }
}
