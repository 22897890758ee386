//! The `nats` source and destination against a real `nats-server` (JetStream, file storage):
//! every message once and in order both ways, a server killed with SIGKILL mid-stream, a
//! redelivered message stored once, wrong credentials, `.creds` files against a server in
//! operator (JWT) mode, and TLS verified by a configured server name. Each test starts its own
//! server on a free port with its own store directory, and kills it when done.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use common::*;
use iobp_engine::Color;
use iobp_testkit::nats_auth::{self, NatsOperator, creds_text, jwt, user_creds_signed_by};
use iobp_testkit::receiver::AsyncReceiver;
use iobp_testkit::streams::{self, assert_unique_ids_and_payloads, read_stream};
use iobp_testkit::{Broker, ports};
use tokio::io::AsyncWriteExt;

/// A `nats-server` with JetStream on (the testkit's [`Broker`]), and how the test's own client
/// reaches it.
struct NatsServer {
    broker: Broker,
    /// The arguments as the test gave them, with the test client's own (below).
    extra: Vec<String>,
    /// The `.creds` file the test's own client signs in with (operator mode).
    creds: Option<String>,
}

impl NatsServer {
    fn start(extra: &[&str]) -> NatsServer {
        Self::start_on(&ports::loopback(), extra)
    }

    /// Starts the server with `extra` arguments; `--tlscacert_for_clients <ca>` and
    /// `--tlsname_for_clients <name>` among them are the test client's, not the server's.
    fn start_on(ip: &str, extra: &[&str]) -> NatsServer {
        let mut server = Vec::new();
        let mut it = extra.iter();
        while let Some(a) = it.next() {
            if *a == "--tlscacert_for_clients" || *a == "--tlsname_for_clients" {
                it.next();
            } else {
                server.push(*a);
            }
        }
        NatsServer {
            broker: Broker::nats(ip, &server),
            extra: extra.iter().map(ToString::to_string).collect(),
            creds: None,
        }
    }

    /// SIGKILL: the server gets no chance to flush or say goodbye.
    fn kill(&mut self) {
        self.broker.kill();
    }

    /// Starts again on the same port with the same store.
    fn restart(&mut self) {
        self.broker.restart();
    }

    fn url(&self) -> String {
        self.broker.url()
    }

    /// A client of the test's own (user `u` / `right` where the server asks for it).
    async fn client(&self) -> async_nats::Client {
        let mut opts = async_nats::ConnectOptions::new();
        if self.extra.iter().any(|a| a == "--user") {
            opts = opts.user_and_password("u".into(), "right".into());
        }
        if let Some(creds) = &self.creds {
            opts = opts.credentials_file(creds).await.expect("the test client's creds");
        }
        let arg = |name: &str| {
            let i = self.extra.iter().position(|a| a == name)?;
            self.extra.get(i + 1).cloned()
        };
        match (arg("--tlscacert_for_clients"), arg("--tlsname_for_clients")) {
            (Some(ca), Some(name)) => {
                let tls = iobp_tls::ClientTls { ca: Some(ca.into()), ..Default::default() };
                let cfg = iobp_tls::client_config_for_name(&tls, &name).expect("client TLS");
                opts = opts.require_tls(true).tls_client_config((*cfg).clone());
            }
            (Some(ca), None) => {
                opts = opts.require_tls(true).add_root_certificates(ca.into());
            }
            _ => {}
        }
        opts.connect(self.url()).await.expect("test client connects")
    }

    /// Creates stream `name` over `subjects` (see [`iobp_testkit::streams::create_stream`]).
    async fn create_stream(&self, name: &str, subjects: &[&str]) -> jetstream::Context {
        let js = jetstream::new(self.client().await);
        streams::create_stream(&js, name, subjects).await;
        js
    }
}

