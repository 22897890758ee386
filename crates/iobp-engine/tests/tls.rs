//! TLS on TCP sides, with certificates generated per test: TLS in and out end to end, mutual
//! TLS at a source, a destination that does not trust its receiver, and certificate files
//! that do not load refused when the pair is created.

mod common;

use std::time::Duration;

use common::*;
use iobp_engine::Color;
use iobp_testkit::TestPki;
use iobp_testkit::ports;
use iobp_testkit::receiver::{AsyncReceiver, Receiver};
use iobp_tls::{ClientAuth, ClientTls, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::ServerName;

fn p(path: &std::path::Path) -> String {
    path.display().to_string()
}

/// A TLS receiver collecting lines.
fn tls_receiver(addr: (&str, u16), pki: &TestPki) -> AsyncReceiver {
    let cfg = iobp_tls::server_config_reloading(&ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: None,
        client_auth: ClientAuth::None,
    })
    .expect("server config");
    Receiver::on(addr).tls(cfg).start_async()
}

async fn tls_send(addr: (&str, u16), tls: &ClientTls, data: &[u8]) -> Result<(), String> {
    let cfg = iobp_tls::client_config(tls).map_err(|e| e.to_string())?;
    let tcp = connect(addr).await;
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").map_err(|e| e.to_string())?, tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(data).await.map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    // Give the server time to refuse the handshake (TLS 1.3 client auth is checked after
    // the client thinks it is done), then see whether the connection survived.
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
        Ok(Err(e)) => Err(e.to_string()),
        _ => Ok(()),
    }
}

fn pair(id: &str, ip: &str, src: u16, dst: u16, pki: &TestPki, client_auth: &str) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 50, "max_ms": 200}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "line"}},
                        "tls": {{"enabled": true, "cert": "{}", "key": "{}", "ca": "{}", "client_auth": "{client_auth}"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "line"}},
                        "tls": {{"enabled": true, "ca": "{}", "server_name": "localhost"}}}}}}"#,
        p(&pki.server_cert),
        p(&pki.server_key),
        p(&pki.ca),
        p(&pki.ca)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_in_and_out_end_to_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = tls_receiver((&ip, dst), &pki);
    h.add(&pair("t", &ip, src, dst, &pki, "none")).await;
    let trusting = ClientTls { ca: Some(pki.ca.clone()), ..ClientTls::default() };
    let lines = (0..500).fold(String::new(), |mut acc, i| {
        use std::fmt::Write as _;
        let _ = writeln!(acc, "secure {i}");
        acc
    });
    tls_send((&ip, src), &trusting, lines.as_bytes()).await.expect("send over TLS");
    let out = got.wait_lines(500, 10).await;
    assert_eq!(out[499], "secure 499");
    let s = h.snap("t");
    assert!(s.destination.detail.contains("TLS"), "{s:?}");
    // A plain-text sender is refused at the handshake and stores nothing.
    let mut plain = connect((&ip, src)).await;
    plain.write_all(b"not tls\n").await.expect("send");
    // The source answers the failed handshake by closing the connection.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest))
        .await
        .expect("the plain-text connection closed by the source")
        .ok();
    assert_eq!(h.snap("t").received, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_required_at_the_source() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let _got = tls_receiver((&ip, dst), &pki);
    h.add(&pair("m", &ip, src, dst, &pki, "required")).await;
    let no_cert = ClientTls { ca: Some(pki.ca.clone()), ..ClientTls::default() };
    assert!(
        tls_send((&ip, src), &no_cert, b"anonymous\n").await.is_err(),
        "refused without a client certificate"
    );
    let with_cert = ClientTls {
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        ..no_cert
    };
    tls_send((&ip, src), &with_cert, b"identified\n").await.expect("accepted with one");
    h.wait_for("m", 10, "stored", |s| s.received == 1).await;
    assert!(h.snap("m").errors >= 1, "the refused handshake is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_does_not_trust_its_receiver_keeps_messages() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    // The receiver presents a certificate of another CA.
    let other = TestPki {
        server_cert: pki.other_server_cert.clone(),
        server_key: pki.other_server_key.clone(),
        ..pki.clone()
    };
    let _got = tls_receiver((&ip, dst), &other);
    h.add(&pair("w", &ip, src, dst, &pki, "none")).await;
    let trusting = ClientTls { ca: Some(pki.ca.clone()), ..ClientTls::default() };
    tls_send((&ip, src), &trusting, b"kept\n").await.expect("send");
    h.wait_for("w", 10, "refused receiver", |s| {
        s.received == 1
            && s.destination.color == Color::Red
            && s.destination.detail.contains("certificate")
    })
    .await;
    assert_eq!((h.snap("w").sent, h.snap("w").pending + h.snap("w").in_flight), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_that_do_not_load_are_refused_at_create() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let h = Harness::new().await;
    let ip = ports::loopback();
    let missing = pair("x", &ip, ports::tcp_on(&ip), ports::tcp_on(&ip), &pki, "none")
        .replace(&p(&pki.server_key), "/nonexistent/server.key");
    let err = h
        .engine
        .create(iobp_config::parse_pair(&missing).expect("schema is fine"))
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("source.tls.key") && text.contains("/nonexistent/server.key"), "{text}");
}
