//! Backup destinations: a primary that dies mid-stream hands over to the backup, in order;
//! failback when the primary returns; a dead first backup is skipped for the second. The
//! receivers acknowledge each message (byte ACK), so nothing can be lost in a dying socket.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, connect};
use iobp_engine::Color;
use iobp_testkit::ports;
use iobp_testkit::receiver::{Received, Receiver};
use tokio::io::AsyncWriteExt;

/// A receiving application that acknowledges each line, collecting into `log` under `name`
/// (one arrival order across the primary and its backups); `stop` kills it (listener and
/// connections), `restart` brings it back on the same address.
fn ack_receiver(name: &'static str, ip: &str, port: u16, log: &Received) -> Receiver {
    Receiver::on((ip, port)).acking().sharing(log, name).start()
}

fn dest(ip: &str, port: u16) -> String {
    format!(
        r#"{{"type": "tcp_client", "host": "{ip}", "port": {port}, "framing": {{"type": "line"}},
            "ack": {{"type": "byte", "timeout_ms": 1000}}}}"#
    )
}

fn count(log: &Received, name: &str) -> usize {
    log.line_count_from(name)
}

/// Every message 0..n arrived; first arrivals in order; duplicates only for messages in
/// flight at a switch (at most one per switch with stop-and-wait acknowledgements).
fn check(log: &Received, n: usize, switches: usize) {
    let got = log.tagged_lines();
    let mut next = 0usize;
    let mut dups = 0;
    for (_, l) in &got {
        let i: usize = l[..6].parse().expect("number");
        if i == next {
            next += 1;
        } else {
            assert!(i < next, "message {i} arrived before {next}: order broken");
            dups += 1;
        }
    }
    assert_eq!(next, n, "every message arrived");
    assert!(dups <= switches, "{dups} duplicates for {switches} switches");
}

async fn send(ip: String, port: u16, from: usize, to: usize, pace: Duration) {
    let mut s = connect((&ip, port)).await;
    for i in from..to {
        s.write_all(format!("{i:06} failover\n").as_bytes()).await.expect("send");
        tokio::time::sleep(pace).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_takes_over_in_order_and_the_primary_gets_it_back() {
    const N: usize = 3000;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, p1, b1) = (ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip));
    let log = Received::new();
    let mut primary = ack_receiver("primary", &ip, p1, &log);
    let _backup = ack_receiver("backup", &ip, b1, &log);
    h.add(&format!(
        r#"{{"id": "ha", "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {}, "failover": [{}],
            "failover_policy": {{"probe_interval_ms": 200}}}}"#,
        dest(&ip, p1),
        dest(&ip, b1)
    ))
    .await;
    let sender = tokio::spawn(send(ip.clone(), src, 0, N, Duration::from_micros(300)));
    h.wait_for("ha", 20, "the primary delivering", |s| s.sent >= 500).await;
    assert_eq!(h.snap("ha").failover.expect("failover state").active, 0);
    // The primary dies mid-stream: the backup takes over.
    primary.stop();
    let died = Instant::now();
    let at_death = count(&log, "backup");
    h.wait_for("ha", 10, "the backup delivering", |s| {
        s.failover.as_ref().is_some_and(|f| f.active == 1)
    })
    .await;
    while count(&log, "backup") == at_death {
        assert!(died.elapsed() < Duration::from_secs(5), "the backup got nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("first message on the backup {:?} after the primary died", died.elapsed());
    let s = h.snap("ha");
    assert_eq!(s.channel, Color::Yellow, "degraded while on a backup: {s:?}");
    // The primary comes back: traffic returns to it.
    h.wait_for("ha", 20, "more on the backup", |s| s.sent >= 1500).await;
    primary.restart();
    h.wait_for("ha", 10, "failed back", |s| s.failover.as_ref().is_some_and(|f| f.active == 0))
        .await;
    let back_at = count(&log, "primary");
    sender.await.expect("sender");
    h.wait_for("ha", 20, "all delivered", |s| s.sent >= N as u64 && s.pending == 0).await;
    assert!(count(&log, "primary") > back_at, "the primary delivers again");
    let s = h.snap("ha");
    let f = s.failover.clone().expect("state");
    assert_eq!((f.active, f.switches), (0, 2), "{s:?}");
    assert_eq!(s.channel, Color::Green);
    check(&log, N, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_backup_is_skipped_for_the_second() {
    const N: usize = 2000;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, p1, b1, b2) =
        (ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip));
    let log = Received::new();
    let mut primary = ack_receiver("primary", &ip, p1, &log);
    // b1 has no receiver at all.
    let _second = ack_receiver("second", &ip, b2, &log);
    h.add(&format!(
        r#"{{"id": "ha2", "retry": {{"initial_ms": 50, "max_ms": 200}}, "failback": false,
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {}, "failover": [{}, {}]}}"#,
        dest(&ip, p1),
        dest(&ip, b1),
        dest(&ip, b2)
    ))
    .await;
    let sender = tokio::spawn(send(ip.clone(), src, 0, N, Duration::from_micros(300)));
    h.wait_for("ha2", 20, "the primary delivering", |s| s.sent >= 300).await;
    primary.stop();
    h.wait_for("ha2", 10, "the second backup delivering", |s| {
        s.failover.as_ref().is_some_and(|f| f.active == 2)
    })
    .await;
    sender.await.expect("sender");
    h.wait_for("ha2", 20, "all delivered", |s| s.sent >= N as u64 && s.pending == 0).await;
    // No failback configured: it stays on the second backup even with the primary back.
    primary.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = h.snap("ha2");
    assert_eq!(s.failover.as_ref().map(|f| f.active), Some(2), "{s:?}");
    assert!(
        s.last_error.as_ref().is_some_and(|e| e.2.contains("backup destination 1 failed")),
        "{s:?}"
    );
    check(&log, N, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_destination_down_messages_wait_and_nothing_is_lost() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, p1, b1) = (ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&format!(
        r#"{{"id": "ha3", "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {}, "failover": [{}]}}"#,
        dest(&ip, p1),
        dest(&ip, b1)
    ))
    .await;
    send(ip.clone(), src, 0, 500, Duration::ZERO).await;
    h.wait_for("ha3", 10, "stored, none delivered", |s| s.received == 500).await;
    h.wait_for("ha3", 10, "every destination tried and down", |s| s.channel == Color::Red).await;
    let s = h.snap("ha3");
    assert_eq!((s.sent, s.pending), (0, 500), "{s:?}");
    assert_eq!(s.channel, Color::Red, "{s:?}");
    // The backup appears: everything goes there, in order.
    let log = Received::new();
    let _backup = ack_receiver("backup", &ip, b1, &log);
    h.wait_for("ha3", 20, "all delivered", |s| s.sent >= 500 && s.pending == 0).await;
    check(&log, 500, 0);
}
