//! Loading certificates and keys, and the errors for bad files.

use iobp_testkit::TestPki;
use iobp_tls::{TlsError, load_certs, load_key, server_config};

#[test]
fn a_generated_pair_loads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(tmp.path());
    assert_eq!(load_certs(&pki.server_cert).expect("certs").len(), 1);
    load_key(&pki.server_key).expect("key");
    server_config(&pki.server_cert, &pki.server_key).expect("config");
}

#[test]
fn bad_files_are_named_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(tmp.path());
    let (cert, key) = (&pki.server_cert, &pki.server_key);
    let missing = tmp.path().join("missing.pem");
    let e = load_certs(&missing).expect_err("missing");
    assert!(e.to_string().contains("missing.pem") && e.to_string().contains("cannot read"), "{e}");
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not pem at all").expect("write");
    assert!(matches!(load_certs(&junk), Err(TlsError::File { .. })));
    assert!(matches!(load_key(&junk), Err(TlsError::File { .. })));
    // A key that does not belong to the certificate.
    let e = server_config(cert, &pki.client_key).expect_err("mismatch");
    assert!(e.to_string().contains("server.pem"), "{e}");
    // A key file given as the certificate.
    assert!(load_certs(key).is_err());
}
