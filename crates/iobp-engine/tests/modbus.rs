//! The `modbus` source against the project's Modbus device simulator (`iobp_simulate::modbus`)
//! on real sockets and a real pseudo-terminal pair: readings arrive at a TCP receiver durable
//! and in order, polls keep their schedule while the destination is down, an exception fails
//! one poll (Yellow, counted, nothing stored for it), a device that stops answering is Red and
//! reconnected.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Harness;
use iobp_engine::Color;
use iobp_simulate::modbus::{Control, ExceptionRange};
use iobp_simulate::{Endpoint, Link};
use iobp_testkit::ports;
use iobp_testkit::receiver::AsyncReceiver;
use serde_json::Value;

/// A Modbus TCP device answering unit 1 on a fresh loopback port; runs until the test ends.
async fn tcp_device(ip: &str) -> (u16, Arc<Control>) {
    let port = ports::tcp_on(ip);
    let control = Control::new(Some(1));
    let endpoint = Endpoint::new(Link::Listen(format!("{ip}:{port}"))).await.expect("listen");
    tokio::spawn(iobp_simulate::modbus::serve(endpoint, control.clone()));
    (port, control)
}

fn pair(id: &str, transport: &str, polls: &str, dst: (&str, u16)) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 300}},
            "source": {{"type": "modbus", "transport": {transport}, "polls": [{polls}]}},
            "destination": {{"type": "tcp_client", "host": "{}", "port": {},
                             "framing": {{"type": "line"}}}}}}"#,
        dst.0, dst.1
    )
}

