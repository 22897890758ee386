//! Who may do what: every route against every role, CSRF and origin checks, sessions per
//! portal and their revocation, the first start's password change, login throttling.

use axum::http::{StatusCode, header};
use iobp_store::{Role, Store};
use iobp_testkit::ports;
use iobp_web::Portal;
use serde_json::json;

use crate::support::{Login, PASSWORD, pair_json, routes, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_enforces_its_role() {
    let api = setup().await;
    for (role_name, role) in [
        ("none", None),
        ("vic", Some(Role::Viewer)),
        ("otto", Some(Role::Operator)),
        ("ada", Some(Role::Admin)),
        ("rita", Some(Role::Relay)),
    ] {
        let admin = api.login(Portal::Ops, "ada").await;
        let (pair, login) = api.pair_and_session(&admin, role_name, role).await;
        let new_pair = pair_json(&format!("n-{role_name}"), ports::tcp()).to_string();
        for (method, path, body, need) in routes(&pair, &new_pair) {
            let r = api
                .request(method.clone(), &path)
                .body(body.unwrap_or_default())
                .by(login.as_ref())
                .send()
                .await;
            let allowed = match (role, need) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(have), Some(need)) => have.includes(need),
            };
            if role.is_none() && need.is_some() {
                assert_eq!(
                    r.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} logged out: {}",
                    r.body
                );
            } else if !allowed {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {role_name}: {}",
                    r.body
                );
            } else {
                assert!(
                    r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                    "{method} {path} as {role_name} refused: {} {}",
                    r.status,
                    r.body
                );
            }
            assert!(!r.status.is_server_error(), "{method} {path}: {} {}", r.status, r.body);
            assert!(
                r.body.is_object() || r.body.is_array() || r.status == StatusCode::NO_CONTENT,
                "{method} {path}: JSON expected, got {}",
                r.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_the_csrf_token_and_a_same_origin() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let body = pair_json("x", ports::tcp());
    let no_token = Login { csrf: String::new(), ..otto.clone() };
    let r = api.post("/api/v1/pairs").json(&body).by(&no_token).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains("x-csrf-token")), "{}", r.body);
    for foreign in ["http://evil.test", "http://portal.test:8081", "https://portal.test:8080"] {
        let r =
            api.post("/api/v1/pairs").json(&body).by(&otto).header("origin", foreign).send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "origin {foreign}");
    }
    let r = api
        .post("/api/v1/pairs")
        .json(&body)
        .by(&otto)
        .header("origin", "http://portal.test:8080")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Login from a foreign page is refused too.
    let r = api
        .post("/api/v1/session")
        .json(&json!({"username": "otto", "password": PASSWORD}))
        .header("origin", "http://evil.test")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_per_portal_and_revoked_on_change() {
    let api = setup().await;
    let vic = api.login(Portal::Ops, "vic").await;
    // The Operations Portal's session is not valid on the Management Dashboard.
    let r = api.get("/api/v1/session").on(Portal::Mgmt).by(&vic).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Named per portal and per port (two instances on one host keep separate sessions).
    assert!(vic.cookie.starts_with("iobp_ops_session_8080="), "{}", vic.cookie);
    assert!(api.login(Portal::Mgmt, "vic").await.cookie.starts_with("iobp_mgmt_session_8080="));
    // A role change by an admin ends vic's sessions.
    let ada = api.login(Portal::Mgmt, "ada").await;
    let r = api.put_user(&ada, "vic", json!({"role": "operator"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = api.get("/api/v1/pairs").by(&vic).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "revoked");
    // Logout ends the session.
    let otto = api.login(Portal::Ops, "otto").await;
    let r = api.delete("/api/v1/session").by(&otto).send().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api.get("/api/v1/session").by(&otto).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The last admin cannot be removed or demoted; nobody can delete themselves.
    let r = api.put_user(&ada, "ada", json!({"role": "viewer"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = api.delete("/api/v1/users/ada").on(Portal::Mgmt).by(&ada).send().await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_admin_must_change_the_password_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let api = setup().await;
    let store = Store::open(dir.path()).expect("store");
    let pw = iobp_web::ensure_admin(&store, &api.web.passwords, dir.path())
        .await
        .expect("ok")
        .expect("created");
    assert!(
        iobp_web::ensure_admin(&store, &api.web.passwords, dir.path()).await.expect("ok").is_none(),
        "only once"
    );
    let file = dir.path().join(iobp_web::INITIAL_PASSWORD_FILE);
    let text = std::fs::read_to_string(&file).expect("file");
    assert!(text.contains(&pw));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    }
    let user = store.get_user("admin").expect("get").expect("admin");
    assert!(user.must_change_password && user.role == Role::Admin);
    assert!(user.password_hash.starts_with("$argon2id$"), "stored as an Argon2id hash");
    assert!(!user.password_hash.contains(&pw));

    // Through the API: a must-change user can only see the session and change the password.
    api.web
        .store
        .create_user(
            "fresh",
            &api.web.passwords.hash(PASSWORD).await.expect("hash"),
            Role::Operator,
            true,
        )
        .expect("user");
    let fresh = api.login(Portal::Ops, "fresh").await;
    let r = api.get("/api/v1/pairs").by(&fresh).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = api.get("/api/v1/session").by(&fresh).send().await;
    assert_eq!(r.body["must_change_password"], true);
    let short = json!({"current_password": PASSWORD, "new_password": "short"});
    let r = api.post("/api/v1/session/password").json(&short).by(&fresh).send().await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let good = json!({"current_password": PASSWORD, "new_password": "a much better password"});
    let r = api.post("/api/v1/session/password").json(&good).by(&fresh).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let renewed = Login {
        cookie: r.cookie.expect("new cookie"),
        csrf: r.body["csrf_token"].as_str().expect("csrf").into(),
    };
    let r = api.get("/api/v1/pairs").by(&renewed).send().await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.get("/api/v1/pairs").by(&fresh).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the old session ended with the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_slowed_and_audited() {
    let api = setup().await;
    let bad = json!({"username": "otto", "password": "wrong"});
    for _ in 0..iobp_web::FREE_FAILURES {
        let r = api.post("/api/v1/session").json(&bad).send().await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = api.post("/api/v1/session").json(&bad).send().await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    // Even the right password waits.
    let good = json!({"username": "otto", "password": PASSWORD});
    let r = api.post("/api/v1/session").json(&good).send().await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let audit = api.web.store.list_audit(20, None).expect("audit");
    assert!(audit.iter().filter(|e| e.action == "login.failed").count() >= 5);
    assert!(
        audit.iter().all(|e| e.detail.as_deref().is_none_or(|d| !d.contains("wrong"))),
        "passwords never in the audit trail"
    );
}
