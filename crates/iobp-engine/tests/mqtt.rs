//! `mqtt` sides against a real broker (Debian's `mosquitto`, started by each test on a free
//! loopback port with its own configuration and store): messages go tcp → mqtt destination →
//! mosquitto → mqtt source → tcp, in order and complete, in MQTT 5 and 3.1.1; a broker killed
//! with SIGKILL and restarted mid-stream loses nothing our side had not seen acknowledged;
//! wrong credentials show a clear error, lose nothing, and heal with an edit.

mod common;

use std::time::Duration;

use common::*;
use iobp_engine::Color;
use iobp_testkit::receiver::AsyncReceiver;
use iobp_testkit::{Broker, MosquittoConfig, ports};

/// A broker that takes anyone, or only `user` (with `password`) when given, and writes its
/// store at every change (so a SIGKILL loses nothing it acknowledged).
fn persistent_broker(user: Option<(&str, &str)>) -> Broker {
    Broker::mosquitto(&MosquittoConfig {
        user: user.map(|(u, p)| (u.to_string(), p.to_string())),
        persistent: true,
        ..MosquittoConfig::default()
    })
}

/// A broker that keeps everything in memory: fast, for tests where it never dies.
fn in_memory_broker() -> Broker {
    Broker::mosquitto(&MosquittoConfig::default())
}

/// A pair taking lines on a tcp source and publishing them to `url` (topic `plant/{pair}`).
fn to_broker(id: &str, src: (&str, u16), url: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{id}",
            "retry": {{"initial_ms": 50, "max_ms": 400}},
            "source": {{"type": "tcp_server", "host": "{}", "port": {}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "mqtt", "url": "{url}", "topic": "plant/{{pair}}" {extra}}}}}"#,
        src.0, src.1
    )
}

/// A pair subscribed to `topic` at `url`, delivering lines to a tcp receiver.
fn from_broker(id: &str, url: &str, topic: &str, extra: &str, dst: (&str, u16)) -> String {
    format!(
        r#"{{"id": "{id}",
            "retry": {{"initial_ms": 50, "max_ms": 400}},
            "source": {{"type": "mqtt", "url": "{url}", "topic": "{topic}" {extra}}},
            "destination": {{"type": "tcp_client", "host": "{}", "port": {}, "framing": {{"type": "line"}}}}}}"#,
        dst.0, dst.1
    )
}

fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:08} {}", "m".repeat(91))).collect()
}

/// Every line in `got` is one of `sent`, the first copies are `sent` in order, and a repeated
/// line only repeats one already seen (at-least-once, FIFO).
fn assert_in_order_complete(sent: &[String], got: &[String]) {
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<&String> = got.iter().filter(|l| seen.insert(l.as_str())).collect();
    assert_eq!(firsts.len(), sent.len(), "every message arrives");
    for (i, (a, b)) in sent.iter().zip(firsts).enumerate() {
        assert_eq!(a, b, "message {i} out of order");
    }
}

