//! Messages flow from source to destination, in order, exactly once while nothing fails:
//! TCP, UDP, MLLP with acknowledgements, every framing in both directions, and the
//! destination going away and coming back.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use iobp_codec::{Decoded, Deframer, Encoder, Framing};
use iobp_testkit::ports;
use iobp_testkit::receiver::AsyncReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_tcp_many_senders_each_in_order() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&line_pair("p", (&ip, src), (&ip, dst))).await;
    let senders = 4;
    let per = 5_000;
    let mut tasks = Vec::new();
    for s in 0..senders {
        let ip = ip.clone();
        tasks.push(tokio::spawn(async move {
            send_lines((&ip, src), (0..per).map(|i| format!("sender{s} message {i:06}"))).await;
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let lines = got.wait_lines(senders * per, 30).await;
    assert_eq!(lines.len(), senders * per, "exactly once");
    let mut next: BTreeMap<String, usize> = BTreeMap::new();
    for l in &lines {
        let (who, n) = l.split_once(" message ").expect("format");
        let n: usize = n.parse().expect("number");
        let expect = next.entry(who.to_string()).or_insert(0);
        assert_eq!(n, *expect, "{who} out of order");
        *expect += 1;
    }
    h.wait_for("p", 10, "counters", |s| s.received == 20_000 && s.sent == 20_000 && s.pending == 0)
        .await;
    let s = h.snap("p");
    assert_eq!((s.rejected, s.refused), (0, 0));
    assert_eq!(s.destination.color, iobp_engine::Color::Green);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_to_tcp() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::udp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "u", "source": {{"type": "udp", "host": "{ip}", "port": {src}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    h.wait_for("u", 10, "udp bound", |s| s.source.color == iobp_engine::Color::Green).await;
    let sock = tokio::net::UdpSocket::bind((ip.as_str(), 0)).await.expect("bind");
    for i in 0..200 {
        sock.send_to(format!("datagram {i:03}").as_bytes(), (ip.as_str(), src))
            .await
            .expect("send");
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await; // stay within socket buffers
        }
    }
    let lines = got.wait_lines(200, 10).await;
    let want: Vec<String> = (0..200).map(|i| format!("datagram {i:03}")).collect();
    assert_eq!(lines, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_udp() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::udp_on(&ip));
    let sink = tokio::net::UdpSocket::bind((ip.as_str(), dst)).await.expect("bind sink");
    h.add(&format!(
        r#"{{"id": "t", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "udp", "host": "{ip}", "port": {dst}}}}}"#
    ))
    .await;
    send_lines((&ip, src), (0..100).map(|i| format!("line {i}"))).await;
    let mut buf = vec![0u8; 2048];
    for i in 0..100 {
        let n = tokio::time::timeout(Duration::from_secs(10), sink.recv(&mut buf))
            .await
            .expect("datagram")
            .expect("recv");
        assert_eq!(
            &buf[..n],
            format!("line {i}").as_bytes(),
            "one message is one datagram, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_in_line_out_with_hl7_acks_after_storage() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "hl7", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "mllp"}}, "ack": "mllp"}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line", "delimiter": "\r\n"}}}}}}"#
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    let enc = Encoder::new(Framing::mllp());
    let mut deframer = Deframer::new(Framing::mllp(), 1 << 20);
    let mut inbuf = BytesMut::new();
    for i in 0..20 {
        let msg = format!("MSH|^~\\&|LAB|HOSP|LIS|HOSP|20260101120000||ORU^R01|CTRL{i:04}|P|2.5");
        let mut out = Vec::new();
        enc.encode(msg.as_bytes(), &mut out).expect("encode");
        s.write_all(&out).await.expect("send");
        // MLLP is stop-and-wait: the ACK comes back only once the message is stored.
        let ack = loop {
            if let Some(Decoded::Frame(f)) = deframer.decode(&mut inbuf) {
                break f;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), s.read_buf(&mut inbuf))
                .await
                .expect("ack in time")
                .expect("read");
            assert!(n > 0, "connection closed before the ACK");
        };
        let reply = iobp_codec::hl7::parse_ack(&ack).expect("an HL7 ACK");
        assert_eq!(reply.code, iobp_codec::hl7::AckCode::AA);
        assert_eq!(reply.control_id, format!("CTRL{i:04}"));
        let stored = h.snap("hl7").received;
        assert!(stored > i, "acknowledged message {i} before it was stored ({stored} stored)");
    }
    let lines = got.wait_lines(20, 10).await;
    assert!(lines[19].contains("CTRL0019"));
    assert!(got.bytes().windows(2).filter(|w| w == b"\r\n").count() == 20, "re-framed with CRLF");
}

