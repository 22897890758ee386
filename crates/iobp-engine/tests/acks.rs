//! Acknowledgements: destinations mark a message Done only when confirmed (NAK and timeout
//! mean "send again"); sources acknowledge only stored messages and NAK when the buffer is
//! full; a full buffer holds TCP senders back and refuses UDP datagrams, counted.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use iobp_codec::hl7::{AckCode, build_ack, parse_msh};
use iobp_codec::{Decoded, Deframer, Encoder, Framing};
use iobp_engine::Color;
use iobp_testkit::ports;
use iobp_testkit::receiver::AsyncReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn read_frame(
    conn: &mut tokio::net::TcpStream,
    d: &mut Deframer,
    buf: &mut BytesMut,
) -> Option<Vec<u8>> {
    loop {
        if let Some(Decoded::Frame(f)) = d.decode(buf) {
            return Some(f.to_vec());
        }
        match tokio::time::timeout(Duration::from_secs(10), conn.read_buf(buf)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
    }
}

fn hl7(i: usize) -> String {
    format!("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|MSG{i:03}|P|2.5\rPID|1||{i}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_destination_retries_on_ae_and_completes_on_aa() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let listener = TcpListener::bind((ip.as_str(), dst)).await.expect("bind");
    h.add(&format!(
        r#"{{"id": "m", "retry": {{"initial_ms": 20, "max_ms": 100}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "mllp"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "mllp"}}, "ack": {{"type": "mllp", "timeout_ms": 2000}}}}}}"#
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    let mut wire = Vec::new();
    for i in 0..5 {
        Encoder::new(Framing::mllp()).encode(hl7(i).as_bytes(), &mut wire).expect("enc");
    }
    s.write_all(&wire).await.expect("send");
    let (mut conn, _) = listener.accept().await.expect("accept");
    let (mut d, mut buf) = (Deframer::new(Framing::mllp(), 1 << 20), BytesMut::new());
    let mut seen = Vec::new();
    let mut refused_once = false;
    while seen.iter().filter(|(_, accepted)| *accepted).count() < 5 {
        let f = read_frame(&mut conn, &mut d, &mut buf).await.expect("a message");
        let id = parse_msh(&f).expect("hl7").control_id;
        // Refuse MSG002 the first time it comes.
        let code = if id == "MSG002" && !refused_once {
            refused_once = true;
            AckCode::AE
        } else {
            AckCode::AA
        };
        let mut out = Vec::new();
        Encoder::new(Framing::mllp())
            .encode(&build_ack(&f, code, Some("busy"), "20260101", "X"), &mut out)
            .expect("enc");
        conn.write_all(&out).await.expect("ack");
        seen.push((id, code == AckCode::AA));
    }
    let order: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        order,
        ["MSG000", "MSG001", "MSG002", "MSG002", "MSG003", "MSG004"],
        "refused message resent, order kept"
    );
    h.wait_for("m", 5, "all Done", |s| s.sent == 5 && s.pending == 0 && s.in_flight == 0).await;
    assert_eq!(h.snap("m").retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ack_destination_times_out_and_resends_on_a_new_connection() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let listener = TcpListener::bind((ip.as_str(), dst)).await.expect("bind");
    h.add(&format!(
        r#"{{"id": "b", "retry": {{"initial_ms": 20, "max_ms": 100}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "stx_etx"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "stx_etx"}}, "ack": {{"type": "byte", "timeout_ms": 300}}}}}}"#
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    s.write_all(b"\x02one\x03\x02two\x03").await.expect("send");
    // First connection: read "one" but never answer.
    let (mut c1, _) = listener.accept().await.expect("accept");
    let mut buf = [0u8; 64];
    let n = c1.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"\x02one\x03");
    // After the timeout the engine reconnects and sends "one" again.
    let (mut c2, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("reconnect")
        .expect("accept");
    let n = c2.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"\x02one\x03");
    c2.write_all(&[0x15]).await.expect("nak"); // NAK: send again on the same connection
    let n = c2.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"\x02one\x03");
    c2.write_all(&[0x06]).await.expect("ack");
    let n = c2.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"\x02two\x03");
    c2.write_all(&[0x06]).await.expect("ack");
    h.wait_for("b", 5, "both Done", |s| s.sent == 2 && s.pending == 0 && s.in_flight == 0).await;
    let snap = h.snap("b");
    assert!(snap.errors >= 2, "timeout and NAK are errors: {snap:?}");
    drop(c1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ack_source_acks_when_stored_and_naks_when_full() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    // Destination never reachable, buffer limited to 1 MiB: it fills up.
    h.add(&format!(
        r#"{{"id": "full", "max_storage_mb": 1,
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "stx_etx"}}, "ack": "byte"}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "stx_etx"}}}}}}"#
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    let payload = vec![b'x'; 60_000];
    let mut frame = vec![2u8];
    frame.extend_from_slice(&payload);
    frame.push(3);
    let (mut acks, mut naks) = (0, 0);
    for _ in 0..40 {
        s.write_all(&frame).await.expect("send");
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .expect("answer")
            .expect("read");
        match b[0] {
            0x06 => acks += 1,
            0x15 => naks += 1,
            other => panic!("unexpected answer {other:#x}"),
        }
    }
    assert!(acks >= 10 && naks >= 1, "acks {acks}, naks {naks}");
    let snap = h.snap("full");
    assert_eq!(snap.received, acks, "every ACK is a stored message");
    assert_eq!(snap.refused, naks, "every NAK is counted");
    assert_eq!(snap.buffer, Color::Red, "buffer shown full");
}

