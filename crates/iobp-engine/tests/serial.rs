//! Serial sources and destinations over real pseudo-terminal pairs (`iobp_testkit::pty`): the
//! engine opens the terminal side through a symlink (like `/dev/serial/by-id/...`), the test
//! plays the instrument on the other side. Unplugging is closing the pair (the engine sees a
//! hangup and then a missing device); plugging in again is a new pair behind the same
//! symlink.
//!
//! Real adapters: `IOBP_HIL_SERIAL=/dev/ttyUSB0,/dev/ttyUSB1` (two ports wired to each
//! other with a null-modem cable) runs `hardware_loopback` against them.

#![cfg(target_os = "linux")]

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Harness, connect, decode_all, encode_all};
use iobp_codec::{Decoded, Deframer, Framing};
use iobp_engine::Color;
use iobp_testkit::ports;
use iobp_testkit::pty::Device;
use iobp_testkit::receiver::AsyncReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads from the device until `n` frames of `framing` arrived (or panics after `secs`).
async fn read_frames(dev: &mut Device, framing: Framing, n: usize, secs: u64) -> Vec<Vec<u8>> {
    let mut d = Deframer::new(framing, 1 << 20);
    let mut buf = BytesMut::with_capacity(1 << 16);
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while out.len() < n {
        let r = tokio::time::timeout_at(deadline, dev.master.read_buf(&mut buf)).await;
        let got = r.unwrap_or_else(|_| panic!("only {} of {n} frames arrived", out.len()));
        assert!(got.expect("read device") > 0, "device closed");
        while let Some(x) = d.decode(&mut buf) {
            if let Decoded::Frame(f) = x {
                out.push(f.to_vec());
            }
        }
    }
    out
}

/// A symlink path for a port, in a directory the test owns.
fn port_link(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn serial(port: &Path, extra: &str) -> String {
    format!(r#"{{"type": "serial", "port": "{}", "baud_rate": 115200{extra}}}"#, port.display())
}

fn pair(id: &str, source: &str, destination: &str) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 300}},
            "source": {source}, "destination": {destination}}}"#
    )
}

