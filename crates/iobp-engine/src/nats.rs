//! NATS connections for the `nats` source and destination: connect options from a side's
//! settings (credentials, TLS from the one rustls + ring stack), the JetStream context, and a
//! signal when the connection is lost.
//!
//! `async-nats` reconnects by itself in the background; the connector loop must not let it.
//! A lost connection ends the session instead (the event callback below), so the side shows
//! Red, backs off, returns what was in flight to Pending and starts again from the buffer's
//! state — the only state this side trusts.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use iobp_config::NatsSpec;
use tokio::sync::watch;
use tokio_rustls::rustls;

use crate::connector::{Opened, Opener, Shape};
use crate::side::SideError;

/// Connecting (TCP, TLS, the NATS handshake) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the client pings the server: a dead connection is noticed within two of these.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// JetStream API requests and publish acknowledgements must be answered within this.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `.creds` file read: one written by `nsc` is about 1 KiB.
const MAX_CREDS_BYTES: u64 = 64 * 1024;

/// One open NATS connection, for a session.
pub(crate) struct NatsLink {
    pub js: jetstream::Context,
    /// Why the connection ended, once it did (`None` while it is up).
    pub lost: watch::Receiver<Option<String>>,
    /// The client; dropping the last handle closes the connection.
    _client: async_nats::Client,
}

impl NatsLink {
    /// Resolves with the reason once the connection is lost (never, while it is up).
    pub(crate) async fn lost(&mut self) -> SideError {
        loop {
            if let Some(why) = self.lost.borrow_and_update().clone() {
                return SideError::Peer(why);
            }
            if self.lost.changed().await.is_err() {
                return SideError::Peer("the connection closed".into());
            }
        }
    }
}

/// What a `nats` side needs before the session: the destination looks up the stream that
/// captures its subject, the source checks that its stream exists.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// Destination: publishes to this subject.
    Publish { subject: String },
    /// Source: consumes this stream.
    Consume { stream: String, consumer: String },
}

/// Opens NATS connections (dialled, one at a time).
pub(crate) struct NatsOpener {
    spec: NatsSpec,
    check: Check,
}

impl NatsOpener {
    pub(crate) fn new(spec: NatsSpec, check: Check) -> Self {
        NatsOpener { spec, check }
    }
}

impl Opener for NatsOpener {
    type Io = NatsLink;

    fn shape(&self) -> Shape {
        Shape::Dial
    }

    fn opening(&self) -> Option<String> {
        Some(format!("connecting to {}", self.spec.servers.join(", ")))
    }

    async fn open(&mut self) -> Result<Opened<NatsLink>, SideError> {
        let (link, server) = connect(&self.spec).await?;
        let (detail, warning) = match &self.check {
            Check::Publish { subject } => {
                // Which stream captures the subject: shown, and a publish to a subject no
                // stream captures would only time out, so it fails here with a clear reason.
                let found = link.js.stream_by_subject(subject.as_str()).await.map_err(|e| {
                    SideError::Peer(format!(
                        "no JetStream stream captures subject `{subject}`: {e}"
                    ))
                })?;
                let warning = (!self.spec.stream.is_empty() && self.spec.stream != found).then(|| {
                    format!(
                        "subject `{subject}` is captured by stream `{found}`, not `{}` as configured",
                        self.spec.stream
                    )
                });
                (format!("connected to {server} (JetStream stream {found})"), warning)
            }
            Check::Consume { stream, consumer } => {
                link.js
                    .get_stream_no_info(stream.as_str())
                    .await
                    .map_err(|e| SideError::Peer(format!("JetStream stream `{stream}`: {e}")))?;
                (
                    format!(
                        "connected to {server} (JetStream stream {stream}, consumer {consumer})"
                    ),
                    None,
                )
            }
        };
        let mut opened = Opened::new(link, Arc::from(server), detail);
        opened.warning = warning;
        Ok(opened)
    }
}

