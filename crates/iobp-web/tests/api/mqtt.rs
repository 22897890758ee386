//! MQTT sides through the API: an Operator sets up pairs that publish to and subscribe from
//! a broker (none runs here: the sides just keep connecting), the broker password is never
//! shown and survives an edit that does not retype it, and invalid settings come back 422
//! with the field named.

use axum::http::StatusCode;
use iobp_config::EndpointSpec;
use iobp_testkit::ports;
use iobp_web::Portal;
use serde_json::{Value, json};

use crate::support::{Api, setup};

/// A broker address nothing listens on.
fn no_broker(scheme: &str) -> String {
    format!("{scheme}://127.0.0.1:{}", ports::tcp())
}

/// The stored (unmasked) credentials of pair `id`'s mqtt side `which`.
fn stored_auth(api: &Api, id: &str, which: &str) -> (String, String) {
    let pair = api.web.engine.get(id).expect("pair");
    let side = match which {
        "source" => pair.source,
        "destination" => pair.destination,
        _ => pair.failover.into_iter().next().expect("a backup"),
    };
    match side {
        EndpointSpec::Mqtt(m) => {
            let a = m.auth.expect("auth");
            (a.username, a.password)
        }
        other => panic!("{which} of {id} is no mqtt side: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_up_mqtt_pairs_and_the_broker_password_stays_hidden() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;

    // A destination that publishes, every setting given, with an mqtt backup destination.
    let out_url = no_broker("mqtt");
    let mut out = json!({
        "id": "to-broker",
        "source": {"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp(), "framing": {"type": "line"}},
        "destination": {"type": "mqtt", "url": out_url, "version": "3.1.1", "client_id": "plant-1-out",
                        "topic": "plant/{pair}/results", "qos": 2,
                        "auth": {"username": "plant-1", "password": "broker-pw-out"},
                        "in_flight": 16, "keep_alive_s": 10, "connect_timeout_ms": 500},
        "failover": [{"type": "mqtt", "url": no_broker("mqtt"), "topic": "backup/{pair}",
                      "auth": {"username": "plant-1", "password": "broker-pw-backup"}}]
    });
    let r = api.post("/api/v1/pairs").json(&out).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut shown = out["destination"].clone();
    shown["auth"]["password"] = json!("********");
    assert_eq!(r.body["spec"]["destination"], shown, "every setting stored, the password masked");
    assert_eq!(r.body["spec"]["failover"][0]["auth"]["password"], "********", "{}", r.body);
    assert_eq!(r.body["spec"]["failover"][0]["qos"], 1, "QoS 1 by default: {}", r.body);
    assert_eq!(r.body["spec"]["failover"][0]["version"], "5", "MQTT 5 by default: {}", r.body);
    assert_eq!(r.body["status"]["destination"]["type"], "mqtt", "{}", r.body);
    assert_ne!(r.body["status"]["destination"]["status"], "green", "no broker: {}", r.body);

    // A source that subscribes with a filter, over TLS.
    let in_url = no_broker("mqtts");
    let mut inp = json!({
        "id": "from-broker",
        "source": {"type": "mqtt", "url": in_url, "topic": "plant/+/results/#", "qos": 1,
                   "auth": {"username": "plant-1-in", "password": "broker-pw-in"},
                   "tls": {"server_name": "broker.plant.test"}},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9}
    });
    let r = api.post("/api/v1/pairs").json(&inp).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["spec"]["source"]["auth"]["password"], "********", "{}", r.body);
    assert_eq!(r.body["spec"]["source"]["tls"]["server_name"], "broker.plant.test", "{}", r.body);

    // Read back: the passwords never leave the server.
    for id in ["to-broker", "from-broker"] {
        let r = api.get(format!("/api/v1/pairs/{id}")).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = api.get("/api/v1/pairs").by(&otto).send().await;
    assert!(!r.body.to_string().contains("broker-pw"), "{}", r.body);

    // Edits that send the mask back keep the stored passwords, the backup's included.
    out["name"] = json!("To the broker");
    out["destination"]["auth"]["password"] = json!("********");
    out["destination"]["keep_alive_s"] = json!(20);
    out["failover"][0]["auth"]["password"] = json!("********");
    let r = api.put("/api/v1/pairs/to-broker").json(&out).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["destination"]["keep_alive_s"], 20, "{}", r.body);
    assert_eq!(
        stored_auth(&api, "to-broker", "destination"),
        ("plant-1".into(), "broker-pw-out".into())
    );
    assert_eq!(stored_auth(&api, "to-broker", "failover").1, "broker-pw-backup");
    inp["source"]["auth"]["password"] = json!("********");
    inp["source"]["qos"] = json!(2);
    inp["source"]["topic"] = json!("plant/#");
    let r = api.put("/api/v1/pairs/from-broker").json(&inp).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["source"]["qos"], 2, "{}", r.body);
    assert_eq!(stored_auth(&api, "from-broker", "source").1, "broker-pw-in");

    // Another broker, or another way of verifying it, needs the password typed again.
    let mut moved = out.clone();
    moved["destination"]["url"] = json!(no_broker("mqtt"));
    let r = api.put("/api/v1/pairs/to-broker").json(&moved).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["problems"][0]["path"], "destination.auth.password", "{}", r.body);
    let mut unverified = inp.clone();
    unverified["source"]["tls"]["insecure_skip_verify"] = json!(true);
    let r = api.put("/api/v1/pairs/from-broker").json(&unverified).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["problems"][0]["path"], "source.auth.password", "{}", r.body);
    assert_eq!(stored_auth(&api, "to-broker", "destination").1, "broker-pw-out", "refused: kept");
    // A new password replaces the stored one.
    out["destination"]["auth"]["password"] = json!("broker-pw-new");
    let r = api.put("/api/v1/pairs/to-broker").json(&out).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(stored_auth(&api, "to-broker", "destination").1, "broker-pw-new");

    // The audit trail masks them too.
    let ada = api.login(Portal::Mgmt, "ada").await;
    let r = api.get("/api/v1/audit").on(Portal::Mgmt).by(&ada).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.to_string().contains("to-broker"), "the edits are audited: {}", r.body);
    assert!(!r.body.to_string().contains("broker-pw"), "{}", r.body);
}

