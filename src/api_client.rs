//! A client of a running instance's REST API for the command line (`replay`, `config diff`):
//! the Operations Portal over plain HTTP or HTTPS (the product's TLS stack), a login as a
//! user whose password comes from the environment, and JSON calls with the session's cookie
//! and CSRF token. One request per connection; answers are bounded.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Answers larger than this are refused.
const MAX_ANSWER: usize = 4 << 20;

/// A logged-in session.
pub(crate) struct Session<'a> {
    portal: &'a Portal,
    cookie: String,
    csrf: String,
}

impl Session<'_> {
    /// One API call; the answer's JSON when it is a 200, else an error with the API's text.
    pub(crate) async fn call(&self, method: &str, path: &str, body: &str) -> anyhow::Result<Value> {
        let headers = [("Cookie", self.cookie.as_str()), ("X-CSRF-Token", self.csrf.as_str())];
        let (status, _, answer) = self.portal.request(method, path, body, &headers).await?;
        if status != 200 {
            bail!("{method} {path}: {status} {}", error_text(&answer));
        }
        serde_json::from_str(&answer).with_context(|| format!("the answer to {method} {path}"))
    }
}

/// The API's `{"error": …}` text, or the body.
fn error_text(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// The Operations Portal, over plain HTTP or HTTPS.
pub(crate) struct Portal {
    host: String,
    port: u16,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Portal {
    pub(crate) fn parse(url: &str, ca: Option<&std::path::Path>) -> anyhow::Result<Portal> {
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(r), _) => (false, r),
            (_, Some(r)) => (true, r),
            _ => bail!("--url must start with http:// or https://"),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.trim_matches(['[', ']']).to_string(), p.parse().context("--url port")?)
            }
            _ => (authority.to_string(), if https { 443 } else { 80 }),
        };
        let tls = if https {
            let tls = iobp_tls::ClientTls {
                ca: ca.map(std::path::Path::to_path_buf),
                ..Default::default()
            };
            Some(iobp_tls::client_config(&tls)?)
        } else {
            None
        };
        Ok(Portal { host, port, tls })
    }

    /// Logs in as `user`; refuses a user who must change the first-start password first.
    pub(crate) async fn login(&self, user: &str, password: &str) -> anyhow::Result<Session<'_>> {
        let login = json!({"username": user, "password": password}).to_string();
        let (status, head, body) = self.request("POST", "/api/v1/session", &login, &[]).await?;
        if status != 200 {
            bail!("login as {user}: {status} {}", error_text(&body));
        }
        let cookie = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("set-cookie").then(|| value.trim().to_string())
            })
            .and_then(|v| v.split(';').next().map(str::to_string))
            .context("the login answer set no session cookie")?;
        let session: Value = serde_json::from_str(&body).context("the login answer")?;
        let csrf = session["csrf_token"].as_str().context("no csrf_token in the login answer")?;
        if session["must_change_password"] == true {
            bail!("{user} must change the first-start password in the portal first");
        }
        Ok(Session { portal: self, cookie, csrf: csrf.to_string() })
    }

    /// One request on its own connection: (status, head, body).
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String, String)> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}:{}", self.host, self.port))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            self.port,
            body.len()
        );
        for (k, v) in headers {
            let _ = write!(req, "{k}: {v}\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        match &self.tls {
            None => exchange(tcp, req.as_bytes()).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .context("the portal's host name")?;
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake with the portal")?;
                exchange(stream, req.as_bytes()).await
            }
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &[u8],
) -> anyhow::Result<(u16, String, String)> {
    s.write_all(req).await?;
    s.flush().await?;
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() > MAX_ANSWER {
            bail!("the portal's answer is larger than {MAX_ANSWER} bytes");
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").context("not an HTTP answer")?;
    let status = head.get(9..12).and_then(|c| c.parse().ok()).context("no HTTP status")?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, head.to_string(), body))
}

/// The body of a chunked answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
