//! `kill -9` of the real binary at random points under load, then restart: every message
//! acknowledged before the kill (ack sources) — or counted as received (others) — is
//! delivered, in order; duplicates only for messages that were in flight.

#![cfg(unix)]

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use util::*;

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst) = (ports::tcp(), ports::tcp());
    let receiver = Receiver::start(ports::localhost(dst));
    let config = tmp.path().join("config.json");
    std::fs::write(&config, line_pair_doc("crash", src, dst, r#""byte""#)).expect("config");
    let mut rng = Xs(0xDEAD_BEEF_1234_5678);
    let mut acked_total = 0u64; // messages 0..acked_total were acknowledged
    for round in 0..6 {
        let extra: Vec<&str> =
            if round == 0 { vec!["--config", config.to_str().expect("utf8")] } else { vec![] };
        let inst = Instance::start(&tmp.path().join("data"), &extra);
        let start = acked_total;
        acked_total =
            stream_until_kill9(src, start, Duration::from_millis(200 + rng.next() % 600), inst);
        assert!(acked_total > start, "round {round}: nothing was acknowledged");
    }
    // Restart once more and let everything drain.
    let inst = Instance::start(&tmp.path().join("data"), &[]);
    wait_distinct(&receiver, acked_total, 30);
    inst.wait_for("crash", 20, "drained", |s| {
        s["counts"]["pending"] == 0 && s["counts"]["in_flight"] == 0
    });
    let (distinct, dups) = check_delivery(&receiver.lines(), acked_total);
    eprintln!(
        "{acked_total} acknowledged, {distinct} delivered, {dups} duplicate deliveries across 6 kills"
    );
    // This process received nothing; it delivered exactly the backlog it opened with.
    let r = inst.reconciled("crash", 30);
    assert_eq!((r["received"].as_u64(), r["pending"].as_u64()), (Some(0), Some(0)), "{r:#}");
    assert_eq!(r["delivered"], r["backlog_at_start"], "{r:#}");
}

#[test]
fn kill_9_without_acks_delivers_everything_counted_as_received() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst) = (ports::tcp(), ports::tcp());
    let receiver = Receiver::start(ports::localhost(dst));
    let config = tmp.path().join("config.json");
    std::fs::write(&config, line_pair_doc("noack", src, dst, r#""none""#)).expect("config");
    let inst =
        Instance::start(&tmp.path().join("data"), &["--config", config.to_str().expect("utf8")]);
    let mut conn = connect(src);
    let mut seq = 0u64;
    let mut last_received = 0u64;
    let until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < until {
        let mut batch = Vec::new();
        for s in seq..seq + 100 {
            batch.extend(frame(s));
        }
        conn.write_all(&batch).expect("send");
        seq += 100;
        last_received = inst.pair("noack")["counts"]["received"].as_u64().expect("count");
    }
    inst.kill9();
    drop(conn);
    // What the instance reported as received before the kill was durable: it must arrive.
    let inst = Instance::start(&tmp.path().join("data"), &[]);
    inst.wait_for("noack", 30, "drained", |s| {
        s["counts"]["pending"] == 0 && s["counts"]["in_flight"] == 0
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while (receiver.lines().len() as u64) < last_received {
        assert!(Instant::now() < deadline, "delivery stalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    check_delivery(&receiver.lines(), last_received);
}

/// A message's trace survives `kill -9` (it is written within milliseconds, before the page
/// cache is all a killed process leaves) and tells the whole story after the restart:
/// stored, still waiting when the instance started again, delivered.
#[test]
fn a_message_trace_survives_kill_9_and_shows_the_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst) = (ports::tcp(), ports::tcp());
    let config = tmp.path().join("config.json");
    let doc = format!(
        r#"{{"channel_pairs": [{{"id": "traced", "retry": {{"initial_ms": 50, "max_ms": 300}},
            "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}]}}"#
    );
    std::fs::write(&config, doc).expect("config");
    let data = tmp.path().join("data");
    let inst = Instance::start(&data, &["--config", config.to_str().expect("utf8")]);
    send_lines(src, (1..=10).map(|n| format!("reading {n}")));
    inst.wait_for("traced", 10, "10 stored", |s| s["counts"]["received"] == 10);
    let trace =
        |inst: &Instance| inst.api("GET", "/api/v1/pairs/traced/messages/7/trace", None).json();
    let before = trace(&inst);
    assert_eq!(before["events"][0]["kind"], "stored", "{before:#}");
    inst.kill9();

    // Restarted with the receiver up: the backlog goes out.
    let receiver = Receiver::start(ports::localhost(dst));
    let inst = Instance::start(&data, &[]);
    wait_distinct(&receiver, 10, 20);
    // Delivery is traced just after the write the receiver has already read.
    let mut after = serde_json::Value::Null;
    iobp_testkit::wait::poll(10, "the delivery in the trace", || {
        after = trace(&inst);
        let kinds: Vec<&str> = after["events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["kind"].as_str()).collect())
            .unwrap_or_default();
        if kinds == ["stored", "started", "delivered"] { Ok(()) } else { Err(format!("{after:#}")) }
    });
    assert_eq!(after["events"][0], before["events"][0], "the same event, read back after the kill");
    assert_eq!(after["events"][1]["error"], "the instance started");
    assert_eq!(after["state"], "done");
    assert_eq!(after["events_lost"], 0);
}
