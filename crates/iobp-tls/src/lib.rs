//! # iobp-tls: one TLS stack for every side
//!
//! rustls with the *ring* provider everywhere (no OpenSSL, no aws-lc: only a C compiler is
//! needed to build, which keeps cross builds for small boards simple). This crate loads
//! certificates and keys from PEM files and builds server and client configurations; every
//! failure names the file and the reason, so configuration errors are clear.
//!
//! Call [`install_provider`] once at start (it is idempotent).

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

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

/// A server configuration from a certificate chain and key file.
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

pub use rustls;
