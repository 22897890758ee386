//! ASTM E1381 sources and destinations end to end: the simulated analyzer
//! (`iobp_simulate::astm`) sends to an `astm` source, the pair buffers, an `astm` destination
//! sends to the simulated LIS — over TCP and over pseudo-terminal pairs, with injected bad
//! checksums, garbled acknowledgements, refused frames and a full buffer. Every message must
//! reach the LIS exactly once, in order, and byte for byte as the analyzer made it.

#![cfg(target_os = "linux")]
#![allow(clippy::cast_possible_truncation)] // counts of a few thousand messages

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Harness;
use iobp_simulate::astm::{
    AnalyzerOptions, LisOptions, LisReport, analyzer_on, lis_on, result_message, run_analyzer,
    run_lis, sample_number,
};
use iobp_simulate::{Endpoint, Link};
use iobp_testkit::ports;
use iobp_testkit::pty::Device;

const ASTM: &str = r#"{"type": "astm"}"#;

fn pair(id: &str, extra: &str, source: &str, destination: &str) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 300}}{extra},
            "source": {source}, "destination": {destination}}}"#
    )
}

/// Messages the LIS received, in order.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// A LIS listening on a free loopback port, collecting until `count` messages arrived.
async fn lis(
    ip: &str,
    opts: LisOptions,
    count: usize,
) -> (u16, Received, tokio::task::JoinHandle<LisReport>) {
    let port = ports::tcp_on(ip);
    let (received, task) = lis_on_port(ip, port, opts, count).await;
    (port, received, task)
}

/// A LIS listening on `port`, collecting until `count` messages arrived.
async fn lis_on_port(
    ip: &str,
    port: u16,
    opts: LisOptions,
    count: usize,
) -> (Received, tokio::task::JoinHandle<LisReport>) {
    let endpoint = Endpoint::new(Link::Listen(format!("{ip}:{port}"))).await.expect("bind LIS");
    let received: Received = Arc::default();
    let into = received.clone();
    let task = tokio::spawn(async move {
        run_lis(&endpoint, &opts, move |m| {
            let mut r = into.lock().expect("lock");
            r.push(m);
            r.len() < count
        })
        .await
        .expect("LIS")
    });
    (received, task)
}

