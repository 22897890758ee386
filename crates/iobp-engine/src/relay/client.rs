//! Opening a relay connection to a remote instance (`remote_icombuffer` with a `url`).
//!
//! TCP (TLS for `https://`), then HTTP/1.1 on that connection: a token from
//! `POST /api/v1/relay/session` (paths and shapes from `iobp_relay::http`) (the password is checked once by the remote; the token is
//! kept and reused until the remote refuses it), then
//! `GET /api/v1/relay/channels/{channel}/{push|pull}` upgraded to the relay protocol.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use iobp_config::{RemoteSpec, TlsSpec};

use super::{RelayIo, RelayMode};
use crate::net::{Stream, keepalive};
use crate::side::SideError;

/// Connecting (TCP and TLS) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The HTTP exchange before the upgrade must finish within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest HTTP answer body read (errors and the token).
const MAX_BODY: usize = 64 * 1024;

/// Where a `url` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `host:port` as written (for the `Host` header and messages).
    pub authority: String,
}

/// Parses `http://host[:port][/...]` or `https://...`.
pub(crate) fn parse_url(url: &str) -> Result<Target, SideError> {
    let bad = |why: &str| SideError::Config(format!("`{url}`{why}"));
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad(" must start with http:// or https://"));
    };
    let authority = rest.split('/').next().unwrap_or_default().to_string();
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        // [::1]:8080
        let (h, after) = v6.split_once(']').ok_or_else(|| bad(": unclosed ["))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad(": bad port"))?,
            None => default_port,
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad(": bad port"))?),
            None => (authority.clone(), default_port),
        }
    };
    if host.is_empty() {
        return Err(bad(" has no host"));
    }
    Ok(Target { tls, host, port, authority })
}

/// A remote instance and the credentials for it; keeps the token between connections.
pub(crate) struct Client {
    target: Target,
    spec: RemoteSpec,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(spec: &RemoteSpec) -> Result<Client, SideError> {
        let url = spec.url.as_deref().ok_or_else(|| SideError::Config("no url".into()))?;
        Ok(Client { target: parse_url(url)?, spec: spec.clone(), token: None })
    }

    /// `host:port` of the remote instance.
    pub(crate) fn authority(&self) -> &str {
        &self.target.authority
    }

    /// Opens a relay connection for `mode` (push: this side sends; pull: it receives).
    pub(crate) async fn open(&mut self, mode: RelayMode) -> Result<Box<dyn RelayIo>, SideError> {
        let stream = self.connect().await?;
        let (mut conn, driver) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)),
        )
        .await
        .map_err(|_| SideError::Peer("HTTP handshake timed out".into()))?
        .map_err(|e| SideError::Peer(format!("HTTP: {e}")))?;
        // Drives the connection until it is upgraded (then the relay owns it) or closed.
        tokio::spawn(async move {
            let _ = driver.with_upgrades().await;
        });
        let path = iobp_relay::http::channel_path(&self.spec.channel_id, mode);
        for attempt in 0..2 {
            let token = match self.token.clone() {
                Some(t) => t,
                None => self.login(&mut conn).await?,
            };
            let req = Request::get(&path)
                .header(HOST, &self.target.authority)
                .header(CONNECTION, "upgrade")
                .header(UPGRADE, iobp_relay::PROTOCOL)
                .header(AUTHORIZATION, iobp_relay::http::bearer(&token))
                .body(Full::new(Bytes::new()))
                .map_err(|e| SideError::Protocol(format!("request: {e}")))?;
            let resp = send(&mut conn, req).await?;
            match resp.status() {
                StatusCode::SWITCHING_PROTOCOLS => {
                    let upgraded = hyper::upgrade::on(resp).await.map_err(|e| {
                        SideError::Peer(format!("upgrade to the relay protocol: {e}"))
                    })?;
                    return Ok(Box::new(TokioIo::new(upgraded)));
                }
                // The token expired or was revoked: log in again, once.
                StatusCode::UNAUTHORIZED if attempt == 0 => {
                    let _ = body_text(resp).await;
                    self.token = None;
                }
                status => {
                    let why = body_text(resp).await;
                    return Err(SideError::Peer(format!(
                        "the remote refused the relay ({status}): {why}"
                    )));
                }
            }
        }
        Err(SideError::Peer("the remote refused the relay: authentication failed".into()))
    }

    async fn connect(&self) -> Result<Stream, SideError> {
        let addr = (self.target.host.as_str(), self.target.port);
        let authority = &self.target.authority;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, crate::net::connect_tcp(addr))
            .await
            .map_err(|_| SideError::Peer(format!("cannot connect to {authority}: timed out")))?
            .map_err(|e| SideError::Peer(format!("cannot connect to {authority}: {e}")))?;
        keepalive(&tcp);
        if !self.target.tls {
            return Ok(tcp.into());
        }
        let tls = TlsSpec { enabled: true, ..self.spec.tls.clone() };
        let Some((c, name)) = crate::tls::connector(&tls, &self.target.host)? else {
            return Err(SideError::Tls("TLS is required for https".into()));
        };
        Ok(crate::tls::connect(&c, name, tcp).await?.into())
    }

    /// Gets a token for the configured user.
    async fn login(
        &mut self,
        conn: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    ) -> Result<String, SideError> {
        let auth = self
            .spec
            .auth
            .as_ref()
            .ok_or_else(|| SideError::Config("no credentials configured (auth)".into()))?;
        let body = iobp_relay::http::LoginRequest {
            username: auth.username.clone(),
            password: auth.password.clone(),
        };
        let body = serde_json::to_string(&body)
            .map_err(|e| SideError::Protocol(format!("request: {e}")))?;
        let req = Request::post(iobp_relay::http::SESSION_PATH)
            .header(HOST, &self.target.authority)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SideError::Protocol(format!("request: {e}")))?;
        let resp = send(conn, req).await?;
        let status = resp.status();
        let text = body_text(resp).await;
        if status != StatusCode::OK {
            return Err(SideError::Peer(format!(
                "the remote refused the login of `{}` ({status}): {text}",
                auth.username
            )));
        }
        let t: iobp_relay::http::Token = serde_json::from_str(&text).map_err(|e| {
            SideError::Protocol(format!("unexpected answer to the relay login: {e}"))
        })?;
        self.token = Some(t.token.clone());
        Ok(t.token)
    }
}

async fn send(
    conn: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, SideError> {
    let http = |e: hyper::Error| SideError::Peer(format!("HTTP: {e}"));
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        conn.ready().await.map_err(http)?;
        conn.send_request(req).await.map_err(http)
    })
    .await
    .map_err(|_| SideError::Peer("the remote did not answer within 30 s".into()))?
}

/// The body of an answer as text, bounded; the `error` field of a JSON error if there is one.
async fn body_text(resp: Response<hyper::body::Incoming>) -> String {
    let Ok(Ok(collected)) =
        tokio::time::timeout(REQUEST_TIMEOUT, Limited::new(resp.into_body(), MAX_BODY).collect())
            .await
    else {
        return String::new();
    };
    let bytes = collected.to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://remote-server:8080").expect("ok");
        assert_eq!((t.tls, t.host.as_str(), t.port), (false, "remote-server", 8080));
        let t = parse_url("https://plant.example/").expect("ok");
        assert_eq!((t.tls, t.host.as_str(), t.port), (true, "plant.example", 443));
        let t = parse_url("http://[::1]:9000/x").expect("ok");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        for bad in ["ftp://x", "http://", "http://h:port", "http://[::1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
