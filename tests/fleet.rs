//! `kill -9` of the real binary mid-stream with fleet sides on real brokers: one instance
//! takes numbered messages on an acknowledging TCP source, publishes them to the broker
//! (`up`: tcp → mqtt / nats) and takes them back from it (`down`: mqtt / nats → tcp). It is
//! killed with SIGKILL at random points and restarted. Every message our source acknowledged
//! reaches the receiver, first appearances in order; into JetStream no message id is stored
//! twice (the duplicate window removes the re-sends); through MQTT a re-sent copy carries its
//! message's `iobp-id` user property, no id names two messages, and a source with
//! `drop_duplicates` stores each of them once.

#![cfg(unix)]

mod util;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use iobp_testkit::receiver::Receiver;
use iobp_testkit::{Broker, MosquittoConfig, ports, streams};
use util::*;

/// Kills and restarts `rounds` times while streaming; returns the number of messages
/// acknowledged (`0..n`) once everything is delivered and drained.
fn kill_rounds(data: &Path, config: &Path, src: u16, receiver: &Receiver, rounds: u32) -> u64 {
    let mut rng = Xs(0x5EED_F1EE_7000_0001);
    let mut acked = 0u64;
    for round in 0..rounds {
        let config = config.to_str().expect("utf8");
        let extra: Vec<&str> = if round == 0 { vec!["--config", config] } else { vec![] };
        let inst = Instance::start(data, &extra);
        // The subscription must exist before anything is published (a broker keeps messages
        // only for sessions it knows), and after a restart both sides reconnect.
        inst.wait_for("down", 20, "the down side subscribed", |s| s["source"]["status"] == "green");
        inst.wait_for("up", 20, "the up side connected", |s| s["destination"]["status"] == "green");
        acked = stream_until_kill9(src, acked, Duration::from_millis(300 + rng.next() % 700), inst);
    }
    let inst = Instance::start(data, &[]);
    wait_distinct(receiver, acked, 60);
    for id in ["up", "down"] {
        inst.wait_for(id, 30, "drained", |s| {
            s["counts"]["pending"] == 0 && s["counts"]["in_flight"] == 0
        });
    }
    let (distinct, dups) = check_delivery(&receiver.lines(), acked);
    eprintln!(
        "{acked} acknowledged, {distinct} delivered, {dups} duplicate deliveries across {rounds} kills"
    );
    acked
}

fn retry() -> &'static str {
    r#""retry": {"initial_ms": 50, "max_ms": 300}"#
}

fn ack_source(port: u16) -> String {
    format!(
        r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {port},
             "framing": {{"type": "stx_etx"}}, "ack": "byte"}}"#
    )
}

fn line_destination(port: u16) -> String {
    format!(
        r#"{{"type": "tcp_client", "host": "127.0.0.1", "port": {port}, "framing": {{"type": "line"}}}}"#
    )
}

