//! A throwaway certificate authority for tests: server and client certificates, an expired
//! one and a foreign CA, written as PEM files into a directory. Generated per test run: no keys
//! in the repository, nothing that expires in CI. Every test that needs a certificate takes it
//! from here (the product's own lab PKI, `iobufferpro tls lab-pki`, is tested as a feature,
//! not used as a fixture).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The names the server certificates of [`TestPki::generate`] carry.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// PEM files of a test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate (trust anchor).
    pub ca: PathBuf,
    /// Server certificate for [`SERVER_NAMES`] (or the names given), signed by the CA.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Client certificate (CN `client-1`), signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A server certificate signed by the CA that expired in 2020.
    pub expired_cert: PathBuf,
    /// Its key.
    pub expired_key: PathBuf,
    /// Another CA, unrelated to the first.
    pub other_ca: PathBuf,
    /// A server certificate signed by the other CA.
    pub other_server_cert: PathBuf,
    /// Its key.
    pub other_server_key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    cn: &str,
    expired: bool,
) -> (String, String) {
    let mut p = CertificateParams::new(names.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
        .expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    if expired {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let key = KeyPair::generate().expect("key");
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

impl TestPki {
    /// Generates the PKI into `dir`, its server certificates for [`SERVER_NAMES`].
    ///
    /// # Panics
    /// If a key cannot be generated or a file cannot be written (a broken test machine).
    pub fn generate(dir: &Path) -> TestPki {
        TestPki::generate_for(dir, &SERVER_NAMES)
    }

    /// Generates the PKI into `dir`, its server certificates for `server_names` only (a test
    /// that a client verifies a server by the name it was told, not the address it dialled).
    ///
    /// # Panics
    /// If a key cannot be generated or a file cannot be written (a broken test machine).
    pub fn generate_for(dir: &Path, server_names: &[&str]) -> TestPki {
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).expect("write PEM");
            p
        };
        let main = ca("ioBufferPro test CA");
        let other = ca("Some other CA");
        let (sc, sk) = leaf(&main, server_names, "server", false);
        let (cc, ck) = leaf(&main, &["client-1"], "client-1", false);
        let (ec, ek) = leaf(&main, server_names, "expired", true);
        let (oc, ok) = leaf(&other, server_names, "other", false);
        TestPki {
            ca: write("ca.pem", &main.pem()),
            server_cert: write("server.pem", &sc),
            server_key: write("server.key", &sk),
            client_cert: write("client.pem", &cc),
            client_key: write("client.key", &ck),
            expired_cert: write("expired.pem", &ec),
            expired_key: write("expired.key", &ek),
            other_ca: write("other-ca.pem", &other.pem()),
            other_server_cert: write("other-server.pem", &oc),
            other_server_key: write("other-server.key", &ok),
        }
    }
}