fn tcp_client(ip: &str, port: u16, framing: &str) -> String {
    format!(r#"{{"type": "tcp_client", "host": "{ip}", "port": {port}, "framing": {framing}}}"#)
}

fn tcp_server(ip: &str, port: u16, framing: &str) -> String {
    format!(r#"{{"type": "tcp_server", "host": "{ip}", "port": {port}, "framing": {framing}}}"#)
}

/// Newline-delimited framing.
const LINE: &str = r#"{"type": "line"}"#;

/// Framings the test can speak, with payloads they can carry (`idle_gap` has its own test).
fn framings() -> Vec<(&'static str, Framing)> {
    vec![
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
    (0..n).map(|i| format!("s{i:04}-{}", "x".repeat(i * 37 % 200)).into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_framing_serial_to_tcp_and_tcp_to_serial() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (json, framing)) in framings().into_iter().enumerate() {
        let ip = ports::loopback();
        let msgs = payloads(150);
        let wire = encode_all(&framing, &msgs);

        // serial → tcp
        let link_in = port_link(&dir, &format!("in{i}"));
        let mut dev_in = Device::plug(&link_in);
        let dst = ports::tcp_on(&ip);
        let got = AsyncReceiver::start((ip.as_str(), dst));
        let id = format!("in{i}");
        let src = serial(&link_in, &format!(r#", "framing": {json}"#));
        h.add(&pair(&id, &src, &tcp_client(&ip, dst, json))).await;
        h.wait_for(&id, 10, "port open", |s| s.source.color == Color::Green).await;
        // Odd-sized pieces: framing must not depend on how the driver splits the stream.
        for chunk in wire.chunks(333) {
            dev_in.master.write_all(chunk).await.expect("device writes");
        }
        h.wait_for(&id, 20, "all delivered", |s| s.sent == 150).await;
        let out = decode_all(framing.clone(), &got.wait_bytes(wire.len(), 10).await);
        assert_eq!(out, msgs, "serial → tcp with framing {json}");

        // tcp → serial
        let link_out = port_link(&dir, &format!("out{i}"));
        let mut dev_out = Device::plug(&link_out);
        let src_port = ports::tcp_on(&ip);
        let id = format!("out{i}");
        let dst = serial(&link_out, &format!(r#", "framing": {json}"#));
        h.add(&pair(&id, &tcp_server(&ip, src_port, json), &dst)).await;
        let mut s = connect((&ip, src_port)).await;
        s.write_all(&wire).await.expect("send");
        let out = read_frames(&mut dev_out, framing, 150, 20).await;
        assert_eq!(out, msgs, "tcp → serial with framing {json}");
        h.wait_for(&id, 10, "all marked delivered", |s| s.sent == 150).await;
        for id in [format!("in{i}"), format!("out{i}")] {
            let s = h.snap(&id);
            assert_eq!((s.rejected, s.refused), (0, 0), "{s:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_framing_is_byte_transparent_over_serial() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "raw");
    let mut dev = Device::plug(&link);
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&pair(
        "raw",
        &serial(&link, r#", "framing": {"type": "raw"}"#),
        &tcp_client(&ip, dst, r#"{"type": "raw"}"#),
    ))
    .await;
    h.wait_for("raw", 10, "port open", |s| s.source.color == Color::Green).await;
    // Every byte value, including XON/XOFF and NUL, passes untouched in raw mode.
    let data: Vec<u8> = (0..20_000u32).map(|i| i.to_le_bytes()[0]).collect();
    dev.master.write_all(&data).await.expect("device writes");
    assert_eq!(got.wait_bytes(data.len(), 20).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_gap_framing_over_serial_both_ways() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let gap = r#"{"type": "idle_gap", "gap_ms": 40}"#;
    // serial (idle gap) → tcp (line): each burst the instrument sends is one message.
    let link_in = port_link(&dir, "gap-in");
    let mut dev_in = Device::plug(&link_in);
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&pair(
        "gi",
        &serial(&link_in, &format!(r#", "framing": {gap}"#)),
        &tcp_client(&ip, dst, r#"{"type": "line"}"#),
    ))
    .await;
    h.wait_for("gi", 10, "port open", |s| s.source.color == Color::Green).await;
    for i in 0..10 {
        // A burst in two writes, closer together than the gap: still one message.
        dev_in.master.write_all(format!("reading {i} ").as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(5)).await;
        dev_in.master.write_all(b"mg/dL").await.expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let lines = got.wait_lines(10, 10).await;
    let want: Vec<String> = (0..10).map(|i| format!("reading {i} mg/dL")).collect();
    assert_eq!(lines, want);

    // tcp (line) → serial (idle gap): messages leave one by one, separated by the gap.
    let link_out = port_link(&dir, "gap-out");
    let mut dev_out = Device::plug(&link_out);
    let src = ports::tcp_on(&ip);
    h.add(&pair(
        "go",
        &tcp_server(&ip, src, r#"{"type": "line"}"#),
        &serial(&link_out, &format!(r#", "framing": {gap}"#)),
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    let started = Instant::now();
    s.write_all(b"one\ntwo\nthree\n").await.expect("send");
    let mut all = Vec::new();
    while all.len() < 11 {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), dev_out.master.read(&mut b))
            .await
            .expect("data")
            .expect("read");
        all.extend_from_slice(&b[..n]);
    }
    assert_eq!(all, b"onetwothree");
    // Three messages need at least two gaps between them.
    assert!(started.elapsed() >= Duration::from_millis(80), "{:?}", started.elapsed());
    h.wait_for("go", 10, "delivered", |s| s.sent == 3).await;
}

const STX: u8 = 2;
const ETX: u8 = 3;
const ACK: u8 = 6;
const NAK: u8 = 0x15;

fn stx_etx(body: &[u8]) -> Vec<u8> {
    let mut f = vec![STX];
    f.extend_from_slice(body);
    f.push(ETX);
    f
}

/// Reads one acknowledgement byte from the engine.
async fn answer(dev: &mut Device) -> Option<u8> {
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), dev.master.read_exact(&mut b)).await {
        Ok(Ok(_)) => Some(b[0]),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_acks_over_serial_both_ways() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    // Instrument → ioBufferPro: each frame is answered with ACK once it is stored.
    let link_in = port_link(&dir, "ack-in");
    let mut dev_in = Device::plug(&link_in);
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let stx = r#"{"type": "stx_etx"}"#;
    h.add(&pair(
        "ai",
        &serial(&link_in, &format!(r#", "framing": {stx}, "ack": "byte""#)),
        &tcp_client(&ip, dst, r#"{"type": "line"}"#),
    ))
    .await;
    h.wait_for("ai", 10, "port open", |s| s.source.color == Color::Green).await;
    for i in 0..100 {
        dev_in.master.write_all(&stx_etx(format!("R{i:03}").as_bytes())).await.expect("write");
        assert_eq!(answer(&mut dev_in).await, Some(ACK), "frame {i} acknowledged");
        // The ACK means stored: the count is already there.
        assert_eq!(h.snap("ai").received, i + 1);
    }
    let lines = got.wait_lines(100, 10).await;
    assert_eq!(lines, (0..100).map(|i| format!("R{i:03}")).collect::<Vec<_>>());

    // ioBufferPro → instrument: stop-and-wait; a NAK makes it send the same frame again.
    let link_out = port_link(&dir, "ack-out");
    let mut dev_out = Device::plug(&link_out);
    let src = ports::tcp_on(&ip);
    h.add(&pair(
        "ao",
        &tcp_server(&ip, src, r#"{"type": "line"}"#),
        &serial(
            &link_out,
            &format!(r#", "framing": {stx}, "ack": {{"type": "byte", "timeout_ms": 2000}}"#),
        ),
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    let lines: String = (0..50).fold(String::new(), |mut w, i| {
        let _ = writeln!(w, "C{i:03}");
        w
    });
    s.write_all(lines.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    let mut naked = false;
    while seen.len() < 50 {
        let f = read_frames(&mut dev_out, Framing::stx_etx(), 1, 10).await.remove(0);
        if f == b"C020" && !naked {
            naked = true;
            dev_out.master.write_all(&[NAK]).await.expect("nak");
            continue;
        }
        seen.push(String::from_utf8(f).expect("utf8"));
        dev_out.master.write_all(&[ACK]).await.expect("ack");
    }
    assert_eq!(
        seen,
        (0..50).map(|i| format!("C{i:03}")).collect::<Vec<_>>(),
        "NAKed frame resent in place"
    );
    h.wait_for("ao", 10, "all confirmed", |s| s.sent == 50 && s.pending == 0).await;
    assert!(h.snap("ao").retries >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_over_serial_with_mllp_acks_both_ways() {
    use iobp_codec::hl7::{AckCode, build_ack, parse_ack};
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let mllp = r#"{"type": "mllp"}"#;
    let msg = |i: u32| {
        format!(
            "MSH|^~\\&|LAB|A|HIS|B|20260101120000||ORU^R01|CTRL{i:04}|P|2.5\rOBX|1|NM|GLU||{i}|mg/dL"
        )
    };
    // Analyzer → ioBufferPro: an HL7 ACK (AA) per stored message.
    let link_in = port_link(&dir, "hl7-in");
    let mut dev_in = Device::plug(&link_in);
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&pair(
        "hi",
        &serial(&link_in, &format!(r#", "framing": {mllp}, "ack": "mllp""#)),
        &tcp_client(&ip, dst, mllp),
    ))
    .await;
    h.wait_for("hi", 10, "port open", |s| s.source.color == Color::Green).await;
    for i in 0..20 {
        dev_in
            .master
            .write_all(&encode_all(&Framing::mllp(), &[msg(i).into_bytes()]))
            .await
            .expect("write");
        let ack = read_frames(&mut dev_in, Framing::mllp(), 1, 10).await.remove(0);
        let ack = parse_ack(&ack).expect("an HL7 ACK");
        assert_eq!(
            (ack.code, ack.control_id.as_str()),
            (AckCode::AA, format!("CTRL{i:04}").as_str())
        );
    }
    let want: usize = (0..20).map(|i| msg(i).len() + 3).sum();
    let out = decode_all(Framing::mllp(), &got.wait_bytes(want, 10).await);
    assert_eq!(out, (0..20).map(|i| msg(i).into_bytes()).collect::<Vec<_>>());

    // ioBufferPro → LIS on a serial line: waits for each AA; an AE is retried.
    let link_out = port_link(&dir, "hl7-out");
    let mut dev_out = Device::plug(&link_out);
    let src = ports::tcp_on(&ip);
    h.add(&pair(
        "ho",
        &tcp_server(&ip, src, mllp),
        &serial(&link_out, &format!(r#", "framing": {mllp}, "ack": "mllp""#)),
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    s.write_all(&encode_all(
        &Framing::mllp(),
        &(0..20).map(|i| msg(i).into_bytes()).collect::<Vec<_>>(),
    ))
    .await
    .expect("send");
    let mut seen = Vec::new();
    let mut refused = false;
    while seen.len() < 20 {
        let m = read_frames(&mut dev_out, Framing::mllp(), 1, 10).await.remove(0);
        let code = if seen.len() == 7 && !refused {
            refused = true;
            AckCode::AE
        } else {
            seen.push(m.clone());
            AckCode::AA
        };
        let ack = build_ack(&m, code, None, "20260101120000", "LIS1");
        dev_out.master.write_all(&encode_all(&Framing::mllp(), &[ack])).await.expect("ack");
    }
    assert_eq!(seen, (0..20).map(|i| msg(i).into_bytes()).collect::<Vec<_>>());
    h.wait_for("ho", 10, "all confirmed", |s| s.sent == 20 && s.pending == 0).await;
}

/// `n` numbered lines.
fn numbered(n: usize) -> Vec<u8> {
    let mut w = Vec::with_capacity(n * 16);
    for i in 0..n {
        writeln!(w, "{i:09} abcdef").expect("vec write");
    }
    w
}

/// Checks that `bytes` holds exactly lines 0..n of [`numbered`], in order.
fn check_numbered(bytes: &[u8], n: usize) {
    let mut count = 0;
    for (i, line) in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let num: usize = std::str::from_utf8(&line[..9]).expect("utf8").parse().expect("number");
        assert_eq!(num, i, "message {i} out of order or missing");
        count += 1;
    }
    assert_eq!(count, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_messages_serial_to_tcp() {
    const N: usize = 1_000_000;
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "m-in");
    let mut dev = Device::plug(&link);
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&pair(
        "mi",
        &serial(&link, &format!(r#", "framing": {LINE}, "flow_control": "RTS/CTS""#)),
        &tcp_client(&ip, dst, LINE),
    ))
    .await;
    h.wait_for("mi", 10, "port open", |s| s.source.color == Color::Green).await;
    let wire = numbered(N);
    let started = Instant::now();
    dev.master.write_all(&wire).await.expect("device writes");
    h.wait_for("mi", 300, "all delivered", |s| s.sent == N as u64).await;
    let bytes = got.wait_bytes(wire.len(), 30).await;
    eprintln!("serial → tcp: {N} messages in {:?}", started.elapsed());
    check_numbered(&bytes, N);
    let s = h.snap("mi");
    assert_eq!((s.received, s.refused, s.rejected), (N as u64, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_messages_tcp_to_serial() {
    const N: usize = 1_000_000;
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "m-out");
    let mut dev = Device::plug(&link);
    let src = ports::tcp_on(&ip);
    h.add(&pair(
        "mo",
        &tcp_server(&ip, src, LINE),
        &serial(&link, &format!(r#", "framing": {LINE}"#)),
    ))
    .await;
    let wire = numbered(N);
    let started = Instant::now();
    let ip2 = ip.clone();
    let sender = {
        let wire = wire.clone();
        tokio::spawn(async move {
            let mut s = connect((&ip2, src)).await;
            s.write_all(&wire).await.expect("send");
            s.shutdown().await.expect("close");
        })
    };
    let mut got = Vec::with_capacity(wire.len());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while got.len() < wire.len() {
        let mut buf = vec![0u8; 1 << 16];
        let n = tokio::time::timeout_at(deadline, dev.master.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("only {} of {} bytes arrived", got.len(), wire.len()))
            .expect("read");
        got.extend_from_slice(&buf[..n]);
    }
    eprintln!("tcp → serial: {N} messages in {:?}", started.elapsed());
    sender.await.expect("sender");
    check_numbered(&got, N);
    h.wait_for("mo", 30, "all marked delivered", |s| s.sent == N as u64 && s.pending == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_missing_at_start_is_opened_when_it_appears() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "later");
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&pair(
        "late",
        &serial(&link, &format!(r#", "framing": {LINE}"#)),
        &tcp_client(&ip, dst, LINE),
    ))
    .await;
    h.wait_for("late", 10, "red: no such port", |s| {
        s.source.color == Color::Red && s.source.detail.contains("no such port")
    })
    .await;
    let mut dev = Device::plug(&link);
    h.wait_for("late", 10, "opened", |s| s.source.color == Color::Green).await;
    dev.master.write_all(b"hello\n").await.expect("write");
    assert_eq!(got.wait_lines(1, 10).await, vec!["hello"]);
}

/// Sends frames `range` one at a time, each until it is acknowledged.
async fn send_acked(dev: &mut Device, range: std::ops::Range<u32>) {
    for i in range {
        dev.master.write_all(&stx_etx(format!("U{i:04}").as_bytes())).await.expect("write");
        assert_eq!(answer(dev).await, Some(ACK), "frame {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_port_unplugged_mid_stream_resumes_when_plugged_in() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "usb-in");
    let mut dev = Device::plug(&link);
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&pair(
        "ui",
        &serial(&link, r#", "framing": {"type": "stx_etx"}, "ack": "byte""#),
        &tcp_client(&ip, dst, r#"{"type": "line"}"#),
    ))
    .await;
    h.wait_for("ui", 10, "port open", |s| s.source.color == Color::Green).await;
    send_acked(&mut dev, 0..100).await;
    // Mid-frame and with the last frame unacknowledged: the adapter disappears.
    dev.master.write_all(&stx_etx(b"U0100")).await.expect("write");
    dev.master.write_all(&[STX, b'U']).await.expect("write");
    drop(dev); // unplugged
    h.wait_for("ui", 10, "red with the reason", |s| {
        s.source.color == Color::Red && s.source.detail.contains("no such port")
    })
    .await;
    // Plugged in again (a new device node behind the same path): the instrument resends
    // what was not acknowledged.
    let mut dev = Device::plug(&link);
    h.wait_for("ui", 10, "reopened", |s| s.source.color == Color::Green).await;
    send_acked(&mut dev, 100..200).await;
    // At-least-once: the unacknowledged frame may arrive twice; wait for 200 distinct.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (lines, dedup) = loop {
        let lines = got.lines();
        let mut dedup = lines.clone();
        dedup.dedup();
        if dedup.len() >= 200 || Instant::now() > deadline {
            break (lines, dedup);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        dedup,
        (0..200).map(|i| format!("U{i:04}")).collect::<Vec<_>>(),
        "in order, none lost"
    );
    assert!(lines.len() <= 201, "at most the unacknowledged frame twice: {}", lines.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_port_unplugged_keeps_messages_pending_until_it_returns() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "usb-out");
    let mut dev = Device::plug(&link);
    let src = ports::tcp_on(&ip);
    h.add(&pair(
        "uo",
        &tcp_server(&ip, src, r#"{"type": "line"}"#),
        &serial(
            &link,
            r#", "framing": {"type": "stx_etx"}, "ack": {"type": "byte", "timeout_ms": 1000}"#,
        ),
    ))
    .await;
    let mut s = connect((&ip, src)).await;
    let lines: String = (0..300).fold(String::new(), |mut w, i| {
        let _ = writeln!(w, "D{i:04}");
        w
    });
    s.write_all(lines.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    while seen.len() < 100 {
        let f = read_frames(&mut dev, Framing::stx_etx(), 1, 10).await.remove(0);
        seen.push(String::from_utf8(f).expect("utf8"));
        dev.master.write_all(&[ACK]).await.expect("ack");
    }
    // The 101st frame is on the wire when the device disappears: never acknowledged.
    let _unacked = read_frames(&mut dev, Framing::stx_etx(), 1, 10).await;
    drop(dev); // unplugged
    h.wait_for("uo", 10, "red with the reason, messages pending", |s| {
        s.destination.color == Color::Red
            && s.destination.detail.contains("no such port")
            && s.pending >= 199
            && s.in_flight == 0
    })
    .await;
    let mut dev = Device::plug(&link);
    while seen.len() < 300 {
        let f = read_frames(&mut dev, Framing::stx_etx(), 1, 10).await.remove(0);
        seen.push(String::from_utf8(f).expect("utf8"));
        dev.master.write_all(&[ACK]).await.expect("ack");
    }
    assert_eq!(
        seen,
        (0..300).map(|i| format!("D{i:04}")).collect::<Vec<_>>(),
        "resumed at the unacknowledged message"
    );
    h.wait_for("uo", 10, "all confirmed", |s| s.sent == 300 && s.pending == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_reported_and_taken_once_free() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "busy");
    let mut dev = Device::plug(&link);
    // Another program holds the port.
    let other = std::fs::OpenOptions::new().read(true).open(&link).expect("open");
    other.try_lock().expect("lock");
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&pair(
        "busy",
        &serial(&link, &format!(r#", "framing": {LINE}"#)),
        &tcp_client(&ip, dst, LINE),
    ))
    .await;
    h.wait_for("busy", 10, "red: in use", |s| {
        s.source.color == Color::Red && s.source.detail.contains("in use")
    })
    .await;
    drop(other);
    h.wait_for("busy", 10, "opened", |s| s.source.color == Color::Green).await;
    dev.master.write_all(b"free\n").await.expect("write");
    assert_eq!(got.wait_lines(1, 10).await, vec!["free"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs485_on_a_port_without_it_is_a_clear_error() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "rs485");
    let _dev = Device::plug(&link);
    let dst = ports::tcp_on(&ip);
    h.add(&pair(
        "r",
        &serial(&link, r#", "rs485": {"delay_before_send_ms": 1}"#),
        &tcp_client(&ip, dst, r#"{"type": "line"}"#),
    ))
    .await;
    h.wait_for("r", 10, "red: no RS-485", |s| {
        s.source.color == Color::Red && s.source.detail.contains("does not support RS-485")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_holds_a_flow_controlled_serial_sender_back() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "hold");
    let mut dev = Device::plug(&link);
    let dst = ports::tcp_on(&ip);
    h.add(&format!(
        r#"{{"id": "hold", "max_storage_mb": 1, "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {}, "destination": {}}}"#,
        serial(&link, &format!(r#", "framing": {LINE}, "flow_control": "XON/XOFF""#)),
        tcp_client(&ip, dst, LINE)
    ))
    .await;
    h.wait_for("hold", 10, "port open", |s| s.source.color == Color::Green).await;
    // 3 MB into a 1 MiB buffer with the destination down: the writer stalls once the driver's
    // input buffer is full (the pseudo-terminal's equivalent of the line being held).
    let n = 30_000;
    let mut wire = Vec::new();
    for i in 0..n {
        writeln!(wire, "{i:08} {}", "y".repeat(90)).expect("vec write");
    }
    let total = wire.len();
    let writer = tokio::spawn(async move {
        dev.master.write_all(&wire).await.expect("device writes");
        dev
    });
    h.wait_for("hold", 10, "buffer full", |s| s.buffer == Color::Red).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the instrument is held back");
    assert_eq!(h.snap("hold").refused, 0, "nothing refused");
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let bytes = got.wait_bytes(total, 60).await;
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), n);
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(format!("{i:08} ").as_bytes()), "line {i}");
    }
    let _dev = writer.await.expect("writer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_without_flow_control_refuses_and_counts() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "nofc");
    let mut dev = Device::plug(&link);
    let dst = ports::tcp_on(&ip);
    h.add(&format!(
        r#"{{"id": "nofc", "max_storage_mb": 1, "source": {}, "destination": {}}}"#,
        serial(&link, &format!(r#", "framing": {LINE}"#)),
        tcp_client(&ip, dst, LINE)
    ))
    .await;
    h.wait_for("nofc", 10, "port open", |s| s.source.color == Color::Green).await;
    let n = 20_000u64;
    let mut wire = Vec::new();
    for i in 0..n {
        writeln!(wire, "{i:08} {}", "z".repeat(90)).expect("vec write");
    }
    // Without flow control the line cannot be held: everything is read, and what does not
    // fit is refused — counted and alarmed, never silently dropped.
    dev.master.write_all(&wire).await.expect("device writes");
    h.wait_for("nofc", 20, "all accounted for", |s| s.received + s.refused == n).await;
    let s = h.snap("nofc");
    assert!(s.refused > 0 && s.received > 0, "{s:?}");
    // Red while full; a later smaller batch that still fits shows it above 80 % (Yellow).
    assert!(matches!(s.buffer, Color::Red | Color::Yellow), "{s:?}");
    assert!(s.last_error.as_ref().is_some_and(|e| e.2.contains("refused")), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_loopback() {
    // Two real ports wired to each other, e.g. IOBP_HIL_SERIAL=/dev/ttyUSB0,/dev/ttyUSB1.
    let Ok(ports) = std::env::var("IOBP_HIL_SERIAL") else {
        eprintln!("IOBP_HIL_SERIAL not set: hardware-in-the-loop test not run");
        return;
    };
    let (port_a, port_b) = ports.split_once(',').expect("IOBP_HIL_SERIAL=PORT_A,PORT_B");
    let baud: u32 =
        std::env::var("IOBP_HIL_BAUD").ok().and_then(|v| v.parse().ok()).unwrap_or(115_200);
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let port = |p: &str| {
        format!(
            r#"{{"type": "serial", "port": "{p}", "baud_rate": {baud}, "framing": {{"type": "stx_etx"}}, "ack": "byte"}}"#
        )
    };
    // tcp → port A ⇄ cable ⇄ port B → tcp, acknowledged hop by hop.
    h.add(&pair("hil-out", &tcp_server(&ip, src, LINE), &port(port_a))).await;
    h.add(&pair("hil-in", &port(port_b), &tcp_client(&ip, dst, LINE))).await;
    let count = 2_000;
    let mut sender = connect((&ip, src)).await;
    let lines: String = (0..count).fold(String::new(), |mut w, i| {
        let _ = writeln!(w, "H{i:05} {}", "q".repeat(40));
        w
    });
    sender.write_all(lines.as_bytes()).await.expect("send");
    let got = got.wait_lines(count, 600).await;
    for (i, l) in got.iter().enumerate() {
        assert!(l.starts_with(&format!("H{i:05} ")), "line {i}: {l}");
    }
    let (out, into) = (h.snap("hil-out"), h.snap("hil-in"));
    let all = count as u64;
    assert_eq!((out.sent, into.received, into.rejected), (all, all, 0), "{out:?}\n{into:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_driver_ignores_are_reported_not_hidden() {
    // A pseudo-terminal has no UART: it keeps 8 data bits and no parity whatever is asked.
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = ports::loopback();
    let link = port_link(&dir, "7e1");
    let mut dev = Device::plug(&link);
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let src = serial(&link, &format!(r#", "data_bits": 7, "parity": "Even", "framing": {LINE}"#));
    h.add(&pair("7e1", &src, &tcp_client(&ip, dst, LINE))).await;
    h.wait_for("7e1", 10, "yellow, naming what was not applied", |s| {
        s.source.color == Color::Yellow
            && s.source.detail.contains("7 data bits (the port reports 8)")
            && s.source.detail.contains("parity Even (the port reports none)")
    })
    .await;
    let e = h.snap("7e1").last_error.expect("logged as an error");
    assert!(e.2.contains("the driver did not apply"), "{e:?}");
    // The port is still used.
    dev.master.write_all(b"still flows\n").await.expect("write");
    assert_eq!(got.wait_lines(1, 10).await, vec!["still flows"]);
}