/// Framings the sender/receiver side of the test can speak, with payloads they can carry.
fn framings() -> Vec<(&'static str, Framing)> {
    vec![
        (r#"{"type": "raw"}"#, Framing::Raw),
        (r#"{"type": "line"}"#, Framing::line(b"\n")),
        (r#"{"type": "line", "delimiter": "\r\n"}"#, Framing::line(b"\r\n")),
        (r#"{"type": "mllp"}"#, Framing::mllp()),
        (r#"{"type": "stx_etx"}"#, Framing::stx_etx()),
        (r#"{"type": "length_prefixed", "length_bytes": 1}"#, Framing::LengthPrefixed { width: 1 }),
        (r#"{"type": "length_prefixed", "length_bytes": 2}"#, Framing::LengthPrefixed { width: 2 }),
        (r#"{"type": "length_prefixed"}"#, Framing::LengthPrefixed { width: 4 }),
        (
            r#"{"type": "delimited", "start": "<<", "end": ">>"}"#,
            Framing::Delimited { start: b"<<".to_vec(), end: b">>".to_vec() },
        ),
    ]
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    // Printable text without any framing's control bytes or delimiters, sizes 1..200.
    (0..n).map(|i| format!("p{i:04}-{}", "x".repeat(i * 37 % 200)).into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_as_source_and_as_destination() {
    let h = Harness::new().await;
    for (i, (json, framing)) in framings().into_iter().enumerate() {
        let ip = ports::loopback();
        let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
        let got = AsyncReceiver::start((ip.as_str(), dst));
        let id = format!("f{i}");
        // The framing under test on the source; line on the destination, then the reverse on
        // a second pair: together every framing is exercised both ways.
        h.add(&format!(
            r#"{{"id": "{id}", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {json}}},
                "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {json}}}}}"#
        ))
        .await;
        let msgs = payloads(60);
        let mut wire = Vec::new();
        let enc = Encoder::new(framing.clone());
        for m in &msgs {
            enc.encode(m, &mut wire).expect("encode");
        }
        let mut s = connect((&ip, src)).await;
        // Dribble it in odd-sized pieces: framing must not depend on read boundaries.
        for chunk in wire.chunks(777) {
            s.write_all(chunk).await.expect("send");
        }
        s.shutdown().await.expect("close");
        let total: usize = msgs.iter().map(Vec::len).sum();
        if framing == Framing::Raw {
            let got = got.wait_bytes(total, 10).await;
            assert_eq!(got, msgs.concat(), "raw is byte-transparent");
        } else {
            h.wait_for(&id, 10, "all delivered", |s| s.sent == 60).await;
            // Framed the same way on both sides: what arrives is what was sent.
            let out = decode_all(framing, &got.wait_bytes(wire.len(), 10).await);
            assert_eq!(out, msgs, "framing {json}");
        }
        assert_eq!(h.snap(&id).rejected, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_translation_between_framings() {
    // length-prefixed in, STX/ETX out: each side frames with its own setting.
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "x", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "length_prefixed", "length_bytes": 2}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "stx_etx"}}}}}}"#
    ))
    .await;
    let msgs = payloads(30);
    let mut wire = Vec::new();
    for m in &msgs {
        Encoder::new(Framing::LengthPrefixed { width: 2 }).encode(m, &mut wire).expect("encode");
    }
    let mut s = connect((&ip, src)).await;
    s.write_all(&wire).await.expect("send");
    h.wait_for("x", 10, "delivered", |s| s.sent == 30).await;
    // "Sent" is written to the connection: wait until the receiver has read all of it.
    let framed = encode_all(&Framing::stx_etx(), &msgs);
    assert_eq!(decode_all(Framing::stx_etx(), &got.wait_bytes(framed.len(), 10).await), msgs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_gap_framing_both_ways() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    // idle_gap in (source), line out; and a second pair line in, idle_gap out.
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "gin", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "idle_gap", "gap_ms": 40}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    for i in 0..5 {
        // One message in three pieces, then silence.
        for part in ["msg", &format!("-{i}"), "-end"] {
            s.write_all(part.as_bytes()).await.expect("send");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let lines = got.wait_lines(5, 10).await;
    assert_eq!(lines, (0..5).map(|i| format!("msg-{i}-end")).collect::<Vec<_>>());

    let ip2 = ports::loopback();
    let (src2, dst2) = (ports::tcp_on(&ip2), ports::tcp_on(&ip2));
    let listener = tokio::net::TcpListener::bind((ip2.as_str(), dst2)).await.expect("bind");
    h.add(&format!(
        r#"{{"id": "gout", "source": {{"type": "tcp_server", "host": "{ip2}", "port": {src2}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip2}", "port": {dst2}, "framing": {{"type": "idle_gap", "gap_ms": 60}}}}}}"#
    ))
    .await;
    send_lines((&ip2, src2), (0..4).map(|i| format!("m{i}"))).await;
    let (mut conn, _) = listener.accept().await.expect("accept");
    // Read with timestamps: the receiver must see silence of at least the gap between messages.
    let mut chunks: Vec<(std::time::Instant, Vec<u8>)> = Vec::new();
    let mut buf = [0u8; 64];
    while chunks.iter().map(|c| c.1.len()).sum::<usize>() < 8 {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("data")
            .expect("read");
        chunks.push((std::time::Instant::now(), buf[..n].to_vec()));
    }
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    let mut last: Option<std::time::Instant> = None;
    for (t, c) in chunks {
        if last.is_none_or(|l| t.duration_since(l) >= Duration::from_millis(30)) {
            msgs.push(Vec::new());
        }
        msgs.last_mut().expect("current").extend(c);
        last = Some(t);
    }
    assert_eq!(msgs, vec![b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec(), b"m3".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_down_for_a_while_then_up() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&line_pair("d", (&ip, src), (&ip, dst))).await;
    send_lines((&ip, src), (0..3000).map(|i| format!("m{i:05}"))).await;
    h.wait_for("d", 10, "all stored while the destination is down", |s| s.received == 3000).await;
    let s = h.snap("d");
    assert_eq!(s.sent, 0);
    assert_eq!(s.destination.color, iobp_engine::Color::Red);
    assert!(s.last_error.is_some());
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let lines = got.wait_lines(3000, 20).await;
    assert_eq!(lines, (0..3000).map(|i| format!("m{i:05}")).collect::<Vec<_>>());
    h.wait_for("d", 10, "green again", |s| {
        s.destination.color == iobp_engine::Color::Green && s.pending == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_restarting_between_bursts_loses_nothing() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&line_pair("r", (&ip, src), (&ip, dst))).await;
    let mut all = Vec::new();
    for burst in 0..4 {
        // The receiving application starts, takes one burst, and closes its connection and
        // listener while idle (as an application restarting would).
        let listener = tokio::net::TcpListener::bind((ip.as_str(), dst)).await.expect("bind");
        let lines: Vec<String> = (0..200).map(|i| format!("b{burst}-{i:03}")).collect();
        send_lines((&ip, src), lines.clone()).await;
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("accept")
            .expect("conn");
        let mut got = Vec::new();
        let want: usize = lines.iter().map(|l| l.len() + 1).sum();
        let mut buf = vec![0u8; 8192];
        while got.len() < want {
            let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
                .await
                .expect("data")
                .expect("read");
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        all.extend(String::from_utf8(got).expect("utf8").lines().map(String::from));
        drop(conn);
        drop(listener);
        // Wait until the engine noticed the closed connection while idle.
        h.wait_for("r", 10, "close noticed", |s| s.destination.color != iobp_engine::Color::Green)
            .await;
    }
    let want: Vec<String> =
        (0..4).flat_map(|b| (0..200).map(move |i| format!("b{b}-{i:03}"))).collect();
    assert_eq!(all, want);
    assert_eq!(h.snap("r").sent, 800);
}

/// A re-send is an engine operation: the copy is stored after everything buffered, counted as
/// received, shown in the source's live view and delivered; only delivered messages can be
/// re-sent, and a message not in the buffer is said to be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_is_resent_as_a_counted_copy() {
    use iobp_engine::{EngineError, MessageQuery, MessageState, Side};
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&line_pair("r", (&ip, src), (&ip, dst))).await;
    send_lines((&ip, src), ["one".to_string(), "two".into(), "three".into()]).await;
    got.wait_lines(3, 10).await;
    h.wait_for("r", 10, "all done", |s| s.done == 3).await;
    let done = MessageQuery {
        state: Some(MessageState::Done),
        from_seq: Some(1),
        limit: 10,
        preview_bytes: 16,
        ..MessageQuery::default()
    };
    let page = h.engine.messages("r", done).await.expect("browse");
    assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);

    let copy = h.engine.resend("r", 2).await.expect("resend");
    assert_eq!(copy, 4, "after everything already buffered");
    assert_eq!(got.wait_lines(4, 10).await, ["one", "two", "three", "two"]);
    h.wait_for("r", 10, "the copy delivered", |s| s.done == 4).await;
    let s = h.snap("r");
    assert_eq!((s.received, s.sent), (4, 4), "received and sent keep adding up");
    let recent = h.engine.recent("r", Side::Source).expect("feed");
    let newest = recent.first().expect("an entry");
    assert_eq!((newest.seq, newest.peer.as_deref()), (Some(4), Some("re-send of #2")));
    let stored = h.engine.message("r", 4).await.expect("the copy");
    assert_eq!((stored.payload.as_slice(), stored.state), (b"two".as_slice(), MessageState::Done));

    assert!(matches!(
        h.engine.resend("r", 99).await,
        Err(EngineError::MessageNotFound { seq: 99, .. })
    ));
    assert!(matches!(h.engine.resend("nope", 1).await, Err(EngineError::NotFound(_))));
}
