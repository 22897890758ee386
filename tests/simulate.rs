//! `iobufferpro simulate …` as a commissioning engineer uses it: a pair created through the
//! REST API, a simulated device on each side (separate processes of the real binary), and the
//! receiving simulator's verdict — every message once, in order — read from its output and
//! exit status.

#![cfg(unix)]

mod util;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use iobp_testkit::ports;
use util::{Instance, bin};

/// Starts `iobufferpro simulate <args>`.
fn simulator(args: &[&str]) -> Child {
    Command::new(bin())
        .arg("simulate")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the simulator")
}

/// Waits for a simulator to finish (killing it after `secs`), with its output.
fn finish(mut child: Child, secs: u64, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what} did not finish in {secs} s\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Creates a pair through the API.
fn create(inst: &Instance, id: &str, source: &str, destination: &str) {
    let body = format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 300}}, "source": {source}, "destination": {destination}}}"#
    );
    let r = inst.api("POST", "/api/v1/pairs", Some(&body));
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Runs a receiving and a sending simulator through pair `id` and returns the receiver's
/// summary line.
fn through(receiver: &[&str], sender: &[&str], what: &str) -> String {
    let rx = simulator(receiver);
    // The receiver listens before the pair's destination connects (it retries anyway).
    std::thread::sleep(Duration::from_millis(200));
    let tx = finish(simulator(sender), 120, &format!("{what} sender"));
    assert!(
        tx.status.success(),
        "{what} sender: {}{}",
        stdout(&tx),
        String::from_utf8_lossy(&tx.stderr)
    );
    let rx = finish(rx, 60, &format!("{what} receiver"));
    assert!(
        rx.status.success(),
        "{what} receiver: {}{}",
        stdout(&rx),
        String::from_utf8_lossy(&rx.stderr)
    );
    stdout(&rx)
}

#[test]
fn an_analyzer_and_a_lis_simulator_commission_an_astm_pair() {
    let data = tempfile::tempdir().expect("tempdir");
    let inst = Instance::start(data.path(), &[]);
    let (src, dst) = (ports::tcp(), ports::tcp());
    create(
        &inst,
        "lab",
        &format!(
            r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "astm"}}}}"#
        ),
        &format!(
            r#"{{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "astm"}}}}"#
        ),
    );
    let lis = format!("127.0.0.1:{dst}");
    let analyzer = format!("127.0.0.1:{src}");
    let summary = through(
        &[
            "astm-lis",
            "--listen",
            &lis,
            "--expect",
            "300",
            "--garble-ack-every",
            "13",
            "--nak-every",
            "17",
        ],
        &[
            "astm-analyzer",
            "--connect",
            &analyzer,
            "--count",
            "300",
            "--corrupt-every",
            "11",
            "--garble-ack-every",
            "7",
            "--long-every",
            "5",
        ],
        "ASTM",
    );
    assert!(summary.contains("received 300 messages"), "{summary}");
    assert!(summary.contains("300 in order, 0 repeated, 0 missing"), "{summary}");
    let status = inst.pair("lab");
    assert_eq!(status["counts"]["received"], 300, "{status:#}");
}

#[test]
fn line_and_mllp_simulators_send_and_verify_through_pairs() {
    let data = tempfile::tempdir().expect("tempdir");
    let inst = Instance::start(data.path(), &[]);
    let (lsrc, ldst, msrc, mdst) = (ports::tcp(), ports::tcp(), ports::tcp(), ports::tcp());
    let side = |t: &str, port: u16, framing: &str, ack: &str| {
        format!(
            r#"{{"type": "{t}", "host": "127.0.0.1", "port": {port}, "framing": {{"type": "{framing}"}}, "ack": "{ack}"}}"#
        )
    };
    create(
        &inst,
        "lines",
        &side("tcp_server", lsrc, "line", "none"),
        &side("tcp_client", ldst, "line", "none"),
    );
    create(
        &inst,
        "hl7",
        &side("tcp_server", msrc, "mllp", "mllp"),
        &side("tcp_client", mdst, "mllp", "mllp"),
    );
    let summary = through(
        &["lines", "receive", "--listen", &format!("127.0.0.1:{ldst}"), "--expect", "20000"],
        &[
            "lines",
            "send",
            "--connect",
            &format!("127.0.0.1:{lsrc}"),
            "--count",
            "20000",
            "--size",
            "100",
        ],
        "lines",
    );
    assert!(summary.contains("20000 in order, 0 repeated, 0 missing"), "{summary}");
    let summary = through(
        &[
            "mllp",
            "receive",
            "--listen",
            &format!("127.0.0.1:{mdst}"),
            "--expect",
            "300",
            "--refuse-every",
            "23",
        ],
        &["mllp", "send", "--connect", &format!("127.0.0.1:{msrc}"), "--count", "300"],
        "MLLP",
    );
    assert!(summary.contains("300 in order, 0 repeated, 0 missing"), "{summary}");
    assert!(
        inst.pair("hl7")["counts"]["retries"].as_u64().unwrap_or(0) > 0,
        "AE answers were retried"
    );
}

#[test]
fn a_verifying_receiver_fails_when_a_message_is_missing() {
    let port = ports::tcp();
    let addr = format!("127.0.0.1:{port}");
    let rx = simulator(&["lines", "receive", "--listen", &addr, "--expect", "4"]);
    std::thread::sleep(Duration::from_millis(300));
    // Starts at 2: message 1 never comes.
    let tx = finish(
        simulator(&["lines", "send", "--connect", &addr, "--first", "2", "--count", "6"]),
        30,
        "sender",
    );
    assert!(tx.status.success());
    let rx = finish(rx, 30, "receiver");
    assert!(!rx.status.success(), "a loss must fail the run: {}", stdout(&rx));
    assert!(String::from_utf8_lossy(&rx.stderr).contains("1 message(s) missing"), "{rx:?}");
}
