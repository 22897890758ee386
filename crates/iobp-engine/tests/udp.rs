//! UDP sources cannot hold a sender back: every datagram sent is either stored or counted as
//! refused — including those the kernel drops when the socket's receive buffer overflows.

mod common;

use std::time::{Duration, Instant};

use common::*;
use iobp_engine::Color;

fn udp_pair(id: &str, ip: &str, src: u16, dst: u16, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}",
            "source": {{"type": "udp", "host": "{ip}", "port": {src} {extra}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst},
                             "framing": {{"type": "line"}}}}}}"#
    )
}

/// Sends `n` datagrams of 93 bytes from a thread, at `per_sec` (0: as fast as possible).
fn blast(ip: &str, port: u16, n: u64, per_sec: u64) -> std::thread::JoinHandle<u64> {
    let ip = ip.to_string();
    std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind((ip.as_str(), 0)).expect("bind");
        let started = Instant::now();
        for i in 0..n {
            if let Some(us) = (i * 1_000_000).checked_div(per_sec) {
                let due = started + Duration::from_micros(us);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let msg = format!("{i:010}{}", "u".repeat(83));
            s.send_to(msg.as_bytes(), (ip.as_str(), port)).expect("send");
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_the_kernel_drops_are_counted_never_silent() {
    let h = Harness::new().await;
    let ip = loopback();
    let (src, dst) = (free_udp_port(&ip), free_port(&ip));
    // A small receive buffer, and a burst far larger than it.
    h.add(&udp_pair("u", &ip, src, dst, r#", "receive_buffer_bytes": 65536"#)).await;
    h.wait_for("u", 10, "listening", |s| s.source.color != Color::White).await;
    let sent = blast(&ip, src, 100_000, 0).join().expect("sender");
    h.wait_for("u", 30, "every datagram stored or counted", |s| s.received + s.refused == sent)
        .await;
    let s = h.snap("u");
    assert!(s.refused > 0, "a burst of 100,000 into 64 KiB dropped nothing? {s:#?}");
    assert!(
        s.last_error.as_ref().is_some_and(|e| e.2.contains("dropped by the kernel")),
        "the loss is shown with its reason: {s:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_stream_is_stored_or_counted_datagram_by_datagram() {
    let h = Harness::new().await;
    let ip = loopback();
    let (src, dst) = (free_udp_port(&ip), free_port(&ip));
    h.add(&udp_pair("u", &ip, src, dst, "")).await;
    h.wait_for("u", 10, "listening", |s| s.source.color != Color::White).await;
    let sent = blast(&ip, src, 50_000, 20_000).join().expect("sender");
    h.wait_for("u", 30, "every datagram stored or counted", |s| s.received + s.refused == sent)
        .await;
    // The loss rate is a benchmark figure (`iobufferpro bench`); here: never silent.
    let s = h.snap("u");
    eprintln!("paced 20,000/s: {} stored, {} refused", s.received, s.refused);
}
