//! Secrets in the configuration: the passwords of relay links and MQTT brokers
//! (`auth.password` of a `remote_icombuffer` or `mqtt` side) and the credentials of NATS sides
//! (`auth.password`, `auth.token` of a `nats` side). Wherever a configuration leaves the process — the API, the audit
//! trail, `config export` — they are shown as [`PASSWORD_MASK`]; a configuration that comes
//! back with the mask in place (an edit that did not change the password, an import of a
//! redacted export) gets the stored password of the same link back, or is refused: storing the
//! mask as a password would lock the link out.

use crate::spec::{AuthSpec, ChannelPairSpec, ConfigDocument, EndpointSpec, NatsSpec};
use crate::validate::Problem;

/// What is shown instead of a password.
pub const PASSWORD_MASK: &str = "********";

/// A side's credentials, with what identifies the link they open (everything but the
/// password: where it connects, as whom, how the peer is verified).
fn credentials_mut(e: &mut EndpointSpec) -> Option<(String, &mut AuthSpec)> {
    match e {
        EndpointSpec::Remote(r) => {
            let link = format!("relay {:?} {} {:?}", r.url, r.channel_id, r.tls);
            Some((link, r.auth.as_mut()?))
        }
        EndpointSpec::Mqtt(m) => {
            let link = format!("mqtt {} {:?} {:?}", m.url, m.client_id, m.tls);
            Some((link, m.auth.as_mut()?))
        }
        _ => None,
    }
}

/// The credentials of a pair's sides, with their paths and links.
fn credentials_of(
    pair: &mut ChannelPairSpec,
) -> impl Iterator<Item = (String, String, &mut AuthSpec)> {
    [("source".to_string(), &mut pair.source), ("destination".to_string(), &mut pair.destination)]
        .into_iter()
        .chain(pair.failover.iter_mut().enumerate().map(|(i, e)| (format!("failover[{i}]"), e)))
        .filter_map(|(path, e)| credentials_mut(e).map(|(link, auth)| (path, link, auth)))
}

/// The NATS sides of a pair, with their paths.
fn nats_sides_mut(pair: &mut ChannelPairSpec) -> impl Iterator<Item = (String, &mut NatsSpec)> {
    [("source".to_string(), &mut pair.source), ("destination".to_string(), &mut pair.destination)]
        .into_iter()
        .chain(pair.failover.iter_mut().enumerate().map(|(i, e)| (format!("failover[{i}]"), e)))
        .filter_map(|(path, e)| match e {
            EndpointSpec::Nats(n) => Some((path, n)),
            _ => None,
        })
}

/// The secret fields of a NATS side's credentials, by name.
fn nats_secrets(n: &mut NatsSpec) -> impl Iterator<Item = (&'static str, &mut String)> {
    n.auth.as_mut().into_iter().flat_map(|a| {
        [("password", a.password.as_mut()), ("token", a.token.as_mut())]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
    })
}

/// Whether two NATS sides are the same link as far as its credentials go: same servers, same
/// user (or none) and the same TLS settings (whoever changes how the server is verified must
/// know the secret).
fn same_nats_link(a: &NatsSpec, b: &NatsSpec) -> bool {
    let user = |n: &NatsSpec| n.auth.as_ref().and_then(|x| x.username.clone());
    a.servers == b.servers && a.tls == b.tls && user(a) == user(b)
}

impl ChannelPairSpec {
    /// Replaces every password (relay links, MQTT brokers) and NATS password or token with
    /// [`PASSWORD_MASK`]; returns how many there were.
    pub fn mask_passwords(&mut self) -> usize {
        let mut n = 0;
        for (_, _, auth) in credentials_of(self) {
            auth.password = PASSWORD_MASK.into();
            n += 1;
        }
        for (_, side) in nats_sides_mut(self) {
            for (_, secret) in nats_secrets(side) {
                *secret = PASSWORD_MASK.into();
                n += 1;
            }
        }
        n
    }

    /// Puts the passwords of `stored` back where this configuration has [`PASSWORD_MASK`]. A
    /// link is found by what identifies it (where it connects, the user and its TLS settings),
    /// not by position, so reordering backup destinations keeps each password with its link.
    /// A link whose TLS settings changed does not get its password back: whoever changes how
    /// the peer is verified (`insecure_skip_verify`, another CA or server name) must know it.
    pub fn restore_masked_passwords(&mut self, stored: &ChannelPairSpec) {
        let mut stored = stored.clone();
        let links: Vec<(String, AuthSpec)> =
            credentials_of(&mut stored).map(|(_, link, a)| (link, a.clone())).collect();
        for (_, link, auth) in credentials_of(self) {
            if auth.password != PASSWORD_MASK {
                continue;
            }
            if let Some((_, old)) =
                links.iter().find(|(l, a)| *l == link && a.username == auth.username)
            {
                auth.password.clone_from(&old.password);
            }
        }
        let mut old = stored;
        let old_nats: Vec<&mut NatsSpec> = nats_sides_mut(&mut old).map(|(_, n)| n).collect();
        for (_, n) in nats_sides_mut(self) {
            let Some(o) = old_nats.iter().find(|o| same_nats_link(o, n)) else { continue };
            let Some(oa) = o.auth.as_ref() else { continue };
            if let Some(a) = n.auth.as_mut() {
                if a.password.as_deref() == Some(PASSWORD_MASK) {
                    a.password.clone_from(&oa.password);
                }
                if a.token.as_deref() == Some(PASSWORD_MASK) {
                    a.token.clone_from(&oa.token);
                }
            }
        }
    }