#[test]
fn kill_9_mid_stream_through_mosquitto_loses_nothing_and_stores_each_message_once_downstream() {
    let broker = Broker::mosquitto(&MosquittoConfig::default());
    let tmp = tempfile::tempdir().expect("tmp");
    // An observer on the broker sees every publish, re-sends included, with its user
    // properties.
    let seen = tmp.path().join("observed.txt");
    let observer = Command::new("mosquitto_sub")
        .args(["-V", "mqttv5", "-p", &broker.port().to_string(), "-h", "127.0.0.1"])
        .args(["-q", "1", "-t", "plant/#", "-F", "%P|%p"])
        .stdout(std::fs::File::create(&seen).expect("observer file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (Debian package mosquitto-clients)");
    let _observer = ChildGuard(observer);
    let (src, dst) = (ports::tcp(), ports::tcp());
    let receiver = Receiver::start(ports::localhost(dst));
    let url = broker.url();
    let doc = format!(
        r#"{{"channel_pairs": [
            {{"id": "up", {retry}, "source": {source},
              "destination": {{"type": "mqtt", "url": "{url}", "topic": "plant/{{pair}}"}}}},
            {{"id": "down", {retry}, "source": {{"type": "mqtt", "url": "{url}", "topic": "plant/up", "drop_duplicates": true}},
              "destination": {destination}}}]}}"#,
        retry = retry(),
        source = ack_source(src),
        destination = line_destination(dst),
    );
    let config = tmp.path().join("config.json");
    std::fs::write(&config, doc).expect("config");
    // Give the observer time to subscribe before the first publish.
    iobp_testkit::wait::poll(10, "the observer subscribed", || {
        broker.log().contains("New client connected").then_some(()).ok_or("not yet".to_string())
    });
    let acked = kill_rounds(&tmp.path().join("data"), &config, src, &receiver, 4);

    // A re-sent copy carries its message's id: an id never names two messages, and re-sends
    // (the same id again) did happen. (The same payload may be two messages: our TCP client
    // sent again what it had not seen acknowledged.)
    std::thread::sleep(Duration::from_millis(500));
    let at_broker = std::fs::read_to_string(&seen).expect("observed");
    let mut message_of: HashMap<&str, &str> = HashMap::new();
    let mut copies = 0;
    for line in at_broker.lines() {
        let (props, payload) = line.split_once('|').expect("props|payload");
        let id = props.strip_prefix("iobp-id:").expect("an iobp-id user property");
        if let Some(before) = message_of.insert(id, payload) {
            copies += 1;
            assert_eq!(before, payload, "id {id} on two messages");
        }
    }
    assert!(message_of.len() as u64 >= acked, "the observer saw {} of {acked}", message_of.len());
    eprintln!(
        "{} messages at the broker, {copies} re-sent copies with their ids",
        message_of.len()
    );

    // `down` drops what `up` re-sent (`drop_duplicates`): its buffer holds each record of
    // `up`'s once, in order, across the kills.
    let read = |id: &str| -> Vec<Vec<u8>> {
        let dir = tmp.path().join("data").join("logs").join(id);
        let log = iobp_log::Log::open(dir, iobp_log::LogOptions::default()).expect("buffer");
        let all = log.read_range(1, usize::MAX, usize::MAX).expect("read");
        all.iter().map(|r| r.payload.to_vec()).collect()
    };
    let (up, down) = (read("up"), read("down"));
    assert!(copies > 0, "the kills made re-sends (else this proves nothing)");
    assert_eq!(down.len(), up.len(), "each of up's records stored once downstream");
    assert!(down == up, "in up's order");
}

#[test]
fn kill_9_mid_stream_through_jetstream_loses_nothing_acknowledged_and_stores_each_id_once() {
    let broker = Broker::nats("127.0.0.1", &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let js = rt.block_on(async {
        let js = async_nats::jetstream::new(
            async_nats::connect(broker.url()).await.expect("test client connects"),
        );
        streams::create_stream(&js, "EDGE", &["iobp.>"]).await;
        js
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst) = (ports::tcp(), ports::tcp());
    let receiver = Receiver::start(ports::localhost(dst));
    let url = broker.url();
    let doc = format!(
        r#"{{"channel_pairs": [
            {{"id": "up", {retry}, "source": {source},
              "destination": {{"type": "nats", "servers": ["{url}"], "subject": "iobp.{{pair}}", "stream": "EDGE"}}}},
            {{"id": "down", {retry},
              "source": {{"type": "nats", "servers": ["{url}"], "stream": "EDGE", "subject": "iobp.up"}},
              "destination": {destination}}}]}}"#,
        retry = retry(),
        source = ack_source(src),
        destination = line_destination(dst),
    );
    let config = tmp.path().join("config.json");
    std::fs::write(&config, doc).expect("config");
    let acked = kill_rounds(&tmp.path().join("data"), &config, src, &receiver, 4);
    let stored = rt.block_on(streams::read_stream(&js, "EDGE"));
    streams::assert_unique_ids(&stored);
    assert!(stored.len() as u64 >= acked, "the stream holds {} of {acked}", stored.len());
}