async fn round_trip(version: &str, n: usize) {
    let broker = in_memory_broker();
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip)));
    let v = format!(r#", "version": "{version}""#);
    let dst = rx.addr();
    h.add(&from_broker("from", &broker.url(), "plant/to", &v, (&ip, dst.port()))).await;
    h.wait_for("from", 10, "subscribed", |s| s.source.color == Color::Green).await;
    h.add(&to_broker("to", (&ip, src), &broker.url(), &v)).await;
    h.wait_for("to", 10, "connected to the broker", |s| s.destination.color == Color::Green).await;
    let detail = h.snap("to").destination.detail;
    assert!(detail.ends_with("(publishing to plant/to)"), "the topic as published: {detail}");
    let sent = lines(n);
    send_lines((&ip, src), sent.clone()).await;
    h.wait_for("to", 60, "all acknowledged by the broker", |s| s.sent == n as u64).await;
    h.wait_for("from", 60, "all received", |s| s.received >= n as u64).await;
    let got = rx.wait_lines(n, 60).await;
    assert_in_order_complete(&sent, &got);
    assert_eq!(got.len(), n, "no duplicates without a fault");
    h.wait_for("from", 10, "counted", |s| s.received == n as u64 && s.sent == n as u64).await;
    let s = h.snap("to");
    assert_eq!((s.pending, s.in_flight), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_through_mosquitto_in_order_mqtt5() {
    round_trip("5", 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_through_mosquitto_in_order_mqtt311() {
    round_trip("3.1.1", 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_with_a_backlog_loses_nothing_it_saved_and_we_send_what_it_missed() {
    // mosquitto acknowledges a publish before it saves its store (at the end of its loop
    // iteration, even with autosave on every change), so a SIGKILL in between loses what it
    // acknowledged — the broker's guarantee, not ours (the manual, `docs/manual/fleets.md`). This test kills it
    // where its store holds everything it acknowledged: a backlog of 2,000 messages queued
    // for our stopped subscriber's persistent session (mosquitto writes its whole store at
    // every change, so a larger backlog only slows it); more messages arrive at our instance
    // during the outage. Everything arrives in order once the broker is back.
    let mut broker = persistent_broker(None);
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip)));
    let dst = rx.addr();
    h.add(&from_broker("from", &broker.url(), "plant/to", r#", "qos": 2"#, (&ip, dst.port())))
        .await;
    h.wait_for("from", 10, "subscribed", |s| s.source.color == Color::Green).await;
    h.add(&to_broker("to", (&ip, src), &broker.url(), "")).await;
    h.wait_for("to", 10, "connected", |s| s.destination.color == Color::Green).await;
    let sent = lines(10_000);
    let (first, rest) = sent.split_at(5_000);
    let (backlog, during) = rest.split_at(2_000);

    send_lines((&ip, src), first.to_vec()).await;
    h.wait_for("from", 30, "the first part delivered", |s| s.sent == 5_000).await;
    h.engine.stop_pair("from").await.expect("stop");
    send_lines((&ip, src), backlog.to_vec()).await;
    h.wait_for("to", 30, "the backlog at the broker", |s| s.sent == 7_000).await;
    // The broker saves at the end of the iteration that acknowledged the last of them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.kill();
    send_lines((&ip, src), during.to_vec()).await;
    h.wait_for("to", 10, "the outage shows", |s| {
        s.destination.color == Color::Red
            && s.destination.detail.contains("cannot connect")
            && s.received == 10_000
    })
    .await;
    assert_eq!(h.snap("to").sent, 7_000, "nothing counted delivered while the broker is down");
    broker.restart();
    h.engine.start_pair("from").await.expect("start");
    h.wait_for("to", 60, "everything acknowledged after the restart", |s| {
        s.sent == 10_000 && s.pending == 0
    })
    .await;
    let got = rx.wait_lines(10_000, 60).await;
    assert_in_order_complete(&sent, &got); // Both pairs' books add up: the publishing one (re-sent after the kill, counted once)
    // and the subscribing one.
    let r = common::reconciled(&h.engine, "to").await;
    assert_eq!((r.received, r.delivered), (10_000, 10_000), "{r:#?}");
    common::reconciled(&h.engine, "from").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_show_a_clear_error_lose_nothing_and_heal_with_an_edit() {
    let broker = persistent_broker(Some(("plant", "right")));
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    let wrong = r#", "auth": {"username": "plant", "password": "wrong"}"#;
    let spec = h.add(&to_broker("to", (&ip, src), &broker.url(), wrong)).await;
    h.wait_for("to", 10, "refused", |s| {
        s.destination.color == Color::Red
            && s.last_error.as_ref().is_some_and(|e| e.2.contains("refused the connection"))
    })
    .await;
    let sent = lines(500);
    send_lines((&ip, src), sent.clone()).await;
    h.wait_for("to", 10, "stored while refused", |s| s.received == 500 && s.pending == 500).await;
    assert_eq!(h.snap("to").sent, 0);

    // A subscriber with the right password, then the edit that fixes the publisher.
    let rx = AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip)));
    let right = r#", "auth": {"username": "plant", "password": "right"}"#;
    let dst = rx.addr();
    h.add(&from_broker("from", &broker.url(), "plant/to", right, (&ip, dst.port()))).await;
    h.wait_for("from", 10, "subscribed", |s| s.source.color == Color::Green).await;
    let mut fixed = spec.clone();
    if let iobp_config::EndpointSpec::Mqtt(m) = &mut fixed.destination {
        m.auth = Some(iobp_config::AuthSpec { username: "plant".into(), password: "right".into() });
    }
    h.engine.update(fixed).await.expect("edit");
    let got = rx.wait_lines(500, 30).await;
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_the_broker_holds_while_we_are_down_is_delivered_after() {
    // The persistent session: what is published while the source is stopped waits at the
    // broker and arrives when it starts again.
    let broker = persistent_broker(None);
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip)));
    let dst = rx.addr();
    h.add(&from_broker("from", &broker.url(), "plant/to", "", (&ip, dst.port()))).await;
    h.wait_for("from", 10, "subscribed", |s| s.source.color == Color::Green).await;
    h.engine.stop_pair("from").await.expect("stop");
    h.add(&to_broker("to", (&ip, src), &broker.url(), "")).await;
    let sent = lines(2_000);
    send_lines((&ip, src), sent.clone()).await;
    h.wait_for("to", 30, "all at the broker", |s| s.sent == 2_000).await;
    h.engine.start_pair("from").await.expect("start");
    h.wait_for("from", 30, "the held messages", |s| s.received == 2_000).await;
    let got = rx.wait_lines(2_000, 30).await;
    assert_eq!(got, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_verifies_the_broker_against_the_configured_ca() {
    // mosquitto with a TLS listener whose certificate the test CA signed: a side trusting that
    // CA delivers; a side trusting another CA is Red with a TLS error and delivers nothing.
    let dir = tempfile::tempdir().expect("pki dir");
    let pki = iobp_testkit::pki::TestPki::generate(dir.path());
    let broker = Broker::mosquitto(&MosquittoConfig {
        extra: format!(
            "cafile {}\ncertfile {}\nkeyfile {}",
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display()
        ),
        scheme: Some("mqtts"),
        url_host: Some("localhost".into()),
        ..MosquittoConfig::default()
    });
    let url = broker.url();
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, wrong_src) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let rx = AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip)));
    let dst = rx.addr();
    let trust = format!(r#", "tls": {{"ca": "{}"}}"#, pki.ca.display());
    h.add(&from_broker("from", &url, "plant/to", &trust, (&ip, dst.port()))).await;
    h.wait_for("from", 10, "subscribed over TLS", |s| s.source.color == Color::Green).await;
    h.add(&to_broker("to", (&ip, src), &url, &trust)).await;
    let foreign = format!(r#", "tls": {{"ca": "{}"}}"#, pki.other_ca.display());
    h.add(&to_broker("wrong", (&ip, wrong_src), &url, &foreign)).await;
    h.wait_for("wrong", 10, "refused by TLS", |s| {
        s.destination.color == Color::Red
            && s.last_error.as_ref().is_some_and(|e| e.2.contains("TLS"))
    })
    .await;
    let sent = lines(1_000);
    send_lines((&ip, src), sent.clone()).await;
    send_lines((&ip, wrong_src), lines(10)).await;
    let got = rx.wait_lines(1_000, 30).await;
    assert_eq!(got, sent);
    let s = h.snap("wrong");
    assert_eq!((s.sent, s.pending), (0, 10), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_refusing_messages_is_red_with_its_reason_loses_nothing_and_heals_when_it_allows()
{
    // MQTT 5 brokers refuse a publish with a reason code in its PUBACK (here: not authorised,
    // from mosquitto's ACL; quota exceeded takes the same path). Nothing refused is Done; the
    // side is Red with the broker's reason and retries with backoff; when the broker's
    // operator allows the topic (ACL changed, SIGHUP), everything goes, in order.
    let acl_dir = tempfile::tempdir().expect("acl dir");
    let acl = acl_dir.path().join("acl");
    std::fs::write(&acl, "topic read plant/#\n").expect("acl");
    let broker = Broker::mosquitto(&MosquittoConfig {
        extra: format!("acl_file {}", acl.display()),
        ..MosquittoConfig::default()
    });
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip)));
    let dst = rx.addr();
    h.add(&from_broker("from", &broker.url(), "plant/to", "", (&ip, dst.port()))).await;
    h.wait_for("from", 10, "subscribed", |s| s.source.color == Color::Green).await;
    h.add(&to_broker("to", (&ip, src), &broker.url(), "")).await;
    let sent = lines(500);
    send_lines((&ip, src), sent.clone()).await;
    h.wait_for("to", 10, "refused with the broker's reason", |s| {
        s.destination.color == Color::Red
            && s.last_error.as_ref().is_some_and(|e| e.2.contains("refused a message"))
    })
    .await;
    let connects = || broker.log().matches("as iobp-to ").count();
    let before = connects();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = h.snap("to");
    assert_eq!((s.sent, s.pending + s.in_flight), (0, 500), "nothing refused is Done: {s:?}");
    let retries = connects() - before;
    assert!((1..=12).contains(&retries), "{retries} connections in 2 s: backoff, not a loop");
    assert!(rx.lines().is_empty(), "the broker delivered nothing it refused");

    std::fs::write(&acl, "topic readwrite plant/#\n").expect("acl");
    broker.reload();
    let got = rx.wait_lines(500, 30).await;
    assert_eq!(got, sent);
    h.wait_for("to", 10, "Green and all Done", |s| {
        s.destination.color == Color::Green && s.sent == 500 && s.pending == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_another_instances_messages_are_stored_once_with_drop_duplicates() {
    // Messages published as another ioBufferPro would (MQTT 5 user property `iobp-id:
    // <buffer id>:<sequence>`), some of them again as after its reconnect, one without an id
    // and one from a second sender. A source with `drop_duplicates` stores each once, in
    // order; one without stores every copy.
    let broker = in_memory_broker();
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (once, every) = (
        AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip))),
        AsyncReceiver::start((ip.as_str(), ports::tcp_on(&ip))),
    );
    let on = r#", "drop_duplicates": true"#;
    h.add(&from_broker("once", &broker.url(), "plant/dups", on, (&ip, once.addr().port()))).await;
    h.add(&from_broker("every", &broker.url(), "plant/dups", "", (&ip, every.addr().port()))).await;
    for id in ["once", "every"] {
        h.wait_for(id, 10, "subscribed", |s| s.source.color == Color::Green).await;
    }
    let a = "00000000000000aa";
    let b = "00000000000000bb";
    let mut published = Vec::new();
    let mut sent = |id: Option<String>, payload: String| {
        let mut cmd = std::process::Command::new("mosquitto_pub");
        cmd.args(["-V", "mqttv5", "-q", "1", "-h", "127.0.0.1", "-t", "plant/dups"]).args([
            "-p",
            &broker.port().to_string(),
            "-m",
            &payload,
        ]);
        if let Some(id) = id {
            cmd.args(["-D", "publish", "user-property", "iobp-id", &id]);
        }
        let ok = cmd.status().expect("mosquitto_pub (Debian package mosquitto-clients)");
        assert!(ok.success());
        published.push(payload);
    };
    for seq in 1..=5 {
        sent(Some(format!("{a}:{seq}")), format!("a{seq}"));
    }
    // The sender reconnected: 3..5 again, then on.
    for seq in 3..=7 {
        sent(Some(format!("{a}:{seq}")), format!("a{seq}"));
    }
    sent(None, "no id".into());
    sent(Some(format!("{b}:1")), "b1".into());
    sent(Some(format!("{a}:2")), "a2".into());
    let want: Vec<String> =
        ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "no id", "b1"].map(String::from).to_vec();
    assert_eq!(once.wait_lines(want.len(), 20).await, want);
    assert_eq!(every.wait_lines(published.len(), 20).await, published);
    h.wait_for("once", 10, "counted", |s| s.received == 9 && s.duplicates_dropped == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(once.lines(), want, "nothing more arrives");
    assert_eq!(h.snap("every").duplicates_dropped, 0);
}
