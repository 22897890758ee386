//! Both portals over HTTPS when the settings name a certificate: TLS works with a generated
//! certificate, session cookies are `Secure`, plain HTTP gets no answer, and a certificate
//! that does not load stops the start with a clear error.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use util::{ChildGuard, bin, free_port};

fn write_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    let (cert, key) = (dir.join("portal.pem"), dir.join("portal.key"));
    std::fs::write(&cert, c.cert.pem()).expect("write");
    std::fs::write(&key, c.signing_key.serialize_pem()).expect("write");
    (cert, key, c.cert.der().to_vec())
}

async fn https(port: u16, der: &[u8], request: &str) -> String {
    iobp_tls::install_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(der.to_vec())).expect("root");
    let cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_serve_https_with_secure_cookies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (cert, key, der) = write_cert(tmp.path());
    let (ops, mgmt) = (free_port(), free_port());
    let config = tmp.path().join("c.json");
    std::fs::write(
        &config,
        serde_json::json!({"settings": {"tls_cert": cert, "tls_key": key, "ops_listen": format!("127.0.0.1:{ops}"), "mgmt_listen": format!("127.0.0.1:{mgmt}")}}).to_string(),
    )
    .expect("config");
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("IOBP_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut child = ChildGuard(child);
    let mut banner = String::new();
    while !banner.contains("running") {
        banner.clear();
        assert!(out.read_line(&mut banner).expect("read") > 0, "exited early");
    }
    assert!(banner.contains(&format!("https://127.0.0.1:{ops}")), "{banner}");
    let resp =
        https(ops, &der, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    // Log in (the first-start password), over HTTPS: the cookie is Secure.
    let password = std::fs::read_to_string(tmp.path().join("data/initial-admin-password.txt"))
        .expect("password file")
        .lines()
        .find_map(|l| l.strip_prefix("password: ").map(str::to_string))
        .expect("password");
    let body = format!(r#"{{"username": "admin", "password": "{password}"}}"#);
    let req = format!(
        "POST /api/v1/session HTTP/1.1\r\nHost: localhost:{mgmt}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = https(mgmt, &der, &req).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let cookie =
        resp.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie")).expect("cookie");
    assert!(
        cookie.contains(&format!("iobp_mgmt_session_{mgmt}="))
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", ops)).await.expect("tcp");
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("send");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    let _ = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status();
    assert_eq!(child.0.wait().expect("wait").code(), Some(0));
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    let config = tmp.path().join("c.json");
    std::fs::write(
        &config,
        serde_json::json!({"settings": {"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem", "ops_listen": format!("127.0.0.1:{}", free_port()), "mgmt_listen": format!("127.0.0.1:{}", free_port())}}).to_string(),
    )
    .expect("config");
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem") && err.contains("tls_cert"), "{err}");
    // Nothing was stored: the next start without --config works.
    let (code, exported, _) = util::run_cli(&[
        "config",
        "export",
        "--data-dir",
        tmp.path().join("data").to_str().expect("utf8"),
    ]);
    assert!(code != 0 || !exported.contains("nonexistent"), "{exported}");
}
