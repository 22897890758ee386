//! The load generator: the message format every phase sends, and senders as fast as possible
//! and at a paced rate.
//!
//! A message is one line of exactly `size` bytes: a 12-digit sequence number, a space, the
//! 20-digit send time (ns since the run's epoch), a space, filler, a newline. Messages of
//! the many-pairs phase carry their pair's index in the 5 digits after the send time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::receiver::{Shared, lock, wait_count};

/// Nanoseconds since `epoch`: the send timestamps carried in messages.
pub(crate) fn now_ns(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Writes message `seq` (12 digits, space, 20-digit send time, space, filler, newline).
pub(crate) fn put_message(out: &mut Vec<u8>, seq: u64, ts: u64, size: usize) {
    let start = out.len();
    out.resize(start + size, b'x');
    let m = &mut out[start..];
    put_digits(&mut m[0..12], seq);
    m[12] = b' ';
    put_digits(&mut m[13..33], ts);
    m[33] = b' ';
    m[size - 1] = b'\n';
}

/// Writes message `seq` of pair `tag` (< 100,000): [`put_message`] with the pair index in
/// the 5 digits after the send time, so a receiver can tell which pair a line came through.
pub(crate) fn put_tagged(out: &mut Vec<u8>, tag: u64, seq: u64, ts: u64, size: usize) {
    let start = out.len();
    put_message(out, seq, ts, size);
    put_digits(&mut out[start + 34..start + 39], tag);
}

fn put_digits(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + u8::try_from(v % 10).unwrap_or(0);
        v /= 10;
    }
}

/// The number written by `put_digits`, if `src` is all digits.
pub(crate) fn get_digits(src: &[u8]) -> Option<u64> {
    src.iter().try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
}

/// A connection to `addr` (retried for 10 s while the instance opens its port), without
/// Nagle's delay.
pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let t = Instant::now();
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if t.elapsed() > Duration::from_secs(10) => return Err(e).context("connecting"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Sends `count` messages starting at `first` as fast as possible, in 64 KiB writes.
pub(crate) async fn blast<W: AsyncWrite + Unpin>(
    conn: &mut W,
    first: u64,
    count: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let per_write = (64 * 1024 / size).max(1) as u64;
    let mut buf = Vec::with_capacity(64 * 1024 + size);
    let mut seq = first;
    while seq < first + count {
        buf.clear();
        let ts = now_ns(epoch);
        for s in seq..(seq + per_write).min(first + count) {
            put_message(&mut buf, s, ts, size);
        }
        seq = (seq + per_write).min(first + count);
        conn.write_all(&buf).await.context("sending")?;
    }
    conn.flush().await.context("sending")?;
    Ok(())
}

/// Sends at `rate` messages per second for `secs`, each stamped with its own send time.
pub(crate) async fn paced<W: AsyncWrite + Unpin>(
    conn: &mut W,
    first: u64,
    rate: u64,
    secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<u64> {
    let total = rate * secs;
    // One tick per millisecond: the timer's resolution.
    let per_tick = (rate / 1000).max(1);
    let tick = Duration::from_micros(1_000_000 * per_tick / rate);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut buf = Vec::new();
    let mut seq = first;
    while seq < first + total {
        interval.tick().await;
        buf.clear();
        for _ in 0..per_tick {
            put_message(&mut buf, seq, now_ns(epoch), size);
            seq += 1;
        }
        conn.write_all(&buf).await.context("sending")?;
        // TLS holds written data in its record buffer until flushed.
        conn.flush().await.context("sending")?;
    }
    Ok(total)
}

/// `n` messages from `first`, as fast as possible, until `got` has them all: messages per
/// second and the time taken.
pub(crate) async fn throughput<W: AsyncWrite + Unpin>(
    conn: &mut W,
    got: &Shared,
    first: u64,
    n: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<(f64, Duration)> {
    let t = Instant::now();
    let before = lock(got).count;
    blast(conn, first, n, size, epoch).await?;
    wait_count(got, before + n, Duration::from_secs(600)).await?;
    let el = t.elapsed();
    #[allow(clippy::cast_precision_loss)]
    Ok((n as f64 / el.as_secs_f64(), el))
}

/// Paced sending for `secs` at `rate`; the sorted send → receive latencies and the count.
pub(crate) async fn latency<W: AsyncWrite + Unpin>(
    conn: &mut W,
    got: &Shared,
    first: u64,
    rate: u64,
    secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<(Vec<u64>, u64)> {
    {
        let mut g = lock(got);
        g.latencies_ns.clear();
        g.record_latency = true;
    }
    let before = lock(got).count;
    let sent = paced(conn, first, rate, secs, size, epoch).await?;
    wait_count(got, before + sent, Duration::from_secs(60)).await?;
    let mut lat = {
        let mut g = lock(got);
        g.record_latency = false;
        std::mem::take(&mut g.latencies_ns)
    };
    lat.sort_unstable();
    Ok((lat, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_requested_size_and_parse_back() {
        let mut b = Vec::new();
        put_message(&mut b, 42, 123_456_789, 100);
        assert_eq!(b.len(), 100);
        assert_eq!(b[99], b'\n');
        assert_eq!(get_digits(&b[0..12]), Some(42));
        assert_eq!(get_digits(&b[13..33]), Some(123_456_789));
    }
}
