//! `udp` source: one datagram is one message.
//!
//! UDP cannot be held back: a datagram the socket cannot take while we are busy is dropped by
//! the kernel. So the source reads continuously — up to [`WINDOW`] batches wait for their
//! fdatasync while reading goes on, as on the TCP source — and its socket has a receive buffer
//! sized for bursts (`receive_buffer_bytes`, 4 MiB by default; forced past the system's
//! `rmem_max` where the process may). What the kernel still drops is counted from the socket's
//! own drop counter and reported as refused, with an error: a loss is never silent. (Linux:
//! the counter comes with each datagram, `SO_RXQ_OVFL`, and is also read every
//! [`DROP_POLL`] from `/proc/net/udp`, for drops after the last datagram received.) A
//! datagram that cannot be stored (buffer full) is refused the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use iobp_config::UdpSpec;
use iobp_log::Commit;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::side::{IntakeError, SideCtx, pause};
use crate::stats::{Color, Side};

/// Datagrams taken into one batch when several are waiting.
const BATCH: usize = 256;
/// Batches waiting for their fdatasync while reading continues.
const WINDOW: usize = 8;
/// Largest UDP payload (IPv4); the read buffer holds any datagram whole.
const MAX_DATAGRAM: usize = 65_536;
/// How often the socket's drop counter is read when no datagram brings it.
const DROP_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// A batch queued into the buffer, counted once durable.
struct Waiting {
    commit: Commit,
    /// The last few datagrams, for the Live View.
    shown: Vec<Bytes>,
    count: u64,
    bytes: u64,
    peer: Option<Arc<str>>,
}

pub(crate) async fn source(ctx: SideCtx, spec: UdpSpec) {
    let status = &ctx.stats.source;
    let mut backoff = Backoff::new(ctx.retry);
    let addr = format!("{}:{}", spec.host, spec.port);
    let want = spec.receive_buffer_bytes.unwrap_or(iobp_config::DEFAULT_UDP_RECEIVE_BUFFER);
    let (socket, note) = loop {
        match open(&addr, want).await {
            Ok(x) => break x,
            Err(e) => {
                let msg = format!("cannot listen on udp {addr}: {e}");
                ctx.error(Side::Source, msg.clone());
                status.set(Color::Red, msg);
                if !pause(&ctx.cancel, backoff.next_delay()).await {
                    return;
                }
            }
        }
    };
    match &note {
        Some(n) => {
            tracing::warn!(pair = &*ctx.pair, "udp {addr}: {n}");
            status.set(Color::Yellow, format!("listening on udp {addr}; {n}"));
        }
        None => status.set(Color::Green, format!("listening on udp {addr}")),
    }
    let mut reader = Reader::new(socket);
    let mut waiting: std::collections::VecDeque<Waiting> = std::collections::VecDeque::new();
    let mut drop_poll = tokio::time::interval(DROP_POLL);
    drop_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => {
                wind_down(&ctx, &mut waiting).await;
                return;
            }
            _ = drop_poll.tick() => {
                let dropped = reader.poll_drops();
                if dropped > 0 {
                    refused(&ctx, dropped, KERNEL_DROPS);
                }
            }
            r = first_commit(&mut waiting) => {
                let w = waiting.pop_front();
                match (w, r) {
                    (Some(w), Ok(seqs)) => {
                        let first_shown = seqs.end() + 1 - w.shown.len() as u64;
                        ctx.accepted_counts(w.count, w.bytes, &w.shown, first_shown, w.peer.as_ref());
                    }
                    (Some(w), Err(e)) => {
                        refused(&ctx, w.count, &format!("buffer failed before they were stored: {e}"));
                        if !pause(&ctx.cancel, backoff.next_delay()).await {
                            wind_down(&ctx, &mut waiting).await;
                            return;
                        }
                    }
                    (None, _) => {}
                }
            }
            r = reader.socket.readable(), if waiting.len() < WINDOW => {
                if let Err(e) = r {
                    if !read_error(&ctx, &addr, &e, &mut backoff).await {
                        wind_down(&ctx, &mut waiting).await;
                        return;
                    }
                    continue;
                }
                let batch = match reader.take_batch() {
                    Ok(b) => b,
                    Err(e) => {
                        if !read_error(&ctx, &addr, &e, &mut backoff).await {
                            wind_down(&ctx, &mut waiting).await;
                            return;
                        }
                        continue;
                    }
                };
                if batch.dropped > 0 {
                    refused(&ctx, batch.dropped, KERNEL_DROPS);
                }
                if batch.frames.is_empty() {
                    continue;
                }
                if !submit(&ctx, batch, &mut waiting, &mut backoff).await {
                    wind_down(&ctx, &mut waiting).await;
                    return;
                }
            }
        }
    }
}