/// Every message 1..=count exactly once, in order, byte for byte.
fn assert_exactly_once_in_order(received: &[Vec<u8>], count: u64, long_every: Option<u64>) {
    for (i, m) in received.iter().enumerate() {
        let n = i as u64 + 1;
        let got = sample_number(m);
        assert_eq!(
            got,
            Some(n),
            "message {i}: sample {got:?} where {n} was due (a loss, a duplicate or a swap)"
        );
        let long = long_every.is_some_and(|k| n.is_multiple_of(k));
        assert_eq!(m, &result_message(n, long), "message {n} changed on the way");
    }
    assert_eq!(received.len() as u64, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzer_to_lis_over_tcp_through_bad_checksums_and_garbled_acks_exactly_once_in_order() {
    const COUNT: u64 = 10_000;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let lis_opts = LisOptions { garble_ack_every: Some(83), nak_every: Some(101) };
    let (lis_port, received, lis_task) = lis(&ip, lis_opts, COUNT as usize).await;
    let src = ports::tcp_on(&ip);
    h.add(&pair(
        "astm-tcp",
        "",
        &format!(r#"{{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {ASTM}}}"#),
        &format!(
            r#"{{"type": "tcp_client", "host": "{ip}", "port": {lis_port}, "framing": {ASTM}}}"#
        ),
    ))
    .await;
    let analyzer = Endpoint::new(Link::Connect(format!("{ip}:{src}"))).await.expect("endpoint");
    let opts = AnalyzerOptions {
        count: COUNT,
        corrupt_every: Some(97),
        garble_ack_every: Some(89),
        long_every: Some(50),
        retry_after: Duration::from_millis(50),
        ..AnalyzerOptions::default()
    };
    let report =
        tokio::time::timeout(Duration::from_secs(300), run_analyzer(&analyzer, &opts, |_| {}))
            .await
            .expect("the analyzer finished in time")
            .expect("analyzer");
    assert_eq!(report.delivered, COUNT);
    assert!(report.corrupted > 100 && report.garbled > 100, "faults were injected: {report:?}");
    let lis_report = tokio::time::timeout(Duration::from_secs(120), lis_task)
        .await
        .expect("the LIS got everything in time")
        .expect("LIS task");
    assert!(
        lis_report.garbled > 100 && lis_report.nakked > 100,
        "faults were injected: {lis_report:?}"
    );
    let received = received.lock().expect("lock").clone();
    assert_exactly_once_in_order(&received, COUNT, Some(50));
    h.wait_for("astm-tcp", 10, "counts settle", |s| s.received == COUNT && s.sent == COUNT).await;
    let s = h.snap("astm-tcp");
    assert!(s.errors > 0, "refused frames are shown to the operator");
    assert_eq!(s.refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzer_to_lis_over_serial_ports_exactly_once_in_order() {
    const COUNT: u64 = 2_000;
    let h = Harness::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("analyzer"), dir.path().join("lis"));
    let mut analyzer = Device::plug(&a);
    let mut lis_dev = Device::plug(&b);
    h.add(&pair(
        "astm-serial",
        "",
        &format!(
            r#"{{"type": "serial", "port": "{}", "baud_rate": 115200, "framing": {ASTM}}}"#,
            a.display()
        ),
        &format!(
            r#"{{"type": "serial", "port": "{}", "baud_rate": 115200, "framing": {ASTM}}}"#,
            b.display()
        ),
    ))
    .await;
    let received: Received = Arc::default();
    let into = received.clone();
    let lis_task = tokio::spawn(async move {
        let mut report = LisReport::default();
        let opts = LisOptions { garble_ack_every: Some(71), nak_every: Some(67) };
        let mut take = |m: Vec<u8>| {
            let mut r = into.lock().expect("lock");
            r.push(m);
            r.len() < COUNT as usize
        };
        lis_on(&mut lis_dev.master, &opts, &mut report, &mut take).await.expect("LIS");
        report
    });
    let opts = AnalyzerOptions {
        count: COUNT,
        corrupt_every: Some(53),
        garble_ack_every: Some(59),
        long_every: Some(10),
        retry_after: Duration::from_millis(50),
        ..AnalyzerOptions::default()
    };
    let mut report = iobp_simulate::astm::AnalyzerReport::default();
    tokio::time::timeout(
        Duration::from_secs(300),
        analyzer_on(&mut analyzer.master, &opts, &mut report, &mut |_| {}),
    )
    .await
    .expect("the analyzer finished in time")
    .expect("analyzer");
    let lis_report = tokio::time::timeout(Duration::from_secs(120), lis_task)
        .await
        .expect("the LIS got everything in time")
        .expect("LIS task");
    assert!(report.corrupted > 20 && lis_report.nakked > 20, "{report:?} {lis_report:?}");
    let received = received.lock().expect("lock").clone();
    assert_exactly_once_in_order(&received, COUNT, Some(10));
}

/// Buffer full: the analyzer's messages are refused with NAK (its retries fail, it waits and
/// asks again) until the LIS takes what is buffered; then everything arrives, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_naks_the_analyzer_which_retries_and_nothing_is_lost() {
    const COUNT: u64 = 3_000;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let lis_port = ports::tcp_on(&ip);
    let src = ports::tcp_on(&ip);
    h.add(&pair(
        "astm-full",
        r#", "max_storage_mb": 1"#,
        &format!(r#"{{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {ASTM}}}"#),
        &format!(
            r#"{{"type": "tcp_client", "host": "{ip}", "port": {lis_port}, "framing": {ASTM}}}"#
        ),
    ))
    .await;
    let analyzer = Endpoint::new(Link::Connect(format!("{ip}:{src}"))).await.expect("endpoint");
    let opts = AnalyzerOptions {
        count: COUNT,
        long_every: Some(1),
        retry_after: Duration::from_millis(100),
        ..AnalyzerOptions::default()
    };
    let sending = tokio::spawn(async move { run_analyzer(&analyzer, &opts, |_| {}).await });
    h.wait_for("astm-full", 120, "the buffer refuses", |s| s.refused > 0).await;
    let full = h.snap("astm-full");
    assert!(full.received < COUNT, "{full:#?}");
    assert!(full.storage_alarm.is_some(), "{full:#?}");
    // The LIS comes up: delivery frees room, the analyzer's retries get in.
    let (received, lis_task) =
        lis_on_port(&ip, lis_port, LisOptions::default(), COUNT as usize).await;
    let report = tokio::time::timeout(Duration::from_secs(300), sending)
        .await
        .expect("the analyzer finished in time")
        .expect("task")
        .expect("analyzer");
    assert!(report.failed_attempts > 0, "the analyzer was refused and tried again: {report:?}");
    tokio::time::timeout(Duration::from_secs(120), lis_task)
        .await
        .expect("the LIS got everything in time")
        .expect("LIS task");
    let received = received.lock().expect("lock").clone();
    assert_exactly_once_in_order(&received, COUNT, Some(1));
    let s = h.snap("astm-full");
    assert_eq!(s.received, COUNT, "every acknowledged message stored once");
    assert!(s.refused > 0);
    let r = common::reconciled(&h.engine, "astm-full").await;
    assert_eq!((r.received, r.delivered, r.pending), (COUNT, COUNT, 0), "{r:#?}");
}
