//! NATS JetStream sides through the API: an Operator sets up pairs that publish to and pull
//! from JetStream (no server runs here: the sides just keep connecting), passwords and tokens
//! are never shown and survive an edit that does not retype them, a `.creds` file is named by
//! its path and nothing of its content is ever answered, and invalid settings come back 422
//! with the field named — those validation sees, and the files checked when a pair is created.

use axum::http::StatusCode;
use iobp_config::EndpointSpec;
use iobp_testkit::nats_auth::{KeyPair, NatsOperator, creds_text};
use iobp_testkit::{TestPki, ports};
use iobp_web::Portal;
use serde_json::{Value, json};

use crate::support::{Api, setup};

/// A server address nothing listens on.
fn no_server(scheme: &str) -> String {
    format!("{scheme}://127.0.0.1:{}", ports::tcp())
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// The stored (unmasked) credentials of pair `id`'s nats side `which`.
fn stored_auth(api: &Api, id: &str, which: &str) -> iobp_config::NatsAuth {
    let pair = api.web.engine.get(id).expect("pair");
    let side = match which {
        "source" => pair.source,
        "destination" => pair.destination,
        _ => pair.failover.into_iter().next().expect("a backup"),
    };
    match side {
        EndpointSpec::Nats(n) => n.auth.expect("auth"),
        other => panic!("{which} of {id} is no nats side: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_up_nats_pairs_and_their_secrets_stay_hidden() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let dir = tempfile::tempdir().expect("dir");
    let pki = TestPki::generate(dir.path());
    let auth = NatsOperator::generate(dir.path());
    let creds = path(&auth.user_creds("edge-1"));
    let creds_content = std::fs::read_to_string(&creds).expect("creds");
    let seed = creds_content.lines().find(|l| l.starts_with("SU")).expect("seed").to_string();
    let user_jwt = creds_content.lines().nth(1).expect("jwt").to_string();

    // A destination publishing over TLS, every setting given, with a backup signing in with
    // a creds file.
    let mut out = json!({
        "id": "to-jetstream",
        "source": {"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp(), "framing": {"type": "line"}},
        "destination": {"type": "nats", "servers": [no_server("tls"), no_server("tls")],
                        "subject": "plant.{pair}.results", "stream": "PLANT",
                        "auth": {"username": "edge-1", "password": "nats-pw-out"},
                        "tls": {"enabled": true, "ca": path(&pki.ca), "server_name": "nats.plant.test",
                                "cert": path(&pki.client_cert), "key": path(&pki.client_key)},
                        "in_flight": 64},
        "failover": [{"type": "nats", "servers": [no_server("nats")], "subject": "backup.{pair}",
                      "auth": {"creds_file": creds}}]
    });
    let r = api.post("/api/v1/pairs").json(&out).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut shown = out["destination"].clone();
    shown["auth"]["password"] = json!("********");
    assert_eq!(r.body["spec"]["destination"], shown, "every setting stored, the password masked");
    assert_eq!(r.body["spec"]["failover"][0], out["failover"][0], "the creds path as given");
    assert_eq!(r.body["status"]["destination"]["type"], "nats", "{}", r.body);
    assert_ne!(r.body["status"]["destination"]["status"], "green", "no server: {}", r.body);

    // A source pulling with a token, its consumer named.
    let mut inp = json!({
        "id": "from-jetstream",
        "source": {"type": "nats", "servers": [no_server("nats")], "stream": "ORDERS",
                   "subject": "orders.>", "consumer": "edge-1-orders", "ack_wait_s": 60,
                   "auth": {"token": "nats-token-in"}},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9}
    });
    let r = api.post("/api/v1/pairs").json(&inp).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["spec"]["source"]["auth"]["token"], "********", "{}", r.body);
    assert_eq!(r.body["spec"]["source"]["consumer"], "edge-1-orders", "{}", r.body);
    assert_eq!(r.body["spec"]["source"]["ack_wait_s"], 60, "{}", r.body);

    // Read back, one by one and in the list: no password, token or creds content.
    for id in ["to-jetstream", "from-jetstream"] {
        let r = api.get(format!("/api/v1/pairs/{id}")).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = api.get("/api/v1/pairs").by(&otto).send().await;
    let listed = r.body.to_string();
    for secret in ["nats-pw-out", "nats-token-in", &seed, &user_jwt] {
        assert!(!listed.contains(secret), "{secret} shown: {listed}");
    }

    // Edits that send the masks back keep the stored secrets.
    out["name"] = json!("To JetStream");
    out["destination"]["auth"]["password"] = json!("********");
    out["destination"]["in_flight"] = json!(128);
    let r = api.put("/api/v1/pairs/to-jetstream").json(&out).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["destination"]["in_flight"], 128, "{}", r.body);
    let a = stored_auth(&api, "to-jetstream", "destination");
    assert_eq!(
        (a.username.as_deref(), a.password.as_deref()),
        (Some("edge-1"), Some("nats-pw-out"))
    );
    assert_eq!(stored_auth(&api, "to-jetstream", "failover").creds_file, Some(creds.clone()));
    inp["source"]["auth"]["token"] = json!("********");
    inp["source"]["ack_wait_s"] = json!(30);
    let r = api.put("/api/v1/pairs/from-jetstream").json(&inp).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        stored_auth(&api, "from-jetstream", "source").token.as_deref(),
        Some("nats-token-in")
    );

    // Another way of verifying the server needs the password typed again.
    let mut unverified = out.clone();
    unverified["destination"]["tls"]["server_name"] = json!("elsewhere.test");
    let r = api.put("/api/v1/pairs/to-jetstream").json(&unverified).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["problems"][0]["path"], "destination.auth.password", "{}", r.body);

    // The audit trail masks them too, and never holds the creds file's content.
    let ada = api.login(Portal::Mgmt, "ada").await;
    let r = api.get("/api/v1/audit").on(Portal::Mgmt).by(&ada).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let audit = r.body.to_string();
    assert!(audit.contains("to-jetstream"), "the edits are audited: {audit}");
    for secret in ["nats-pw-out", "nats-token-in", &seed, &user_jwt] {
        assert!(!audit.contains(secret), "{secret} in the audit trail: {audit}");
    }
}

