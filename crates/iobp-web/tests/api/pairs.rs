//! Channel pairs through the API: hostile input gets a clear 4xx, problems name their field,
//! serial ports are listed with their users, relay passwords are never shown.

use axum::http::{Method, StatusCode, header};
use iobp_testkit::ports;
use iobp_web::Portal;
use serde_json::{Value, json};

use crate::support::{Api, Login, pair_json, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_4xx_never_a_500() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let big = format!("{{\"id\": \"{}\"}}", "x".repeat(2 << 20));
    let cases: Vec<(Method, String, Option<String>, u16)> = vec![
        (Method::POST, "/api/v1/pairs".into(), Some("{not json".into()), 422),
        (Method::POST, "/api/v1/pairs".into(), Some(big), 413),
        (Method::POST, "/api/v1/pairs".into(), Some(json!({"id": 5}).to_string()), 422),
        (Method::POST, "/api/v1/pairs".into(), Some(json!({"id": "a", "source": {"type": "udp", "host": "h", "port": "x"}, "destination": {"type": "udp", "host": "h", "port": 1}}).to_string()), 422),
        (Method::POST, "/api/v1/pairs".into(), Some(json!({"id": "a", "sauce": 1}).to_string()), 422),
        (Method::POST, "/api/v1/pairs".into(), Some("\u{0}\u{1}\u{2}".into()), 422),
        (Method::GET, "/api/v1/pairs/..%2F..%2Fetc".into(), None, 400),
        (Method::GET, "/api/v1/pairs/.hidden".into(), None, 400),
        (Method::GET, "/api/v1/pairs/nope/messages/notanumber".into(), None, 400),
        (Method::GET, "/api/v1/pairs/nope/messages?limit=-1".into(), None, 400),
        (Method::GET, "/api/v1/pairs/nope/messages?state=weird".into(), None, 400),
        (Method::GET, "/api/v1/pairs/nope".into(), None, 404),
        (Method::PUT, "/api/v1/pairs/nope".into(), Some(pair_json("other", 1234).to_string()), 422),
        (Method::DELETE, "/api/v1/pairs/nope".into(), None, 400),
        (Method::POST, "/api/v1/session".into(), Some(json!({"username": "x"}).to_string()), 400),
        (Method::POST, "/api/v1/session".into(), Some(json!({"username": "x".repeat(100_000), "password": "y"}).to_string()), 401),
        (Method::GET, "/api/v1/logs?level=loud".into(), None, 400),
        (Method::GET, "/api/v1/nothing-here".into(), None, 404),
        // A route that exists, with a method it does not take (schemathesis'
        // `unsupported_method`): 405, JSON like every other error.
        (Method::PATCH, "/api/v1/pairs".into(), None, 405),
        (Method::PUT, "/api/v1/session".into(), Some("{}".into()), 405),
    ];
    for (method, path, body, want) in cases {
        let r = api
            .request(method.clone(), &path)
            .body(body.unwrap_or_default())
            .by(&otto)
            .send()
            .await;
        assert_eq!(r.status.as_u16(), want, "{method} {path}: {}", r.body);
        assert!(
            r.body.get("error").and_then(Value::as_str).is_some_and(|e| !e.is_empty()),
            "{method} {path}: JSON error expected, got {}",
            r.body
        );
    }
    // A 405 says which methods the route takes.
    let r = api.request(Method::PATCH, "/api/v1/pairs").by(&otto).send().await;
    assert_eq!(r.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()), Some("GET,HEAD,POST"));
    // Validation errors name the field.
    let body = json!({"id": "a", "source": {"type": "tcp_server", "host": "h", "port": 0}, "destination": {"type": "udp", "host": "h", "port": 1}});
    let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
    assert_eq!(r.body["problems"][0]["path"], "source.port");
}

