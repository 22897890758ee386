//! The OpenAPI document: it covers exactly the routes, every answer is one it names, it is
//! consistent, and it matches the checked-in copy (so API drift shows up in review).

use axum::http::{Method, StatusCode};
use iobp_store::Role;
use iobp_testkit::ports;
use iobp_web::Portal;
use serde_json::{Value, json};

use crate::support::{pair_json, routes, setup, template_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_table_covers_the_openapi_document() {
    let doc: Value = serde_json::from_str(&iobp_web::openapi_json()).expect("openapi");
    let documented: std::collections::BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .into_iter()
                .flatten()
                .map(move |(m, _)| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let tested: std::collections::BTreeSet<(String, String)> = routes("{id}", "")
        .into_iter()
        .map(|(m, p, _, _)| (m.to_string(), template_of(&p)))
        .chain([
            ("POST".to_string(), "/api/v1/session".to_string()),
            ("GET".to_string(), "/api/v1/events".to_string()),
            // Bearer tokens, not portal sessions: `relay::relay_needs_a_relay_token`.
            ("POST".to_string(), "/api/v1/relay/session".to_string()),
            ("GET".to_string(), "/api/v1/relay/channels/{channel_id}/{mode}".to_string()),
        ])
        .collect();
    assert_eq!(
        documented, tested,
        "every documented route is tested for its roles, and nothing else exists"
    );
}

/// The status codes the OpenAPI document names for `method path_template`.
fn documented_statuses(doc: &Value, method: &Method, template: &str) -> Vec<u16> {
    let op = &doc["paths"][template][method.as_str().to_lowercase()];
    assert!(op.is_object(), "{method} {template} is not in the OpenAPI document");
    op["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(|k| k.parse().expect("a status code"))
        .collect()
}

// Found by schemathesis (issue 11): most routes answered 400, 401, 403 or 413 without the
// document naming them (and a relay user gets 403 even from the session routes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_one_the_openapi_document_names() {
    let doc: Value = serde_json::from_str(&iobp_web::openapi_json()).expect("openapi");
    let api = setup().await;
    let admin = api.login(Portal::Ops, "ada").await;
    let too_large = vec![b' '; iobp_web::MAX_BODY_BYTES + 1];
    for (role_name, role) in [
        ("none", None),
        ("vic", Some(Role::Viewer)),
        ("otto", Some(Role::Operator)),
        ("rita", Some(Role::Relay)),
        ("ada", Some(Role::Admin)),
    ] {
        let (pair, login) = api.pair_and_session(&admin, role_name, role).await;
        let new_pair = pair_json(&format!("n-{role_name}"), ports::tcp()).to_string();
        let templates = routes("{id}", "");
        for ((method, path, body, _), (_, template, _, _)) in
            routes(&pair, &new_pair).into_iter().zip(templates)
        {
            let template = template_of(&template);
            let statuses = documented_statuses(&doc, &method, &template);
            // As the portals send it; then with garbage where the route takes input.
            let mut variants = vec![(path.clone(), body.clone().map(String::into_bytes))];
            if body.is_some() {
                variants.push((path.clone(), Some(vec![0xff, 0xfe, b'{'])));
                variants.push((path.clone(), Some(Vec::new())));
                variants.push((path.clone(), Some(too_large.clone())));
            }
            if template.contains("{id}") {
                variants.push((
                    path.replace(&pair, "..%2F..%2Fetc"),
                    body.clone().map(String::into_bytes),
                ));
            }
            if template.contains("{seq}") {
                variants.push((path.replace("/1", "/-1"), None));
            }
            if path.contains('?') {
                variants.push((format!("{path}&limit=x&unknown=1"), None));
            }
            for (path, body) in variants {
                let r = api
                    .request(method.clone(), &path)
                    .body(body.unwrap_or_default())
                    .by(login.as_ref())
                    .send()
                    .await;
                assert!(
                    statuses.contains(&r.status.as_u16()),
                    "{method} {path} as {role_name}: {} is not among the documented {statuses:?}: {}",
                    r.status,
                    r.body
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_consistent() {
    let doc: Value = serde_json::from_str(&iobp_web::openapi_json()).expect("openapi");
    let mut ids = std::collections::BTreeSet::new();
    for (template, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let what = format!("{method} {template}");
            // Unique operation ids (clients are generated from them).
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "{what}: operationId `{id}` is used twice");
            // Path parameters are the template's, and everything else is a query parameter.
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().expect("name");
                let in_template = template.contains(&format!("{{{name}}}"));
                let place = p["in"].as_str().expect("in");
                assert_eq!(
                    place,
                    if in_template { "path" } else { "query" },
                    "{what}: parameter `{name}`"
                );
            }
        }
    }
    // The event stream describes its events (OpenAPI 3.2 `itemSchema`), not a string.
    let events = &doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"];
    assert!(events["text/event-stream"]["itemSchema"].is_object(), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_checked_in_copy() {
    let current = iobp_web::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("IOBP_UPDATE_OPENAPI").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &current).expect("write");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == current,
        "docs/openapi.json is out of date: run `IOBP_UPDATE_OPENAPI=1 cargo test -p iobp-web --test api openapi` and review the diff"
    );
    // And the instance serves it.
    let api = setup().await;
    let r = api.get("/api/openapi.json").on(Portal::Mgmt).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["info"]["title"], "ioBufferPro REST API");
}

/// The pair bodies and answers are described, every setting of an mqtt side with them: a new
/// field of `MqttSpec` fails to compile here until it is added below, and then this test until
/// the document describes it; a new connector type fails it until the document names it.
#[test]
fn the_openapi_document_describes_every_mqtt_setting() {
    use std::collections::BTreeSet;
    let doc: Value = serde_json::from_str(&iobp_web::openapi_json()).expect("openapi");
    let schemas = &doc["components"]["schemas"];
    let every = iobp_config::MqttSpec {
        url: "mqtts://broker:8883".into(),
        version: iobp_config::MqttVersion::V311,
        client_id: Some("c".into()),
        topic: "t/{pair}".into(),
        qos: 2,
        auth: Some(iobp_config::AuthSpec { username: "u".into(), password: "p".into() }),
        tls: iobp_config::TlsSpec {
            ca: Some("ca.pem".into()),
            cert: Some("c.pem".into()),
            key: Some("c.key".into()),
            server_name: Some("broker".into()),
            insecure_skip_verify: true,
            ..iobp_config::TlsSpec::default()
        },
        in_flight: Some(8),
        keep_alive_s: Some(5),
        connect_timeout_ms: Some(10),
        drop_duplicates: true,
    };
    let json = serde_json::to_value(iobp_config::EndpointSpec::Mqtt(every)).expect("json");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().unwrap_or_else(|| panic!("an object: {v}")).keys().cloned().collect()
    };
    let mqtt = &schemas["MqttEndpoint"]["properties"];
    assert_eq!(keys(&json), keys(mqtt), "every setting of an mqtt side, nothing else");
    assert_eq!(keys(&json["auth"]), keys(&mqtt["auth"]["properties"]));
    assert_eq!(keys(&json["tls"]), keys(&mqtt["tls"]["properties"]), "a TLS client's settings");
    for (name, p) in mqtt.as_object().expect("properties") {
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()) || name == "type",
            "{name}"
        );
    }
    // Every connector type is named: mqtt, nats and modbus by their schemas, the others by
    // their type.
    let err = serde_json::from_value::<iobp_config::EndpointSpec>(json!({"type": "?"}))
        .expect_err("no such type")
        .to_string();
    let types: BTreeSet<String> = err
        .split_once("expected one of ")
        .map(|(_, list)| list.split(", ").map(|t| t.trim_matches(['`', ' ']).to_string()).collect())
        .unwrap_or_default();
    assert!(types.contains("mqtt") && types.len() > 1, "{err}");
    let endpoint = &schemas["Endpoint"]["oneOf"];
    assert_eq!(endpoint[0]["$ref"], "#/components/schemas/MqttEndpoint", "{endpoint}");
    assert_eq!(endpoint[1]["$ref"], "#/components/schemas/NatsEndpoint", "{endpoint}");
    assert_eq!(endpoint[2]["$ref"], "#/components/schemas/ModbusEndpoint", "{endpoint}");
    let mut named: BTreeSet<String> =
        ["mqtt", "nats", "modbus"].into_iter().map(String::from).collect();
    for t in endpoint[3]["properties"]["type"]["enum"].as_array().expect("the other types") {
        named.insert(t.as_str().expect("a type name").to_string());
    }
    assert_eq!(named, types, "the document names every connector type");
    // The pair's bodies and answers refer to the description.
    let pair = "#/components/schemas/ChannelPairSpec";
    for (path, method) in [("/api/v1/pairs", "post"), ("/api/v1/pairs/{id}", "put")] {
        let body = &doc["paths"][path][method]["requestBody"]["content"]["application/json"];
        assert_eq!(body["schema"]["$ref"], pair, "{method} {path}: {body}");
    }
    assert_eq!(schemas["PairDto"]["properties"]["spec"]["$ref"], pair);
    for side in ["source", "destination"] {
        let s = &schemas["ChannelPairSpec"]["properties"][side];
        assert_eq!(s["$ref"], "#/components/schemas/Endpoint", "{side}");
    }
}

