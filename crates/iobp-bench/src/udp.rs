//! A UDP source → TCP pair, with an instance of its own: datagrams at a paced rate, then a
//! burst as fast as possible. Each datagram is stored, or refused and counted (buffer full, or
//! dropped by the kernel and counted from the socket's drop counter); "uncounted" is what
//! neither accounts for.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::instance::{Binary, metric, pair_json};
use crate::load::{now_ns, put_message};
use crate::receiver::{Shared, receiver};

/// `rate` datagrams per second for `secs`, then a burst of `burst`.
pub(crate) async fn run(
    binary: &Binary,
    data: &Path,
    rate: u64,
    secs: u64,
    burst: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let src = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let dst = iobp_testkit::ports::free_port()?;
    let pair = pair_json(
        "udp",
        &format!(r#"{{"type": "udp", "host": "127.0.0.1", "port": {src}}}"#),
        dst,
        "",
        size,
    );
    let inst = binary.start(&data.join("udp"), &[pair])?;
    let got: Shared = Arc::default();
    let listener = TcpListener::bind(localhost(dst)).await?;
    let recv = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut first = 0;
    for (label, count, per_sec) in [("paced", rate * secs, rate), ("burst", burst, 0)] {
        let (before_stored, before_refused) = (
            metric(inst.ops, "iobp_messages_received_total{pair=\"udp\"}").await?,
            metric(inst.ops, "iobp_messages_refused_total{pair=\"udp\"}").await?,
        );
        let start = first;
        let sent =
            tokio::task::spawn_blocking(move || send_udp(src, start, count, per_sec, size, epoch))
                .await
                .context("udp sender")??;
        first += sent;
        // Everything still in the socket or waiting for its commit settles.
        let t = Instant::now();
        let (mut stored, mut refused);
        loop {
            stored = metric(inst.ops, "iobp_messages_received_total{pair=\"udp\"}").await?
                - before_stored;
            refused = metric(inst.ops, "iobp_messages_refused_total{pair=\"udp\"}").await?
                - before_refused;
            if stored + refused >= sent || t.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let what = if per_sec > 0 {
            format!("{per_sec}/s for {secs} s")
        } else {
            "as fast as possible".into()
        };
        println!(
            "udp {label} ({what}): {sent} datagrams sent, {stored} stored, {refused} refused and counted, {} lost uncounted",
            sent.saturating_sub(stored + refused)
        );
    }
    drop(inst);
    recv.abort();
    Ok(())
}

/// Sends datagrams (a message without its newline each) from a thread; `per_sec` 0: unpaced.
fn send_udp(
    port: u16,
    first: u64,
    count: u64,
    per_sec: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<u64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(("127.0.0.1", port))?;
    let started = Instant::now();
    let mut buf = Vec::with_capacity(size);
    for i in 0..count {
        if let Some(us) = (i * 1_000_000).checked_div(per_sec) {
            let due = started + Duration::from_micros(us);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        buf.clear();
        put_message(&mut buf, first + i, now_ns(epoch), size);
        // Loopback may refuse a send when its queue is full: that datagram was never sent.
        while sock.send(&buf[..size - 1]).is_err() {
            std::thread::yield_now();
        }
    }
    Ok(count)
}
