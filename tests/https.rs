//! Both portals over HTTPS when the settings name a certificate: TLS works with a certificate
//! of the test PKI, session cookies are `Secure`, plain HTTP gets no answer, and a certificate
//! that does not load stops the start with a clear error.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use iobp_testkit::{TestPki, ports};
use serde_json::json;
use util::https::Https;
use util::{ChildGuard, bin};

#[test]
fn portals_serve_https_with_secure_cookies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(tmp.path());
    let (ops, mgmt) = (ports::tcp(), ports::tcp());
    let config = tmp.path().join("c.json");
    std::fs::write(
        &config,
        json!({"settings": {"tls_cert": pki.server_cert, "tls_key": pki.server_key, "ops_listen": format!("127.0.0.1:{ops}"), "mgmt_listen": format!("127.0.0.1:{mgmt}")}}).to_string(),
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
    let client = Https::new(&pki.ca);
    let r = client.request(ports::localhost(ops), "GET", "/healthz", None, None);
    assert_eq!(r.status, 200, "{}", r.head);
    // Log in (the first-start password), over HTTPS: the cookie is Secure.
    let password = std::fs::read_to_string(tmp.path().join("data/initial-admin-password.txt"))
        .expect("password file")
        .lines()
        .find_map(|l| l.strip_prefix("password: ").map(str::to_string))
        .expect("password");
    let body = json!({"username": "admin", "password": password});
    let r = client.request(ports::localhost(mgmt), "POST", "/api/v1/session", Some(&body), None);
    assert_eq!(r.status, 200, "{}", r.head);
    let cookie =
        r.head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie")).expect("cookie");
    assert!(
        cookie.contains(&format!("iobp_mgmt_session_{mgmt}="))
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(ports::localhost(ops)).expect("tcp");
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    plain.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
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
        json!({"settings": {"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem", "ops_listen": format!("127.0.0.1:{}", ports::tcp()), "mgmt_listen": format!("127.0.0.1:{}", ports::tcp())}}).to_string(),
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