/// Every setting of a nats side is described: a new field of `NatsSpec` or `NatsAuth` fails to
/// compile here until it is added below, and then this test until the document describes it.
#[test]
fn the_openapi_document_describes_every_nats_setting() {
    use std::collections::BTreeSet;
    let doc: Value = serde_json::from_str(&iobp_web::openapi_json()).expect("openapi");
    let nats = &doc["components"]["schemas"]["NatsEndpoint"]["properties"];
    let every = iobp_config::NatsSpec {
        servers: vec!["tls://nats-1:4222".into()],
        subject: "plant.{pair}".into(),
        stream: "PLANT".into(),
        consumer: Some("c".into()),
        auth: Some(iobp_config::NatsAuth {
            username: Some("u".into()),
            password: Some("p".into()),
            token: Some("t".into()),
            creds_file: Some("/etc/edge.creds".into()),
        }),
        tls: iobp_config::TlsSpec {
            enabled: true,
            ca: Some("ca.pem".into()),
            cert: Some("c.pem".into()),
            key: Some("c.key".into()),
            server_name: Some("nats".into()),
            insecure_skip_verify: true,
            ..iobp_config::TlsSpec::default()
        },
        in_flight: Some(8),
        ack_wait_s: Some(5),
    };
    let json = serde_json::to_value(iobp_config::EndpointSpec::Nats(every)).expect("json");
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().unwrap_or_else(|| panic!("an object: {v}")).keys().cloned().collect()
    };
    assert_eq!(keys(&json), keys(nats), "every setting of a nats side, nothing else");
    assert_eq!(keys(&json["auth"]), keys(&nats["auth"]["properties"]));
    assert_eq!(keys(&json["tls"]), keys(&nats["tls"]["properties"]), "a TLS client's settings");
    for (name, p) in nats.as_object().expect("properties") {
        assert!(
            p["description"].as_str().is_some_and(|d| !d.is_empty()) || name == "type",
            "{name}"
        );
    }
    assert_eq!(doc["components"]["schemas"]["NatsEndpoint"]["additionalProperties"], false);
}

