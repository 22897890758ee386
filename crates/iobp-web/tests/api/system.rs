//! The instance itself: the audit trail, metrics, health, the pages of both portals and what
//! a logged-out browser gets, caching.

use axum::http::{HeaderValue, StatusCode, header};
use iobp_testkit::ports;
use iobp_web::Portal;

use crate::support::{pair_json, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_audited_with_who_what_and_when() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let r =
        api.post("/api/v1/pairs").json(&pair_json("audited", ports::tcp())).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
    let ada = api.login(Portal::Mgmt, "ada").await;
    let r = api.get("/api/v1/audit").on(Portal::Mgmt).by(&ada).send().await;
    let entries = r.body.as_array().expect("array");
    let e = entries.iter().find(|e| e["action"] == "pair.create").expect("create audited");
    assert_eq!((e["username"].as_str(), e["target"].as_str()), (Some("otto"), Some("audited")));
    assert_eq!(e["address"], "10.1.2.3");
    assert!(e["at_ms"].as_i64().is_some_and(|t| t > 1_700_000_000_000));
    assert!(entries.iter().any(|e| e["action"] == "login" && e["username"] == "otto"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_pages_are_served() {
    let api = setup().await;
    let admin = api.login(Portal::Ops, "ada").await;
    let r =
        api.post("/api/v1/pairs").json(&pair_json("met\"x", ports::tcp())).by(&admin).send().await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "ids cannot contain quotes, so labels stay clean"
    );
    let r = api.post("/api/v1/pairs").json(&pair_json("met", ports::tcp())).by(&admin).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = api.get("/metrics").on(Portal::Mgmt).send().await;
    let text = r.body.as_str().expect("text");
    assert!(text.contains("iobp_messages_received_total{pair=\"met\"} 0"), "{text}");
    assert!(text.contains("iobp_status{pair=\"met\",indicator=\"channel\"}"));
    assert!(text.contains("iobp_storage_limit_bytes 1048576000"));
    assert!(
        text.contains("# TYPE iobp_disk_syncs_total counter\niobp_disk_syncs_total "),
        "{text}"
    );
    let viewer_mgmt = api.login(Portal::Mgmt, "vic").await;
    for (portal, path) in [
        (Portal::Ops, "/"),
        (Portal::Ops, "/channels"),
        (Portal::Ops, "/pairs/met"),
        (Portal::Mgmt, "/"),
        (Portal::Mgmt, "/users"),
        (Portal::Mgmt, "/settings"),
        (Portal::Mgmt, "/logs"),
        (Portal::Mgmt, "/audit"),
    ] {
        let login = if portal == Portal::Ops { &admin } else { &viewer_mgmt };
        let r = api.get(path).on(portal).by(login).send().await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.headers.get("content-security-policy").is_some());
        // Logged out: the server sends the browser to the login page, which comes back here.
        let r = api.get(path).on(portal).send().await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path} while logged out");
        let to = r.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert_eq!(to, format!("/login?next={path}"));
    }
    let r = api.get("/login").send().await;
    assert_eq!(r.status, StatusCode::OK);
    // No API answer is kept by a browser or a proxy (the session's carries the CSRF token).
    let r = api.get("/api/v1/session").by(&admin).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers.get(header::CACHE_CONTROL).map(HeaderValue::as_bytes),
        Some(&b"no-store"[..])
    );
    let r = api.get("/api/v1/pairs").send().await;
    assert_eq!(
        r.headers.get(header::CACHE_CONTROL).map(HeaderValue::as_bytes),
        Some(&b"no-store"[..])
    );
    let r = api.get("/users").send().await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "user management is on the Management Dashboard only"
    );
    let r = api.get("/readyz").send().await;
    assert_eq!(r.status, StatusCode::OK);
    api.web.system.sample(&api.web.engine);
    let mgmt = api.login(Portal::Mgmt, "vic").await;
    let r = api.get("/api/v1/health").on(Portal::Mgmt).by(&mgmt).send().await;
    assert_eq!(r.body["pairs"]["total"], 1);
    assert!(r.body["process_rss_bytes"].as_u64().is_some_and(|b| b > 0), "{}", r.body);
}
