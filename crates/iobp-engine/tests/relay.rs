//! The relay protocol between two engines over in-memory connections that the test cuts at
//! will: exactly once and in order across reconnects, a full receiver holding the sender
//! back, and peers that break the protocol. (Real instances over HTTP, with `kill -9`, are in
//! the binary's tests.)

mod common;

use std::time::{Duration, Instant};

use common::{Harness, send_lines};
use iobp_engine::{Color, HandOverError, RelayMode};
use iobp_testkit::receiver::AsyncReceiver;
use iobp_testkit::{ports, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A link between an engine's relay side and the test: bytes pass through a task the test can
/// abort, which cuts the connection on both sides at once.
struct Link {
    task: tokio::task::JoinHandle<()>,
}

/// Hands a connection over as the web layer does. Sessions of a link just cut end when they
/// notice (at once, or a moment later on a loaded machine): until then the channel may be
/// at its session limit, and a remote instance would retry after a backoff — so does this
/// (asking for room first, as the web layer does before it upgrades).
async fn hand_over(
    h: &Harness,
    channel: &str,
    mode: RelayMode,
    io: Box<dyn iobp_engine::RelayIo>,
    peer: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(HandOverError::Busy { .. }) = h.engine.relay_room(channel, mode) {
        assert!(Instant::now() < deadline, "{channel}: the cut sessions never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(e) = h.engine.relay_hand_over(channel, mode, io, peer.into()) {
        panic!("{channel} {}: {e}", mode.as_str());
    }
}

impl Link {
    /// Connects the pull-serving side `channel` of `a` to the push-accepting side `channel`
    /// of `b`.
    async fn connect(a: &Harness, b: &Harness, channel: &str) -> Link {
        let (a_io, mut a_far) = tokio::io::duplex(256 * 1024);
        let (b_io, mut b_far) = tokio::io::duplex(256 * 1024);
        hand_over(a, channel, RelayMode::Pull, Box::new(a_io), "test-b").await;
        hand_over(b, channel, RelayMode::Push, Box::new(b_io), "test-a").await;
        let task = tokio::spawn(async move {
            let _ = tokio::io::copy_bidirectional(&mut a_far, &mut b_far).await;
        });
        Link { task }
    }

    fn cut(self) {
        self.task.abort();
    }
}

fn pair_a(src: (&str, u16), channel: &str) -> String {
    format!(
        r#"{{"id": "out", "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{}", "port": {}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "remote_icombuffer", "channel_id": "{channel}"}}}}"#,
        src.0, src.1
    )
}

fn pair_b(dst: (&str, u16), channel: &str, limit: &str) -> String {
    format!(
        r#"{{"id": "in", "retry": {{"initial_ms": 50, "max_ms": 200}}{limit},
            "source": {{"type": "remote_icombuffer", "channel_id": "{channel}"}},
            "destination": {{"type": "tcp_client", "host": "{}", "port": {}, "framing": {{"type": "line"}}}}}}"#,
        dst.0, dst.1
    )
}

/// Every line at `got` once pair `in` of `b` delivered everything it holds (at least `n`) and
/// `got` has every line the pair wrote: nothing more can arrive then, so exactly once can be
/// checked without waiting a while for duplicates that might come.
async fn all_delivered(b: &Harness, got: &AsyncReceiver, n: usize) -> Vec<String> {
    b.wait_for("in", 60, "everything delivered", |s| {
        s.pending + s.in_flight == 0 && s.sent >= n as u64
    })
    .await;
    let written = usize::try_from(b.snap("in").sent).expect("a count");
    got.wait_lines(written, 30).await
}