/// Queues a batch into the buffer; refuses it (counted, alarmed) when storage is full.
/// Returns false if the pair stopped meanwhile.
async fn submit(
    ctx: &SideCtx,
    batch: Batch,
    waiting: &mut std::collections::VecDeque<Waiting>,
    backoff: &mut Backoff,
) -> bool {
    let count = batch.frames.len() as u64;
    let bytes = batch.frames.iter().map(|f| f.len() as u64).sum();
    match ctx.intake(&batch.frames).await {
        Ok(commit) => {
            backoff.reset();
            let mut shown = batch.frames;
            let n = shown.len();
            if n > 8 {
                shown.drain(..n - 8);
            }
            waiting.push_back(Waiting { commit, shown, count, bytes, peer: batch.peer });
            true
        }
        Err(IntakeError::Full(why)) => {
            refused(ctx, count, &why);
            true
        }
        Err(IntakeError::Broken(e)) => {
            refused(ctx, count, &format!("buffer unavailable: {e}"));
            pause(&ctx.cancel, backoff.next_delay()).await
        }
    }
}

const KERNEL_DROPS: &str = "dropped by the kernel: the socket's receive buffer overflowed \
    (raise receive_buffer_bytes, or the system's net.core.rmem_max)";

/// Datagrams that were not stored: counted as refused, with the reason. Never silent.
fn refused(ctx: &SideCtx, n: u64, why: &str) {
    ctx.stats.refused.fetch_add(n, Ordering::Relaxed);
    ctx.error(Side::Source, format!("refused {n} UDP datagram(s): {why}"));
}

/// A receive error: reported, then a pause (observing the stop) so a persistent error
/// cannot spin. Returns false if the pair stopped.
async fn read_error(ctx: &SideCtx, addr: &str, e: &std::io::Error, backoff: &mut Backoff) -> bool {
    ctx.error(Side::Source, format!("udp receive on {addr}: {e}"));
    pause(&ctx.cancel, backoff.next_delay()).await
}

async fn first_commit(
    waiting: &mut std::collections::VecDeque<Waiting>,
) -> iobp_log::Result<std::ops::RangeInclusive<u64>> {
    match waiting.front_mut() {
        Some(w) => (&mut w.commit).await,
        None => std::future::pending().await,
    }
}

/// The pair stops: batches waiting for their commit are counted once durable (within the
/// usual bound); what did not become durable is counted as refused.
async fn wind_down(ctx: &SideCtx, waiting: &mut std::collections::VecDeque<Waiting>) {
    let deadline = Instant::now() + crate::source::stream::WIND_DOWN;
    while let Some(mut w) = waiting.pop_front() {
        match tokio::time::timeout_at(deadline, &mut w.commit).await {
            Ok(Ok(seqs)) => {
                let first_shown = seqs.end() + 1 - w.shown.len() as u64;
                ctx.accepted_counts(w.count, w.bytes, &w.shown, first_shown, w.peer.as_ref());
            }
            Ok(Err(e)) => refused(ctx, w.count, &format!("not stored when the pair stopped: {e}")),
            Err(_) => {
                refused(
                    ctx,
                    w.count,
                    "not confirmed durable when the pair stopped; they may still be delivered",
                );
                let commit = w.commit;
                ctx.count_if_stored_later(async move { commit.await.map(Some) }, w.count, w.bytes);
            }
        }
    }
}

/// Binds the socket and sizes its receive buffer; the note says what fell short.
async fn open(addr: &str, want: u64) -> std::io::Result<(UdpSocket, Option<String>)> {
    let socket = UdpSocket::bind(addr).await?;
    let note = size_receive_buffer(&socket, want);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        // The kernel then reports, with each datagram, how many it dropped on this socket.
        nix::sys::socket::setsockopt(&socket.as_fd(), nix::sys::socket::sockopt::RxqOvfl, &1)
            .map_err(std::io::Error::from)?;
    }
    Ok((socket, note))
}

/// Asks for `want` bytes of receive buffer: forced past `rmem_max` where permitted (Linux,
/// `CAP_NET_ADMIN`), else as much as the system allows. Returns a note if it got less.
fn size_receive_buffer(socket: &UdpSocket, want: u64) -> Option<String> {
    let want = usize::try_from(want).unwrap_or(usize::MAX);
    let sock = socket2::SockRef::from(socket);
    #[cfg(target_os = "linux")]
    let forced = {
        use std::os::fd::AsFd;
        nix::sys::socket::setsockopt(&socket.as_fd(), nix::sys::socket::sockopt::RcvBufForce, &want)
            .is_ok()
    };
    #[cfg(not(target_os = "linux"))]
    let forced = false;
    if !forced {
        let _ = sock.set_recv_buffer_size(want);
    }
    // Linux reports twice what was set (it counts its bookkeeping too).
    let got = sock.recv_buffer_size().ok()?;
    let got = if cfg!(target_os = "linux") { got / 2 } else { got };
    (got < want).then(|| {
        format!(
            "receive buffer {} KiB of the {} KiB asked for (the system's limit; raise \
             net.core.rmem_max, or give the service CAP_NET_ADMIN): bursts may be dropped",
            got / 1024,
            want / 1024
        )
    })
}

