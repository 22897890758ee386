//! Faults on the paths around the data path: a pair stopped, edited or shut down while its
//! fsyncs are slow; a full buffer under a pipelining acknowledging sender; write and fsync
//! errors; a full file system. The buffers live on a simulated file system, so a power cut
//! right after each scenario shows what was really durable: nothing acknowledged may be
//! missing from it, and answers must leave in the order of the messages.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use iobp_log::sim::{Faults, SimFs, TornWrites};
use iobp_testkit::receiver::AsyncReceiver;
use iobp_testkit::{ports, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACK: u8 = 0x06;
const NAK: u8 = 0x15;

fn msg(i: usize) -> String {
    format!("message-{i:06}-{}", "x".repeat(40))
}

/// A line source answering with ACK/NAK bytes, and a destination nobody listens on (so every
/// stored message stays in the buffer).
fn byte_ack_pair(id: &str, ip: &str, src: u16, dst: u16, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}", {extra}
            "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src},
                        "framing": {{"type": "line"}}, "ack": {{"type": "byte"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst},
                             "framing": {{"type": "line"}}}}}}"#
    )
}

/// A sender that pipelines `n` messages in chunks and collects every answer byte.
async fn pipelining_sender(
    addr: (&str, u16),
    n: usize,
    chunk: usize,
) -> (Arc<Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    let s = connect(addr).await;
    let (mut rd, mut wr) = s.into_split();
    let answers: Arc<Mutex<Vec<u8>>> = Arc::default();
    let a = answers.clone();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(k) = rd.read(&mut buf).await {
            if k == 0 {
                break;
            }
            a.lock().expect("lock").extend_from_slice(&buf[..k]);
        }
    });
    tokio::spawn(async move {
        for start in (0..n).step_by(chunk) {
            let mut out = String::new();
            for i in start..(start + chunk).min(n) {
                out.push_str(&msg(i));
                out.push('\n');
            }
            if wr.write_all(out.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Keep the write side open: closing it would end the connection early.
        std::future::pending::<()>().await;
    });
    (answers, reader)
}

/// Every message the sender got an ACK for is in `stored`; answer `i` belongs to message `i`.
fn check_answers(answers: &[u8], stored: &[Vec<u8>]) {
    let stored: HashSet<&[u8]> = stored.iter().map(Vec::as_slice).collect();
    for (i, a) in answers.iter().enumerate() {
        let here = stored.contains(msg(i).as_bytes());
        match *a {
            ACK => assert!(here, "message {i} was acknowledged but is not durable"),
            NAK => assert!(!here, "answer {i} is a NAK but message {i} was stored: out of order"),
            other => panic!("unexpected answer byte {other:#x} at {i}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_edit_and_shutdown_with_slow_fsyncs_acknowledge_only_durable_messages() {
    for how in ["stop", "edit", "shutdown"] {
        let fs = SimFs::new();
        let h = Harness::with_fs(&fs).await;
        let ip = ports::loopback();
        let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
        let spec = h.add(&byte_ack_pair("p", &ip, src, dst, "")).await;
        // Every fdatasync takes 400 ms: batches wait for their commit when the pair stops.
        fs.set_faults(Faults { sync_delay: Some(Duration::from_millis(400)), ..Faults::default() });
        let (answers, _reader) = pipelining_sender((&ip, src), 400, 10).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        match how {
            "stop" => h.engine.stop_pair("p").await.expect("stop"),
            "edit" => {
                let mut edited = spec.clone();
                edited.name = "renamed".into();
                h.engine.update(edited).await.expect("edit");
            }
            _ => h.engine.shutdown().await,
        }
        // Power cut right after the pair stopped: only what was synced survives.
        let after = fs.power_cut(TornWrites::Garbage, 7);
        let answers = answers.lock().expect("lock").clone();
        let stored = payloads_on(&after, &h.log_dir("p"));
        assert!(answers.contains(&ACK), "{how}: nothing was acknowledged at all");
        check_answers(&answers, &stored);
        let received = h.snap("p").received;
        assert!(
            received <= stored.len() as u64,
            "{how}: {received} counted as received, {} durable",
            stored.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naks_never_overtake_acks_when_the_buffer_fills() {
    let fs = SimFs::new();
    let h = Harness::with_fs(&fs).await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    // A 1 MiB buffer fills after about 16,000 of these messages.
    h.add(&byte_ack_pair("p", &ip, src, dst, r#""max_storage_mb": 1,"#)).await;
    fs.set_faults(Faults { sync_delay: Some(Duration::from_millis(100)), ..Faults::default() });
    let n = 20_000;
    let (answers, _reader) = pipelining_sender((&ip, src), n, 500).await;
    wait::until_async(60, "every message answered", || answers.lock().expect("lock").len() >= n)
        .await;
    let answers = answers.lock().expect("lock").clone();
    assert!(answers.contains(&NAK), "the buffer never filled");
    h.engine.shutdown().await;
    let after = fs.power_cut(TornWrites::LoseAll, 3);
    check_answers(&answers, &payloads_on(&after, &h.log_dir("p")));
}

/// CPU time this process has used (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // Linux reports clock ticks of 1/100 s (USER_HZ) on every architecture we run on.
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_destination_that_cannot_read_its_buffer_backs_off_and_stops_when_asked() {
    let fs = SimFs::new();
    let h = Harness::with_fs(&fs).await;
    let ip = ports::loopback();
    let (src, dst) = (ports::udp_on(&ip), ports::udp_on(&ip));
    h.add(&format!(
        r#"{{"id": "u", "retry": {{"initial_ms": 100, "max_ms": 400}},
            "source": {{"type": "udp", "host": "{ip}", "port": {src}}},
            "destination": {{"type": "udp", "host": "{ip}", "port": {dst}}}}}"#
    ))
    .await;
    h.wait_for("u", 10, "the source to listen", |s| s.source.color == iobp_engine::Color::Green)
        .await;
    // Reading the buffer fails from now on (a sick disk); datagrams are still stored.
    fs.set_faults(Faults { fail_reads: true, ..Faults::default() });
    let sender = std::net::UdpSocket::bind((ip.as_str(), 0)).expect("bind");
    for i in 0..10 {
        sender.send_to(format!("d{i}").as_bytes(), (ip.as_str(), src)).expect("send");
    }
    h.wait_for("u", 10, "the read error", |s| s.errors > 0 && s.received > 0).await;
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_time().saturating_sub(before);
    assert!(used < Duration::from_millis(300), "{used:?} of CPU in 1 s: the destination spins");
    // The disk recovers: every datagram is delivered; a read error never loses a message.
    let receiver = std::net::UdpSocket::bind((ip.as_str(), dst)).expect("bind receiver");
    receiver.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    fs.set_faults(Faults::default());
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 10 {
        let n = receiver
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}: got {got:?}; {:#?}", h.snap("u")));
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got, (0..10).map(|i| format!("d{i}")).collect::<Vec<_>>());
    assert_eq!(h.snap("u").rejected, 0);
    // Sick again: the pair still stops at once.
    fs.set_faults(Faults { fail_reads: true, ..Faults::default() });
    let errors = h.snap("u").errors;
    sender.send_to(b"d10", (ip.as_str(), src)).expect("send");
    h.wait_for("u", 10, "d10 stored and its read failing", |s| {
        s.received == 11 && s.errors > errors
    })
    .await;
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(3), h.engine.stop_pair("u"))
        .await
        .expect("the pair stops promptly")
        .expect("stop");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Sends `msgs` as lines over a new connection and returns the answer bytes (one per message
/// when all are answered; fewer if the connection ended first).
async fn send_and_collect(addr: (&str, u16), msgs: &[String], wait: Duration) -> Vec<u8> {
    let mut s = connect(addr).await;
    let mut out = String::new();
    for m in msgs {
        out.push_str(m);
        out.push('\n');
    }
    if s.write_all(out.as_bytes()).await.is_err() {
        return Vec::new();
    }
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while answers.len() < msgs.len() {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(k)) if k > 0 => answers.extend_from_slice(&buf[..k]),
            _ => break,
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_and_fsync_errors_heal_the_pair_without_a_restart() {
    for (what, faults) in [
        ("fdatasync", Faults { fail_sync_after: Some(0), ..Faults::default() }),
        ("write", Faults { fail_write_after: Some(0), ..Faults::default() }),
    ] {
        let fs = SimFs::new();
        let h = Harness::with_fs(&fs).await;
        let ip = ports::loopback();
        let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
        let got = AsyncReceiver::start((ip.as_str(), dst));
        h.add(&byte_ack_pair("p", &ip, src, dst, "")).await;
        let batch = |from: usize| (from..from + 100).map(msg).collect::<Vec<_>>();
        let first = send_and_collect((&ip, src), &batch(0), Duration::from_secs(10)).await;
        assert_eq!(first, vec![ACK; 100], "{what}: before the fault");
        // The disk fails: appends fail, the pair is Red while the buffer cannot be reopened.
        fs.set_faults(faults.clone());
        let during = send_and_collect((&ip, src), &batch(100), Duration::from_secs(3)).await;
        assert!(!during.contains(&ACK), "{what}: nothing acknowledged while the disk fails");
        h.wait_for("p", 10, "Red while failed", |s| {
            s.channel == iobp_engine::Color::Red && s.buffer_failure.is_some()
        })
        .await;
        if what == "fdatasync" {
            // Reopening syncs the tail: while fdatasync keeps failing, nothing is trusted.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert_eq!(h.snap("p").buffer_heals, 0, "{what}: a sick disk is not trusted");
        }
        // The disk recovers: the pair heals by itself (no restart of the process).
        fs.set_faults(Faults::default());
        h.wait_for("p", 20, "healed", |s| s.buffer_heals >= 1 && s.buffer_failure.is_none()).await;
        let after = send_and_collect((&ip, src), &batch(200), Duration::from_secs(10)).await;
        assert_eq!(after, vec![ACK; 100], "{what}: accepting again");
        // Every acknowledged message is delivered, in order of first arrival.
        let lines = got.wait_lines(200, 20).await;
        let mut seen = HashSet::new();
        let firsts: Vec<&String> = lines.iter().filter(|l| seen.insert(l.as_str())).collect();
        let acked: Vec<String> = (0..100).chain(200..300).map(msg).collect();
        let delivered: Vec<String> =
            firsts.iter().filter(|l| acked.contains(l)).map(|l| (*l).clone()).collect();
        assert_eq!(delivered, acked, "{what}: every acknowledged message, in order");
        h.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_senders_back_and_the_pair_recovers_by_itself() {
    // A 2 MiB disk under a pair whose max_storage_mb (1000) would allow far more; 5x the
    // disk's size is offered while the destination is down.
    let fs = SimFs::new();
    fs.set_faults(Faults { capacity_bytes: Some(2 << 20), ..Faults::default() });
    let h = Harness::with_fs(&fs).await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&line_pair("p", (&ip, src), (&ip, dst))).await;
    let n = 10_000usize;
    let line = |i: usize| format!("{i:07}-{}", "d".repeat(992));
    let sender = {
        let ip = ip.clone();
        tokio::spawn(async move {
            send_lines((&ip, src), (0..n).map(line)).await;
        })
    };
    h.wait_for("p", 30, "the disk full alarm", |s| {
        s.storage_alarm.as_ref().is_some_and(|a| a.contains("disk"))
            && s.buffer == iobp_engine::Color::Red
    })
    .await;
    let s = h.snap("p");
    assert!(s.buffer_failure.is_none(), "a full disk does not fail the buffer: {s:#?}");
    assert!(s.received < n as u64 / 2, "{s:#?}");
    assert_eq!(s.refused, 0, "a TCP sender is held back, not refused");
    // The destination comes: delivery frees space, the sender is let through, nothing lost.
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let lines = got.wait_lines(n, 120).await;
    let expected: Vec<String> = (0..n).map(line).collect();
    let mut seen = HashSet::new();
    let firsts: Vec<String> = lines.into_iter().filter(|l| seen.insert(l.clone())).collect();
    assert_eq!(firsts, expected, "every message, in order");
    sender.await.expect("sender done");
    h.wait_for("p", 10, "the alarm clears", |s| s.storage_alarm.is_none() && s.pending == 0).await;
    assert_eq!(h.snap("p").received, n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_held_for_room_are_counted_when_the_pair_stops() {
    // A full buffer holds a sender without acknowledgements back: the frames already read
    // wait for room. When the pair stops meanwhile they were never stored: counted as refused
    // and reported, never dropped silently.
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let spec = line_pair("held", (&ip, src), (&ip, dst)).replacen(
        r#""retry""#,
        r#""max_storage_mb": 1, "retry""#,
        1,
    );
    h.add(&spec).await;
    let lines = (0..30_000).map(|i| format!("{i:07} {}", "h".repeat(90)));
    let ip2 = ip.clone();
    let sender = tokio::spawn(async move { send_lines((&ip2, src), lines).await });
    h.wait_for("held", 20, "the buffer full", |s| s.storage_alarm.is_some()).await;
    // The source has read frames it cannot store yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.snap("held").refused, 0, "held, not refused, while the pair runs");
    h.engine.stop_pair("held").await.expect("stop");
    let s = h.snap("held");
    assert!(s.refused > 0, "held frames vanished uncounted: {s:#?}");
    assert!(
        s.last_error.as_ref().is_some_and(|e| e.2.contains("held while the buffer was full")),
        "{s:#?}"
    );
    sender.abort();
}