/// The portal's form shows each problem at the field its path names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_mqtt_settings_name_their_field() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let dst = || json!({"type": "mqtt", "url": "mqtt://127.0.0.1:1883", "topic": "plant/{pair}"});
    let src = || json!({"type": "mqtt", "url": "mqtt://127.0.0.1:1883", "topic": "plant/#"});
    let tcp_src = json!({"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp()});
    let tcp_dst = json!({"type": "tcp_client", "host": "127.0.0.1", "port": 9});
    let with = |mut side: Value, key: &str, v: Value| {
        side[key] = v;
        side
    };
    let cases = [
        (
            json!({"source": tcp_src, "destination": with(dst(), "url", json!("http://127.0.0.1:1883"))}),
            "destination.url",
            "must start with mqtt:// or mqtts://",
        ),
        (
            json!({"source": tcp_src, "destination": with(dst(), "topic", json!("plant/+/results"))}),
            "destination.topic",
            "is where messages are published: no + or # wildcards",
        ),
        (
            json!({"source": tcp_src, "destination": tcp_dst,
                   "failover": [with(dst(), "topic", json!("plant/#"))]}),
            "failover[0].topic",
            "is where messages are published: no + or # wildcards",
        ),
        (
            json!({"source": with(src(), "topic", json!("plant/#/results")), "destination": tcp_dst}),
            "source.topic",
            "# must be a whole level and the last one (sensors/#)",
        ),
        (
            json!({"source": with(src(), "qos", json!(0)), "destination": tcp_dst}),
            "source.qos",
            "must be 1 (at least once) or 2 (exactly once): QoS 0 can lose messages",
        ),
        (
            json!({"source": tcp_src, "destination": with(dst(), "qos", json!(0))}),
            "destination.qos",
            "must be 1 (at least once) or 2 (exactly once): QoS 0 can lose messages",
        ),
        (
            json!({"source": with(src(), "in_flight", json!(8)), "destination": tcp_dst}),
            "source.in_flight",
            "applies to destinations only",
        ),
        (
            json!({"source": tcp_src, "destination": with(dst(), "drop_duplicates", json!(true))}),
            "destination.drop_duplicates",
            "applies to sources only",
        ),
        (
            json!({"source": with(with(src(), "drop_duplicates", json!(true)), "version", json!("3.1.1")),
                   "destination": tcp_dst}),
            "source.drop_duplicates",
            "needs MQTT 5 (3.1.1 messages carry no id)",
        ),
        (
            json!({"source": tcp_src, "destination": with(dst(), "tls", json!({"server_name": "b"}))}),
            "destination.tls",
            "applies to an mqtts:// url only",
        ),
    ];
    for (mut body, path, message) in cases {
        body["id"] = json!("bad-mqtt");
        let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
        assert_eq!(r.body["problems"], json!([{"path": path, "message": message}]), "{}", r.body);
    }
    let r = api.get("/api/v1/pairs/bad-mqtt").by(&otto).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "none was created: {}", r.body);
}