/// Datagrams read in one go.
struct Batch {
    frames: Vec<Bytes>,
    /// Datagrams the kernel reports dropped since the previous read.
    dropped: u64,
    peer: Option<Arc<str>>,
}

/// Reads datagrams without waiting, keeping the kernel's drop counter.
struct Reader {
    socket: UdpSocket,
    buf: Vec<u8>,
    /// Where the datagrams of a batch are copied; one allocation serves many of them.
    store: BytesMut,
    /// The socket's cumulative drop counter as last reported.
    drops_seen: u32,
}

impl Reader {
    fn new(socket: UdpSocket) -> Self {
        Reader { socket, buf: vec![0; MAX_DATAGRAM], store: BytesMut::new(), drops_seen: 0 }
    }

    /// Takes a reading of the socket's cumulative drop counter (wrapping at 2^32); returns the
    /// drops not counted yet. Readings may come late (from `/proc`) and never go back.
    fn advance_drops(&mut self, counter: u32) -> u64 {
        let new = counter.wrapping_sub(self.drops_seen);
        if new >= 1 << 31 {
            return 0; // an older reading than one already counted
        }
        self.drops_seen = counter;
        u64::from(new)
    }

    /// Reads the socket's drop counter without receiving: drops after the last datagram.
    fn poll_drops(&mut self) -> u64 {
        match socket_drops(&self.socket) {
            Some(d) => self.advance_drops(d),
            None => 0,
        }
    }

    /// Takes the datagrams waiting now (at most [`BATCH`]).
    fn take_batch(&mut self) -> std::io::Result<Batch> {
        let mut frames = Vec::new();
        let mut dropped = 0u64;
        let mut last_peer = None;
        while frames.len() < BATCH {
            match self.recv_one() {
                Ok((n, from, drops)) => {
                    if let Some(d) = drops {
                        dropped += self.advance_drops(d);
                    }
                    if self.store.capacity() - self.store.len() < n {
                        self.store.reserve(n.max(64 * 1024));
                    }
                    self.store.extend_from_slice(&self.buf[..n]);
                    frames.push(self.store.split().freeze());
                    last_peer = Some(from);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if frames.is_empty() => return Err(e),
                // Report it with the next read; keep what was read.
                Err(_) => break,
            }
        }
        Ok(Batch { frames, dropped, peer: last_peer.map(|a: SocketAddr| a.to_string().into()) })
    }

    /// One datagram: its length, sender, and the kernel's drop counter if reported.
    #[cfg(target_os = "linux")]
    fn recv_one(&mut self) -> std::io::Result<(usize, SocketAddr, Option<u32>)> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
        use std::os::fd::AsRawFd;
        let fd = self.socket.as_raw_fd();
        let buf = &mut self.buf;
        self.socket.try_io(tokio::io::Interest::READABLE, || {
            let mut cmsg = nix::cmsg_space!(u32);
            let mut iov = [std::io::IoSliceMut::new(buf)];
            let msg =
                recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
                    .map_err(std::io::Error::from)?;
            let mut drops = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::RxqOvfl(d) = c {
                        drops = Some(d);
                    }
                }
            }
            let from = msg
                .address
                .and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                        .or_else(|| {
                            a.as_sockaddr_in6()
                                .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                        })
                })
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            Ok((msg.bytes, from, drops))
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_one(&mut self) -> std::io::Result<(usize, SocketAddr, Option<u32>)> {
        let (n, from) = self.socket.try_recv_from(&mut self.buf)?;
        Ok((n, from, None))
    }
}

/// The socket's drop counter from `/proc/net/udp` (and `udp6`), found by the socket's inode:
/// the last column of its line.
#[cfg(target_os = "linux")]
fn socket_drops(socket: &UdpSocket) -> Option<u32> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?.ino();
    let ino = ino.to_string();
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(table).ok()?;
        text.lines().skip(1).find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.get(9) == Some(&ino.as_str())).then(|| cols.last()?.parse().ok()).flatten()
        })
    })
}

#[cfg(not(target_os = "linux"))]
fn socket_drops(_socket: &UdpSocket) -> Option<u32> {
    None
}