/// Connects with the side's credentials and TLS; returns the link and the server's name.
async fn connect(spec: &NatsSpec) -> Result<(NatsLink, String), SideError> {
    let (tx, lost) = watch::channel(None);
    let tx = Arc::new(tx);
    let mut opts = async_nats::ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(PING_INTERVAL)
        .request_timeout(Some(REQUEST_TIMEOUT))
        // One attempt to reconnect at most: the session ends at the first disconnect anyway,
        // and a client left behind must not go on dialling.
        .max_reconnects(1)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let why = match event {
                    async_nats::Event::Disconnected => Some("the connection was lost".to_string()),
                    async_nats::Event::Closed => Some("the connection closed".to_string()),
                    async_nats::Event::LameDuckMode => {
                        Some("the server is shutting down (lame duck mode)".to_string())
                    }
                    async_nats::Event::ServerError(e) => Some(format!("server error: {e}")),
                    _ => None,
                };
                if let Some(why) = why {
                    // The first reason counts: later events only follow from it.
                    tx.send_if_modified(|cur| {
                        if cur.is_none() {
                            *cur = Some(why);
                            true
                        } else {
                            false
                        }
                    });
                }
            }
        });
    if let Some(a) = &spec.auth {
        if let (Some(u), Some(p)) = (&a.username, &a.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        } else if let Some(t) = &a.token {
            opts = opts.token(t.clone());
        } else if let Some(path) = &a.creds_file {
            // Read at every connection: a rotated file is used from the next one on.
            let creds = load_creds(path)
                .map_err(|e| SideError::Credentials(format!("auth.creds_file: {e}")))?;
            let key = Arc::new(creds.key);
            opts = opts.jwt(creds.jwt, move |nonce| {
                let key = key.clone();
                async move { key.sign(&nonce).map_err(async_nats::AuthError::new) }
            });
        }
    }
    if let Some(cfg) = client_tls(spec)? {
        opts = opts.require_tls(true).tls_client_config((*cfg).clone());
    }
    let servers: Vec<async_nats::ServerAddr> = spec
        .servers
        .iter()
        .map(|s| s.parse().map_err(|e| SideError::Config(format!("server `{s}`: {e}"))))
        .collect::<Result<_, _>>()?;
    let client = opts.connect(servers).await.map_err(|e| connect_error(&spec.servers, &e))?;
    let info = client.server_info();
    let server = if spec.servers.len() == 1 || info.host.is_empty() {
        spec.servers.first().cloned().unwrap_or_default()
    } else {
        format!("{}:{}", info.host, info.port)
    };
    let js = jetstream::ContextBuilder::new().timeout(REQUEST_TIMEOUT).build(client.clone());
    Ok((NatsLink { js, lost, _client: client }, server))
}

/// The TLS client configuration of a side that uses TLS (`tls.enabled`, a `tls://` server, a
/// CA, a client certificate or a server name), from the same rustls + ring stack as every
/// other side.
fn client_tls(spec: &NatsSpec) -> Result<Option<Arc<rustls::ClientConfig>>, SideError> {
    let t = &spec.tls;
    let tls_url = spec.servers.iter().any(|s| s.starts_with("tls://"));
    if !(t.enabled || tls_url || t.ca.is_some() || t.cert.is_some() || t.server_name.is_some()) {
        return Ok(None);
    }
    let client = iobp_tls::ClientTls {
        ca: t.ca.as_ref().map(Into::into),
        cert: t.cert.as_ref().map(Into::into),
        key: t.key.as_ref().map(Into::into),
        insecure_skip_verify: t.insecure_skip_verify,
    };
    // async-nats verifies the certificate for the host of the URL it dials (a server it
    // learnt from the cluster included); `server_name` replaces that name in the verifier.
    let cfg = match t.server_name.as_deref() {
        Some(name) => iobp_tls::client_config_for_name(&client, name),
        None => iobp_tls::client_config(&client),
    }
    .map_err(|e| SideError::Tls(e.to_string()))?;
    Ok(Some(cfg))
}

/// Checks that a `nats` side's TLS files load (when a pair is created or edited).
pub(crate) fn check_tls(spec: &NatsSpec) -> Result<(), SideError> {
    client_tls(spec).map(|_| ())
}

/// What a `.creds` file holds: the user's JWT (sent to the server) and the user's NKey (signs
/// the server's nonce). No `Debug`: nothing of it is ever printed.
pub(crate) struct Creds {
    jwt: String,
    key: nkeys::KeyPair,
}

/// Why a `.creds` file cannot be used. The text names the file and what is wrong with it, and
/// never quotes the file: the seed is a secret.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredsError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is no usable `.creds` file.
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: &'static str },
}