/// A server in operator mode trusting `auth`'s operator; its test client signs in as `admin`.
fn operator_server(auth: &NatsOperator) -> NatsServer {
    let config = auth.config.to_str().expect("utf-8 path");
    let mut s = NatsServer::start(&["-c", config]);
    s.creds = Some(path_str(&auth.user_creds("admin")));
    s
}

fn path_str(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Publishes `msgs` to `subject`, a thousand PubAcks outstanding at most (the context holds
/// 5,000 and waits for room beyond that).
async fn publish_all(js: &jetstream::Context, subject: &str, msgs: impl Iterator<Item = String>) {
    let mut acks = std::collections::VecDeque::new();
    for m in msgs {
        acks.push_back(
            js.publish(subject.to_string(), m.into_bytes().into()).await.expect("publish"),
        );
        if acks.len() >= 1_000
            && let Some(a) = acks.pop_front()
        {
            a.await.expect("stored");
        }
    }
    for a in acks {
        a.await.expect("stored");
    }
}

/// A ~100-byte line numbered `i`.
fn line(i: usize) -> String {
    format!("message {i:08} {}", "x".repeat(83))
}

/// A `tcp_server` line source into a `nats` destination publishing to `iobp.{pair}`.
fn to_nats(id: &str, src: (&str, u16), url: &str, auth: &str) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 400}},
            "source": {{"type": "tcp_server", "host": "{}", "port": {}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "nats", "servers": ["{url}"], "subject": "iobp.{{pair}}",
                             "stream": "EDGE"{auth}}}}}"#,
        src.0, src.1
    )
}

/// A `nats` source on stream `EDGE`, `subject`, into a line `tcp_client` destination.
fn from_nats(id: &str, url: &str, subject: &str, extra: &str, dst: (&str, u16)) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 400}}{extra},
            "source": {{"type": "nats", "servers": ["{url}"], "stream": "EDGE", "subject": "{subject}"}},
            "destination": {{"type": "tcp_client", "host": "{}", "port": {}, "framing": {{"type": "line"}}}}}}"#,
        dst.0, dst.1
    )
}