fn check_exactly_once(lines: &[String], n: usize) {
    assert_eq!(lines.len(), n, "every message once, nothing more");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{i:07} ")), "line {i}: {l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_and_in_order_across_cut_connections() {
    const N: usize = 50_000;
    let (a, b) = (Harness::new().await, Harness::new().await);
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    a.add(&pair_a((&ip, src), "link")).await;
    b.add(&pair_b((&ip, dst), "link", "")).await;
    b.wait_for("in", 10, "waiting for pushes", |s| s.source.color == Color::Green).await;
    let ip2 = ip.clone();
    let sender = tokio::spawn(async move {
        send_lines((&ip2, src), (0..N).map(|i| format!("{i:07} {}", "r".repeat(40)))).await;
    });
    // Cut the connection again and again while messages flow.
    let mut cuts = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let link = Link::connect(&a, &b, "link").await;
        tokio::time::sleep(Duration::from_millis(40 + 13 * (cuts % 5))).await;
        if a.snap("out").done >= N as u64 && cuts >= 5 {
            break;
        }
        link.cut();
        cuts += 1;
        assert!(Instant::now() < deadline, "relay did not finish: {:?}", a.snap("out"));
        // Both sides notice before the next connection.
        wait::until_async(10, "both sides to notice the cut", || {
            a.snap("out").destination.connections == 0 && b.snap("in").source.connections == 0
        })
        .await;
    }
    sender.await.expect("sender");
    check_exactly_once(&all_delivered(&b, &got, N).await, N);
    let (sa, sb) = (a.snap("out"), b.snap("in"));
    assert_eq!((sa.received, sb.received), (N as u64, N as u64), "{sa:?}\n{sb:?}");
    assert_eq!(sa.sent, N as u64, "each record counted sent once: {sa:?}");
    assert_eq!(
        sa.pending + sa.in_flight,
        0,
        "everything Done at the sender only once it is at the receiver"
    );
    assert!(cuts >= 5);
    // Each side's books add up: resends counted once at the sender, duplicates never stored
    // (nor counted) at the receiver.
    let ra = common::reconciled(&a.engine, "out").await;
    let rb = common::reconciled(&b.engine, "in").await;
    assert_eq!((ra.received, ra.delivered), (N as u64, N as u64), "{ra:#?}");
    assert_eq!((rb.received, rb.stored), (N as u64, N as u64), "{rb:#?}");
    eprintln!(
        "{cuts} cuts; the sender resent {} record(s), the receiver dropped {} duplicate(s)",
        sa.retries, sb.duplicates_dropped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_receiver_makes_the_sender_wait_and_loses_nothing() {
    const N: usize = 30_000;
    let (a, b) = (Harness::new().await, Harness::new().await);
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    a.add(&pair_a((&ip, src), "full")).await;
    // 1 MiB at the receiver, and its destination is down: it fills up.
    b.add(&pair_b((&ip, dst), "full", r#", "max_storage_mb": 1"#)).await;
    b.wait_for("in", 10, "waiting for pushes", |s| s.source.color == Color::Green).await;
    send_lines((&ip, src), (0..N).map(|i| format!("{i:07} {}", "f".repeat(90)))).await;
    a.wait_for("out", 10, "all stored at the sender", |s| s.received == N as u64).await;
    let _link = Link::connect(&a, &b, "full").await;
    b.wait_for("in", 20, "the receiver full", |s| s.buffer == Color::Red).await;
    a.wait_for("out", 20, "the sender to wait for room", |s| {
        s.last_error.as_ref().is_some_and(|e| e.2.contains("remote buffer is full"))
    })
    .await;
    eprintln!("A {:?}\nB {:?}", a.snap("out"), b.snap("in"));
    let s = a.snap("out");
    assert!(
        s.pending + s.in_flight > 0 && s.sent < N as u64,
        "the rest waits at the sender: {s:?}"
    );
    assert!(
        s.last_error.as_ref().is_some_and(|e| e.2.contains("remote buffer is full")),
        "the sender says why: {s:?}"
    );
    assert_eq!(b.snap("in").refused, 0, "nothing refused for good");
    // The receiver's destination comes: everything flows through, once, in order.
    let got = AsyncReceiver::start((ip.as_str(), dst));
    check_exactly_once(&all_delivered(&b, &got, N).await, N);
    a.wait_for("out", 20, "all Done at the sender", |s| s.sent == N as u64 && s.pending == 0).await;
    common::reconciled(&a.engine, "out").await;
    let rb = common::reconciled(&b.engine, "in").await;
    assert_eq!((rb.received, rb.refused), (N as u64, 0), "{rb:#?}");
}

/// A peer that does not speak the protocol gets an error, never a crash; the side keeps
/// taking connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_refused_cleanly() {
    let b = Harness::new().await;
    let ip = ports::loopback();
    let dst = ports::tcp_on(&ip);
    b.add(&pair_b((&ip, dst), "strict", "")).await;
    b.wait_for("in", 10, "waiting for pushes", |s| s.source.color == Color::Green).await;
    let attempt = |bytes: Vec<u8>| {
        let b = &b;
        async move {
            let (io, mut far): (DuplexStream, DuplexStream) = tokio::io::duplex(64 * 1024);
            b.engine
                .relay_hand_over("strict", RelayMode::Push, Box::new(io), "rogue".into())
                .expect("taken");
            far.write_all(&bytes).await.expect("write");
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), far.read_to_end(&mut answer)).await;
            answer
        }
    };
    // Garbage instead of Hello: an Error frame comes back, then the connection closes.
    let answer = attempt(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await;
    assert!(answer.first() == Some(&8) || answer.is_empty(), "{answer:?}");
    // A valid Hello, then a Data frame whose records go backwards: refused.
    let mut bytes = Vec::new();
    iobp_relay::encode_hello(&mut bytes, 42);
    let mut w = iobp_relay::DataWriter::begin(&mut bytes, 0, 0, 0);
    w.push(&mut bytes, 5, b"five").expect("push");
    w.finish(&mut bytes);
    let n = bytes.len();
    bytes[n - 16..n - 8].copy_from_slice(&0u64.to_le_bytes()); // pseq 0 <= prev
    let answer = attempt(bytes).await;
    let resume_len = iobp_relay::FRAME_HEADER_LEN + 8;
    assert_eq!(answer.first(), Some(&2), "Resume first: {answer:?}");
    assert_eq!(answer.get(resume_len), Some(&8), "then Error: {answer:?}");
    b.wait_for("in", 5, "errors counted", |s| s.errors >= 2).await;
    // An honest sender is still served; a frame it sends twice (its acknowledgement was
    // lost, say) is stored once and acknowledged both times.
    let mut bytes = Vec::new();
    iobp_relay::encode_hello(&mut bytes, 43);
    for _ in 0..2 {
        let mut w = iobp_relay::DataWriter::begin(&mut bytes, 0, 0, 0);
        w.push(&mut bytes, 1, b"one").expect("push");
        w.finish(&mut bytes);
    }
    let (io, mut far) = tokio::io::duplex(64 * 1024);
    b.engine
        .relay_hand_over("strict", RelayMode::Push, Box::new(io), "honest".into())
        .expect("taken");
    far.write_all(&bytes).await.expect("write");
    let ack_len = iobp_relay::FRAME_HEADER_LEN + 8;
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    while got.len() < resume_len + 2 * ack_len {
        let n = tokio::time::timeout(Duration::from_secs(5), far.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        assert!(n > 0, "closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    for i in 0..2 {
        let at = resume_len + i * ack_len;
        let (ack, _) = iobp_relay::decode(&got[at..]).expect("valid").expect("frame");
        assert_eq!(ack, iobp_relay::Frame::Ack { through: 1 }, "acknowledged once durable");
    }
    b.wait_for("in", 5, "stored once", |s| s.received == 1 && s.duplicates_dropped == 1).await;
    let query = iobp_engine::MessageQuery {
        from_seq: Some(1),
        limit: 10,
        preview_bytes: 1 << 20,
        ..iobp_engine::MessageQuery::default()
    };
    let stored = b.engine.messages("in", query).await.expect("browse").messages;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored.first().map(|m| (m.payload.as_slice(), m.origin)),
        Some((b"one".as_slice(), Some((43, 1))))
    );
}

#[test]
fn the_configuration_and_the_protocol_agree_on_the_largest_record() {
    assert_eq!(iobp_config::RELAY_MAX_RECORD_BYTES, iobp_relay::MAX_RECORD_BYTES);
}

/// A record larger than one relay record can carry, left in the buffer from before an edit
/// made the pair relay: set aside as undeliverable, reported, and the records after it flow —
/// never a pair stuck on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_to_relay_is_set_aside_not_a_stuck_pair() {
    let (a, b) = (Harness::new().await, Harness::new().await);
    let ip = ports::loopback();
    let (src, dead, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip));
    let big_source = |max: u32| {
        format!(
            r#"{{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line", "max_message_bytes": {max}}}}}"#
        )
    };
    a.add(&format!(
        r#"{{"id": "out", "retry": {{"initial_ms": 50, "max_ms": 200}}, "source": {},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dead}, "framing": {{"type": "line"}}}}}}"#,
        big_source(32 << 20)
    ))
    .await;
    let huge = "h".repeat(17 << 20);
    let lines =
        std::iter::once(format!("0000000 {huge}")).chain((1..=5).map(|i| format!("{i:07} small")));
    send_lines((&ip, src), lines).await;
    a.wait_for("out", 20, "all stored", |s| s.received == 6).await;
    // The pair now relays (its source refuses such messages from now on).
    let mut spec = a.engine.get("out").expect("spec");
    spec.source = iobp_config::parse_pair(&format!(
        r#"{{"id": "x", "source": {}, "destination": {{"type": "udp", "host": "{ip}", "port": 1}}}}"#,
        big_source(16 << 20)
    ))
    .expect("source")
    .source;
    spec.destination =
        iobp_config::parse_pair(&pair_a((&ip, src), "big")).expect("relay destination").destination;
    a.engine.update(spec).await.expect("edit");
    let got = AsyncReceiver::start((ip.as_str(), dst));
    b.add(&pair_b((&ip, dst), "big", "")).await;
    b.wait_for("in", 10, "waiting for pushes", |s| s.source.color == Color::Green).await;
    let _link = Link::connect(&a, &b, "big").await;
    let lines = got.wait_lines(5, 30).await;
    assert_eq!(lines, (1..=5).map(|i| format!("{i:07} small")).collect::<Vec<_>>());
    a.wait_for("out", 10, "everything Done", |s| s.pending + s.in_flight == 0).await;
    let s = a.snap("out");
    assert_eq!(s.rejected, 1, "the large record is reported: {s:?}");
}

/// The link is cut while the receiver's fsyncs are slower than its wind-down (5 s): the
/// records it appended still become durable afterwards and are counted as received then —
/// the count never depends on the connection that can no longer take the acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_durable_after_the_link_was_cut_are_counted_once_stored() {
    use iobp_log::sim::{Faults, SimFs};
    let fs = SimFs::new();
    let (a, b) = (Harness::new().await, Harness::with_fs(&fs).await);
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    a.add(&pair_a((&ip, src), "slow")).await;
    b.add(&pair_b((&ip, dst), "slow", "")).await;
    b.wait_for("in", 10, "waiting for pushes", |s| s.source.color == Color::Green).await;
    send_lines((&ip, src), (0..100).map(|i| format!("{i:07} slow"))).await;
    a.wait_for("out", 10, "stored at the sender", |s| s.received == 100).await;
    fs.set_faults(Faults { sync_delay: Some(Duration::from_millis(6500)), ..Faults::default() });
    let link = Link::connect(&a, &b, "slow").await;
    wait::until_async(10, "the records queued at the receiver", || {
        b.engine.reconciliation("in").expect("pair").buffer_total == 0
            && b.snap("in").source.connections == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    link.cut();
    wait::until_async(60, "the slow commit completed", || {
        b.engine.reconciliation("in").expect("pair").stored == 100
    })
    .await;
    fs.set_faults(Faults::default());
    let r = common::reconciled(&b.engine, "in").await;
    assert_eq!((r.received, r.stored), (100, 100), "{r:#?}");
}