/// The claims of a user JWT this side looks at.
#[derive(serde::Deserialize)]
struct UserClaims {
    /// The user's public NKey.
    #[serde(default)]
    sub: String,
    /// Expiry, seconds since the epoch (absent or 0: never).
    #[serde(default)]
    exp: Option<i64>,
    /// JWT v2: `nats.type`.
    #[serde(default)]
    nats: Option<TypeClaim>,
    /// JWT v1: the type at the top level.
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(serde::Deserialize)]
struct TypeClaim {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// Reads and checks a `.creds` file (`nsc` format: a `-----BEGIN NATS USER JWT-----` block,
/// then a `-----BEGIN USER NKEY SEED-----` block). Checked: the JWT is a user's and not
/// expired, the seed is a user's and is the key the JWT was issued to. Whether the server
/// trusts the JWT's issuer only the server can tell.
pub(crate) fn load_creds(path: &str) -> Result<Creds, CredsError> {
    use std::io::Read;
    let invalid = |problem| CredsError::Invalid { path: path.to_string(), problem };
    let read = |source| CredsError::Read { path: path.to_string(), source };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_CREDS_BYTES + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > MAX_CREDS_BYTES {
        return Err(invalid("is larger than 64 KiB: not a .creds file"));
    }
    let text =
        std::str::from_utf8(&bytes).map_err(|_| invalid("is not text: not a .creds file"))?;
    let blocks = decorated_blocks(text);
    let jwt = *blocks.first().ok_or(invalid(
        "holds no user JWT (a block between -----BEGIN NATS USER JWT----- and \
         ------END NATS USER JWT------ lines)",
    ))?;
    let seed = *blocks.get(1).ok_or(invalid(
        "holds no NKey seed after the user JWT (a block between -----BEGIN USER NKEY SEED----- \
         and ------END USER NKEY SEED------ lines)",
    ))?;
    let claims = jwt_claims(jwt).ok_or(invalid(
        "the user JWT is not a JWT (three base64url parts, the second JSON claims)",
    ))?;
    let kind = claims.nats.and_then(|n| n.kind).or(claims.kind);
    if kind.as_deref() != Some("user") {
        return Err(invalid("the JWT is not a user's (its claims' nats.type is not \"user\")"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if claims.exp.is_some_and(|exp| exp > 0 && exp <= now) {
        return Err(invalid("the user JWT has expired: the server would refuse it"));
    }
    let key = nkeys::KeyPair::from_seed(seed)
        .map_err(|_| invalid("the NKey seed is not a valid NKey seed"))?;
    if key.key_pair_type() != nkeys::KeyPairType::User {
        return Err(invalid("the NKey seed is not a user's (a user seed starts with SU)"));
    }
    if key.public_key() != claims.sub {
        return Err(invalid("the NKey seed is not the key the user JWT was issued to"));
    }
    Ok(Creds { jwt: jwt.to_string(), key })
}

/// The values of the decorated blocks of a `.creds` file, in order: a line of dashes (at least
/// three at each end, `-----BEGIN …-----`), one line of base64url/NKey characters, a line of
/// dashes. The NATS clients read the first as the JWT and the second as the seed; so does this.
fn decorated_blocks(text: &str) -> Vec<&str> {
    let dashes = |l: &str| l.len() >= 6 && l.starts_with("---") && l.ends_with("---");
    let value = |l: &str| {
        !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b))
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < lines.len() {
        if dashes(lines[i]) && value(lines[i + 1]) && dashes(lines[i + 2]) {
            out.push(lines[i + 1]);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

/// The claims of a JWT (`header.claims.signature`, base64url), if it is one.
fn jwt_claims(jwt: &str) -> Option<UserClaims> {
    use base64::Engine as _;
    let mut parts = jwt.split('.');
    let (_header, claims, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || sig.is_empty() {
        return None;
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Checks that a `nats` side's credentials file loads (when a pair is created or edited).
pub(crate) fn check_creds(spec: &NatsSpec) -> Result<(), CredsError> {
    match spec.auth.as_ref().and_then(|a| a.creds_file.as_deref()) {
        Some(path) => load_creds(path).map(drop),
        None => Ok(()),
    }
}

/// The host and port of a server URL (`nats://h:4222`, `tls://[::1]`; 4222 by default), for
/// the failover probe.
pub(crate) fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://"))?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (h.ends_with(']') || !h.contains(':')) => {
            Some((h.trim_start_matches('[').trim_end_matches(']').to_string(), p.parse().ok()?))
        }
        _ => Some((rest.trim_start_matches('[').trim_end_matches(']').to_string(), 4222)),
    }
}

/// A failed connection attempt, in words an operator can act on.
fn connect_error(servers: &[String], e: &async_nats::ConnectError) -> SideError {
    use async_nats::ConnectErrorKind as K;
    let at = servers.join(", ");
    match e.kind() {
        K::AuthorizationViolation | K::Authentication => {
            SideError::Peer(format!("{at}: the server refused the credentials (auth): {e}"))
        }
        K::Tls => SideError::Tls(format!("{at}: TLS: {e}")),
        K::ServerParse => SideError::Config(format!("{at}: {e}")),
        _ => SideError::Peer(format!("cannot connect to {at}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_urls_give_host_and_port_for_the_failover_probe() {
        let hp = |u| super::host_port(u);
        assert_eq!(hp("nats://h:4333"), Some(("h".into(), 4333)));
        assert_eq!(hp("tls://h"), Some(("h".into(), 4222)));
        assert_eq!(hp("nats://[::1]:5000/"), Some(("::1".into(), 5000)));
        assert_eq!(hp("nats://[::1]"), Some(("::1".into(), 4222)));
        assert_eq!(hp("http://h:1"), None);
    }
}
