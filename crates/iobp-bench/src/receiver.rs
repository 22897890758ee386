//! The receiving application: accepts the instance's destination connections and checks every
//! line it gets — exactly once, in order, of the right pair — recording send → receive
//! latencies when asked.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::load::{get_digits, now_ns};

/// What the receiving application saw.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) next: u64,
    pub(crate) count: u64,
    pub(crate) duplicates: u64,
    pub(crate) gaps: u64,
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) record_latency: bool,
    /// When the first line arrived (ns since the bench's epoch).
    pub(crate) first_at_ns: Option<u64>,
    /// Lines must carry this pair index ([`crate::load::put_tagged`]); those that do not are
    /// counted in `misrouted` and otherwise ignored.
    pub(crate) tag: Option<u64>,
    pub(crate) misrouted: u64,
}

pub(crate) type Shared = Arc<Mutex<Received>>;

impl Received {
    /// A receiver's record that accepts only lines of pair `tag`
    /// ([`crate::load::put_tagged`]).
    pub(crate) fn tagged(tag: u64) -> Shared {
        Arc::new(Mutex::new(Received { tag: Some(tag), ..Received::default() }))
    }
}

pub(crate) fn lock(got: &Shared) -> MutexGuard<'_, Received> {
    got.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The receiving application: accepts connections (the instance reconnects after the backlog
/// phase), with TLS if given, and checks every line.
pub(crate) async fn receiver(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    got: Shared,
    epoch: Instant,
) {
    // Connections live in this set: aborting the receiver closes them too (the application
    // going away).
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((conn, _)) = listener.accept().await else { return };
        let (got, tls) = (got.clone(), tls.clone());
        conns.spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(conn).await {
                        consume(s, &got, epoch).await;
                    }
                }
                None => consume(conn, &got, epoch).await,
            }
        });
    }
}

/// Reads one connection to its end, checking sequence numbers and recording latencies.
async fn consume<R: AsyncRead + Unpin>(mut conn: R, got: &Shared, epoch: Instant) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        take_lines(got, &mut carry, now_ns(epoch));
    }
}

/// A receiving application that acknowledges every line with an ACK byte (for destinations
/// with `ack: byte`).
pub(crate) async fn ack_receiver(listener: TcpListener, got: Shared, epoch: Instant) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((conn, _)) = listener.accept().await else { return };
        let got = got.clone();
        conns.spawn(async move {
            let (mut rd, mut wr) = conn.into_split();
            let mut buf = vec![0u8; 64 * 1024];
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                carry.extend_from_slice(&buf[..n]);
                let lines = take_lines(&got, &mut carry, now_ns(epoch));
                if wr.write_all(&vec![6u8; lines]).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Takes the complete lines out of `carry`, checking each; returns how many there were.
fn take_lines(got: &Shared, carry: &mut Vec<u8>, now: u64) -> usize {
    let mut g = lock(got);
    let mut start = 0;
    let mut lines = 0;
    while let Some(i) = carry[start..].iter().position(|&c| c == b'\n') {
        let line = &carry[start..start + i];
        start += i + 1;
        lines += 1;
        let (Some(seq), Some(ts)) =
            (line.get(0..12).and_then(get_digits), line.get(13..33).and_then(get_digits))
        else {
            g.gaps += 1;
            continue;
        };
        if let Some(tag) = g.tag
            && line.get(34..39).and_then(get_digits) != Some(tag)
        {
            g.misrouted += 1;
            continue;
        }
        if g.count == 0 && g.first_at_ns.is_none() {
            g.first_at_ns = Some(now);
        }
        if seq < g.next {
            g.duplicates += 1;
            continue;
        }
        if seq > g.next {
            g.gaps += seq - g.next;
        }
        g.next = seq + 1;
        g.count += 1;
        if g.record_latency {
            g.latencies_ns.push(now.saturating_sub(ts));
        }
    }
    drop(g);
    carry.drain(..start);
    lines
}

/// Waits until `got` counted `n` messages: how long that took; an error after `limit`.
pub(crate) async fn wait_count(got: &Shared, n: u64, limit: Duration) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let c = lock(got).count;
        if c >= n {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            bail!("only {c} of {n} messages arrived within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Exactly once and in order: `sent` messages numbered from 0, each received once.
pub(crate) fn verified(label: &str, got: &Shared, sent: u64) -> bool {
    let g = lock(got);
    println!(
        "verification ({label}): {} messages received, next expected {}, {} duplicates, {} missing or out of order",
        g.count, g.next, g.duplicates, g.gaps
    );
    g.count == sent && g.next == sent && g.gaps == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::put_tagged;

    #[test]
    fn tagged_messages_carry_their_pair_and_are_checked_against_it() {
        let mut b = Vec::new();
        put_tagged(&mut b, 7, 0, 5, 40);
        put_tagged(&mut b, 7, 1, 6, 40);
        put_tagged(&mut b, 8, 2, 7, 40);
        assert_eq!(b.len(), 120);
        assert_eq!(get_digits(&b[34..39]), Some(7));
        assert_eq!(b[39], b'\n');
        let got = Received::tagged(7);
        assert_eq!(take_lines(&got, &mut b, 10), 3);
        let g = lock(&got);
        assert_eq!((g.count, g.next, g.gaps, g.misrouted), (2, 2, 0, 1));
    }

    #[test]
    fn duplicates_and_gaps_are_counted_and_a_partial_line_waits() {
        let mut b = Vec::new();
        for seq in [0, 1, 1, 4] {
            crate::load::put_message(&mut b, seq, 0, 40);
        }
        b.extend_from_slice(b"000000000005");
        let got: Shared = Arc::default();
        assert_eq!(take_lines(&got, &mut b, 10), 4);
        assert_eq!(b, b"000000000005", "the partial line stays for the next read");
        let g = lock(&got);
        assert_eq!((g.count, g.next, g.duplicates, g.gaps), (3, 5, 1, 2));
    }
}
