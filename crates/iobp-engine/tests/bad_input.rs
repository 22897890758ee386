//! Bad input has a defined behaviour — never a panic, never unbounded memory, never silent
//! loss: oversize frames, malformed MLLP, binary garbage, idle and half-open connections, a
//! thousand connections, a receiver that never reads, a port already in use.

mod common;

use std::time::Duration;

use common::*;
use iobp_engine::Color;
use iobp_testkit::ports;
use iobp_testkit::receiver::{AsyncReceiver, Receiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_is_rejected_counted_and_the_stream_resyncs() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "o", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line", "max_message_bytes": 100}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    let huge = "H".repeat(5000);
    s.write_all(format!("before\n{huge}\nafter\n").as_bytes()).await.expect("send");
    assert_eq!(got.wait_lines(2, 10).await, vec!["before", "after"]);
    let snap = h.snap("o");
    assert_eq!(snap.rejected, 1);
    let r = &h.engine.rejections("o").expect("rejections")[0];
    assert!(r.reason.contains("oversize"), "{r:?}");
    assert_eq!(r.len, 5001, "the whole frame with its delimiter is accounted for");
    assert!(r.preview.starts_with("48 48 48"), "hex preview: {}", r.preview);
    // The connection stays usable.
    s.write_all(b"still\n").await.expect("send");
    assert_eq!(got.wait_lines(3, 10).await[2], "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mllp_is_reported_and_valid_frames_still_pass() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "mal", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "mllp"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    // garbage outside a frame; a frame started again before it ended; a good frame.
    s.write_all(b"junk\x0bMSH|one\x1c\x0dnoise\x0bMSH|cut\x0bMSH|two\x1c\x0d").await.expect("send");
    assert_eq!(got.wait_lines(2, 10).await, vec!["MSH|one", "MSH|two"]);
    h.wait_for("mal", 5, "three rejections", |s| s.rejected == 3).await;
    let reasons: Vec<String> =
        h.engine.rejections("mal").expect("rejections").into_iter().map(|r| r.reason).collect();
    assert!(reasons.iter().filter(|r| r.contains("outside a frame")).count() == 2, "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("started again")), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_garbage_in_a_line_protocol_passes_through_byte_exact() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&line_pair("bin", (&ip, src), (&ip, dst))).await;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let garbage: Vec<u8> = (0..50_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let mut s = connect((&ip, src)).await;
    s.write_all(&garbage).await.expect("send");
    s.write_all(b"\n").await.expect("send");
    s.shutdown().await.expect("close");
    let n_lines = garbage.split(|&b| b == b'\n').count();
    h.wait_for("bin", 10, "all lines", |s| s.sent == n_lines as u64).await;
    let mut expect = garbage.clone();
    expect.push(b'\n');
    assert_eq!(got.bytes(), expect, "every byte arrives, in order, unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed_and_its_partial_frame_reported() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "idle", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}, "idle_timeout_s": 1}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    // A half-open style sender: one complete line, then a partial one, then silence.
    let mut s = connect((&ip, src)).await;
    s.write_all(b"complete\npartial without end").await.expect("send");
    assert_eq!(got.wait_lines(1, 10).await, vec!["complete"]);
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server closed the idle connection");
    h.wait_for("idle", 5, "partial frame reported", |s| {
        s.rejected == 1 && s.source.connections == 0
    })
    .await;
    let r = &h.engine.rejections("idle").expect("rejections")[0];
    assert!(r.reason.contains("idle"), "{r:?}");
    assert_eq!(r.len, "partial without end".len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_simultaneous_connections() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "many", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}, "max_connections": 1000}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    let mut conns = Vec::new();
    for _ in 0..1000 {
        conns.push(connect((&ip, src)).await);
    }
    h.wait_for("many", 20, "all connected", |s| s.source.connections == 1000).await;
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(format!("from {i}\n").as_bytes()).await.expect("send");
    }
    let mut lines = got.wait_lines(1000, 30).await;
    lines.sort();
    let mut want: Vec<String> = (0..1000).map(|i| format!("from {i}")).collect();
    want.sort();
    assert_eq!(lines, want);
    drop(conns);
    h.wait_for("many", 20, "all gone", |s| s.source.connections == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_and_counted() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&format!(
        r#"{{"id": "lim", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "max_connections": 5}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}}}}}"#
    ))
    .await;
    let mut kept = Vec::new();
    for _ in 0..5 {
        kept.push(connect((&ip, src)).await);
    }
    h.wait_for("lim", 10, "five connected", |s| s.source.connections == 5).await;
    for _ in 0..3 {
        let mut extra = connect((&ip, src)).await;
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut b))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "over-limit connection closed at once");
    }
    let s = h.snap("lim");
    assert_eq!((s.connections_refused, s.source.connections), (3, 5));
}