/// The portal's pair form sends what was typed and shows each problem at the field its path
/// names: a problem found while parsing names the field too, in words for people.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_problems_name_the_field_and_what_it_takes() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let cases = [
        (
            json!({"id": "a", "source": {"type": "tcp_server", "host": "h", "port": 70000}, "destination": {"type": "udp", "host": "h", "port": 1}}),
            "source.port",
            "must be at most 65535",
        ),
        (
            json!({"id": "a", "source": {"type": "tcp_server", "host": "h", "port": 1}, "destination": {"type": "tcp_client", "host": "h"}}),
            "destination.port",
            "is required",
        ),
        (
            json!({"id": "a", "source": {"type": "udp", "host": "h", "port": 1}, "destination": {"type": "udp", "host": "h", "port": 2},
                   "retry": {"initial_ms": -5}}),
            "retry.initial_ms",
            "must not be negative",
        ),
    ];
    for (body, path, message) in cases {
        let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.body["problems"], json!([{"path": path, "message": message}]), "{}", r.body);
        assert_eq!(r.body["error"], format!("invalid configuration: {path}: {message}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serial_ports_are_listed_with_the_pairs_that_use_them() {
    let api = setup().await;
    let op = api.login(Portal::Ops, "otto").await;
    let missing = "/dev/serial/by-id/usb-iobp-test-not-plugged-in";
    let body = json!({
        "id": "analyzer",
        "source": {"type": "serial", "port": missing, "baud_rate": 9600, "parity": "Even",
                   "data_bits": 7, "framing": {"type": "stx_etx"}, "ack": "byte",
                   "rs485": {"delay_before_send_ms": 1}},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9}
    });
    let r = api.post("/api/v1/pairs").json(&body).by(&op).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = api.get("/api/v1/serial-ports").by(&op).send().await;
    assert_eq!(r.status, StatusCode::OK);
    let rates = r.body["common_baud_rates"].as_array().expect("rates");
    assert!(rates.contains(&json!(9600)) && rates.contains(&json!(115_200)));
    let ports = r.body["ports"].as_array().expect("ports");
    let ours = ports.iter().find(|p| p["path"] == missing).expect("configured port listed");
    assert_eq!(ours["present"], false, "not on this machine: shown as missing");
    assert_eq!(ours["used_by"], json!(["analyzer"]));
    for p in ports.iter().filter(|p| p["present"] == true) {
        assert!(p["path"].as_str().is_some_and(|s| !s.is_empty()), "{p}");
    }
    // The pair round-trips with every serial setting, RS-485 included.
    let r = api.get("/api/v1/pairs/analyzer").by(&op).send().await;
    let src = &r.body["spec"]["source"];
    assert_eq!(
        (src["parity"].clone(), src["data_bits"].clone()),
        (json!("Even"), json!(7)),
        "{}",
        r.body
    );
    assert_eq!(src["rs485"]["delay_before_send_ms"], 1, "{}", r.body);
    // Refused with the field named: RS-485 with RTS/CTS.
    let mut bad = body.clone();
    bad["id"] = json!("bad");
    bad["source"]["flow_control"] = json!("RTS/CTS");
    bad["source"]["port"] = json!("/dev/ttyS9");
    let r = api.post("/api/v1/pairs").json(&bad).by(&op).send().await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.to_string().contains("source.flow_control"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_passwords_are_never_shown_and_survive_an_edit() {
    let api = setup().await;
    let op = api.login(Portal::Ops, "otto").await;
    let mut body = json!({
        "id": "relay-out",
        "source": {"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp()},
        "destination": {"type": "remote_icombuffer", "url": "http://127.0.0.1:9",
                        "channel_id": "plant-2", "auth": {"username": "relay", "password": "s3cret-relay-pw"}}
    });
    let r = api.post("/api/v1/pairs").json(&body).by(&op).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["spec"]["destination"]["auth"]["password"], "********");
    let r = api.get("/api/v1/pairs").by(&op).send().await;
    assert!(!r.body.to_string().contains("s3cret"), "{}", r.body);
    // An edit that sends the mask back keeps the stored password; a new one replaces it.
    body["name"] = json!("renamed");
    body["destination"]["auth"]["password"] = json!("********");
    let r = api.put("/api/v1/pairs/relay-out").json(&body).by(&op).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let stored = |api: &Api| match api.web.engine.get("relay-out").expect("pair").destination {
        iobp_config::EndpointSpec::Remote(r) => r.auth.expect("auth").password,
        other => panic!("{other:?}"),
    };
    assert_eq!(stored(&api), "s3cret-relay-pw");
    body["destination"]["auth"]["password"] = json!("a-new-password");
    let r = api.put("/api/v1/pairs/relay-out").json(&body).by(&op).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(stored(&api), "a-new-password");
    backup_passwords_follow_their_link(&api, &op, body).await;
}

/// Backups keep their passwords when reordered (matched by link, not position); a link whose
/// url changed needs its password typed again; the audit trail never shows one.
async fn backup_passwords_follow_their_link(api: &Api, op: &Login, mut body: Value) {
    let backup = |url: &str, pw: &str| {
        json!({"type": "remote_icombuffer", "url": url, "channel_id": "plant-2",
               "auth": {"username": "relay", "password": pw}})
    };
    let put = |body: &Value| api.put("/api/v1/pairs/relay-out").json(body).by(op).send();
    body["destination"]["auth"]["password"] = json!("a-new-password");
    body["failover"] =
        json!([backup("http://127.0.0.2:9", "pw-two"), backup("http://127.0.0.3:9", "pw-three")]);
    let r = put(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    body["failover"] =
        json!([backup("http://127.0.0.3:9", "********"), backup("http://127.0.0.2:9", "********")]);
    let r = put(&body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let failover_pw: Vec<String> = api
        .web
        .engine
        .get("relay-out")
        .expect("pair")
        .failover
        .iter()
        .map(|e| match e {
            iobp_config::EndpointSpec::Remote(r) => r.auth.clone().expect("auth").password,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(failover_pw, ["pw-three", "pw-two"]);
    body["failover"] = json!([backup("http://127.0.0.4:9", "********")]);
    let r = put(&body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["problems"][0]["path"], "failover[0].auth.password", "{}", r.body);
    // The audit trail masks it too.
    let admin = api.login(Portal::Mgmt, "ada").await;
    let r = api.get("/api/v1/audit").on(Portal::Mgmt).by(&admin).send().await;
    assert!(!r.body.to_string().contains("a-new-password"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_passwords_and_tokens_are_never_shown_and_survive_an_edit() {
    let api = setup().await;
    let op = api.login(Portal::Ops, "otto").await;
    let mut body = json!({
        "id": "nats-out",
        "source": {"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp()},
        "destination": {"type": "nats", "servers": ["nats://127.0.0.1:9"], "subject": "s",
                        "auth": {"token": "s3cret-nats-token"}}
    });
    let r = api.post("/api/v1/pairs").json(&body).by(&op).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["spec"]["destination"]["auth"]["token"], "********");
    let r = api.get("/api/v1/pairs").by(&op).send().await;
    assert!(!r.body.to_string().contains("s3cret"), "{}", r.body);
    // The mask sent back keeps the stored token.
    body["name"] = json!("renamed");
    body["destination"]["auth"]["token"] = json!("********");
    let r = api.put("/api/v1/pairs/nats-out").json(&body).by(&op).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let stored = |api: &Api| match api.web.engine.get("nats-out").expect("pair").destination {
        iobp_config::EndpointSpec::Nats(n) => n.auth.expect("auth").token,
        other => panic!("{other:?}"),
    };
    assert_eq!(stored(&api).as_deref(), Some("s3cret-nats-token"));
    // Another server is another link: the token must be typed again.
    body["destination"]["servers"] = json!(["nats://127.0.0.2:9"]);
    let r = api.put("/api/v1/pairs/nats-out").json(&body).by(&op).send().await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["problems"][0]["path"], "destination.auth.token", "{}", r.body);
    let admin = api.login(Portal::Mgmt, "ada").await;
    let r = api.get("/api/v1/audit").on(Portal::Mgmt).by(&admin).send().await;
    assert!(!r.body.to_string().contains("s3cret"), "{}", r.body);
}