    /// A problem for each password still masked (paths relative to the pair).
    pub fn masked_password_problems(&self) -> Vec<Problem> {
        let mut pair = self.clone();
        let mut nats: Vec<Problem> = Vec::new();
        for (path, n) in nats_sides_mut(&mut pair) {
            for (field, secret) in nats_secrets(n) {
                if secret == PASSWORD_MASK {
                    nats.push(Problem {
                        path: format!("{path}.auth.{field}"),
                        message: "enter it again: this NATS link is new, its servers, user or \
                                  TLS settings changed, or it comes from an export that masked it"
                            .into(),
                    });
                }
            }
        }
        let others: Vec<Problem> = credentials_of(&mut pair)
            .filter(|(_, _, a)| a.password == PASSWORD_MASK)
            .map(|(path, _, _)| Problem {
                path: format!("{path}.auth.password"),
                message: "enter the password: this link is new, where it connects, its user or \
                          its TLS settings changed, or it comes from an export that masked it"
                    .into(),
            })
            .collect();
        others.into_iter().chain(nats).collect()
    }
}

impl ConfigDocument {
    /// Masks every relay password; returns how many there were.
    pub fn mask_passwords(&mut self) -> usize {
        self.channel_pairs.iter_mut().map(ChannelPairSpec::mask_passwords).sum()
    }

    /// Restores masked passwords from the stored pair of the same id, where there is one;
    /// returns a problem (with the document path) for each that stays masked.
    pub fn restore_masked_passwords(&mut self, stored: &[ChannelPairSpec]) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (i, pair) in self.channel_pairs.iter_mut().enumerate() {
            if let Some(old) = stored.iter().find(|s| s.id == pair.id) {
                pair.restore_masked_passwords(old);
            }
            problems.extend(pair.masked_password_problems().into_iter().map(|p| Problem {
                path: format!("channel_pairs[{i}].{}", p.path),
                message: p.message,
            }));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(password: &str, channel: &str) -> ChannelPairSpec {
        crate::parse_pair(&format!(
            r#"{{"id": "p", "source": {{"type": "udp", "host": "0.0.0.0", "port": 5000}},
                "destination": {{"type": "remote_icombuffer", "url": "http://h:8080", "channel_id": "{channel}",
                                 "auth": {{"username": "u", "password": "{password}"}}}}}}"#
        ))
        .expect("pair")
    }

    fn password(p: &ChannelPairSpec) -> String {
        match &p.destination {
            EndpointSpec::Remote(r) => r.auth.as_ref().expect("auth").password.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn masked_passwords_come_back_only_for_the_same_link() {
        let stored = pair("s3cret", "c");
        let mut shown = stored.clone();
        assert_eq!(shown.mask_passwords(), 1);
        assert_eq!(password(&shown), PASSWORD_MASK);
        shown.restore_masked_passwords(&stored);
        assert_eq!(password(&shown), "s3cret");
        assert!(shown.masked_password_problems().is_empty());
        // Another channel is another link: the mask stays and is a problem.
        let mut moved = pair(PASSWORD_MASK, "other");
        moved.restore_masked_passwords(&stored);
        let problems = moved.masked_password_problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "destination.auth.password");
        // Weakening how the peer is verified needs the password again.
        let mut weakened = pair(PASSWORD_MASK, "c");
        if let EndpointSpec::Remote(r) = &mut weakened.destination {
            r.tls.insecure_skip_verify = true;
        }
        weakened.restore_masked_passwords(&stored);
        assert_eq!(weakened.masked_password_problems().len(), 1);
        // A document without a stored pair of that id.
        let mut doc =
            ConfigDocument { settings: None, channel_pairs: vec![pair(PASSWORD_MASK, "c")] };
        let problems = doc.restore_masked_passwords(&[]);
        assert_eq!(problems[0].path, "channel_pairs[0].destination.auth.password");
        assert!(doc.restore_masked_passwords(&[stored]).is_empty());
    }

    fn nats_pair(auth: &str, server: &str) -> ChannelPairSpec {
        crate::parse_pair(&format!(
            r#"{{"id": "p", "source": {{"type": "udp", "host": "0.0.0.0", "port": 5000}},
                "destination": {{"type": "nats", "servers": ["{server}"], "subject": "s",
                                 "auth": {auth}}}}}"#
        ))
        .expect("pair")
    }

    #[test]
    fn nats_passwords_and_tokens_are_masked_and_come_back_only_for_the_same_link() {
        let user = r#"{"username": "u", "password": "s3cret"}"#;
        let stored = nats_pair(user, "nats://h:4222");
        let mut shown = stored.clone();
        assert_eq!(shown.mask_passwords(), 1);
        assert!(!serde_json::to_string(&shown).expect("json").contains("s3cret"));
        shown.restore_masked_passwords(&stored);
        assert_eq!(shown, stored);
        // Another server is another link: the mask stays and is a problem.
        let mut moved = stored.clone();
        moved.mask_passwords();
        if let EndpointSpec::Nats(n) = &mut moved.destination {
            n.servers = vec!["nats://elsewhere:4222".into()];
        }
        moved.restore_masked_passwords(&stored);
        let problems = moved.masked_password_problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "destination.auth.password");
        // Tokens too.
        let stored = nats_pair(r#"{"token": "t0ken"}"#, "nats://h:4222");
        let mut shown = stored.clone();
        assert_eq!(shown.mask_passwords(), 1);
        assert!(!serde_json::to_string(&shown).expect("json").contains("t0ken"));
        assert_eq!(shown.masked_password_problems()[0].path, "destination.auth.token");
        shown.restore_masked_passwords(&stored);
        assert_eq!(shown, stored);
    }
}
