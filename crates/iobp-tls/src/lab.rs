//! A lab PKI: a private certificate authority with a server and a client certificate, for
//! trying TLS and mutual TLS without a company CA (`iobufferpro tls lab-pki`) and for the
//! benchmark. Production sites use certificates from their own CA.
//!
//! Files written (keys readable by the owner only on Unix): `ca.pem`, `server.pem`,
//! `server.key`, `client.pem`, `client.key`. The CA's own key is not kept: nothing else can
//! be signed with it later, so a stolen lab directory cannot mint new certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::TlsError;

/// The files of a lab PKI.
#[derive(Debug, Clone)]
pub struct LabPki {
    /// The CA certificate: what clients (and a server requiring client certificates) trust.
    pub ca: PathBuf,
    /// Server certificate for the given names.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Client certificate (mutual TLS).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

fn cfg_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(format!("generating certificates: {e}"))
}

/// Generates a lab PKI into `dir` (created if missing). `names` are the server's DNS names
/// and IP addresses (at least one).
pub fn generate_lab_pki(dir: &Path, names: &[String]) -> Result<LabPki, TlsError> {
    if names.is_empty() {
        return Err(TlsError::Config("a server certificate needs at least one name".into()));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| TlsError::File { path: dir.to_path_buf(), reason: e.to_string() })?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(cfg_err)?;
    ca.distinguished_name.push(DnType::CommonName, "ioBufferPro lab CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer =
        CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(cfg_err)?).map_err(cfg_err)?;
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(names).map_err(cfg_err)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let key = KeyPair::generate().map_err(cfg_err)?;
        let cert = p.signed_by(&key, &issuer).map_err(cfg_err)?;
        Ok::<_, TlsError>((cert.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key) =
        leaf(names.to_vec(), &names[0], ExtendedKeyUsagePurpose::ServerAuth)?;
    let (client_pem, client_key) = leaf(
        vec!["iobufferpro-client".into()],
        "iobufferpro-client",
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok(LabPki {
        ca: write(dir, "ca.pem", &issuer.pem(), false)?,
        server_cert: write(dir, "server.pem", &server_pem, false)?,
        server_key: write(dir, "server.key", &server_key, true)?,
        client_cert: write(dir, "client.pem", &client_pem, false)?,
        client_key: write(dir, "client.key", &client_key, true)?,
    })
}

fn write(dir: &Path, name: &str, pem: &str, secret: bool) -> Result<PathBuf, TlsError> {
    let path = dir.join(name);
    let err = |e: std::io::Error| TlsError::File { path: path.clone(), reason: e.to_string() };
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = o.open(&path).map_err(err)?;
    std::io::Write::write_all(&mut f, pem.as_bytes()).map_err(err)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_pki_loads_into_server_and_mutual_tls_configs() {
        let dir = tempfile::tempdir().expect("tmp");
        let pki =
            generate_lab_pki(dir.path(), &["localhost".into(), "127.0.0.1".into()]).expect("pki");
        crate::server_config_reloading(&crate::ServerTls {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: Some(pki.ca.clone()),
            client_auth: crate::ClientAuth::Required,
        })
        .expect("server config");
        crate::client_config(&crate::ClientTls {
            ca: Some(pki.ca.clone()),
            cert: Some(pki.client_cert.clone()),
            key: Some(pki.client_key.clone()),
            insecure_skip_verify: false,
        })
        .expect("client config");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&pki.server_key).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "keys are private");
        }
        assert!(generate_lab_pki(dir.path(), &[]).is_err());
    }
}
