//! # iobp-tls: one TLS stack for every side
//!
//! rustls with the *ring* provider everywhere (no OpenSSL, no aws-lc: only a C compiler is
//! needed to build, which keeps cross builds for small boards simple). This crate loads
//! certificates and keys from PEM files and builds server and client configurations; every
//! failure names the file and the reason, so configuration errors are clear.
//!
//! Certificate rotation: a server configuration from [`server_config_reloading`] checks its
//! certificate and key files at most every [`RELOAD_CHECK`] during handshakes and loads them
//! again when either file changed; a pair that does not load is logged and the previous
//! certificate stays in use. Client configurations are cheap to build and are built per
//! connection attempt by the caller, so a replaced CA or client certificate takes effect at
//! the next connection.
//!
//! Call [`install_provider`] once at start (it is idempotent; every builder here calls it).

#![warn(missing_docs)]

mod lab;

pub use lab::{LabPki, generate_lab_pki};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

/// How often a reloading server configuration looks at its files.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// TLS configuration problems.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the combination (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Installs the ring crypto provider as the process default (idempotent).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File { path: path.to_path_buf(), reason: reason.into() }
}

/// Every certificate in a PEM file (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "contains no certificate"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file_err(path, format!("no usable private key: {e}")))
}

/// A set of trusted roots from a PEM file of CA certificates.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|e| file_err(path, format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn certified_key(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let ck = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        TlsError::Config(format!(
            "certificate {} with key {}: {e}",
            cert_file.display(),
            key_file.display()
        ))
    })?;
    Ok(Arc::new(ck))
}

/// A server configuration from a certificate chain and key file (loaded once).
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    install_provider();
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let cfg = ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).map_err(
        |e| {
            TlsError::Config(format!(
                "certificate {} with key {}: {e}",
                cert_file.display(),
                key_file.display()
            ))
        },
    )?;
    Ok(Arc::new(cfg))
}

/// Whether a server asks clients for certificates (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates.
    #[default]
    None,
    /// Clients may present a certificate; one that is presented must be valid.
    Optional,
    /// Clients must present a valid certificate.
    Required,
}

/// What a TLS server side needs.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to (required unless
    /// `client_auth` is `None`).
    pub client_ca: Option<PathBuf>,
    /// Client certificates.
    pub client_auth: ClientAuth,
}

/// A server configuration that follows its certificate files (see the crate docs).
pub fn server_config_reloading(tls: &ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    install_provider();
    let resolver = Arc::new(ReloadingCert::new(&tls.cert, &tls.key)?);
    let builder = ServerConfig::builder();
    let builder = match (tls.client_auth, &tls.client_ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Config(
                "client certificates need a CA to check them against (tls.ca)".into(),
            ));
        }
        (mode, Some(ca)) => {
            let roots = Arc::new(load_roots(ca)?);
            let v = WebPkiClientVerifier::builder(roots);
            let v = if mode == ClientAuth::Optional { v.allow_unauthenticated() } else { v };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?,
            )
        }
    };
    Ok(Arc::new(builder.with_cert_resolver(resolver)))
}

/// What identifies a file's version: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Serves a certificate and reloads it when its files change.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<ReloadState>,
}

#[derive(Debug)]
struct ReloadState {
    current: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    checked: Instant,
}

impl ReloadingCert {
    fn new(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let current = certified_key(cert, key)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(ReloadState {
                current,
                stamps: (stamp(cert), stamp(key)),
                checked: Instant::now(),
            }),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.checked.elapsed() >= RELOAD_CHECK {
            st.checked = Instant::now();
            let now = (stamp(&self.cert), stamp(&self.key));
            if now != st.stamps {
                match certified_key(&self.cert, &self.key) {
                    Ok(ck) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        st.current = ck;
                        st.stamps = now;
                    }
                    // Mid-replacement (one file written, not the other) or broken: keep the
                    // old one and look again later.
                    Err(e) => tracing::warn!("keeping the previous TLS certificate: {e}"),
                }
            }
        }
        Some(st.current.clone())
    }
}

/// What a TLS client side needs.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// Trust these CA certificates (PEM) instead of the operating system's.
    pub ca: Option<PathBuf>,
    /// Client certificate (mutual TLS).
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// Accept any server certificate. For lab use only; logged as a warning.
    pub insecure_skip_verify: bool,
}

/// A client configuration.
pub fn client_config(tls: &ClientTls) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_inner(tls, None)
}

/// A client configuration that verifies every server's certificate for `server_name`, whatever
/// host the caller dials (the `tls.server_name` of a side whose client library takes the name
/// from the URL it connects to, such as async-nats). The chain is verified against the same
/// roots as [`client_config`]; only the name checked differs. With `insecure_skip_verify`
/// nothing is verified, as there.
pub fn client_config_for_name(
    tls: &ClientTls,
    server_name: &str,
) -> Result<Arc<ClientConfig>, TlsError> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| TlsError::Config(format!("server name `{server_name}`: {e}")))?;
    client_config_inner(tls, Some(name))
}

fn client_config_inner(
    tls: &ClientTls,
    name: Option<ServerName<'static>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    install_provider();
    let builder = if tls.insecure_skip_verify {
        ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let roots = match &tls.ca {
            Some(ca) => load_roots(ca)?,
            None => system_roots()?,
        };
        match name {
            None => ClientConfig::builder().with_root_certificates(roots),
            Some(name) => {
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .map_err(|e| TlsError::Config(format!("certificate verifier: {e}")))?;
                ClientConfig::builder()
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(FixedName { inner, name }))
            }
        }
    };
    let cfg = match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => {
            builder.with_client_auth_cert(load_certs(c)?, load_key(k)?).map_err(|e| {
                TlsError::Config(format!(
                    "client certificate {} with key {}: {e}",
                    c.display(),
                    k.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "a client certificate needs both tls.cert and tls.key".into(),
            ));
        }
    };
    Ok(Arc::new(cfg))
}

/// The operating system's trusted roots.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    for c in found.certs {
        let _ = roots.add(c);
    }
    if roots.is_empty() {
        return Err(TlsError::Config(format!(
            "no trusted CA certificates found in the operating system{}; set tls.ca",
            found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default()
        )));
    }
    Ok(roots)
}

/// `server_name` for a client that cannot pass it: the `WebPKI` verification, for this name
/// instead of the dialled host.
#[derive(Debug)]
struct FixedName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: accepts any certificate (signatures are still checked so the
/// handshake is well-formed).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub use rustls;
