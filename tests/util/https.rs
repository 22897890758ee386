//! A minimal blocking HTTPS client trusting one CA: for instances whose portals speak TLS only.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_rustls::rustls::{self, ClientConnection, StreamOwned, pki_types::ServerName};

use super::TEST_ADMIN_PASSWORD;

/// A minimal blocking HTTPS client trusting one CA; it names the server `localhost`.
pub struct Https {
    config: Arc<rustls::ClientConfig>,
}

/// Cookie and CSRF token of a session.
pub struct Login {
    pub cookie: String,
    pub csrf: String,
}

/// An answer of [`Https::request`].
pub struct HttpsResponse {
    pub status: u16,
    /// The status line and the headers, as sent.
    pub head: String,
    /// The body as JSON (`Null` if it is not JSON).
    pub body: Value,
    /// `name=value` of a Set-Cookie header, if any.
    pub cookie: Option<String>,
}

impl Https {
    pub fn new(ca: &Path) -> Https {
        let config = iobp_tls::client_config(&iobp_tls::ClientTls {
            ca: Some(ca.to_path_buf()),
            ..iobp_tls::ClientTls::default()
        })
        .expect("client config");
        Https { config }
    }

    /// One request on a connection of its own, as `localhost:<port>`.
    pub fn request(
        &self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&Value>,
        login: Option<&Login>,
    ) -> HttpsResponse {
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(self.config.clone(), name).expect("tls");
        let mut s = StreamOwned::new(conn, TcpStream::connect(addr).expect("connect"));
        let body = body.map(ToString::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            addr.port(),
            body.len()
        );
        if let Some(l) = login {
            let _ = write!(req, "Cookie: {}\r\nX-CSRF-Token: {}\r\n", l.cookie, l.csrf);
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let cookie = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().split(';').next().unwrap_or_default().to_string())
        });
        HttpsResponse {
            status,
            head: head.to_string(),
            body: serde_json::from_str(body).unwrap_or(Value::Null),
            cookie,
        }
    }

    /// First login as admin (the first-start password in `data`), then the password change to
    /// [`TEST_ADMIN_PASSWORD`].
    pub fn admin_login(&self, addr: SocketAddr, data: &Path) -> Login {
        let first = std::fs::read_to_string(data.join("initial-admin-password.txt")).expect("file");
        let password =
            first.lines().find_map(|l| l.strip_prefix("password: ")).expect("password line");
        let r = self.request(
            addr,
            "POST",
            "/api/v1/session",
            Some(&json!({"username": "admin", "password": password})),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let login = Login {
            cookie: r.cookie.expect("cookie"),
            csrf: r.body["csrf_token"].as_str().expect("csrf").to_string(),
        };
        let change = json!({"current_password": password, "new_password": TEST_ADMIN_PASSWORD});
        let r = self.request(addr, "POST", "/api/v1/session/password", Some(&change), Some(&login));
        assert_eq!(r.status, 200, "{}", r.body);
        Login {
            cookie: r.cookie.expect("cookie"),
            csrf: r.body["csrf_token"].as_str().expect("csrf").to_string(),
        }
    }
}
