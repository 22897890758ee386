//! TLS on TCP sides: building acceptors and connectors from a side's `tls` settings, the
//! handshake with a time limit, and the check (at create and edit) that certificate files
//! load — a pair whose certificates are missing or invalid is refused with the field named.
//!
//! Rotation: a server side's configuration follows its certificate files
//! ([`iobp_tls::server_config_reloading`]); a client side builds its configuration at every
//! connection attempt, so a replaced CA or client certificate is used at the next connection.

use std::path::PathBuf;
use std::time::Duration;

use iobp_config::{ChannelPairSpec, ClientAuthMode, ConfigError, EndpointSpec, Problem, TlsSpec};
use iobp_tls::{ClientAuth, ClientTls, ServerTls};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::side::SideError;

/// A TLS handshake must finish within this.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn path(s: Option<&String>) -> Option<PathBuf> {
    s.map(PathBuf::from)
}

fn server_tls(t: &TlsSpec) -> Result<ServerTls, SideError> {
    let required = |field: &str| SideError::Tls(format!("{field} is required"));
    Ok(ServerTls {
        cert: path(t.cert.as_ref()).ok_or_else(|| required("tls.cert"))?,
        key: path(t.key.as_ref()).ok_or_else(|| required("tls.key"))?,
        client_ca: path(t.ca.as_ref()),
        client_auth: match t.client_auth {
            ClientAuthMode::None => ClientAuth::None,
            ClientAuthMode::Optional => ClientAuth::Optional,
            ClientAuthMode::Required => ClientAuth::Required,
        },
    })
}

fn client_tls(t: &TlsSpec) -> ClientTls {
    ClientTls {
        ca: path(t.ca.as_ref()),
        cert: path(t.cert.as_ref()),
        key: path(t.key.as_ref()),
        insecure_skip_verify: t.insecure_skip_verify,
    }
}

/// The acceptor of a server side, if it uses TLS.
pub(crate) fn acceptor(t: &TlsSpec) -> Result<Option<TlsAcceptor>, SideError> {
    if !t.enabled {
        return Ok(None);
    }
    let cfg = iobp_tls::server_config_reloading(&server_tls(t)?)
        .map_err(|e| SideError::Tls(e.to_string()))?;
    Ok(Some(TlsAcceptor::from(cfg)))
}

/// The connector and expected server name of a client side, if it uses TLS.
pub(crate) fn connector(
    t: &TlsSpec,
    host: &str,
) -> Result<Option<(TlsConnector, ServerName<'static>)>, SideError> {
    if !t.enabled {
        return Ok(None);
    }
    let cfg = iobp_tls::client_config(&client_tls(t)).map_err(|e| SideError::Tls(e.to_string()))?;
    let name = t.server_name.as_deref().unwrap_or(host);
    let name = ServerName::try_from(name.to_string())
        .map_err(|e| SideError::Tls(format!("server name `{name}`: {e}")))?;
    Ok(Some((TlsConnector::from(cfg), name)))
}

/// The client side of a handshake, within [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn connect(
    c: &TlsConnector,
    name: ServerName<'static>,
    s: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SideError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, c.connect(name, s)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(SideError::Tls(format!("TLS handshake failed: {e}"))),
        Err(_) => Err(SideError::Tls("TLS handshake timed out".into())),
    }
}

/// The server side of a handshake, within [`HANDSHAKE_TIMEOUT`].
pub(crate) async fn accept(
    a: &TlsAcceptor,
    s: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, SideError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(s)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(SideError::Tls(format!("TLS handshake failed: {e}"))),
        Err(_) => Err(SideError::Tls("TLS handshake timed out".into())),
    }
}

fn tls_of(e: &EndpointSpec) -> Option<&TlsSpec> {
    match e {
        EndpointSpec::TcpServer(s) => Some(&s.tls),
        EndpointSpec::TcpClient(s) => Some(&s.tls),
        EndpointSpec::Remote(r) => Some(&r.tls),
        EndpointSpec::Nats(n) => Some(&n.tls),
        EndpointSpec::Mqtt(m) => Some(&m.tls),
        _ => None,
    }
}

/// Which setting a TLS error is about: the file it names (errors start with the path).
fn field_of(t: &TlsSpec, message: &str) -> &'static str {
    let names = |p: Option<&String>| p.is_some_and(|p| message.starts_with(&format!("{p}:")));
    if names(t.cert.as_ref()) {
        "tls.cert"
    } else if names(t.key.as_ref()) {
        "tls.key"
    } else if names(t.ca.as_ref()) {
        "tls.ca"
    } else if t.server_name.is_some() && message.contains("server name `") {
        "tls.server_name"
    } else {
        "tls"
    }
}

/// Checks that every side's TLS files, and the `.creds` file of a `nats` side, load (done
/// when a pair is created or edited).
pub(crate) fn check_pair(spec: &ChannelPairSpec) -> Result<(), ConfigError> {
    let sides = [("source", &spec.source), ("destination", &spec.destination)]
        .into_iter()
        .map(|(n, e)| (n.to_string(), e))
        .chain(spec.failover.iter().enumerate().map(|(i, e)| (format!("failover[{i}]"), e)));
    let mut problems = Vec::new();
    for (name, e) in sides {
        let result = match e {
            EndpointSpec::TcpServer(s) => acceptor(&s.tls).map(|_| ()),
            EndpointSpec::TcpClient(s) => connector(&s.tls, &s.host).map(|_| ()),
            EndpointSpec::Remote(r) => {
                match r.url.as_deref().map(crate::relay::client::parse_url) {
                    Some(Ok(t)) if t.tls => {
                        connector(&TlsSpec { enabled: true, ..r.tls.clone() }, &t.host).map(|_| ())
                    }
                    _ => Ok(()),
                }
            }
            EndpointSpec::Nats(n) => crate::nats::check_tls(n),
            EndpointSpec::Mqtt(m) => match iobp_config::parse_mqtt_url(&m.url) {
                Ok((host, _, true)) => {
                    connector(&TlsSpec { enabled: true, ..m.tls.clone() }, &host).map(|_| ())
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(error) = result {
            let message = error.to_string();
            let field = tls_of(e).map_or("tls", |t| field_of(t, &message));
            problems.push(Problem { path: format!("{name}.{field}"), message });
        }
        if let EndpointSpec::Nats(n) = e
            && let Err(error) = crate::nats::check_creds(n)
        {
            problems.push(Problem {
                path: format!("{name}.auth.creds_file"),
                message: error.to_string(),
            });
        }
        let skips_verify = match e {
            EndpointSpec::TcpClient(s) => s.tls.enabled && s.tls.insecure_skip_verify,
            EndpointSpec::Nats(n) => n.tls.insecure_skip_verify,
            EndpointSpec::Mqtt(m) => m.tls.insecure_skip_verify && m.url.starts_with("mqtts://"),
            EndpointSpec::Remote(r) => {
                r.tls.insecure_skip_verify
                    && r.url.as_deref().is_some_and(|u| u.starts_with("https://"))
            }
            _ => false,
        };
        if skips_verify {
            tracing::warn!(
                pair = spec.id,
                side = name,
                "TLS certificate verification is OFF (insecure_skip_verify): for lab use only"
            );
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(ConfigError { problems }) }
}