/// The portal's form shows each problem at the field its path names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_nats_settings_name_their_field() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let dst =
        || json!({"type": "nats", "servers": ["nats://127.0.0.1:4222"], "subject": "plant.{pair}"});
    let src = || json!({"type": "nats", "servers": ["nats://127.0.0.1:4222"], "subject": "in.>", "stream": "IN"});
    let tcp_src = json!({"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp()});
    let tcp_dst = json!({"type": "tcp_client", "host": "127.0.0.1", "port": 9});
    let with = |mut side: Value, key: &str, v: Value| {
        side[key] = v;
        side
    };
    // Found by validation: the whole message is known.
    let cases = [
        (
            "bad-nats",
            json!({"source": tcp_src, "destination": with(dst(), "servers", json!(["http://127.0.0.1:4222"]))}),
            "destination.servers[0]",
            "must start with nats:// or tls://",
        ),
        (
            "bad-nats",
            json!({"source": tcp_src, "destination": with(dst(), "subject", json!("plant.*"))}),
            "destination.subject",
            "a destination publishes to one subject: no wildcards (`*`, `>`)",
        ),
        (
            "bad-nats.",
            json!({"source": tcp_src, "destination": dst()}),
            "destination.subject",
            "with the pair id `bad-nats.` in place of {pair} it is `plant.bad-nats.`, which must \
             not have empty tokens (`..`, or a `.` at either end); change the subject or the \
             pair id",
        ),
        (
            "bad.nats",
            json!({"source": src(), "destination": tcp_dst}),
            "source.consumer",
            "the default consumer name `iobp-bad.nats` holds the `.` of the pair id, which a \
             JetStream consumer name cannot: set `consumer` (e.g. `iobp-bad-nats`)",
        ),
        (
            "bad-nats",
            json!({"source": with(src(), "in_flight", json!(8)), "destination": tcp_dst}),
            "source.in_flight",
            "applies to nats destinations only",
        ),
        (
            "bad-nats",
            json!({"source": tcp_src, "destination": with(dst(), "ack_wait_s", json!(5))}),
            "destination.ack_wait_s",
            "applies to nats sources only",
        ),
        (
            "bad-nats",
            json!({"source": tcp_src, "destination": tcp_dst,
                   "failover": [with(dst(), "auth", json!({"token": "t", "creds_file": "/c.creds"}))]}),
            "failover[0].auth",
            "give exactly one of: username and password, token, creds_file",
        ),
    ];
    for (id, mut body, path, message) in cases {
        body["id"] = json!(id);
        let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
        assert_eq!(r.body["problems"], json!([{"path": path, "message": message}]), "{}", r.body);
    }
    for id in ["bad-nats", "bad-nats.", "bad.nats"] {
        let r = api.get(format!("/api/v1/pairs/{id}")).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "none was created: {}", r.body);
    }
}

/// Found when the files are checked at create: the field, the file and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_files_that_cannot_work_are_refused_at_their_field() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let dir = tempfile::tempdir().expect("dir");
    let dst =
        || json!({"type": "nats", "servers": ["nats://127.0.0.1:4222"], "subject": "plant.{pair}"});
    let tcp_src = json!({"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp()});
    let with = |mut side: Value, key: &str, v: Value| {
        side[key] = v;
        side
    };
    let seed = KeyPair::new_user().seed().expect("seed");
    let seedless = dir.path().join("seedless.creds");
    std::fs::write(&seedless, creds_text("a.b.c", "")).expect("write");
    let wrong = dir.path().join("wrong.creds");
    std::fs::write(&wrong, creds_text("not-a-jwt", &seed)).expect("write");
    let file_cases = [
        (
            with(dst(), "auth", json!({"creds_file": "/nonexistent/edge.creds"})),
            "destination.auth.creds_file",
            "cannot read /nonexistent/edge.creds",
        ),
        (
            with(dst(), "auth", json!({"creds_file": path(&seedless)})),
            "destination.auth.creds_file",
            "holds no NKey seed",
        ),
        (
            with(dst(), "auth", json!({"creds_file": path(&wrong)})),
            "destination.auth.creds_file",
            "the user JWT is not a JWT",
        ),
        (
            with(dst(), "tls", json!({"ca": "/nonexistent/ca.pem"})),
            "destination.tls.ca",
            "/nonexistent/ca.pem",
        ),
        (
            with(dst(), "tls", json!({"server_name": "not a name"})),
            "destination.tls.server_name",
            "server name `not a name`",
        ),
    ];
    for (destination, field, reason) in file_cases {
        let body = json!({"id": "bad-nats", "source": tcp_src, "destination": destination});
        let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
        assert_eq!(r.body["problems"][0]["path"], field, "{}", r.body);
        let m = r.body["problems"][0]["message"].as_str().unwrap_or_default();
        assert!(m.contains(reason), "{field}: {m}");
        assert!(!r.body.to_string().contains(&seed), "the seed is never answered: {}", r.body);
    }
    let r = api.get("/api/v1/pairs/bad-nats").by(&otto).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "none was created: {}", r.body);
}
