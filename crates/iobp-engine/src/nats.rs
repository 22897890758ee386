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

/// Why `auth.creds_file` is refused (validation says the same).
const CREDS_UNSUPPORTED: &str = "auth.creds_file: NKey/JWT credentials are not supported by \
     this build (async-nats without its `nkeys` feature); use username and password, or a token";

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
        } else if a.creds_file.is_some() {
            // Validation refuses it; a stored pair from a build that took it fails clearly.
            return Err(SideError::Config(CREDS_UNSUPPORTED.into()));
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
/// CA or a client certificate), from the same rustls + ring stack as every other side.
fn client_tls(spec: &NatsSpec) -> Result<Option<Arc<rustls::ClientConfig>>, SideError> {
    let t = &spec.tls;
    let tls_url = spec.servers.iter().any(|s| s.starts_with("tls://"));
    if !(t.enabled || tls_url || t.ca.is_some() || t.cert.is_some()) {
        return Ok(None);
    }
    let cfg = iobp_tls::client_config(&iobp_tls::ClientTls {
        ca: t.ca.as_ref().map(Into::into),
        cert: t.cert.as_ref().map(Into::into),
        key: t.key.as_ref().map(Into::into),
        insecure_skip_verify: t.insecure_skip_verify,
    })
    .map_err(|e| SideError::Tls(e.to_string()))?;
    Ok(Some(cfg))
}

/// Checks that a `nats` side's TLS files load (when a pair is created or edited).
pub(crate) fn check_tls(spec: &NatsSpec) -> Result<(), SideError> {
    client_tls(spec).map(|_| ())
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
