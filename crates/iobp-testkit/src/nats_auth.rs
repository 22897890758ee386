//! NATS decentralised (JWT) authentication for tests: an operator, an account it signs
//! (JetStream on, no limits), a system account, users the account signs as `.creds` files, and
//! the `nats-server` configuration that trusts the operator (`resolver: MEMORY` with both
//! accounts preloaded; nats-server 2.9 needs the system account for JetStream).
//!
//! The JWTs are written as `nsc` writes them (NATS JWT v2): a base64url header
//! `{"typ":"JWT","alg":"ed25519-nkey"}`, base64url JSON claims (`jti`, `iat`, `iss`, `sub`,
//! `name`, `nats: {type, version: 2, …}`), and the issuer's ed25519 signature of
//! `header.claims`, base64url.

use std::path::{Path, PathBuf};

use base64::Engine as _;
pub use nkeys::KeyPair;
use serde_json::{Value, json};

/// An operator and its account, with the server configuration that trusts them.
pub struct NatsOperator {
    dir: PathBuf,
    /// The account the users belong to (JetStream enabled).
    pub account: KeyPair,
    /// `nats-server -c <config>`: operator mode, both accounts preloaded.
    pub config: PathBuf,
}

impl NatsOperator {
    /// Generates the keys and JWTs and writes the server configuration into `dir`.
    ///
    /// # Panics
    /// If the configuration cannot be written (a broken test machine).
    pub fn generate(dir: &Path) -> NatsOperator {
        let op = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let system = KeyPair::new_account();
        let op_jwt = jwt(&op, &op.public_key(), &json!({"type": "operator", "version": 2}));
        let mut limits = json!({
            "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
            "wildcards": true, "conn": -1, "leaf": -1,
        });
        let system_jwt = jwt(
            &op,
            &system.public_key(),
            &json!({"type": "account", "version": 2, "limits": limits.clone()}),
        );
        for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[k] = json!(-1);
        }
        let account_jwt = jwt(
            &op,
            &account.public_key(),
            &json!({"type": "account", "version": 2, "limits": limits}),
        );
        let (acc, sys) = (account.public_key(), system.public_key());
        let config = dir.join("operator.conf");
        std::fs::write(
            &config,
            format!(
                "operator: \"{op_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
                 resolver_preload: {{\n  {acc}: \"{account_jwt}\"\n  {sys}: \"{system_jwt}\"\n}}\n"
            ),
        )
        .expect("write the nats-server configuration");
        NatsOperator { dir: dir.to_path_buf(), account, config }
    }

    /// A user of this operator's account, written as `<name>.creds`; returns its path.
    pub fn user_creds(&self, name: &str) -> PathBuf {
        user_creds_signed_by(&self.account, &self.dir, name)
    }
}

/// A user signed by `account` (any account, trusted or not), written as `<dir>/<name>.creds`.
///
/// # Panics
/// If the file cannot be written.
pub fn user_creds_signed_by(account: &KeyPair, dir: &Path, name: &str) -> PathBuf {
    let user = KeyPair::new_user();
    let claims = json!({
        "type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
    });
    let user_jwt = jwt(account, &user.public_key(), &claims);
    let seed = user.seed().expect("a new key has its seed");
    let path = dir.join(format!("{name}.creds"));
    std::fs::write(&path, creds_text(&user_jwt, &seed)).expect("write the creds file");
    path
}

/// A `.creds` file's text, as `nsc` writes it.
pub fn creds_text(jwt: &str, seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// A NATS JWT (v2) with `nats` claims about `subject`, issued and signed by `issuer`.
///
/// # Panics
/// If `issuer` has no seed (a public key only).
pub fn jwt(issuer: &KeyPair, subject: &str, nats: &Value) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = json!({
        "jti": format!("{subject}-{now}"),
        "iat": now,
        "iss": issuer.public_key(),
        "name": subject.get(..8).unwrap_or(subject),
        "sub": subject,
        "nats": nats,
    });
    let header = b64(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    let sig = issuer.sign(signing_input.as_bytes()).expect("the issuer's seed signs");
    format!("{signing_input}.{}", b64(&sig))
}