fn tcp(ip: &str, port: u16, timeout_ms: u64) -> String {
    format!(r#"{{"type": "tcp", "host": "{ip}", "port": {port}, "timeout_ms": {timeout_ms}}}"#)
}

/// Register 0 counts the requests the device answered; 100–103 hold their own addresses.
const COUNTER_AND_FIXED: &str = r#"
    {"name": "counter", "unit": 1, "function": "holding_registers", "address": 0, "count": 1,
     "interval_ms": 50, "fields": [{"name": "n", "offset": 0, "type": "u16"}]},
    {"name": "fixed", "unit": 1, "function": "input_registers", "address": 100, "count": 4,
     "interval_ms": 50, "fields": [
        {"name": "a", "offset": 0, "type": "u16"},
        {"name": "bc", "offset": 1, "type": "u32"},
        {"name": "half", "offset": 3, "type": "u16", "scale": 0.5, "offset_value": -1}]},
    {"name": "bits", "unit": 1, "function": "coils", "address": 0, "count": 10,
     "interval_ms": 100}"#;

fn parse(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// Every reading is well formed, per poll in time order, the counter grows, and the fixed
/// registers decode as they should.
fn check_readings(readings: &[Value]) {
    let mut last_at = std::collections::HashMap::<String, String>::new();
    let mut last_n = None;
    for r in readings {
        let poll = r["poll"].as_str().expect("poll").to_string();
        let at = r["at"].as_str().expect("at").to_string();
        assert!(at.ends_with('Z') && at.len() == 24, "{r}");
        if let Some(before) = last_at.insert(poll.clone(), at.clone()) {
            assert!(before < at, "`{poll}` out of order: {before} then {at}");
        }
        assert!(r["elapsed_ms"].as_f64().is_some_and(|e| e >= 0.0), "{r}");
        match poll.as_str() {
            "counter" => {
                let n = r["values"]["n"].as_u64().expect("n");
                assert_eq!(r["registers"][0].as_u64(), Some(n));
                if let Some(before) = last_n {
                    assert!(n > before, "the counter went from {before} to {n}");
                }
                last_n = Some(n);
            }
            "fixed" => {
                assert_eq!(r["registers"], serde_json::json!([100, 101, 102, 103]), "{r}");
                if r.get("values").is_some() {
                    assert_eq!(r["values"]["a"], 100);
                    assert_eq!(r["values"]["bc"], 101 * 65_536 + 102);
                    assert_eq!(r["values"]["half"], 50.5);
                }
                assert_eq!(r["function"], "input_registers");
                assert_eq!((r["address"].as_u64(), r["count"].as_u64()), (Some(100), Some(4)));
            }
            "bits" => {
                let bits = r["bits"].as_array().expect("bits");
                assert_eq!(bits.len(), 10);
                assert!(r.get("values").is_none() && r.get("registers").is_none(), "{r}");
            }
            other => panic!("unexpected poll {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_from_a_tcp_device_arrive_durable_decoded_and_in_order() {
    let ip = ports::loopback();
    let (port, _device) = tcp_device(&ip).await;
    let dst = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), dst));
    let h = Harness::new().await;
    h.add(&pair("mb", &tcp(&ip, port, 1000), COUNTER_AND_FIXED, (&ip, dst))).await;
    let lines = rx.wait_lines(100, 20).await;
    let readings = parse(&lines);
    check_readings(&readings);
    for poll in ["counter", "fixed", "bits"] {
        assert!(readings.iter().any(|r| r["poll"] == poll), "no `{poll}` reading");
    }
    let s = h.snap("mb");
    assert_eq!(s.source.color, Color::Green, "{s:#?}");
    assert_eq!((s.modbus_poll_errors, s.refused), (0, 0), "{s:#?}");
    assert!(s.received >= 100, "{s:#?}");
    // Stopped, so the polls stand still: every reading stored is accounted for.
    h.engine.stop_pair("mb").await.expect("stop");
    let r = common::reconciled(&h.engine, "mb").await;
    assert_eq!(r.received, r.stored, "{r:#?}");
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_from_an_rtu_device_on_a_serial_line_arrive_in_order_and_resume_after_silence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("ttyMODBUS");
    let device = iobp_testkit::pty::Device::plug(&link);
    let control = Control::new(Some(1));
    let c = control.clone();
    let served = tokio::spawn(async move {
        let mut device = device;
        iobp_simulate::modbus::serve_rtu(&mut device.master, &c, 115_200).await
    });
    let ip = ports::loopback();
    let dst = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), dst));
    let h = Harness::new().await;
    let transport = format!(
        // No parity: a pseudo-terminal applies none, and a setting the driver ignored would
        // (rightly) show the side Yellow.
        r#"{{"type": "rtu", "port": "{}", "baud_rate": 115200, "timeout_ms": 1000}}"#,
        link.display()
    );
    h.add(&pair("rtu", &transport, COUNTER_AND_FIXED, (&ip, dst))).await;
    let readings = parse(&rx.wait_lines(60, 20).await);
    check_readings(&readings);
    let s = h.snap("rtu");
    assert_eq!(s.source.color, Color::Green, "{s:#?}");
    assert_eq!(s.modbus_poll_errors, 0, "{s:#?}");
    assert!(control.answered() >= 60);
    // A device on the line that stops answering: Red, the port reopened after the backoff,
    // readings again once it answers.
    control.set_silent(true);
    h.wait_for("rtu", 10, "Red: no answer on the line", |s| {
        s.source.color == Color::Red && s.source.detail.contains("did not answer within 1000 ms")
    })
    .await;
    let quiet = h.snap("rtu").received;
    control.set_silent(false);
    h.wait_for("rtu", 10, "polled again", |s| {
        s.source.color == Color::Green && s.received >= quiet + 20
    })
    .await;
    let want = usize::try_from(h.snap("rtu").received).expect("count");
    check_readings(&parse(&rx.wait_lines(want, 10).await));
    served.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_keep_their_schedule_while_the_destination_is_down() {
    let ip = ports::loopback();
    let (port, _device) = tcp_device(&ip).await;
    let dst = ports::tcp_on(&ip);
    let mut rx = AsyncReceiver::start((ip.as_str(), dst));
    rx.stop();
    let h = Harness::new().await;
    // Two polls every 50 ms: 40 readings a second.
    let polls = r#"
        {"name": "counter", "unit": 1, "function": "holding_registers", "address": 0, "count": 1,
         "interval_ms": 50, "fields": [{"name": "n", "offset": 0, "type": "u16"}]},
        {"name": "fixed", "unit": 1, "function": "input_registers", "address": 100, "count": 4,
         "interval_ms": 50}"#;
    h.add(&pair("down", &tcp(&ip, port, 1000), polls, (&ip, dst))).await;
    h.wait_for("down", 10, "the first readings stored", |s| s.received >= 10).await;
    let (r0, t0) = (h.snap("down").received, Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = h.snap("down");
    let stored = s.received - r0;
    #[allow(clippy::cast_precision_loss)]
    let expected = t0.elapsed().as_secs_f64() * 40.0;
    assert_ne!(s.destination.color, Color::Green, "the destination is down: {s:#?}");
    #[allow(clippy::cast_precision_loss)]
    let ratio = stored as f64 / expected;
    assert!(
        (0.7..=1.1).contains(&ratio),
        "{stored} readings stored in {:?} with the destination down; the schedule asks for \
         {expected:.0}",
        t0.elapsed()
    );
    assert_eq!(s.sent, 0, "{s:#?}");
    // Back: everything stored arrives, in order, the oldest first.
    rx.restart();
    let want = usize::try_from(h.snap("down").received).expect("count");
    let readings = parse(&rx.wait_lines(want, 20).await);
    check_readings(&readings);
    let counters: Vec<u64> =
        readings.iter().filter_map(|r| r["values"]["n"].as_u64()).collect::<Vec<_>>();
    assert!(counters.len() * 2 >= want - 2, "both polls stored alike");
    h.wait_for("down", 10, "everything delivered", |s| s.pending == 0 && s.sent >= want as u64)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_fails_only_its_poll_counted_shown_and_never_stored() {
    let ip = ports::loopback();
    let (port, device) = tcp_device(&ip).await;
    device.set_exception(Some(ExceptionRange { from: 200, to: 209, code: 2 }));
    let dst = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), dst));
    let h = Harness::new().await;
    let polls = r#"
        {"name": "good", "unit": 1, "function": "holding_registers", "address": 100, "count": 2,
         "interval_ms": 50},
        {"name": "tank", "unit": 1, "function": "holding_registers", "address": 205, "count": 2,
         "interval_ms": 50}"#;
    h.add(&pair("exc", &tcp(&ip, port, 1000), polls, (&ip, dst))).await;
    h.wait_for("exc", 10, "the failing poll shown", |s| {
        s.source.color == Color::Yellow
            && s.source.detail.contains("`tank` exception 2 (illegal data address)")
            && s.modbus_poll_errors >= 10
            && s.received >= 10
    })
    .await;
    let s = h.snap("exc");
    let (_, _, last) = s.last_error.clone().expect("last error");
    assert!(last.contains("tank") && last.contains("illegal data address"), "{last}");
    assert!(s.errors >= s.modbus_poll_errors, "{s:#?}");
    let lines = rx.wait_lines(10, 10).await;
    assert!(parse(&lines).iter().all(|r| r["poll"] == "good"), "{lines:#?}");
    // The device is fixed: the poll stores again and the side is Green.
    device.set_exception(None);
    h.wait_for("exc", 10, "the poll healed", |s| s.source.color == Color::Green).await;
    iobp_testkit::wait::poll_async(10, "a `tank` reading", || {
        let lines = rx.lines();
        if parse(&lines).iter().any(|r| r["poll"] == "tank") { Ok(()) } else { Err(String::new()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_answering_is_red_and_polled_again_when_it_answers() {
    let ip = ports::loopback();
    let (port, device) = tcp_device(&ip).await;
    let dst = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), dst));
    let h = Harness::new().await;
    let polls = r#"
        {"name": "counter", "unit": 1, "function": "holding_registers", "address": 0, "count": 1,
         "interval_ms": 50, "fields": [{"name": "n", "offset": 0, "type": "u16"}]}"#;
    h.add(&pair("quiet", &tcp(&ip, port, 200), polls, (&ip, dst))).await;
    h.wait_for("quiet", 10, "readings", |s| s.received >= 5).await;
    device.set_silent(true);
    h.wait_for("quiet", 10, "Red: no answer", |s| {
        s.source.color == Color::Red && s.source.detail.contains("did not answer within 200 ms")
    })
    .await;
    let during = h.snap("quiet");
    assert!(during.modbus_poll_errors >= 1, "{during:#?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quiet = h.snap("quiet").received;
    assert!(quiet <= during.received + 1, "nothing stored while the device is silent");
    device.set_silent(false);
    h.wait_for("quiet", 10, "polled again", |s| {
        s.source.color == Color::Green && s.received >= quiet + 10
    })
    .await;
    let want = usize::try_from(h.snap("quiet").received).expect("count");
    check_readings(&parse(&rx.wait_lines(want, 10).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_refuses_readings_counted_while_polls_keep_their_schedule() {
    let ip = ports::loopback();
    let (port, device) = tcp_device(&ip).await;
    let dst = ports::tcp_on(&ip);
    let mut rx = AsyncReceiver::start((ip.as_str(), dst));
    rx.stop();
    let h = Harness::new().await;
    // Ten polls of 125 registers every 10 ms with the destination down: about 600 KB a second
    // into a 1 MiB buffer.
    let polls: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"name": "p{i}", "unit": 1, "function": "input_registers",
                     "address": {}, "count": 125, "interval_ms": 10}}"#,
                1000 + i * 125
            )
        })
        .collect();
    let json = pair("full", &tcp(&ip, port, 1000), &polls.join(","), (&ip, dst)).replacen(
        r#""id": "full","#,
        r#""id": "full", "max_storage_mb": 1,"#,
        1,
    );
    h.add(&json).await;
    h.wait_for("full", 20, "readings refused", |s| s.refused >= 200).await;
    let (before, answered, t0) = (h.snap("full"), device.answered(), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = h.snap("full");
    // The device is still polled on schedule (about 1,000 a second); what cannot be stored is
    // counted as refused, never silently dropped.
    #[allow(clippy::cast_precision_loss)]
    let polled = (device.answered() - answered) as f64 / t0.elapsed().as_secs_f64();
    // (1,000 a second asked; a loaded test machine gets fewer done, never a burst.)
    assert!(polled > 500.0, "{polled:.0} polls/s while the buffer is full");
    let (stored, refused) = (after.received - before.received, after.refused - before.refused);
    assert!(
        refused > 300 && stored + refused + 50 >= device.answered() - answered,
        "{stored} stored, {refused} refused of {} polled",
        device.answered() - answered
    );
    assert!(after.storage_alarm.is_some(), "{after:#?}");
    let (_, _, last) = after.last_error.clone().expect("last error");
    assert!(last.contains("poll readings refused: buffer full"), "{last}");
    // The destination back: what was stored leaves in order, and readings are stored again.
    rx.restart();
    let want = usize::try_from(after.received).expect("count");
    check_readings_in_order(&parse(&rx.wait_lines(want, 30).await));
    let received = h.snap("full").received;
    h.wait_for("full", 30, "readings stored again", |s| s.received > received + 500).await;
}

/// Readings of polls without fields: per poll, strictly later each time.
fn check_readings_in_order(readings: &[Value]) {
    let mut last_at = std::collections::HashMap::<String, String>::new();
    for r in readings {
        let poll = r["poll"].as_str().expect("poll").to_string();
        let at = r["at"].as_str().expect("at").to_string();
        if let Some(before) = last_at.insert(poll.clone(), at.clone()) {
            assert!(before < at, "`{poll}` out of order: {before} then {at}");
        }
    }
}

/// A figure, not a check (performance is measured, never asserted): `IOBP_MODBUS_POLLS`
/// (default 20) polls every 10 ms (2,000 requested per second) against the TCP simulator for
/// `IOBP_MODBUS_SECS` (default 30) seconds, every reading stored and delivered to a receiver. Prints polls stored per second and
/// the device's answer time (p50, p99, p99.9, max) from the readings' `elapsed_ms`. Run with
/// `cargo test -p iobp-engine --test modbus -- --ignored --nocapture polls_per_second`.
#[ignore = "a measurement: run on demand"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_per_second_sustained() {
    let secs: u64 =
        std::env::var("IOBP_MODBUS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let ip = ports::loopback();
    let (port, _device) = tcp_device(&ip).await;
    let dst = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), dst));
    let h = Harness::new().await;
    let n: u64 = std::env::var("IOBP_MODBUS_POLLS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let polls: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name": "p{i}", "unit": 1, "function": "holding_registers",
                     "address": {}, "count": 10, "interval_ms": 10}}"#,
                100 + i * 10
            )
        })
        .collect();
    h.add(&pair("rate", &tcp(&ip, port, 1000), &polls.join(","), (&ip, dst))).await;
    h.wait_for("rate", 10, "polling", |s| s.received >= 100).await;
    let (r0, t0) = (h.snap("rate").received, Instant::now());
    let skip = rx.line_count();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let s = h.snap("rate");
    let elapsed = t0.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = (s.received - r0) as f64 / elapsed;
    let lines = rx.lines();
    let mut answer: Vec<f64> = parse(&lines[skip.min(lines.len())..])
        .iter()
        .filter_map(|r| r["elapsed_ms"].as_f64())
        .collect();
    answer.sort_by(f64::total_cmp);
    let q = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((answer.len() as f64 - 1.0) * p).round() as usize;
        answer.get(i).copied().unwrap_or(f64::NAN)
    };
    println!(
        "modbus: {n} polls x 10 ms ({}/s asked) for {elapsed:.1} s: {rate:.0} polls/s stored, \
         {} delivered, errors {}, refused {}; answer time p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, \
         max {:.3} ms ({} readings)",
        n * 100,
        s.sent,
        s.modbus_poll_errors,
        s.refused,
        q(0.5),
        q(0.99),
        q(0.999),
        answer.last().copied().unwrap_or(f64::NAN),
        answer.len()
    );
}
