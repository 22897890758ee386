//! Relaying through the API: tokens only for relay users, the upgrade checked (token, channel,
//! mode, grant) before the engine is asked anything, grants that reach exactly their channel
//! and direction, and grants checked when they are set.

use axum::http::StatusCode;
use iobp_store::{RelayDirection, RelayGrant};
use iobp_testkit::ports;
use iobp_web::Portal;
use serde_json::{Value, json};

use crate::support::{Api, Login, PASSWORD, grants_body, setup};

/// The headers of a relay upgrade with `bearer` as the `authorization`.
fn upgrade_with(bearer: &str) -> [(&'static str, &str); 3] {
    [("connection", "upgrade"), ("upgrade", "iobp-relay/1"), ("authorization", bearer)]
}

/// The body that asks for a relay token.
fn credentials(user: &str, password: &str) -> Value {
    json!({"username": user, "password": password})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_needs_a_relay_token() {
    let api = setup().await;
    let admin = api.login(Portal::Ops, "ada").await;
    let inbound = json!({
        "id": "inbound",
        "source": {"type": "remote_icombuffer", "channel_id": "plant-7"},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9}
    });
    let r = api.post("/api/v1/pairs").json(&inbound).by(&admin).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Granted both ways on plant-7 and push on a channel nobody takes, so the engine's own
    // refusals (no side here takes it: 409) are reached.
    let g = |c: &str, d| RelayGrant { channel_id: c.into(), direction: d };
    api.web
        .store
        .set_relay_grants(
            "rita",
            &[
                g("plant-7", RelayDirection::Push),
                g("plant-7", RelayDirection::Pull),
                g("elsewhere", RelayDirection::Push),
            ],
        )
        .expect("grant");
    // A relay user gets a token; a viewer is refused; a wrong password is refused.
    let r = api.post("/api/v1/relay/session").json(&credentials("rita", PASSWORD)).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let token = r.body["token"].as_str().expect("token").to_string();
    let r = api.post("/api/v1/relay/session").json(&credentials("vic", PASSWORD)).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains("relay role")), "{}", r.body);
    let r = api.post("/api/v1/relay/session").json(&credentials("rita", "nope")).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A relay account cannot log into a portal (it would get nothing but 403s).
    for portal in [Portal::Ops, Portal::Mgmt] {
        let r = api
            .post("/api/v1/session")
            .on(portal)
            .json(&credentials("rita", PASSWORD))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(r.cookie.is_none(), "no session cookie");
    }
    relay_upgrades(&api, &admin, &token).await;
}

/// A relay upgrade request: path, headers, expected status.
type RelayCase = (&'static str, Vec<(&'static str, String)>, StatusCode);

