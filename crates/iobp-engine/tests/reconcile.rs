//! A pair's accounting (`Engine::reconciliation`) through every path that stores a message
//! or settles one: delivery, refusals and retries, the dead-letter policy (park, re-send,
//! discard), re-sending a delivered message, undeliverable messages, replays into the same
//! and another pair, a full buffer refusing, a restart with a backlog, a buffer healed after
//! write and fsync faults, and a reading under traffic. At the end of each, every identity
//! holds exactly and each term is what the test sent.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use iobp_codec::{Decoded, Deframer, Encoder, Framing};
use iobp_engine::ReplaySelection;
use iobp_log::sim::{Faults, SimFs};
use iobp_testkit::receiver::AsyncReceiver;
use iobp_testkit::{ports, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hl7(n: u32, poison: bool) -> Vec<u8> {
    common::hl7_message(n, poison)
}

/// An MLLP receiver answering `AE` to `POISON` messages while `refusing`, and `AE` once to
/// the first attempt of every fifth message (retries must not count twice); `AA` otherwise.
async fn hl7_receiver(ip: &str, port: u16, refusing: Arc<AtomicBool>) -> Arc<Mutex<Vec<String>>> {
    let refused_once: Mutex<std::collections::HashSet<String>> = Mutex::default();
    common::hl7_receiver(ip, port, move |id, f| {
        let poison = f.windows(6).any(|w| w == b"POISON");
        let fifth = id.parse::<u32>().is_ok_and(|n| n % 5 == 0);
        if (poison && refusing.load(Ordering::SeqCst))
            || (fifth && refused_once.lock().expect("lock").insert(id.to_string()))
        {
            Hl7Answer::Refuse("not now")
        } else {
            Hl7Answer::Accept
        }
    })
    .await
}

async fn send_mllp(ip: &str, port: u16, messages: &[Vec<u8>]) {
    let mut s = connect((ip, port)).await;
    let mut out = Vec::new();
    let enc = Encoder::new(Framing::mllp());
    for m in messages {
        enc.encode(m, &mut out).expect("encode");
    }
    s.write_all(&out).await.expect("send");
    // Kept open until everything is stored: the source answers each message with an ACK.
    let mut answers = Vec::new();
    let mut d = Deframer::new(Framing::mllp(), 1 << 20);
    let mut buf = BytesMut::new();
    while answers.len() < messages.len() {
        let n = tokio::time::timeout(Duration::from_secs(20), s.read_buf(&mut buf))
            .await
            .expect("answers in time")
            .expect("read");
        assert!(n > 0, "the source closed before answering everything");
        while let Some(Decoded::Frame(f)) = d.decode(&mut buf) {
            answers.push(f);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_retries_parking_resends_and_a_discard_add_up() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let refusing = Arc::new(AtomicBool::new(true));
    let got = hl7_receiver(&ip, dst, refusing.clone()).await;
    h.add(&format!(
        r#"{{"id": "lab", "retry": {{"initial_ms": 20, "max_ms": 50}},
            "dead_letter": {{"after_rejections": 2}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "mllp"}}, "ack": "mllp"}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "mllp"}}, "ack": "mllp"}}}}"#
    ))
    .await;
    let messages: Vec<Vec<u8>> = (1..=20).map(|n| hl7(n, n == 7 || n == 9)).collect();
    send_mllp(&ip, src, &messages).await;
    wait::until_async(20, "18 delivered", || got.lock().expect("lock").len() >= 18).await;
    let r = reconciled(&h.engine, "lab").await;
    assert_eq!((r.received, r.delivered, r.parked, r.parked_now), (20, 18, 2, 2), "{r:#?}");
    assert_eq!((r.pending, r.in_flight, r.done, r.stored), (0, 0, 20, 20), "{r:#?}");
    assert!(h.snap("lab").retries >= 4, "refused first attempts were retried");

    // One parked message re-sent once the receiver takes it, the other discarded; a
    // delivered one re-sent from the browser.
    refusing.store(false, Ordering::SeqCst);
    let parked = h.engine.parked("lab").await.expect("parked");
    assert_eq!(parked.len(), 2);
    h.engine.resend_parked("lab", parked[0].id).await.expect("re-send parked");
    h.engine.discard_parked("lab", parked[1].id).await.expect("discard");
    h.engine.resend("lab", 1).await.expect("re-send a delivered message");
    wait::until_async(20, "20 delivered", || got.lock().expect("lock").len() >= 20).await;
    let r = reconciled(&h.engine, "lab").await;
    assert_eq!((r.received, r.delivered, r.parked, r.parked_now), (22, 20, 2, 0), "{r:#?}");
    assert_eq!((r.stored, r.done, r.pending, r.refused), (22, 22, 0, 0), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_messages_and_replays_into_the_same_and_another_pair_add_up() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst, src_b, dst_b) =
        (ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    // MLLP in, lines out: a message holding a line feed cannot be carried.
    h.add(&format!(
        r#"{{"id": "a", "retry": {{"initial_ms": 20, "max_ms": 50}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "mllp"}}, "ack": "mllp"}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    // Nobody listens behind `b`: what is replayed into it stays pending.
    h.add(&line_pair("b", (&ip, src_b), (&ip, dst_b))).await;
    let messages: Vec<Vec<u8>> = (1..=10u32)
        .map(|n| {
            let mut m = hl7(n, false);
            if n == 3 || n == 6 {
                m.extend_from_slice(b"NTE|1||two\nlines\r");
            }
            m
        })
        .collect();
    send_mllp(&ip, src, &messages).await;
    let r = reconciled(&h.engine, "a").await;
    assert_eq!((r.received, r.delivered, r.undeliverable), (10, 8, 2), "{r:#?}");
    assert_eq!(got.line_count(), 8, "the other eight delivered");

    let all = ReplaySelection::default();
    let o = h.engine.replay("a", all.clone(), None).await.expect("replay into itself");
    assert_eq!(o.replayed, 10);
    // Everything `a` holds now: the originals and their copies.
    let o = h.engine.replay("a", all, Some("b")).await.expect("replay into b");
    assert_eq!(o.replayed, 20);
    let r = reconciled(&h.engine, "a").await;
    assert_eq!((r.received, r.delivered, r.undeliverable, r.stored), (20, 16, 4, 20), "{r:#?}");
    let b = reconciled(&h.engine, "b").await;
    assert_eq!((b.received, b.pending, b.delivered, b.backlog_at_start), (20, 20, 0, 0), "{b:#?}");
}

const ACK: u8 = 0x06;
const NAK: u8 = 0x15;

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

/// Sends `lines` over one connection and returns one answer byte per line.
async fn send_and_collect(addr: (&str, u16), lines: &[String], limit: Duration) -> Vec<u8> {
    let mut s = connect(addr).await;
    let mut out = String::new();
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    s.write_all(out.as_bytes()).await.expect("send");
    let mut answers = Vec::new();
    let mut buf = [0u8; 4096];
    while answers.len() < lines.len() {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answers.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_refuses_beside_the_sum_and_a_restart_takes_the_backlog_over() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&byte_ack_pair("p", &ip, src, dst, r#""max_storage_mb": 1,"#)).await;
    let lines: Vec<String> = (0..20_000).map(|i| format!("{i:06}-{}", "x".repeat(60))).collect();
    let answers = send_and_collect((&ip, src), &lines, Duration::from_secs(10)).await;
    let count = |b: u8| answers.iter().fold(0u64, |n, a| n + u64::from(*a == b));
    let (acked, naked) = (count(ACK), count(NAK));
    assert!(naked > 0, "the buffer never filled");
    let r = reconciled(&h.engine, "p").await;
    assert_eq!((r.received, r.stored, r.pending), (acked, acked, acked), "{r:#?}");
    assert!(r.refused >= naked, "refused messages are counted beside the sum: {r:#?}");

    // A new process: its counters start at 0 and the buffer it finds is its backlog.
    let h = h.restart().await;
    let r = reconciled(&h.engine, "p").await;
    assert_eq!((r.received, r.backlog_at_start, r.pending), (0, acked, acked), "{r:#?}");
    let got = AsyncReceiver::start((ip.as_str(), dst));
    got.wait_lines(usize::try_from(acked).expect("count"), 30).await;
    let r = reconciled(&h.engine, "p").await;
    assert_eq!((r.delivered, r.pending, r.done), (acked, 0, acked), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_healed_after_write_and_fsync_faults_keeps_the_books() {
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
        let batch =
            |from: usize| (from..from + 100).map(|i| format!("m{i:05}")).collect::<Vec<_>>();
        let first = send_and_collect((&ip, src), &batch(0), Duration::from_secs(10)).await;
        assert_eq!(first, vec![ACK; 100], "{what}: before the fault");
        got.wait_lines(100, 20).await;
        fs.set_faults(faults.clone());
        let during = send_and_collect((&ip, src), &batch(100), Duration::from_secs(3)).await;
        assert!(!during.contains(&ACK), "{what}: nothing acknowledged while the disk fails");
        h.wait_for("p", 10, "failed", |s| s.buffer_failure.is_some()).await;
        fs.set_faults(Faults::default());
        h.wait_for("p", 20, "healed", |s| s.buffer_heals >= 1 && s.buffer_failure.is_none()).await;
        let after = send_and_collect((&ip, src), &batch(200), Duration::from_secs(10)).await;
        assert_eq!(after, vec![ACK; 100], "{what}: accepting again");
        got.wait_lines(200, 20).await;
        let r = reconciled(&h.engine, "p").await;
        assert_eq!(
            (r.received, r.stored, r.pending, r.in_flight),
            (200, 200, 0, 0),
            "{what}: {r:#?}"
        );
        assert_eq!(
            r.delivered,
            200 + u64::try_from(r.returned_by_heal).expect("≥ 0"),
            "{what}: {r:#?}"
        );
        h.engine.shutdown().await;
    }
}

/// Polled while messages flow, the accounting never reports a discrepancy (a reading taken
/// between a commit and its count is not settled), and it is exactly 0 once they stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_traffic_no_false_alarm_and_exact_at_the_end() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&line_pair("p", (&ip, src), (&ip, dst))).await;
    let n = 30_000usize;
    let sender = {
        let ip = ip.clone();
        tokio::spawn(async move {
            for chunk in 0..30 {
                send_lines(
                    (&ip, src),
                    (chunk * 1000..(chunk + 1) * 1000).map(|i| format!("{i:06}")),
                )
                .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut readings = 0;
    while !sender.is_finished() || got.line_count() < n {
        let r = h.engine.reconciliation("p").expect("pair");
        assert_eq!(r.discrepancy, 0, "a false alarm under traffic: {r:#?}");
        readings += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(readings < 100_000, "traffic never ended");
    }
    let r = reconciled(&h.engine, "p").await;
    assert_eq!((r.received, r.delivered, r.pending), (n as u64, n as u64, 0), "{r:#?}");
}

/// A pair stopped while its fsyncs take longer than the source waits for them (3 s): the
/// waiting messages are answered with a NAK, and their commit still completes afterwards.
/// They are in the buffer and will be delivered, so they are counted as received then
/// (before, they were stored and counted nowhere). A stream source and a UDP source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_durable_only_after_the_source_gave_up_on_them_are_counted_once_stored() {
    stream_source_gave_up().await;
    udp_source_gave_up().await;
}

async fn udp_source_gave_up() {
    let fs = SimFs::new();
    let h = Harness::with_fs(&fs).await;
    let ip = ports::loopback();
    let (src, dst) = (ports::udp_on(&ip), ports::tcp_on(&ip));
    h.add(&format!(
        r#"{{"id": "u",
            "source": {{"type": "udp", "host": "{ip}", "port": {src}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    h.wait_for("u", 10, "listening", |s| s.source.color == iobp_engine::Color::Green).await;
    fs.set_faults(Faults { sync_delay: Some(Duration::from_millis(4500)), ..Faults::default() });
    let sock = std::net::UdpSocket::bind((ip.as_str(), 0)).expect("bind");
    for i in 0..10 {
        sock.send_to(format!("datagram-{i}").as_bytes(), (ip.as_str(), src)).expect("send");
    }
    // The datagrams arrive and wait for their (slow) commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.engine.stop_pair("u").await.expect("stop");
    // The first commit outlives the wind-down. Datagrams the source had not read yet (it
    // stops reading while its window of batches waits for their commits) went with the
    // socket: UDP.
    wait::until_async(20, "the slow commit completed", || {
        h.engine.reconciliation("u").expect("pair").stored >= 1
    })
    .await;
    fs.set_faults(Faults::default());
    let r = reconciled(&h.engine, "u").await;
    assert!(r.stored >= 1 && r.received == r.stored && r.pending == r.stored, "{r:#?}");
    assert!(r.refused >= 1, "the sender's datagrams were counted refused at the stop: {r:#?}");
}

async fn stream_source_gave_up() {
    let fs = SimFs::new();
    let h = Harness::with_fs(&fs).await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&byte_ack_pair("p", &ip, src, dst, "")).await;
    fs.set_faults(Faults { sync_delay: Some(Duration::from_millis(4500)), ..Faults::default() });
    let mut s = connect((&ip, src)).await;
    let lines = (0..20).map(|i| format!("slow-{i:03}")).collect::<Vec<_>>().join("\n") + "\n";
    s.write_all(lines.as_bytes()).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.engine.stop_pair("p").await.expect("stop");
    let mut answers = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut answers)).await;
    assert!(!answers.contains(&ACK), "nothing was durable within the wind-down: {answers:?}");
    wait::until_async(20, "the slow commit completed", || {
        h.engine.reconciliation("p").expect("pair").stored == 20
    })
    .await;
    fs.set_faults(Faults::default());
    let r = reconciled(&h.engine, "p").await;
    assert_eq!((r.received, r.stored, r.pending), (20, 20, 20), "{r:#?}");
    assert_eq!(r.refused, 20, "the sender was told they were not stored: {r:#?}");
}
