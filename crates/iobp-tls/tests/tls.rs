//! Loading certificates and keys, and the errors for bad files.

use iobp_tls::{TlsError, load_certs, load_key, server_config};

fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).expect("write");
    std::fs::write(&key, c.signing_key.serialize_pem()).expect("write");
    (cert, key)
}

#[test]
fn a_generated_pair_loads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (cert, key) = self_signed(tmp.path());
    assert_eq!(load_certs(&cert).expect("certs").len(), 1);
    load_key(&key).expect("key");
    server_config(&cert, &key).expect("config");
}

#[test]
fn bad_files_are_named_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (cert, key) = self_signed(tmp.path());
    let missing = tmp.path().join("missing.pem");
    let e = load_certs(&missing).expect_err("missing");
    assert!(e.to_string().contains("missing.pem") && e.to_string().contains("cannot read"), "{e}");
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not pem at all").expect("write");
    assert!(matches!(load_certs(&junk), Err(TlsError::File { .. })));
    assert!(matches!(load_key(&junk), Err(TlsError::File { .. })));
    // A key that does not belong to the certificate.
    let other = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
    let wrong_key = tmp.path().join("wrong.pem");
    std::fs::write(&wrong_key, other.signing_key.serialize_pem()).expect("write");
    let e = server_config(&cert, &wrong_key).expect_err("mismatch");
    assert!(e.to_string().contains("cert.pem"), "{e}");
    // A key file given as the certificate.
    assert!(load_certs(&key).is_err());
}