/// Accepts connections but never reads from them; returns the task holding them.
async fn stuck_receiver(ip: &str, port: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind((ip, port)).await.expect("bind");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((c, _)) = listener.accept().await {
            held.push(c);
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_reads_is_detected_without_ack() {
    // `ack: none` means Done once written to the connection: what the stuck receiver's
    // kernel accepted is gone with it (only an ack mode can know better, see the next test).
    // Defined behaviour: the stuck receiver is detected, nothing the buffer still holds is
    // lost, and delivery resumes with a contiguous tail.
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let stuck = stuck_receiver(&ip, dst).await;
    h.add(&format!(
        r#"{{"id": "stuck", "retry": {{"initial_ms": 100, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}, "write_timeout_ms": 500}}}}"#
    ))
    .await;
    let line = "z".repeat(999);
    send_lines((&ip, src), (0..30_000).map(|i| format!("{i:06}{line}"))).await;
    h.wait_for("stuck", 20, "stuck receiver detected", |s| {
        s.received == 30_000
            && s.last_error.as_ref().is_some_and(|e| e.2.contains("did not take data"))
    })
    .await;
    let done_before = h.snap("stuck").sent;
    assert!(done_before < 30_000, "the stuck receiver did not take everything");
    stuck.abort();
    let _ = stuck.await;
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.wait_for("stuck", 30, "all delivered", |s| s.pending == 0 && s.in_flight == 0).await;
    // Written is not yet read: wait for the last line to reach the receiver.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !got.lines().last().is_some_and(|l| l.starts_with("029999")) {
        assert!(std::time::Instant::now() < deadline, "the last message never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nums: Vec<u32> = got.lines().iter().map(|l| l[..6].parse().expect("num")).collect();
    let first = u64::from(nums[0]);
    assert!(first <= done_before, "resumes no later than the first message not taken");
    let want: Vec<u32> = (nums[0]..30_000).collect();
    assert_eq!(nums, want, "a contiguous, ordered tail without holes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_reads_loses_nothing_with_acks() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let stuck = stuck_receiver(&ip, dst).await;
    h.add(&format!(
        r#"{{"id": "acked", "retry": {{"initial_ms": 50, "max_ms": 100}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}, "ack": {{"type": "byte", "timeout_ms": 200}}}}}}"#
    ))
    .await;
    send_lines((&ip, src), (0..50).map(|i| format!("m{i:03}"))).await;
    h.wait_for("acked", 10, "timeouts seen", |s| s.received == 50 && s.errors >= 2).await;
    assert_eq!(h.snap("acked").sent, 0, "nothing is Done without an acknowledgement");
    stuck.abort();
    let _ = stuck.await;
    // A receiver that acknowledges every line.
    let got = Receiver::on((ip.as_str(), dst)).acking().start_async();
    assert_eq!(
        got.wait_lines(50, 20).await,
        (0..50).map(|i| format!("m{i:03}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_turns_the_side_red_until_it_is_free() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let squatter = std::net::TcpListener::bind((ip.as_str(), src)).expect("squat");
    h.add(&format!(
        r#"{{"id": "busy", "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}}}}}"#
    ))
    .await;
    h.wait_for("busy", 10, "red with the reason", |s| {
        s.source.color == Color::Red && s.source.detail.contains("in use")
    })
    .await;
    drop(squatter);
    h.wait_for("busy", 10, "bound once free", |s| s.source.color == Color::Green).await;
}
