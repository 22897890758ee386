//! `kill -9` of the real binary at random points under load, then restart: every message
//! acknowledged before the kill (ack sources) — or counted as received (others) — is
//! delivered, in order; duplicates only for messages that were in flight.

#![cfg(unix)]

mod util;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use util::*;

fn frame(seq: u64) -> Vec<u8> {
    format!("\x02{seq:08}\x03").into_bytes()
}

/// Checks what the receiver saw: every number in `0..must` present; the distinct numbers form
/// a gap-free range; first appearances in increasing order. Returns (distinct, duplicates).
fn check_delivery(lines: &[String], must: u64) -> (u64, u64) {
    let nums: Vec<u64> = lines.iter().map(|l| l.parse().expect("number")).collect();
    let mut seen = BTreeSet::new();
    let mut last_new = None;
    let mut dups = 0;
    for n in &nums {
        if seen.insert(*n) {
            assert!(
                last_new.is_none_or(|l| *n > l),
                "message {n} first delivered after a later one"
            );
            last_new = Some(*n);
        } else {
            dups += 1;
        }
    }
    let distinct = seen.len() as u64;
    if let (Some(&first), Some(&last)) = (seen.first(), seen.last()) {
        assert_eq!(first, 0);
        assert_eq!(last + 1, distinct, "a hole in the delivered messages");
    }
    assert!(distinct >= must, "only {distinct} delivered, {must} were acknowledged");
    (distinct, dups)
}

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
        // Sender: writes frames from `acked_total` on, a reader thread counts ACK bytes.
        let mut conn = connect(src);
        let mut reader = conn.try_clone().expect("clone");
        let acks = Arc::new(AtomicU64::new(0));
        let (a2, stop) = (acks.clone(), Arc::new(AtomicBool::new(false)));
        let stop2 = stop.clone();
        let counter = std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            while let Ok(n) = reader.read(&mut b) {
                if n == 0 {
                    break;
                }
                assert!(b[..n].iter().all(|&x| x == 0x06), "only ACKs expected");
                a2.fetch_add(n as u64, Ordering::SeqCst);
            }
        });
        let start = acked_total;
        let writer = std::thread::spawn(move || {
            let mut seq = start;
            while !stop2.load(Ordering::Relaxed) {
                let mut batch = Vec::new();
                for s in seq..seq + 50 {
                    batch.extend(frame(s));
                }
                if conn.write_all(&batch).is_err() {
                    break;
                }
                seq += 50;
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        std::thread::sleep(Duration::from_millis(200 + rng.next() % 600));
        inst.kill9();
        stop.store(true, Ordering::Relaxed);
        let _ = writer.join();
        let _ = counter.join();
        // ACKs come in order: the first `acks` messages of this round are acknowledged.
        acked_total = start + acks.load(Ordering::SeqCst);
        assert!(acked_total > start, "round {round}: nothing was acknowledged");
    }
    // Restart once more and let everything drain.
    let inst = Instance::start(&tmp.path().join("data"), &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = receiver.lines();
        let distinct: BTreeSet<&String> = lines.iter().collect();
        if distinct.len() as u64 >= acked_total {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of {acked_total} delivered", distinct.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    inst.wait_for("crash", 20, "drained", |s| {
        s["counts"]["pending"] == 0 && s["counts"]["in_flight"] == 0
    });
    let (distinct, dups) = check_delivery(&receiver.lines(), acked_total);
    eprintln!(
        "{acked_total} acknowledged, {distinct} delivered, {dups} duplicate deliveries across 6 kills"
    );
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