/// A pipelining sender's frames behind a NAK are refused until the refused frame comes again:
/// otherwise, once room came back, they were stored and the sender's retransmission of the
/// refused frame landed after them (first seen as "Byte: 18500 first arrived after a later
/// one" in the real-disk fault test, on the code of issue 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nak_for_a_full_buffer_later_frames_wait_for_its_retransmission() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&format!(
        r#"{{"id": "gbn", "max_storage_mb": 1, "retry": {{"initial_ms": 50, "max_ms": 100}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "stx_etx"}}, "ack": "byte"}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    let frame = |i: usize| {
        let mut f = vec![2u8];
        f.extend(format!("{i:06} {}", "x".repeat(60_000)).into_bytes());
        f.push(3);
        f
    };
    let mut s = connect((&ip, src)).await;
    let answer = async |s: &mut tokio::net::TcpStream, f: &[u8]| {
        s.write_all(f).await.expect("send");
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .expect("answer")
            .expect("read");
        b[0]
    };
    // Fill the buffer until frame k is refused.
    let mut k = 0;
    while answer(&mut s, &frame(k)).await == 0x06 {
        k += 1;
        assert!(k < 100, "never full");
    }
    // Room comes back (the destination drains the buffer).
    let got = AsyncReceiver::start((ip.as_str(), dst));
    got.wait_lines(k, 30).await;
    h.wait_for("gbn", 20, "delivered", |p| p.pending == 0).await;
    // Frames behind k (sent before the sender saw k's NAK) are refused, even once an append
    // finds room again (delivered data is reclaimed when an append needs the space).
    for _ in 0..20 {
        assert_eq!(answer(&mut s, &frame(k + 1)).await, 0x15, "a frame behind the refused one");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // k again, then k + 1, each as often as the buffer still refuses it (a stop-and-wait
    // sender's retries): accepted, and everything arrives in the sender's order.
    for f in [k, k + 1] {
        let mut tries = 0;
        while answer(&mut s, &frame(f)).await != 0x06 {
            tries += 1;
            assert!(tries < 50, "frame {f} is never accepted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let lines = got.wait_lines(k + 2, 30).await;
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{i:06} ")), "line {i}: {}", &l[..20.min(l.len())]);
    }
    assert_eq!(lines.len(), k + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_holds_a_tcp_sender_back_and_loses_nothing() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&format!(
        r#"{{"id": "hold", "max_storage_mb": 1, "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    // ~15 MB of lines (more than the kernel's socket buffers hold) into a 1 MiB buffer with
    // the destination down: the sender stalls.
    let total = 150_000;
    let ip2 = ip.clone();
    let sender = tokio::spawn(async move {
        send_lines((&ip2, src), (0..total).map(|i| format!("{i:08} {}", "y".repeat(90)))).await;
    });
    h.wait_for("hold", 10, "buffer full", |s| s.buffer == Color::Red).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sender.is_finished(), "the sender is held back, not dropped");
    assert_eq!(h.snap("hold").refused, 0);
    // The receiver comes: everything flows, in order, nothing lost.
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let lines = got.wait_lines(total, 60).await;
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{i:08} ")), "line {i}: {l}");
    }
    sender.await.expect("sender finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_refuses_udp_datagrams_and_counts_them() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::udp_on(&ip), ports::tcp_on(&ip));
    h.add(&format!(
        r#"{{"id": "udpfull", "max_storage_mb": 1,
            "source": {{"type": "udp", "host": "{ip}", "port": {src}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}}}}}"#
    ))
    .await;
    h.wait_for("udpfull", 10, "bound", |s| s.source.color == Color::Green).await;
    let sock = tokio::net::UdpSocket::bind((ip.as_str(), 0)).await.expect("bind");
    let dgram = vec![b'z'; 30_000];
    for _ in 0..60 {
        sock.send_to(&dgram, (ip.as_str(), src)).await.expect("send");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    h.wait_for("udpfull", 10, "some refused", |s| s.refused > 0 && s.received + s.refused == 60)
        .await;
    let s = h.snap("udpfull");
    assert_eq!(s.buffer, Color::Red);
    assert!(s.last_error.as_ref().is_some_and(|e| e.2.contains("refused")), "{s:?}");
}