/// The upgrade to the relay protocol: token, channel and mode checked before it.
async fn relay_upgrades(api: &Api, admin: &Login, token: &str) {
    let bearer = format!("Bearer {token}");
    let upgrade: [(&str, &str); 2] = [("connection", "upgrade"), ("upgrade", "iobp-relay/1")];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        extra.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
    };
    let cases: Vec<RelayCase> = vec![
        (
            "/api/v1/relay/channels/plant-7/push",
            with(&[("authorization", &bearer)]),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/relay/channels/plant-7/push", with(&upgrade), StatusCode::UNAUTHORIZED),
        (
            "/api/v1/relay/channels/plant-7/push",
            with(&upgrade_with("Bearer not-a-token")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/v1/relay/channels/plant-7/sideways",
            with(&upgrade_with(&bearer)),
            StatusCode::NOT_FOUND,
        ),
        ("/api/v1/relay/channels/plant-7/pull", with(&upgrade_with(&bearer)), StatusCode::CONFLICT),
        (
            "/api/v1/relay/channels/elsewhere/push",
            with(&upgrade_with(&bearer)),
            StatusCode::CONFLICT,
        ),
        (
            "/api/v1/relay/channels/plant-7/push",
            with(&upgrade_with(&bearer)),
            StatusCode::SWITCHING_PROTOCOLS,
        ),
    ];
    for (path, headers, want) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = api.get(path).headers(&h).send().await;
        assert_eq!(r.status, want, "{path} {headers:?}: {}", r.body);
    }
    // A relay token is not a portal session, and a portal session is not a relay token. The
    // cookie carries the name a real portal session uses, so only the token is wrong.
    let cookie_name = admin.cookie.split('=').next().expect("cookie name").to_string();
    let r =
        api.get("/api/v1/pairs").header("cookie", &format!("{cookie_name}={token}")).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let cookie_token = admin.cookie.split('=').nth(1).expect("token").to_string();
    let cookie_bearer = format!("Bearer {cookie_token}");
    let h = upgrade_with(&cookie_bearer);
    let r = api.get("/api/v1/relay/channels/plant-7/push").headers(&h).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Changing the relay user's password revokes its tokens.
    let ada = api.login(Portal::Mgmt, "ada").await;
    let r = api.put_user(&ada, "rita", json!({"password": "another long pw"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r =
        api.get("/api/v1/relay/channels/plant-7/push").headers(&upgrade_with(&bearer)).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Relay grants: every relay token × channel × direction reaches exactly what its user was
/// granted (101) and is refused (403, audited) everywhere else — even on channels that do not
/// exist, so a token learns nothing about other channels. Admins relay only when granted;
/// viewers and operators hold no grants; grants are managed on the Management Dashboard's
/// API. (On 325539c any relay user's token opened every channel.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_grants_reach_only_the_granted_channel_and_direction() {
    let api = setup().await;
    let ops = api.login(Portal::Ops, "ada").await;
    let mgmt = api.login(Portal::Mgmt, "ada").await;
    relay_channels(&api, &ops).await;
    // A relay user created with its grants in one request; another granted afterwards.
    let site_b = json!({"username": "site-b", "password": PASSWORD, "role": "relay", "must_change_password": false,
                        "relay_grants": [{"channel_id": "site-b", "direction": "push"}, {"channel_id": "site-b-out", "direction": "pull"}]});
    let r = api.post("/api/v1/users").on(Portal::Mgmt).json(&site_b).by(&mgmt).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["relay_grants"].as_array().map(Vec::len), Some(2), "{}", r.body);
    let r = api
        .put_user(&mgmt, "rita", grants_body(&[("site-a", "push"), ("site-a-out", "pull")]))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["relay_grants"],
        json!([{"channel_id": "site-a", "direction": "push"}, {"channel_id": "site-a-out", "direction": "pull"}])
    );
    // An admin is not a relay credential until granted.
    let r = api.post("/api/v1/relay/session").json(&credentials("ada", PASSWORD)).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains("no relay grants")), "{}", r.body);
    let r = api.put_user(&mgmt, "ada", grants_body(&[("site-b", "push")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The matrix: every token × channel × direction.
    let mut tokens = Vec::new();
    for user in ["rita", "site-b", "ada"] {
        let r = api.post("/api/v1/relay/session").json(&credentials(user, PASSWORD)).send().await;
        assert_eq!(r.status, StatusCode::OK, "{user}: {}", r.body);
        tokens.push((user, r.body["token"].as_str().expect("token").to_string()));
    }
    let granted: &[(&str, &str, &str)] = &[
        ("rita", "site-a", "push"),
        ("rita", "site-a-out", "pull"),
        ("site-b", "site-b", "push"),
        ("site-b", "site-b-out", "pull"),
        ("ada", "site-b", "push"),
    ];
    let audit_before = api.web.store.list_audit(1000, None).expect("audit").len();
    let refused = relay_matrix(&api, &tokens, granted).await;
    let audit = api.web.store.list_audit(1000, None).expect("audit");
    let logged =
        audit[..audit.len() - audit_before].iter().filter(|e| e.action == "relay.refused").count();
    assert_eq!(logged, refused, "every refusal is audited");
    let e = audit.iter().find(|e| e.action == "relay.refused").expect("an entry");
    assert!(e.username.is_some() && e.target.is_some() && e.address.is_some(), "{e:?}");

    // Grants change at once: the next connection is checked against the new ones.
    let r = api.put_user(&mgmt, "rita", grants_body(&[("site-a-out", "pull")])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let rita = &tokens[0].1;
    let bearer = format!("Bearer {rita}");
    let r =
        api.get("/api/v1/relay/channels/site-a/push").headers(&upgrade_with(&bearer)).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a removed grant applies to the next connection");
    // A relay user turned viewer loses its grants.
    let r = api.put_user(&mgmt, "site-b", json!({"role": "viewer"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["relay_grants"], json!([]), "{}", r.body);
}

/// Site A and site B each push into one channel here and pull from another.
async fn relay_channels(api: &Api, ops: &Login) {
    for (id, side) in [
        (
            "a-in",
            json!({"source": {"type": "remote_icombuffer", "channel_id": "site-a"},
                         "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9}}),
        ),
        (
            "a-out",
            json!({"source": {"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp()},
                          "destination": {"type": "remote_icombuffer", "channel_id": "site-a-out"}}),
        ),
        (
            "b-in",
            json!({"source": {"type": "remote_icombuffer", "channel_id": "site-b"},
                         "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9}}),
        ),
        (
            "b-out",
            json!({"source": {"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp()},
                          "destination": {"type": "remote_icombuffer", "channel_id": "site-b-out"}}),
        ),
    ] {
        let mut p = side;
        p["id"] = json!(id);
        let r = api.post("/api/v1/pairs").json(&p).by(ops).send().await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

/// Opens every channel × direction with every token; 101 exactly where granted, else 403.
/// Returns how many were refused.
async fn relay_matrix(
    api: &Api,
    tokens: &[(&str, String)],
    granted: &[(&str, &str, &str)],
) -> usize {
    let mut refused = 0;
    for (user, token) in tokens {
        for channel in ["site-a", "site-a-out", "site-b", "site-b-out", "site-c"] {
            for mode in ["push", "pull"] {
                let bearer = format!("Bearer {token}");
                let path = format!("/api/v1/relay/channels/{channel}/{mode}");
                let r = api.get(path).headers(&upgrade_with(&bearer)).send().await;
                if granted.contains(&(*user, channel, mode)) {
                    assert_eq!(
                        r.status,
                        StatusCode::SWITCHING_PROTOCOLS,
                        "{user} {mode} {channel}: {}",
                        r.body
                    );
                } else {
                    refused += 1;
                    assert_eq!(
                        r.status,
                        StatusCode::FORBIDDEN,
                        "{user} {mode} {channel}: {}",
                        r.body
                    );
                    assert!(
                        r.body["error"].as_str().is_some_and(|e| e.contains("not granted")),
                        "{}",
                        r.body
                    );
                }
            }
        }
    }
    refused
}

/// Grants are checked when they are set: only relay and admin users hold them, channel ids are
/// ids, directions are `push` or `pull`, and only admins grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_grants_are_checked_when_set() {
    let api = setup().await;
    let mgmt = api.login(Portal::Mgmt, "ada").await;
    // Viewers and operators hold no grants; channel ids are checked; operators cannot grant.
    let r = api.put_user(&mgmt, "vic", grants_body(&[("site-a", "push")])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["problems"][0]["path"], "relay_grants", "{}", r.body);
    let r = api.put_user(&mgmt, "rita", grants_body(&[("../x", "push")])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["problems"][0]["path"], "relay_grants[0].channel_id", "{}", r.body);
    let r = api
        .put_user(
            &mgmt,
            "rita",
            json!({"relay_grants": [{"channel_id": "site-a", "direction": "sideways"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let otto = api.login(Portal::Mgmt, "otto").await;
    let r = api
        .put("/api/v1/users/otto")
        .on(Portal::Mgmt)
        .json(&grants_body(&[("site-a", "push")]))
        .by(&otto)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}
