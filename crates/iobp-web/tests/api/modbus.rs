//! Modbus sources through the API: an Operator connects a Modbus device (the project's
//! simulator, over TCP) with the same body the pair form sends, and its readings arrive at a
//! TCP receiver; an RTU line is listed as a serial port in use; invalid settings come back 422
//! naming the poll and field; a modbus destination is refused; the form offers the type.

use axum::http::StatusCode;
use iobp_simulate::modbus::Control;
use iobp_simulate::{Endpoint, Link};
use iobp_testkit::ports;
use iobp_testkit::receiver::AsyncReceiver;
use iobp_web::Portal;
use serde_json::{Value, json};

use crate::support::setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_connects_a_modbus_device_and_its_readings_arrive() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let ip = ports::loopback();
    let device_port = ports::tcp_on(&ip);
    let endpoint =
        Endpoint::new(Link::Listen(format!("{ip}:{device_port}"))).await.expect("listen");
    tokio::spawn(iobp_simulate::modbus::serve(endpoint, Control::new(Some(1))));
    let dst = ports::tcp_on(&ip);
    let rx = AsyncReceiver::start((ip.as_str(), dst));
    // What the pair form sends for a Modbus TCP device with one poll.
    let body = json!({
        "id": "plc-1",
        "source": {"type": "modbus",
                   "transport": {"type": "tcp", "host": ip, "port": device_port, "timeout_ms": 500},
                   "polls": [{"name": "tank", "unit": 1, "function": "holding_registers",
                              "address": 100, "count": 2, "interval_ms": 20,
                              "fields": [{"name": "level", "offset": 0, "type": "u16", "scale": 0.1}]}]},
        "destination": {"type": "tcp_client", "host": ip, "port": dst, "framing": {"type": "line"}}
    });
    let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["spec"]["source"], body["source"], "stored as sent");
    assert_eq!(r.body["status"]["source"]["type"], "modbus", "{}", r.body);
    let lines = rx.wait_lines(10, 20).await;
    for l in &lines {
        let reading: Value = serde_json::from_str(l).expect("a JSON reading");
        assert_eq!(reading["poll"], "tank", "{l}");
        assert_eq!(reading["registers"], json!([100, 101]), "{l}");
        assert_eq!(reading["values"]["level"], 10.0, "{l}");
    }
    let r = api.get("/api/v1/pairs/plc-1").by(&otto).send().await;
    assert_eq!(r.body["status"]["source"]["status"], "green", "{}", r.body);
    assert_eq!(r.body["status"]["counts"]["modbus_poll_errors"], 0, "{}", r.body);
    let r = api.get("/metrics").on(Portal::Mgmt).send().await;
    let metrics = r.body.as_str().unwrap_or_default().to_string();
    assert!(metrics.contains("iobp_modbus_poll_errors_total{pair=\"plc-1\"} 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_modbus_settings_name_the_poll_and_field() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let modbus = |polls: Value| json!({"type": "modbus", "transport": {"type": "tcp", "host": "127.0.0.1"}, "polls": polls});
    let poll = json!({"name": "p", "unit": 1, "function": "input_registers", "address": 0,
                      "count": 1, "interval_ms": 100});
    let tcp = json!({"type": "tcp_client", "host": "127.0.0.1", "port": 9});
    let mut wide = poll.clone();
    wide["count"] = json!(126);
    for (body, path) in [
        (
            json!({"id": "m1", "source": modbus(json!([poll.clone(), wide])), "destination": tcp}),
            "source.polls[1].count",
        ),
        (
            json!({"id": "m2", "source": tcp, "destination": modbus(json!([poll]))}),
            "destination.type",
        ),
    ] {
        let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.body["problems"][0]["path"], path, "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_line_is_a_serial_port_in_use_and_the_form_offers_modbus() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let missing = "/dev/serial/by-id/usb-iobp-modbus-not-plugged-in";
    let body = json!({
        "id": "rtu-1",
        "source": {"type": "modbus",
                   "transport": {"type": "rtu", "port": missing, "baud_rate": 19200, "parity": "Even"},
                   "polls": [{"name": "p", "unit": 7, "function": "coils", "address": 0, "count": 16,
                              "interval_ms": 500}]},
        "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": 9}
    });
    let r = api.post("/api/v1/pairs").json(&body).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = api.get("/api/v1/serial-ports").by(&otto).send().await;
    let ports = r.body["ports"].as_array().expect("ports");
    let ours = ports.iter().find(|p| p["path"] == missing).expect("the RTU line listed");
    assert_eq!(ours["used_by"], json!(["rtu-1"]));
    // The pair form's side types: modbus for a source, not for a destination.
    let r = api.get("/assets/ops/form-sides.js").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let script = r.body.as_str().unwrap_or_default();
    assert!(script.contains("['modbus', 'Modbus device"), "the form offers modbus");
    assert!(script.contains("const SOURCE_ONLY = ['modbus']"), "as a source only");
}