/// Sends `lines` over one connection, in chunks, and closes it.
async fn send_all(addr: (&str, u16), lines: impl Iterator<Item = String>) {
    let mut s = connect(addr).await;
    let mut buf = Vec::with_capacity(1 << 20);
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            s.write_all(&buf).await.expect("send");
            buf.clear();
        }
    }
    s.write_all(&buf).await.expect("send");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_messages_through_jetstream_and_back_once_in_order() {
    const N: usize = 100_000;
    let nats = NatsServer::start(&[]);
    let js = nats.create_stream("EDGE", &["iobp.>"]).await;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&to_nats("out", (&ip, src), &nats.url(), "")).await;
    h.add(&from_nats("in", &nats.url(), "iobp.out", "", (&ip, dst))).await;
    h.wait_for("out", 10, "destination connected", |s| s.destination.color == Color::Green).await;
    let detail = h.snap("out").destination.detail;
    assert!(detail.contains("JetStream stream EDGE"), "{detail}");
    send_all((&ip, src), (0..N).map(line)).await;
    let lines = got.wait_lines(N, 60).await;
    assert_eq!(lines.len(), N, "exactly once");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, line(i), "in order");
    }
    h.wait_for("out", 10, "all Done", |s| s.sent == N as u64 && s.pending == 0).await;
    h.wait_for("in", 10, "all received", |s| s.received == N as u64).await;
    let info = js.get_stream("EDGE").await.expect("stream").get_info().await.expect("info");
    assert_eq!(info.state.messages, N as u64, "the stream holds each message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_loses_nothing_acknowledged_and_stores_no_duplicate() {
    const N: usize = 30_000;
    let mut nats = NatsServer::start(&[]);
    nats.create_stream("EDGE", &["iobp.>"]).await;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    h.add(&to_nats("k", (&ip, src), &nats.url(), "")).await;
    h.wait_for("k", 10, "destination connected", |s| s.destination.color == Color::Green).await;
    let sender = {
        let ip = ip.clone();
        tokio::spawn(async move { send_all((&ip, src), (0..N).map(line)).await })
    };
    h.wait_for("k", 20, "some delivered", |s| s.sent >= 3_000).await;
    nats.kill();
    let at_kill = h.snap("k").sent;
    h.wait_for("k", 10, "the loss shown", |s| s.destination.color == Color::Red).await;
    let why = h.snap("k").last_error.map(|e| e.2).unwrap_or_default();
    assert!(!why.is_empty(), "an error is reported");
    nats.restart();
    sender.await.expect("sender");
    h.wait_for("k", 30, "everything Done after the restart", |s| {
        s.sent >= N as u64 && s.pending == 0 && s.in_flight == 0
    })
    .await;
    assert!(at_kill < N as u64, "the kill came mid-stream ({at_kill} of {N} Done)");
    let js = jetstream::new(nats.client().await);
    let msgs = read_stream(&js, "EDGE").await;
    assert_unique_ids_and_payloads(&msgs);
    let mut payloads: Vec<&str> = msgs.iter().map(|(_, p)| p.as_str()).collect();
    payloads.sort_unstable();
    let want: Vec<String> = (0..N).map(line).collect();
    assert_eq!(payloads, want, "every message in the stream, none twice");
    // In order: the stream's order is the buffer's (ids are <log id>:<sequence>).
    let seqs: Vec<u64> = msgs
        .iter()
        .map(|(id, _)| id.rsplit_once(':').and_then(|(_, s)| s.parse().ok()).expect("id"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "published in buffer order");
    // Republished after the kill, yet each counted delivered once: the books add up.
    let r = common::reconciled(&h.engine, "k").await;
    assert_eq!((r.received, r.delivered), (N as u64, N as u64), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_jetstream_message_is_stored_once() {
    // The buffer fills (1 MiB, no receiver yet), so a batch waits longer than the consumer's
    // ack_wait (1 s): JetStream delivers it again while it is being stored. Every message must
    // still reach the receiver once, and the redeliveries be counted as dropped duplicates.
    const N: usize = 3_000;
    let nats = NatsServer::start(&[]);
    let js = nats.create_stream("EDGE", &["in.>"]).await;
    let payload = |i: usize| format!("in {i:06} {}", "y".repeat(1000));
    publish_all(&js, "in.x", (0..N).map(payload)).await;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let dst = ports::tcp_on(&ip);
    let json = from_nats("r", &nats.url(), "in.x", r#", "max_storage_mb": 1"#, (&ip, dst))
        .replace(r#""subject": "in.x"}"#, r#""subject": "in.x", "ack_wait_s": 1}"#);
    h.add(&json).await;
    h.wait_for("r", 20, "buffer full", |s| s.storage_alarm.is_some() || s.buffer == Color::Red)
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await; // past ack_wait: redeliveries come
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let lines = got.wait_lines(N, 30).await;
    let want: Vec<String> = (0..N).map(payload).collect();
    assert_eq!(lines, want, "each message once, in order");
    h.wait_for("r", 10, "all received", |s| s.received == N as u64).await;
    let s = h.snap("r");
    assert!(s.duplicates_dropped > 0, "redeliveries were met and dropped: {s:#?}");
    // And JetStream has them all acknowledged.
    let info = js
        .get_stream("EDGE")
        .await
        .expect("stream")
        .consumer_info("iobp-r")
        .await
        .expect("consumer");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_show_red_lose_nothing_and_recover_after_an_edit() {
    const N: usize = 500;
    let nats = NatsServer::start(&["--user", "u", "--pass", "right"]);
    nats.create_stream("EDGE", &["iobp.>"]).await;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    let wrong = r#", "auth": {"username": "u", "password": "wrong"}"#;
    h.add(&to_nats("a", (&ip, src), &nats.url(), wrong)).await;
    send_all((&ip, src), (0..N).map(line)).await;
    h.wait_for("a", 10, "stored", |s| s.received == N as u64).await;
    h.wait_for("a", 10, "shown red", |s| s.destination.color == Color::Red).await;
    let s = h.snap("a");
    let why = s.last_error.map(|e| e.2).unwrap_or_default();
    assert!(why.contains("refused the credentials"), "{why}");
    assert_eq!((s.sent, s.pending), (0, N as u64), "nothing lost, nothing delivered");
    // Backoff: more than one attempt, not a busy loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let errors = h.snap("a").errors;
    assert!((2..=40).contains(&errors), "{errors} attempts in about a second and a half");
    // The edit with the right password delivers everything.
    let right = r#", "auth": {"username": "u", "password": "right"}"#;
    let spec =
        iobp_config::parse_pair(&to_nats("a", (&ip, src), &nats.url(), right)).expect("spec");
    h.engine.update(spec).await.expect("edit");
    h.wait_for("a", 20, "delivered after the edit", |s| s.sent == N as u64 && s.pending == 0).await;
    assert_eq!(h.snap("a").destination.color, Color::Green);
    let js = jetstream::new(nats.client().await);
    let msgs = read_stream(&js, "EDGE").await;
    assert_eq!(msgs.len(), N);
    assert_unique_ids_and_payloads(&msgs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stopped_or_cut_off_mid_stream_stores_each_message_once_in_order() {
    // Stopping the pair can fall between a batch's append and its acks, and a killed server
    // forgets acks it had not written: either way JetStream holds messages this buffer already
    // stored, and the next session must neither store them again nor skip one.
    const N: usize = 100_000;
    let mut nats = NatsServer::start(&[]);
    let js = nats.create_stream("EDGE", &["in.>"]).await;
    publish_all(&js, "in.x", (0..N).map(line)).await;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&from_nats("s", &nats.url(), "in.x", "", (&ip, dst))).await;
    for k in 1..=3u64 {
        h.wait_for("s", 20, "consuming", |s| s.received >= k * 10_000).await;
        h.engine.stop_pair("s").await.expect("stop");
        let at = h.snap("s").received;
        assert!(at < N as u64, "stopped mid-stream ({at} of {N} stored)");
        h.engine.start_pair("s").await.expect("start");
    }
    h.wait_for("s", 20, "consuming", |s| s.received >= 50_000).await;
    nats.kill();
    let at = h.snap("s").received;
    assert!(at < N as u64, "cut off mid-stream ({at} of {N} stored)");
    h.wait_for("s", 10, "the loss shown", |s| s.source.color == Color::Red).await;
    nats.restart();
    let lines = got.wait_lines(N, 30).await;
    let want: Vec<String> = (0..N).map(line).collect();
    assert_eq!(lines, want, "each message once, in order");
    h.wait_for("s", 10, "all received once", |s| s.received == N as u64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.snap("s").received, N as u64, "nothing stored twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_no_stream_captures_is_red_until_a_stream_does() {
    let nats = NatsServer::start(&[]);
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    h.add(&to_nats("ns", (&ip, src), &nats.url(), "")).await;
    send_all((&ip, src), (0..100).map(line)).await;
    h.wait_for("ns", 10, "stored", |s| s.received == 100).await;
    h.wait_for("ns", 10, "shown red", |s| s.destination.color == Color::Red).await;
    let why = h.snap("ns").destination.detail;
    assert!(why.contains("no JetStream stream captures subject `iobp.ns`"), "{why}");
    assert_eq!(h.snap("ns").pending, 100, "nothing lost");
    nats.create_stream("EDGE", &["iobp.>"]).await;
    h.wait_for("ns", 10, "delivered once a stream exists", |s| s.sent == 100).await;
    let js = jetstream::new(nats.client().await);
    assert_unique_ids_and_payloads(&read_stream(&js, "EDGE").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_jetstream_verifies_the_server_against_the_configured_ca() {
    let ip = ports::loopback();
    let dir = tempfile::tempdir().expect("pki dir");
    let pki = iobp_testkit::pki::TestPki::generate_for(dir.path(), &[ip.as_str()]);
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    let (cert, key, ca) = (path(&pki.server_cert), path(&pki.server_key), path(&pki.ca));
    let nats = NatsServer::start_on(
        &ip,
        &["--tls", "--tlscert", &cert, "--tlskey", &key, "--tlscacert_for_clients", &ca],
    );
    nats.create_stream("EDGE", &["iobp.>"]).await;
    let h = Harness::new().await;
    let src = ports::tcp_on(&ip);
    let trusted = format!(r#", "tls": {{"ca": "{ca}"}}"#);
    h.add(&to_nats("t", (&ip, src), &nats.url(), &trusted)).await;
    send_all((&ip, src), (0..200).map(line)).await;
    h.wait_for("t", 10, "delivered over TLS", |s| s.sent == 200).await;
    // A server this side cannot verify is refused, with TLS named.
    let foreign = format!(r#", "tls": {{"ca": "{}"}}"#, path(&pki.other_ca));
    let src2 = ports::tcp_on(&ip);
    h.add(&to_nats("f", (&ip, src2), &nats.url(), &foreign)).await;
    send_all((&ip, src2), (0..10).map(line)).await;
    h.wait_for("f", 10, "stored", |s| s.received == 10).await;
    h.wait_for("f", 10, "refused", |s| s.destination.color == Color::Red).await;
    let s = h.snap("f");
    assert_eq!((s.sent, s.pending), (0, 10));
    let why = s.last_error.map(|e| e.2).unwrap_or_default();
    assert!(why.to_lowercase().contains("tls"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_name_verifies_a_server_dialled_by_address_for_that_name() {
    // The server's certificate names `nats.plant.test` only; the side dials its IP address.
    let ip = ports::loopback();
    let dir = tempfile::tempdir().expect("pki dir");
    let pki = iobp_testkit::pki::TestPki::generate_for(dir.path(), &["nats.plant.test"]);
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    let (cert, key, ca) = (path(&pki.server_cert), path(&pki.server_key), path(&pki.ca));
    let nats = NatsServer::start_on(
        &ip,
        &[
            "--tls",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--tlscacert_for_clients",
            &ca,
            "--tlsname_for_clients",
            "nats.plant.test",
        ],
    );
    nats.create_stream("EDGE", &["iobp.>"]).await;
    let h = Harness::new().await;
    let named = format!(r#", "tls": {{"ca": "{ca}", "server_name": "nats.plant.test"}}"#);
    let src = ports::tcp_on(&ip);
    h.add(&to_nats("sn", (&ip, src), &nats.url(), &named)).await;
    send_all((&ip, src), (0..100).map(line)).await;
    h.wait_for("sn", 10, "delivered over TLS", |s| s.sent == 100).await;
    // Without the name (the address is verified) or with another name: refused, TLS named.
    let wrong = format!(r#", "tls": {{"ca": "{ca}", "server_name": "other.plant.test"}}"#);
    for (id, tls) in [("sa", format!(r#", "tls": {{"ca": "{ca}"}}"#)), ("sw", wrong)] {
        let src = ports::tcp_on(&ip);
        h.add(&to_nats(id, (&ip, src), &nats.url(), &tls)).await;
        send_all((&ip, src), (0..10).map(line)).await;
        h.wait_for(id, 10, "stored", |s| s.received == 10).await;
        h.wait_for(id, 10, "refused", |s| s.destination.color == Color::Red).await;
        let s = h.snap(id);
        assert_eq!((s.sent, s.pending), (0, 10), "{id}");
        let why = s.last_error.map(|e| e.2).unwrap_or_default();
        assert!(why.to_lowercase().contains("tls"), "{id}: {why}");
    }
    // A name no certificate can carry is refused when the pair is created, at its field.
    let bad = format!(r#", "tls": {{"ca": "{ca}", "server_name": "not a name"}}"#);
    let spec =
        iobp_config::parse_pair(&to_nats("sb", (&ip, ports::tcp_on(&ip)), &nats.url(), &bad))
            .expect("valid as a document");
    match h.engine.create(spec).await {
        Err(iobp_engine::EngineError::Invalid(e)) => {
            assert_eq!(e.problems[0].path, "destination.tls.server_name", "{e}");
        }
        other => panic!("refused at create, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_side_whose_ca_does_not_load_is_refused_at_its_field() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let tls = r#", "tls": {"ca": "/nonexistent/nats-ca.pem"}"#;
    let json = to_nats("c", (&ip, ports::tcp_on(&ip)), "tls://127.0.0.1:4222", tls);
    let spec = iobp_config::parse_pair(&json).expect("valid as a document");
    match h.engine.create(spec).await {
        Err(iobp_engine::EngineError::Invalid(e)) => {
            assert_eq!(e.problems[0].path, "destination.tls.ca", "{e}");
        }
        other => panic!("refused at create, not {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_primary_fails_over_to_a_backup_and_gets_the_traffic_back() {
    let mut nats = NatsServer::start(&[]);
    nats.create_stream("EDGE", &["iobp.>"]).await;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, b1) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let backup = AsyncReceiver::start((ip.as_str(), b1));
    h.add(&format!(
        r#"{{"id": "hn", "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}}}},
            "destination": {{"type": "nats", "servers": ["{}"], "subject": "iobp.{{pair}}"}},
            "failover": [{{"type": "tcp_client", "host": "{ip}", "port": {b1}, "framing": {{"type": "line"}}}}],
            "failover_policy": {{"probe_interval_ms": 200, "failed_after_ms": 500}}}}"#,
        nats.url()
    ))
    .await;
    send_all((&ip, src), (0..100).map(line)).await;
    h.wait_for("hn", 10, "on the primary", |s| s.sent == 100).await;
    nats.kill();
    send_all((&ip, src), (100..200).map(line)).await;
    h.wait_for("hn", 10, "on the backup", |s| s.failover.as_ref().is_some_and(|f| f.active == 1))
        .await;
    let on_backup = backup.wait_lines(100, 10).await;
    assert_eq!(on_backup, (100..200).map(line).collect::<Vec<_>>());
    nats.restart();
    h.wait_for("hn", 10, "failed back", |s| s.failover.as_ref().is_some_and(|f| f.active == 0))
        .await;
    send_all((&ip, src), (200..300).map(line)).await;
    h.wait_for("hn", 10, "all delivered", |s| s.sent == 300 && s.pending == 0).await;
    let js = jetstream::new(nats.client().await);
    let in_stream: Vec<String> =
        read_stream(&js, "EDGE").await.into_iter().map(|(_, p)| p).collect();
    let want: Vec<String> = (0..100).chain(200..300).map(line).collect();
    assert_eq!(in_stream, want, "the primary got the first and the last hundred, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_at_its_limit_refuses_shows_why_loses_nothing_and_heals_when_room_is_made() {
    // A stream limited to 100 messages that refuses new ones when full (discard "new"): the
    // PubAck carries JetStream's refusal. Nothing refused is Done; the side is Red with the
    // server's reason and retries with backoff; once the operator raises the limit, the rest
    // goes, in order, each message once.
    let nats = NatsServer::start(&[]);
    let js = jetstream::new(nats.client().await);
    js.create_stream(jetstream::stream::Config {
        name: "EDGE".into(),
        subjects: vec!["iobp.>".into()],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        max_messages: 100,
        discard: jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .expect("create stream");
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    h.add(&to_nats("full", (&ip, src), &nats.url(), "")).await;
    send_all((&ip, src), (0..300).map(line)).await;
    h.wait_for("full", 10, "refused with JetStream's reason", |s| {
        s.destination.color == Color::Red
            && s.sent == 100
            && s.last_error.as_ref().is_some_and(|e| e.2.contains("maximum messages"))
    })
    .await;
    let errors = h.snap("full").errors;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = h.snap("full");
    assert_eq!((s.sent, s.pending + s.in_flight), (100, 200), "nothing refused is Done: {s:?}");
    let retries = s.errors - errors;
    assert!(retries <= 12, "{retries} refusals in 2 s: backoff, not a loop");

    let mut config = js.get_stream("EDGE").await.expect("stream").cached_info().config.clone();
    config.max_messages = 1_000;
    js.update_stream(config).await.expect("raise the limit");
    h.wait_for("full", 30, "everything delivered", |s| {
        s.destination.color == Color::Green && s.sent == 300 && s.pending == 0
    })
    .await;
    let stored = read_stream(&js, "EDGE").await;
    assert_unique_ids_and_payloads(&stored);
    let payloads: Vec<String> = stored.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, (0..300).map(line).collect::<Vec<_>>(), "in order, each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_signs_in_to_an_operator_mode_server_and_a_foreign_one_is_refused() {
    // The server trusts one operator; the pair signs in with a user JWT of that operator's
    // account and proves it holds the user's NKey by signing the server's nonce.
    let dir = tempfile::tempdir().expect("auth dir");
    let auth = NatsOperator::generate(dir.path());
    let nats = operator_server(&auth);
    nats.create_stream("EDGE", &["iobp.>"]).await;
    let h = Harness::new().await;
    let ip = ports::loopback();
    let src = ports::tcp_on(&ip);
    let creds = path_str(&auth.user_creds("edge"));
    let with = |path: &str| format!(r#", "auth": {{"creds_file": "{path}"}}"#);
    h.add(&to_nats("cr", (&ip, src), &nats.url(), &with(&creds))).await;
    send_all((&ip, src), (0..200).map(line)).await;
    h.wait_for("cr", 10, "delivered with the creds", |s| s.sent == 200 && s.pending == 0).await;
    assert_eq!(h.snap("cr").destination.color, Color::Green);
    // A source signs in the same way.
    let dst = ports::tcp_on(&ip);
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let json = from_nats("cs", &nats.url(), "iobp.cr", "", (&ip, dst))
        .replace(r#""subject": "iobp.cr"}"#, &format!(r#""subject": "iobp.cr"{}}}"#, with(&creds)));
    h.add(&json).await;
    assert_eq!(got.wait_lines(200, 10).await, (0..200).map(line).collect::<Vec<_>>());

    // A well-formed creds file of an account this server does not trust: refused by the
    // server (not by the check at create), shown Red, nothing lost.
    let stranger = nats_auth::KeyPair::new_account();
    let foreign = path_str(&user_creds_signed_by(&stranger, dir.path(), "foreign"));
    let src2 = ports::tcp_on(&ip);
    h.add(&to_nats("cf", (&ip, src2), &nats.url(), &with(&foreign))).await;
    send_all((&ip, src2), (0..10).map(line)).await;
    h.wait_for("cf", 10, "stored", |s| s.received == 10).await;
    h.wait_for("cf", 10, "refused", |s| s.destination.color == Color::Red).await;
    let s = h.snap("cf");
    assert_eq!((s.sent, s.pending), (0, 10), "nothing delivered, nothing lost");
    let why = s.last_error.map(|e| e.2).unwrap_or_default();
    assert!(why.contains("refused the credentials"), "{why}");
    let text = std::fs::read_to_string(&foreign).expect("creds");
    let seed = text.lines().find(|l| l.starts_with("SU")).expect("seed line");
    assert!(!why.contains(seed), "the seed is never shown: {why}");

    // A file replaced under a running pair is read at the next connection: a broken one is a
    // Red error naming the field and the file, never quoting it.
    let rotated = path_str(&auth.user_creds("rotated"));
    let src3 = ports::tcp_on(&ip);
    h.add(&to_nats("cx", (&ip, src3), &nats.url(), &with(&rotated))).await;
    h.wait_for("cx", 10, "connected", |s| s.destination.color == Color::Green).await;
    let text = std::fs::read_to_string(&rotated).expect("creds");
    let seed = text.lines().find(|l| l.starts_with("SU")).expect("seed line").to_string();
    std::fs::write(&rotated, creds_text("not-a-jwt", &seed)).expect("replace the file");
    h.engine.stop_pair("cx").await.expect("stop");
    h.engine.start_pair("cx").await.expect("start");
    h.wait_for("cx", 10, "refused", |s| s.destination.color == Color::Red).await;
    let why = h.snap("cx").last_error.map(|e| e.2).unwrap_or_default();
    assert!(why.contains("auth.creds_file") && why.contains(&rotated), "{why}");
    assert!(!why.contains(&seed), "the seed is never shown: {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_that_cannot_work_is_refused_at_its_field_without_quoting_it() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let dir = tempfile::tempdir().expect("dir");
    let account = nats_auth::KeyPair::new_account();
    let good = path_str(&user_creds_signed_by(&account, dir.path(), "good"));
    let text = std::fs::read_to_string(&good).expect("creds");
    let user_jwt = text.lines().nth(1).expect("jwt line").to_string();
    let seed = text.lines().find(|l| l.starts_with("SU")).expect("seed line").to_string();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).expect("write");
        p.to_str().expect("utf-8").to_string()
    };
    let other_user = nats_auth::KeyPair::new_user().seed().expect("seed");
    let account_seed = account.seed().expect("seed");
    let cases = [
        ("/nonexistent/edge.creds".to_string(), "cannot read"),
        (write("empty.creds", ""), "holds no user JWT"),
        (write("seedless.creds", &creds_text(&user_jwt, "")), "holds no NKey seed"),
        (write("garbled.creds", &creds_text("not-a-jwt", &seed)), "not a JWT"),
        (
            write(
                "bad-seed.creds",
                &creds_text(&user_jwt, "SUAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ),
            "not a valid NKey seed",
        ),
        (write("account-seed.creds", &creds_text(&user_jwt, &account_seed)), "not a user's"),
        (
            write("other-seed.creds", &creds_text(&user_jwt, &other_user)),
            "not the key the user JWT was issued to",
        ),
        (
            write(
                "account-jwt.creds",
                &creds_text(
                    &jwt(
                        &account,
                        &account.public_key(),
                        &serde_json::json!({"type": "account", "version": 2}),
                    ),
                    &seed,
                ),
            ),
            "not a user's",
        ),
    ];
    for (i, (path, why)) in cases.iter().enumerate() {
        let auth = format!(r#", "auth": {{"creds_file": "{path}"}}"#);
        let json =
            to_nats(&format!("b{i}"), (&ip, ports::tcp_on(&ip)), "nats://127.0.0.1:4222", &auth);
        let spec = iobp_config::parse_pair(&json).expect("valid as a document");
        match h.engine.create(spec).await {
            Err(iobp_engine::EngineError::Invalid(e)) => {
                assert_eq!(e.problems[0].path, "destination.auth.creds_file", "{e}");
                let m = &e.problems[0].message;
                assert!(m.contains(path.as_str()) && m.contains(why), "{path}: {m}");
                assert!(
                    !m.contains(&seed) && !m.contains(&other_user) && !m.contains(&account_seed),
                    "{m}"
                );
                assert!(!m.contains(&user_jwt), "{m}");
            }
            other => panic!("{path}: refused at create, not {other:?}"),
        }
    }
    // The well-formed file passes the check (no server is needed for it).
    let auth = format!(r#", "auth": {{"creds_file": "{good}"}}"#);
    h.add(&to_nats("ok", (&ip, ports::tcp_on(&ip)), "nats://127.0.0.1:4222", &auth)).await;
}
