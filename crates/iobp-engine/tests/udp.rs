//! UDP sources cannot hold a sender back: every datagram sent is either stored or counted as
//! refused — including those the kernel drops when the socket's receive buffer overflows.
//! (Datagrams the system drops before they reach any socket — the network device's backlog,
//! on a machine too busy to process it — no socket can see; the tests account for them from
//! the system's own counters.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use iobp_engine::Color;
use iobp_testkit::ports;
use iobp_testkit::receiver::AsyncReceiver;

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

/// Packets the network devices of this machine dropped before any socket saw them (all CPUs,
/// all devices: an upper bound of what this test's datagrams lost there).
fn device_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).and_then(|d| u64::from_str_radix(d, 16).ok()))
        .sum()
}

/// Waits until every datagram sent is stored, refused, or among the device drops.
async fn wait_accounted(h: &Harness, id: &str, sent: u64, device_drops_before: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = h.snap(id);
        let dev = device_drops().saturating_sub(device_drops_before);
        assert!(s.received + s.refused <= sent, "more counted than sent: {s:#?}");
        if s.received + s.refused + dev >= sent {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sent} sent, {} stored, {} refused, {dev} dropped by devices: some went uncounted",
            s.received,
            s.refused
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_the_kernel_drops_are_counted_never_silent() {
    // A slow disk fills the source's window of batches waiting for their fdatasync; a small
    // receive buffer then overflows and the kernel drops datagrams at the socket.
    let fs = iobp_log::sim::SimFs::new();
    let h = Harness::with_fs(&fs).await;
    let ip = ports::loopback();
    let (src, dst) = (ports::udp_on(&ip), ports::tcp_on(&ip));
    // A destination that takes everything: a failing one would overwrite the source's last
    // error, which is what this test reads.
    let _received = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&udp_pair("u", &ip, src, dst, r#", "receive_buffer_bytes": 65536"#)).await;
    h.wait_for("u", 10, "listening", |s| s.source.color != Color::White).await;
    fs.set_faults(iobp_log::sim::Faults {
        sync_delay: Some(Duration::from_millis(200)),
        ..iobp_log::sim::Faults::default()
    });
    let before = device_drops();
    let sent = blast(&ip, src, 20_000, 10_000).join().expect("sender");
    wait_accounted(&h, "u", sent, before).await;
    let s = h.snap("u");
    assert!(s.refused > 0, "nothing dropped at the socket? {s:#?}");
    assert!(
        s.last_error.as_ref().is_some_and(|e| e.2.contains("dropped by the kernel")),
        "the loss is shown with its reason: {s:#?}"
    ); // What was dropped is refused, beside the sum; what was stored adds up.
    common::reconciled(&h.engine, "u").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_stream_is_stored_or_counted_datagram_by_datagram() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::udp_on(&ip), ports::tcp_on(&ip));
    h.add(&udp_pair("u", &ip, src, dst, "")).await;
    h.wait_for("u", 10, "listening", |s| s.source.color != Color::White).await;
    let before = device_drops();
    let sent = blast(&ip, src, 50_000, 20_000).join().expect("sender");
    wait_accounted(&h, "u", sent, before).await;
    // The loss rate is a benchmark figure (`iobp-bench`); here: never silent.
    let s = h.snap("u");
    eprintln!("paced 20,000/s: {} stored, {} refused", s.received, s.refused);
}
