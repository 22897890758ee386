//! Real TLS handshakes over loopback with a generated PKI: who is trusted, who is refused,
//! mutual TLS, and a certificate replaced on disk taking effect without a restart.

use std::sync::Arc;
use std::time::Duration;

use iobp_testkit::TestPki;
use iobp_tls::{ClientAuth, ClientTls, ServerTls, client_config, server_config_reloading};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Serves one echo exchange per connection; returns the port.
async fn server(cfg: Arc<iobp_tls::rustls::ServerConfig>) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let acceptor = TlsAcceptor::from(cfg);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let a = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = a.accept(s).await {
                    let mut b = [0u8; 4];
                    if tls.read_exact(&mut b).await.is_ok() {
                        let _ = tls.write_all(&b).await;
                        let _ = tls.flush().await;
                    }
                }
            });
        }
    });
    port
}

/// Connects, sends "ping" and expects it back.
async fn exchange(port: u16, tls: &ClientTls) -> Result<(), String> {
    let cfg = client_config(tls).map_err(|e| e.to_string())?;
    let tcp =
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = iobp_tls::rustls::pki_types::ServerName::try_from("localhost")
        .map_err(|e| e.to_string())?;
    let mut s = TlsConnector::from(cfg).connect(name, tcp).await.map_err(|e| e.to_string())?;
    s.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.map_err(|e| format!("no echo (refused by the server?): {e}"))?;
    if &b == b"ping" { Ok(()) } else { Err("wrong echo".into()) }
}

fn server_tls(pki: &TestPki, auth: ClientAuth) -> ServerTls {
    ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
        client_auth: auth,
    }
}

fn trusting(pki: &TestPki) -> ClientTls {
    ClientTls { ca: Some(pki.ca.clone()), ..ClientTls::default() }
}

#[tokio::test]
async fn trusted_server_wrong_ca_and_expired_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let port =
        server(server_config_reloading(&server_tls(&pki, ClientAuth::None)).expect("cfg")).await;
    exchange(port, &trusting(&pki)).await.expect("trusted CA connects");
    let wrong = ClientTls { ca: Some(pki.other_ca.clone()), ..ClientTls::default() };
    let e = exchange(port, &wrong).await.expect_err("wrong CA refused");
    assert!(e.contains("certificate"), "{e}");

    let expired = ServerTls {
        cert: pki.expired_cert.clone(),
        key: pki.expired_key.clone(),
        client_ca: None,
        client_auth: ClientAuth::None,
    };
    let port = server(server_config_reloading(&expired).expect("cfg")).await;
    let e = exchange(port, &trusting(&pki)).await.expect_err("expired refused");
    assert!(e.to_lowercase().contains("expired"), "{e}");
    // insecure_skip_verify connects anyway (lab use).
    exchange(port, &ClientTls { insecure_skip_verify: true, ..ClientTls::default() })
        .await
        .expect("insecure");
}

#[tokio::test]
async fn mutual_tls_required_and_optional() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let with_cert = ClientTls {
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        ..trusting(&pki)
    };
    let required =
        server(server_config_reloading(&server_tls(&pki, ClientAuth::Required)).expect("cfg"))
            .await;
    exchange(required, &with_cert).await.expect("client certificate accepted");
    exchange(required, &trusting(&pki)).await.expect_err("missing client certificate refused");
    // A client certificate from another CA is refused too.
    let foreign = ClientTls {
        cert: Some(pki.other_server_cert.clone()),
        key: Some(pki.other_server_key.clone()),
        ..trusting(&pki)
    };
    exchange(required, &foreign).await.expect_err("foreign client certificate refused");
    let optional =
        server(server_config_reloading(&server_tls(&pki, ClientAuth::Optional)).expect("cfg"))
            .await;
    exchange(optional, &trusting(&pki)).await.expect("no certificate is fine when optional");
    exchange(optional, &with_cert).await.expect("a valid one too");
    // Client authentication without a CA to check against is a configuration error.
    let no_ca = ServerTls { client_ca: None, ..server_tls(&pki, ClientAuth::Required) };
    assert!(server_config_reloading(&no_ca).is_err());
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_used_without_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let (cert, key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&pki.other_server_cert, &cert).expect("copy");
    std::fs::copy(&pki.other_server_key, &key).expect("copy");
    let cfg = server_config_reloading(&ServerTls {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
        client_auth: ClientAuth::None,
    })
    .expect("cfg");
    let port = server(cfg).await;
    exchange(port, &trusting(&pki)).await.expect_err("serving the other CA's certificate at first");
    std::fs::copy(&pki.server_cert, &cert).expect("copy");
    std::fs::copy(&pki.server_key, &key).expect("copy");
    // Handshakes until one gets the replaced certificate (the files are looked at again once
    // `RELOAD_CHECK` passed).
    let deadline = std::time::Instant::now() + iobp_tls::RELOAD_CHECK + Duration::from_secs(5);
    while let Err(e) = exchange(port, &trusting(&pki)).await {
        assert!(std::time::Instant::now() < deadline, "the replaced certificate is served: {e}");
        tokio::time::sleep(iobp_testkit::wait::POLL).await;
    }
    // A broken replacement keeps the last good certificate: once a check period passed (the
    // files were looked at again), the good one is still served.
    std::fs::write(&key, "garbage").expect("write");
    tokio::time::sleep(iobp_tls::RELOAD_CHECK + Duration::from_millis(200)).await;
    exchange(port, &trusting(&pki)).await.expect("still the good one");
}