/// Every setting of a modbus side is described, the transports' and the polls' and fields' too:
/// a new field fails here until the document describes it.
#[test]
fn the_openapi_document_describes_every_modbus_setting() {
    use std::collections::BTreeSet;
    let doc: Value = serde_json::from_str(&iobp_web::openapi_json()).expect("openapi");
    let modbus = &doc["components"]["schemas"]["ModbusEndpoint"]["properties"];
    let keys = |v: &Value| -> BTreeSet<String> {
        v.as_object().unwrap_or_else(|| panic!("an object: {v}")).keys().cloned().collect()
    };
    let every = |transport: Value| {
        iobp_config::parse_pair(
            &json!({"id": "m", "destination": {"type": "udp", "host": "h", "port": 1},
                "source": {"type": "modbus", "transport": transport, "polls": [
                {"name": "p", "unit": 1, "function": "holding_registers", "address": 0, "count": 2,
                 "interval_ms": 100, "fields": [{"name": "f", "offset": 0, "type": "f32",
                 "word_order": "little", "scale": 0.1, "offset_value": 1.0}]}]}})
            .to_string(),
        )
        .expect("valid")
    };
    let tcp = every(json!({"type": "tcp", "host": "h", "port": 502, "timeout_ms": 100}));
    let rtu = every(json!({"type": "rtu", "port": "/dev/ttyS0", "baud_rate": 19200,
        "data_bits": 8, "parity": "Even", "stop_bits": 1, "flow_control": "None",
        "rs485": {"rts_on_send": true}, "timeout_ms": 100}));
    let (tcp, rtu) = (
        serde_json::to_value(&tcp.source).expect("json"),
        serde_json::to_value(&rtu.source).expect("json"),
    );
    assert_eq!(keys(&tcp), keys(modbus), "every setting of a modbus side, nothing else");
    let transports = &modbus["transport"]["oneOf"];
    assert_eq!(keys(&tcp["transport"]), keys(&transports[0]["properties"]));
    assert_eq!(keys(&rtu["transport"]), keys(&transports[1]["properties"]));
    let poll = &modbus["polls"]["items"]["properties"];
    assert_eq!(keys(&tcp["polls"][0]), keys(poll));
    assert_eq!(keys(&tcp["polls"][0]["fields"][0]), keys(&poll["fields"]["items"]["properties"]));
    for props in
        [modbus, poll, &poll["fields"]["items"]["properties"], &transports[1]["properties"]]
    {
        for (name, p) in props.as_object().expect("properties") {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()) || name == "type",
                "{name}"
            );
        }
    }
}
