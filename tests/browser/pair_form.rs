//! The Create/Edit Channel Pair form with every TLS, serial, RS-485, MQTT, NATS, Modbus and
//! backup-destination setting: created, stored, edited and saved unchanged.

use std::path::Path;

use iobp_testkit::receiver::Receiver;
use iobp_testkit::{TestPki, ports};
use serde_json::json;

use crate::support::{
    Browser, WAIT, common_bauds_and_other, dp, field_error, lines, scenario, take_turn, wait_until,
};
use crate::util::{Instance, TEST_ADMIN_PASSWORD, connect};

/// A receiving application behind TLS that requires a client certificate of the test CA
/// (mutual TLS).
fn mutual_tls_receiver(port: u16, pki: &TestPki) -> Receiver {
    let cfg = iobp_tls::server_config_reloading(&iobp_tls::ServerTls {
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_ca: Some(pki.ca.clone()),
        client_auth: iobp_tls::ClientAuth::Required,
    })
    .expect("receiver TLS configuration");
    Receiver::on(ports::localhost(port)).tls(cfg).start()
}

/// Sends `lines` to a TLS source that requires a client certificate, as `localhost`.
async fn send_lines_mutual_tls(port: u16, pki: &TestPki, lines: &[String]) {
    use tokio::io::AsyncWriteExt as _;
    let cfg = iobp_tls::client_config(&iobp_tls::ClientTls {
        ca: Some(pki.ca.clone()),
        cert: Some(pki.client_cert.clone()),
        key: Some(pki.client_key.clone()),
        insecure_skip_verify: false,
    })
    .expect("sender TLS configuration");
    let tcp = connect(port);
    tcp.set_nonblocking(true).expect("nonblocking");
    let tcp = tokio::net::TcpStream::from_std(tcp).expect("tokio stream");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with a client certificate");
    for l in lines {
        tls.write_all(format!("{l}\n").as_bytes()).await.expect("send");
    }
    tls.flush().await.expect("flush");
    let _ = tls.shutdown().await;
}

/// The Create/Edit Channel Pair form with every setting the configuration has for TLS sides
/// (server and client, mutual TLS), serial sides (the machine's port list, RS-485, write
/// timeout) and backup destinations (failover, failback): browser validation, server
/// problems at their fields, what is stored, edit pre-filled, and saves that change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_form_tls_serial_rs485_and_backup_destinations() {
    let _turn = take_turn();
    scenario("pair form settings", async {
        let dir = tempfile::tempdir().expect("tmp");
        let pki_dir = tempfile::tempdir().expect("tmp");
        // The server certificate names only `localhost`: a destination that connects to
        // 127.0.0.1 verifies it only through its `server_name`.
        let pki = TestPki::generate_for(pki_dir.path(), &["localhost"]);
        let path_of = |p: &Path| p.display().to_string();
        let (ca, server_cert, server_key) = (path_of(&pki.ca), path_of(&pki.server_cert), path_of(&pki.server_key));
        let (client_cert, client_key) = (path_of(&pki.client_cert), path_of(&pki.client_key));
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start("pair-form-settings").await;
        b.goto(&format!("{ops}/channels")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/channels").await;
        b.wait_js("the empty list", "return document.querySelector('#no-pairs') ? true : null").await;
        let no_pairs = || inst.api("GET", "/api/v1/pairs", None).json() == json!([]);

        // ---- (a) TLS: a server source asking for client certificates, a client destination
        // with a server name, a client certificate and a CA.
        let (src, dst) = (ports::tcp(), ports::tcp());
        let tls_receiver = mutual_tls_receiver(dst, &pki);
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "Secure link").await;
        b.fill(&dp("source.host"), "127.0.0.1").await;
        b.fill(&dp("source.port"), &src.to_string()).await;
        b.select(&dp("source.framing.type"), "line").await;
        b.fill(&dp("destination.host"), "127.0.0.1").await;
        b.fill(&dp("destination.port"), &dst.to_string()).await;
        b.select(&dp("destination.framing.type"), "line").await;
        b.click("details.advanced summary").await;
        b.fill(&dp("retry.initial_ms"), "100").await;
        b.fill(&dp("retry.max_ms"), "400").await;
        // TLS settings appear with TLS, and each side shows only what applies to it.
        assert_eq!(b.shown_paths("source.tls.").await, ["source.tls.enabled"]);
        b.click(&dp("source.tls.enabled")).await;
        assert_eq!(
            b.shown_paths("source.tls.").await,
            ["source.tls.enabled", "source.tls.cert", "source.tls.key", "source.tls.client_auth", "source.tls.ca"],
            "a server side: its certificate, client certificates and their CA"
        );
        let modes = b.js(&format!("return Array.from(document.querySelectorAll('{} option')).map((o) => o.value)", dp("source.tls.client_auth"))).await;
        assert_eq!(modes, json!(["none", "optional", "required"]));
        b.click(&dp("destination.tls.enabled")).await;
        assert_eq!(
            b.shown_paths("destination.tls.").await,
            [
                "destination.tls.enabled", "destination.tls.ca", "destination.tls.server_name",
                "destination.tls.cert", "destination.tls.key", "destination.tls.insecure_skip_verify",
            ],
            "a client side: CA, server name, client certificate, skipping verification"
        );
        // Skipping verification is labelled as lab-only and warns when chosen.
        let label = b.text(&format!(".field:has({}) label", dp("destination.tls.insecure_skip_verify"))).await;
        assert!(label.contains("lab use only"), "{label}");
        assert!(!b.shown("[data-side=\"destination\"] .insecure-warning").await);
        b.click(&dp("destination.tls.insecure_skip_verify")).await;
        b.wait_js("the warning", "const w = document.querySelector('[data-side=\"destination\"] .insecure-warning'); return w && !w.hidden ? true : null").await;
        assert!(b.text("[data-side=\"destination\"] .insecure-warning").await.contains("lab use only"));
        b.click(&dp("destination.tls.insecure_skip_verify")).await;
        assert!(!b.shown("[data-side=\"destination\"] .insecure-warning").await);
        // Server validation: client certificates without a CA; a client certificate without
        // its key.
        b.fill(&dp("source.tls.cert"), &server_cert).await;
        b.fill(&dp("source.tls.key"), &server_key).await;
        b.select(&dp("source.tls.client_auth"), "required").await;
        b.fill(&dp("destination.tls.server_name"), "localhost").await;
        b.fill(&dp("destination.tls.cert"), &client_cert).await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error("source.tls.ca"), "CA").await;
        b.wait_text(&field_error("destination.tls.key"), "needs its key").await;
        assert!(no_pairs(), "the server refused it");
        // Without client certificates the CA is optional again.
        b.select(&dp("source.tls.client_auth"), "none").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error("destination.tls.key"), "needs its key").await;
        assert!(!b.shown(&field_error("source.tls.ca")).await, "no CA needed without client certificates");
        b.select(&dp("source.tls.client_auth"), "required").await;
        // Server validation: a CA file that does not exist, shown at its field.
        b.fill(&dp("source.tls.ca"), &ca).await;
        b.fill(&dp("destination.tls.key"), &client_key).await;
        let missing = pki_dir.path().join("missing-ca.pem").display().to_string();
        b.fill(&dp("destination.tls.ca"), &missing).await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error("destination.tls.ca"), "cannot read").await;
        assert!(no_pairs(), "the server refused it");
        b.fill(&dp("destination.tls.ca"), &ca).await;
        b.form_screenshot("channels-form-tls").await;
        b.submit_pair_form().await;
        b.wait_js("the TLS pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"secure-link\"]') ? true : null").await;
        let spec = inst.api("GET", "/api/v1/pairs/secure-link", None).json()["spec"].clone();
        assert_eq!(
            spec["source"]["tls"],
            json!({"enabled": true, "cert": server_cert, "key": server_key, "ca": ca, "client_auth": "required"}),
            "{spec}"
        );
        assert_eq!(
            spec["destination"]["tls"],
            json!({"enabled": true, "cert": client_cert, "key": client_key, "ca": ca, "server_name": "localhost"}),
            "{spec}"
        );
        assert!(spec.get("failover").is_none(), "no backups: {spec}");
        assert_eq!(spec["failback"], true);
        // The settings work: the destination passes the receiver's mutual TLS as `localhost`,
        // and the source takes a sender with a client certificate.
        b.wait_indicator("tr[data-pair-id=\"secure-link\"]", "destination", "green", WAIT).await;
        send_lines_mutual_tls(src, &pki, &lines("secure", 2)).await;
        wait_until("two lines through mutual TLS on both sides", || tls_receiver.line_count() >= 2).await;
        assert_eq!(tls_receiver.lines(), lines("secure", 2));
        // Edit: everything pre-filled; saving unchanged changes nothing.
        b.open_edit("secure-link", "Secure link").await;
        for (path, want) in [
            ("source.tls.enabled", json!(true)),
            ("source.tls.cert", json!(server_cert)),
            ("source.tls.key", json!(server_key)),
            ("source.tls.client_auth", json!("required")),
            ("source.tls.ca", json!(ca)),
            ("destination.tls.enabled", json!(true)),
            ("destination.tls.ca", json!(ca)),
            ("destination.tls.server_name", json!("localhost")),
            ("destination.tls.cert", json!(client_cert)),
            ("destination.tls.key", json!(client_key)),
            ("destination.tls.insecure_skip_verify", json!(false)),
        ] {
            assert_eq!(b.field_value(path).await, want, "{path} pre-filled");
        }
        assert!(b.shown_paths("source.tls.").await.contains(&"source.tls.ca".to_string()));
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/secure-link", None).json()["spec"].clone();
        assert_eq!(after, spec, "an unchanged save keeps the stored configuration");
        b.wait_indicator("tr[data-pair-id=\"secure-link\"]", "destination", "green", WAIT).await;

        // TLS switched off keeps its settings, unused: a pair stored that way saves unchanged.
        let body = json!({
            "id": "tls-off", "enabled": false,
            "source": {"type": "tcp_server", "host": "127.0.0.1", "port": ports::tcp(),
                       "tls": {"enabled": false, "cert": "/etc/iobp/server.pem", "key": "/etc/iobp/server.key", "client_auth": "optional"}},
            "destination": {"type": "tcp_client", "host": "127.0.0.1", "port": ports::tcp(),
                            "tls": {"enabled": false, "server_name": "plant.example", "insecure_skip_verify": true}},
        });
        let r = inst.api("POST", "/api/v1/pairs", Some(&body.to_string()));
        assert_eq!(r.status, 201, "{}", r.body);
        let spec = r.json()["spec"].clone();
        b.goto(&format!("{ops}/channels")).await;
        b.open_edit("tls-off", "tls-off").await;
        assert_eq!(b.shown_paths("source.tls.").await, ["source.tls.enabled"]);
        assert_eq!(b.field_value("source.tls.client_auth").await, "optional");
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/tls-off", None).json()["spec"].clone();
        assert_eq!(after, spec, "TLS settings kept while TLS is off");
        assert_eq!(inst.api("DELETE", "/api/v1/pairs/tls-off?confirm=tls-off", None).status, 204);

        // ---- (b) Serial: the port list, RS-485 on the source, a write timeout on the
        // destination.
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "RS-485 line").await;
        b.select("#source-type", "serial").await;
        b.wait_js("the serial fields", "return document.querySelector('[data-path=\"source.baud_rate\"]') ? true : null").await;
        let bauds = b.js(&format!("return Array.from(document.querySelectorAll('{} option')).map((o) => o.value)", dp("source.baud_rate"))).await;
        assert_eq!(bauds, common_bauds_and_other(&inst), "the baud rates come from the server");
        let parities = b.js(&format!("return Array.from(document.querySelectorAll('{} option')).map((o) => o.value)", dp("source.parity"))).await;
        assert_eq!(parities, json!(["None", "Even", "Odd", "Mark", "Space"]));
        b.wait_text(&format!(".field:has({}) .help", dp("source.parity")), "Linux only").await;
        assert!(b.js(&format!("return !!document.querySelector('{}').getAttribute('list')", dp("source.port"))).await == true, "the port field offers the machine's ports");
        assert!(b.js(&format!("return !document.querySelector('{}')", dp("source.write_timeout_ms"))).await == true, "a source has no write timeout");
        b.fill(&dp("source.port"), "/dev/ttyIOBP-rs485-a").await;
        b.select(&dp("source.baud_rate"), "19200").await;
        b.select(&dp("source.parity"), "Mark").await;
        b.select(&dp("source.flow_control"), "RTS/CTS").await;
        assert_eq!(b.shown_paths("source.rs485").await, ["source.rs485"], "RS-485 settings appear with RS-485");
        let label = b.text(&format!(".field:has({}) label", dp("source.rs485"))).await;
        assert_eq!(label, "RS-485 (driver switches the transceiver with RTS)");
        b.click(&dp("source.rs485")).await;
        assert_eq!(
            b.shown_paths("source.rs485").await,
            [
                "source.rs485", "source.rs485.rts_on_send", "source.rs485.delay_before_send_ms",
                "source.rs485.delay_after_send_ms", "source.rs485.full_duplex", "source.rs485.terminate_bus",
            ]
        );
        assert_eq!(b.field_value("source.rs485.rts_on_send").await, true, "RTS high while sending by default");
        b.click(&dp("source.rs485.rts_on_send")).await;
        b.fill(&dp("source.rs485.delay_before_send_ms"), "5").await;
        b.fill(&dp("source.rs485.delay_after_send_ms"), "1001").await;
        b.click(&dp("source.rs485.terminate_bus")).await;
        b.select("#destination-type", "serial").await;
        b.wait_js("the destination's serial fields", "return document.querySelector('[data-path=\"destination.write_timeout_ms\"]') ? true : null").await;
        b.fill(&dp("destination.port"), "/dev/ttyIOBP-rs485-a").await;
        b.select(&dp("destination.parity"), "Space").await;
        b.fill(&dp("destination.write_timeout_ms"), "5000").await;
        // Server validation: RS-485 with RTS/CTS and a delay out of range; once the pair is
        // valid on its own, its port used twice (checked among the pairs).
        let nothing_new = || no_pairs() || inst.api("GET", "/api/v1/pairs", None).json().as_array().is_some_and(|a| a.len() == 1);
        b.click("#pair-submit").await;
        b.wait_text(&field_error("source.flow_control"), "RTS/CTS cannot be used with RS-485").await;
        b.wait_text(&field_error("source.rs485.delay_after_send_ms"), "between 0 and 1000").await;
        assert!(nothing_new(), "refused");
        b.select(&dp("source.flow_control"), "XON/XOFF").await;
        b.fill(&dp("source.rs485.delay_after_send_ms"), "10").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error("destination.port"), "serial port /dev/ttyIOBP-rs485-a is already used").await;
        assert!(nothing_new(), "refused");
        b.fill(&dp("destination.port"), "/dev/ttyIOBP-rs485-b").await;
        b.form_screenshot("channels-form-serial-rs485").await;
        b.submit_pair_form().await;
        b.wait_js("the serial pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"rs-485-line\"]') ? true : null").await;
        let spec = inst.api("GET", "/api/v1/pairs/rs-485-line", None).json()["spec"].clone();
        let (s, d) = (&spec["source"], &spec["destination"]);
        assert_eq!(
            [&s["port"], &s["baud_rate"], &s["parity"], &s["flow_control"]],
            [&json!("/dev/ttyIOBP-rs485-a"), &json!(19200), &json!("Mark"), &json!("XON/XOFF")],
            "{spec}"
        );
        assert_eq!(
            s["rs485"],
            json!({"rts_on_send": false, "delay_before_send_ms": 5, "delay_after_send_ms": 10, "full_duplex": false, "terminate_bus": true}),
            "{spec}"
        );
        assert!(s.get("write_timeout_ms").is_none(), "{spec}");
        assert_eq!([&d["port"], &d["parity"], &d["write_timeout_ms"]], [&json!("/dev/ttyIOBP-rs485-b"), &json!("Space"), &json!(5000)], "{spec}");
        assert!(d.get("rs485").is_none(), "no RS-485 on the destination: {spec}");
        // The port list marks configured ports: missing on this machine, used by the pair.
        b.click("#create-pair").await;
        b.select("#source-type", "serial").await;
        let option = b
            .wait_js("the configured port in the list", "const o = document.querySelector('[data-side=\"source\"] datalist option[value=\"/dev/ttyIOBP-rs485-a\"]'); return o ? o.label : null")
            .await;
        let option = option.as_str().unwrap_or_default();
        assert!(option.contains("missing") && option.contains("used by rs-485-line"), "{option}");
        b.fill(&dp("source.port"), "/dev/ttyIOBP-rs485-a").await;
        let info = b.wait_text("[data-side=\"source\"] .port-info", "Used by channel pair rs-485-line").await;
        assert!(info.contains("Missing"), "{info}");
        b.click("#pair-cancel").await;
        // Edit: pre-filled (its own ports are not "used by another pair"); saving keeps it.
        b.open_edit("rs-485-line", "RS-485 line").await;
        for (path, want) in [
            ("source.port", json!("/dev/ttyIOBP-rs485-a")),
            ("source.baud_rate", json!("19200")),
            ("source.parity", json!("Mark")),
            ("source.flow_control", json!("XON/XOFF")),
            ("source.rs485", json!(true)),
            ("source.rs485.rts_on_send", json!(false)),
            ("source.rs485.delay_before_send_ms", json!("5")),
            ("source.rs485.delay_after_send_ms", json!("10")),
            ("source.rs485.full_duplex", json!(false)),
            ("source.rs485.terminate_bus", json!(true)),
            ("destination.port", json!("/dev/ttyIOBP-rs485-b")),
            ("destination.parity", json!("Space")),
            ("destination.write_timeout_ms", json!("5000")),
            ("destination.rs485", json!(false)),
        ] {
            assert_eq!(b.field_value(path).await, want, "{path} pre-filled");
        }
        let info = b.text("[data-side=\"source\"] .port-info").await;
        assert!(info.contains("Missing") && !info.contains("Used by"), "{info}");
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/rs-485-line", None).json()["spec"].clone();
        assert_eq!(after, spec, "an unchanged save keeps the stored configuration");
        // A machine with adapters: stable by-id links show the device they point at (the
        // port list is stubbed in the page; this machine has no adapters).
        b.goto(&format!("{ops}/channels")).await;
        b.wait_js("the list", "return document.querySelector('#pairs-table') ? true : null").await;
        b.js(r"const real = window.fetch;
            window.fetch = (url, opts) => String(url) === '/api/v1/serial-ports'
              ? Promise.resolve(new Response(JSON.stringify({
                  ports: [
                    { path: '/dev/serial/by-id/usb-FTDI_FT232R_A1B2C3-if00-port0', device: '/dev/ttyUSB7', present: true, used_by: ['plant-3'] },
                    { path: '/dev/ttyS4', device: null, present: true, used_by: [] },
                  ],
                  common_baud_rates: [1200, 9600, 115200],
                }), { status: 200, headers: { 'Content-Type': 'application/json' } }))
              : real(url, opts);").await;
        b.click("#create-pair").await;
        b.select("#source-type", "serial").await;
        let options = b.wait_js("the stubbed port list", "const o = Array.from(document.querySelectorAll('[data-side=\"source\"] datalist option')); return o.length ? o.map((x) => [x.value, x.label]) : null").await;
        assert_eq!(
            options,
            json!([["/dev/serial/by-id/usb-FTDI_FT232R_A1B2C3-if00-port0", "→ /dev/ttyUSB7 · used by plant-3"], ["/dev/ttyS4", "present"]])
        );
        let bauds = b.js(&format!("return Array.from(document.querySelectorAll('{} option')).map((o) => o.value)", dp("source.baud_rate"))).await;
        assert_eq!(bauds, json!(["1200", "9600", "115200", "other"]));
        b.fill(&dp("source.port"), "/dev/serial/by-id/usb-FTDI_FT232R_A1B2C3-if00-port0").await;
        let info = b.wait_text("[data-side=\"source\"] .port-info", "Links to /dev/ttyUSB7").await;
        assert!(info.contains("Used by channel pair plant-3"), "{info}");
        b.fill(&dp("source.port"), "/dev/ttyUSB7").await;
        b.wait_text("[data-side=\"source\"] .port-info", "Stable name: /dev/serial/by-id/usb-FTDI_FT232R_A1B2C3-if00-port0").await;
        b.click("#pair-cancel").await;
        b.goto(&format!("{ops}/channels")).await;
        b.wait_js("the list", "return document.querySelector('#pairs-table') ? true : null").await;

        // ---- (c) Backup destinations: added, checked, reordered, removed; failback off.
        let (src3, dst3, backup_port, udp_port) = (ports::tcp(), ports::tcp(), ports::tcp(), ports::tcp());
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "With backups").await;
        b.fill(&dp("source.host"), "127.0.0.1").await;
        b.fill(&dp("source.port"), &src3.to_string()).await;
        b.fill(&dp("destination.host"), "127.0.0.1").await;
        b.fill(&dp("destination.port"), &dst3.to_string()).await;
        assert!(b.shown("#no-backups").await, "no backups to begin with");
        assert_eq!(b.field_value("failback").await, true, "failback by default");
        let failback_label = b.text(&format!(".field:has({}) label", dp("failback"))).await;
        assert_eq!(failback_label, "Return to the primary when it is back (failback)");
        for _ in 0..3 {
            b.click("#add-backup").await;
        }
        assert!(!b.shown("#no-backups").await);
        let (first, second, third) = (b.backup_prefix(1).await, b.backup_prefix(2).await, b.backup_prefix(3).await);
        assert_eq!(b.field_value(&first).await, "tcp_client", "a new backup starts as a TCP client");
        // Backup 1: a TLS client with MLLP and acknowledgements (its port left empty first).
        b.fill(&dp(&format!("{first}.host")), "127.0.0.1").await;
        b.select(&dp(&format!("{first}.framing.type")), "mllp").await;
        b.select(&dp(&format!("{first}.ack.type")), "mllp").await;
        b.fill(&dp(&format!("{first}.ack.timeout_ms")), "5000").await;
        b.click(&dp(&format!("{first}.tls.enabled"))).await;
        assert_eq!(
            b.shown_paths(&format!("{first}.tls.")).await,
            ["enabled", "ca", "server_name", "cert", "key", "insecure_skip_verify"].map(|f| format!("{first}.tls.{f}")),
            "a backup uses the same client TLS settings"
        );
        b.fill(&dp(&format!("{first}.tls.ca")), &missing).await;
        b.fill(&dp(&format!("{first}.tls.server_name")), "localhost").await;
        // Backup 2: UDP, removed below.
        b.select(&dp(&second), "udp").await;
        b.fill(&dp(&format!("{second}.host")), "127.0.0.1").await;
        b.fill(&dp(&format!("{second}.port")), &udp_port.to_string()).await;
        // Backup 3: another instance, with a password.
        b.select(&dp(&third), "remote_icombuffer").await;
        b.fill(&dp(&format!("{third}.url")), "http://127.0.0.1:9").await;
        b.fill(&dp(&format!("{third}.channel_id")), "plant-9").await;
        b.fill(&dp(&format!("{third}.auth.username")), "relay").await;
        b.fill(&dp(&format!("{third}.auth.password")), "relay-password-2").await;
        // Browser validation inside a backup.
        b.click("#pair-submit").await;
        b.wait_text(&field_error(&format!("{first}.port")), "required").await;
        assert!(inst.api("GET", "/api/v1/pairs", None).json().as_array().is_some_and(|a| a.len() == 2), "nothing new was sent");
        b.fill(&dp(&format!("{first}.port")), &backup_port.to_string()).await;
        // Reorder: the remote instance first; then remove the UDP backup.
        b.click(&format!(".backup[data-prefix=\"{third}\"] [data-action=\"up\"]")).await;
        b.click(&format!(".backup[data-prefix=\"{third}\"] [data-action=\"up\"]")).await;
        assert_eq!(b.backup_prefix(1).await, third);
        assert_eq!(b.text(&format!(".backup[data-prefix=\"{third}\"] > legend")).await, "Backup 1");
        assert_eq!(b.js(&format!("return document.querySelector('.backup[data-prefix=\"{third}\"] [data-action=\"up\"]').disabled")).await, true);
        b.click(&format!(".backup[data-prefix=\"{second}\"] [data-action=\"remove\"]")).await;
        assert_eq!(b.js("return document.querySelectorAll('#backups > .backup').length").await, 2);
        assert_eq!(b.backup_prefix(2).await, first);
        b.click(&dp("failback")).await;
        // Server validation of a backup (now the second one): its CA file does not load.
        b.click("#pair-submit").await;
        b.wait_text(&field_error(&format!("{first}.tls.ca")), "cannot read").await;
        b.fill(&dp(&format!("{first}.tls.ca")), &ca).await;
        b.submit_pair_form().await;
        b.wait_js("the pair with backups in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"with-backups\"] [data-backups=\"2\"]') ? true : null").await;
        let spec = inst.api("GET", "/api/v1/pairs/with-backups", None).json()["spec"].clone();
        assert_eq!(
            spec["failover"],
            json!([
                {"type": "remote_icombuffer", "url": "http://127.0.0.1:9", "channel_id": "plant-9", "auth": {"username": "relay", "password": "********"}},
                {"type": "tcp_client", "host": "127.0.0.1", "port": backup_port, "tls": {"enabled": true, "ca": ca, "server_name": "localhost"},
                 "framing": {"type": "mllp"}, "ack": {"type": "mllp", "timeout_ms": 5000}},
            ]),
            "{spec}"
        );
        assert_eq!(spec["failback"], false, "{spec}");
        assert_eq!(inst.exported_pair("with-backups")["failover"][0]["auth"]["password"], "relay-password-2");
        // Edit: the backups pre-filled in their order; saving unchanged keeps everything,
        // the stored password included.
        b.open_edit("with-backups", "With backups").await;
        assert_eq!(b.js("return document.querySelectorAll('#backups > .backup').length").await, 2);
        let (first, second) = (b.backup_prefix(1).await, b.backup_prefix(2).await);
        for (path, want) in [
            (first.clone(), json!("remote_icombuffer")),
            (format!("{first}.url"), json!("http://127.0.0.1:9")),
            (format!("{first}.channel_id"), json!("plant-9")),
            (format!("{first}.auth.username"), json!("relay")),
            (format!("{first}.auth.password"), json!("********")),
            (second.clone(), json!("tcp_client")),
            (format!("{second}.host"), json!("127.0.0.1")),
            (format!("{second}.port"), json!(backup_port.to_string())),
            (format!("{second}.framing.type"), json!("mllp")),
            (format!("{second}.ack.type"), json!("mllp")),
            (format!("{second}.ack.timeout_ms"), json!("5000")),
            (format!("{second}.tls.enabled"), json!(true)),
            (format!("{second}.tls.ca"), json!(ca)),
            (format!("{second}.tls.server_name"), json!("localhost")),
            ("failback".to_string(), json!(false)),
        ] {
            assert_eq!(b.field_value(&path).await, want, "{path} pre-filled");
        }
        b.form_screenshot("channels-form-backups").await;
        b.phone().await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "the form with backups fits a phone: {overflow}");
        b.viewport(1280, 900).await;
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/with-backups", None).json()["spec"].clone();
        assert_eq!(after, spec, "an unchanged save keeps the stored configuration");
        assert_eq!(inst.exported_pair("with-backups")["failover"][0]["auth"]["password"], "relay-password-2", "the stored password is kept");
        b.wait_text("tr[data-pair-id=\"with-backups\"] [data-backups]", "no failback").await;
        // A stored password follows its link (url, channel id, user), not its position:
        // moving the backup keeps it.
        b.open_edit("with-backups", "With backups").await;
        let second = b.backup_prefix(2).await;
        b.click(&format!(".backup[data-prefix=\"{second}\"] [data-action=\"up\"]")).await;
        b.submit_pair_form().await;
        let stored = inst.exported_pair("with-backups");
        assert_eq!(stored["failover"][0]["type"], "tcp_client", "{stored}");
        assert_eq!(stored["failover"][1]["auth"]["password"], "relay-password-2", "the password moved with its link: {stored}");
        // A changed link (here its channel id) needs the password typed: the server says so at
        // the password field.
        b.open_edit("with-backups", "With backups").await;
        let remote = b.backup_prefix(2).await;
        assert_eq!(b.field_value(&remote).await, "remote_icombuffer");
        b.fill(&dp(&format!("{remote}.channel_id")), "plant-10").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error(&format!("{remote}.auth.password")), "enter the password").await;
        assert_eq!(inst.exported_pair("with-backups")["failover"][1]["channel_id"], "plant-9", "refused");
        b.click("#pair-cancel").await;
        // Even when the page is told (a stubbed answer) that the link was stored with the new
        // channel id, the server, which knows better, refuses it at the same field.
        b.goto(&format!("{ops}/channels")).await;
        b.wait_js("the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"with-backups\"]') ? true : null").await;
        b.js(r"const real = window.fetch;
            window.fetch = async (url, opts) => {
              if (String(url) !== '/api/v1/pairs/with-backups' || (opts && opts.method === 'PUT')) return real(url, opts);
              const pair = await (await real(url, opts)).json();
              pair.spec.failover[1].channel_id = 'plant-10';
              return new Response(JSON.stringify(pair), { status: 200, headers: { 'Content-Type': 'application/json' } });
            };").await;
        b.open_edit("with-backups", "With backups").await;
        let remote = b.backup_prefix(2).await;
        assert_eq!(b.field_value(&format!("{remote}.channel_id")).await, "plant-10");
        b.click("#pair-submit").await;
        b.wait_text(&field_error(&format!("{remote}.auth.password")), "enter the password").await;
        assert_eq!(inst.exported_pair("with-backups")["failover"][1]["channel_id"], "plant-9", "refused: {stored}");
        b.fill(&dp(&format!("{remote}.auth.password")), "relay-password-3").await;
        b.submit_pair_form().await;
        let stored = inst.exported_pair("with-backups");
        assert_eq!(stored["failover"][1]["channel_id"], "plant-10", "{stored}");
        assert_eq!(stored["failover"][1]["auth"]["password"], "relay-password-3", "{stored}");

        // Settings this form does not show (a newer version's, or written by hand) survive an
        // edit. The page's API answers are stubbed: this version's server knows no such setting.
        b.goto(&format!("{ops}/channels")).await;
        b.wait_js("the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"with-backups\"]') ? true : null").await;
        b.js(r"const real = window.fetch;
            window.iobpSent = null;
            window.fetch = async (url, opts) => {
              if (String(url) !== '/api/v1/pairs/with-backups') return real(url, opts);
              if (opts && opts.method === 'PUT') {
                window.iobpSent = JSON.parse(opts.body);
                return real(url);
              }
              const pair = await (await real(url, opts)).json();
              pair.spec.future_pair_setting = 'kept';
              pair.spec.destination.future_side_setting = 7;
              pair.spec.failover[0].tls.future_tls_setting = true;
              return new Response(JSON.stringify(pair), { status: 200, headers: { 'Content-Type': 'application/json' } });
            };").await;
        b.open_edit("with-backups", "With backups").await;
        let note = b.text("#pair-hidden-settings").await;
        assert!(note.contains("future_pair_setting") && note.contains("destination.future_side_setting") && note.contains("failover[0].tls.future_tls_setting"), "{note}");
        b.submit_pair_form().await;
        let sent = b.js("return window.iobpSent").await;
        assert_eq!(sent["future_pair_setting"], "kept", "{sent}");
        assert_eq!(sent["destination"]["future_side_setting"], 7, "{sent}");
        assert_eq!(sent["failover"][0]["tls"]["future_tls_setting"], true, "{sent}");
        assert_eq!(sent["failover"][0]["tls"]["server_name"], "localhost", "{sent}");

        drop(tls_receiver);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}

/// MQTT sides in the form: choosing MQTT shows its fields (a source has no publish window,
/// the topic's help says what it is on each side, TLS only for `mqtts://`), the server's
/// problems land at the url, topic and `QoS` fields (a backup's too), and a created pair with
/// an mqtt backup comes back in the edit form with every field filled and the broker passwords
/// masked, saved unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_form_mqtt_sides() {
    let _turn = take_turn();
    scenario("pair form mqtt", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start("pair-form-mqtt").await;
        b.goto(&format!("{ops}/channels")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/channels").await;
        b.wait_js("the empty list", "return document.querySelector('#no-pairs') ? true : null").await;
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "Broker bridge").await;
        let help = |path: &str| format!(".field:has({}) .help", dp(path));

        // Choosing MQTT shows its fields; TLS only once the url says mqtts://.
        b.select(&dp("source"), "mqtt").await;
        b.select(&dp("destination"), "mqtt").await;
        let common = ["url", "version", "topic", "qos", "client_id"];
        let timers = ["keep_alive_s", "connect_timeout_ms", "auth.username", "auth.password"];
        let want = |side: &str, destination: bool| -> Vec<String> {
            let mid: &[&str] = if destination { &["in_flight"] } else { &["drop_duplicates"] };
            common.iter().chain(mid).chain(&timers).map(|f| format!("{side}.{f}")).collect()
        };
        assert_eq!(
            b.shown_paths("source.").await,
            want("source", false),
            "a source has no in_flight, a destination no drop_duplicates"
        );
        assert_eq!(b.shown_paths("destination.").await, want("destination", true));
        let versions = b.js(&format!("return Array.from(document.querySelectorAll('{} option')).map((o) => o.value)", dp("destination.version"))).await;
        assert_eq!(versions, json!(["5", "3.1.1"]));
        let qos = b.js(&format!("return Array.from(document.querySelectorAll('{} option')).map((o) => o.value)", dp("source.qos"))).await;
        assert_eq!(qos, json!(["1", "2"]));
        assert!(b.text(&help("source.topic")).await.contains("subscribes"), "a source's topic is a filter");
        assert!(b.text(&help("destination.topic")).await.contains("{pair}"), "a destination's topic is where it publishes");
        let broker = ports::tcp();
        b.fill(&dp("destination.url"), &format!("mqtts://127.0.0.1:{broker}")).await;
        assert_eq!(
            b.shown_paths("destination.tls.").await,
            ["destination.tls.ca", "destination.tls.server_name", "destination.tls.cert", "destination.tls.key", "destination.tls.insecure_skip_verify"],
        );
        b.fill(&dp("destination.url"), &format!("mqtt://127.0.0.1:{broker}")).await;
        assert!(b.shown_paths("destination.tls.").await.is_empty(), "no TLS for mqtt://");

        // The server's problems at their fields: a url that is no broker's, a wildcard where a
        // destination publishes, # not last in a filter, QoS 0 (not offered: a page could
        // still send it).
        b.fill(&dp("source.url"), &format!("mqtt://127.0.0.1:{broker}")).await;
        b.fill(&dp("source.topic"), "plant/#/results").await;
        b.click(&dp("source.drop_duplicates")).await;
        b.js(&format!("const s = document.querySelector('{}'); s.add(new Option('0', '0')); s.value = '0'", dp("source.qos"))).await;
        b.fill(&dp("destination.url"), &format!("http://127.0.0.1:{broker}")).await;
        b.fill(&dp("destination.topic"), "plant/+/results").await;
        b.fill(&dp("destination.auth.username"), "bridge").await;
        b.fill(&dp("destination.auth.password"), "broker-password-1").await;
        // A backup destination on another broker: the destination's fields, under its prefix.
        b.click("#add-backup").await;
        let backup = b.backup_prefix(1).await;
        b.select(&dp(&backup), "mqtt").await;
        let at = |f: &str| format!("{backup}.{f}");
        assert!(b.shown_paths(&format!("{backup}.")).await.contains(&at("in_flight")), "a backup is a destination");
        b.fill(&dp(&at("url")), &format!("mqtt://127.0.0.1:{broker}")).await;
        b.fill(&dp(&at("topic")), "backup/#").await;
        b.fill(&dp(&at("auth.username")), "bridge-backup").await;
        b.fill(&dp(&at("auth.password")), "backup-password-1").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error(&at("topic")), "no + or # wildcards").await;
        b.wait_text(&field_error("destination.topic"), "no + or # wildcards").await;
        b.wait_text(&field_error("destination.url"), "mqtt://").await;
        b.wait_text(&field_error("source.topic"), "last one").await;
        b.wait_text(&field_error("source.qos"), "QoS 0").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "the server refused it");

        // Corrected, with TLS and every destination setting: created.
        b.fill(&dp("source.topic"), "plant/+/results").await;
        b.js(&format!("const s = document.querySelector('{}'); s.remove(s.options.length - 1)", dp("source.qos"))).await;
        b.select(&dp("source.qos"), "1").await;
        b.fill(&dp("destination.url"), &format!("mqtts://127.0.0.1:{broker}")).await;
        b.fill(&dp("destination.tls.server_name"), "broker.test").await;
        b.fill(&dp("destination.topic"), "bridge/{pair}").await;
        b.select(&dp("destination.version"), "3.1.1").await;
        b.select(&dp("destination.qos"), "2").await;
        b.fill(&dp("destination.client_id"), "bridge-out").await;
        b.fill(&dp("destination.in_flight"), "16").await;
        b.fill(&dp("destination.keep_alive_s"), "15").await;
        b.fill(&dp(&at("topic")), "backup/{pair}").await;
        b.submit_pair_form().await;
        let spec = inst.api("GET", "/api/v1/pairs/broker-bridge", None).json()["spec"].clone();
        assert_eq!(
            spec["destination"],
            json!({"type": "mqtt", "url": format!("mqtts://127.0.0.1:{broker}"), "version": "3.1.1",
                   "client_id": "bridge-out", "topic": "bridge/{pair}", "qos": 2,
                   "auth": {"username": "bridge", "password": "********"},
                   "tls": {"enabled": false, "server_name": "broker.test"}, "in_flight": 16, "keep_alive_s": 15}),
            "{spec}"
        );
        assert_eq!(
            spec["source"],
            json!({"type": "mqtt", "url": format!("mqtt://127.0.0.1:{broker}"), "version": "5", "topic": "plant/+/results", "qos": 1,
                   "drop_duplicates": true}),
            "{spec}"
        );
        assert_eq!(
            spec["failover"],
            json!([{"type": "mqtt", "url": format!("mqtt://127.0.0.1:{broker}"), "version": "5", "topic": "backup/{pair}", "qos": 1,
                    "auth": {"username": "bridge-backup", "password": "********"}}]),
            "{spec}"
        );
        let exported = inst.exported_pair("broker-bridge");
        assert_eq!(exported["destination"]["auth"]["password"], "broker-password-1");
        assert_eq!(exported["failover"][0]["auth"]["password"], "backup-password-1");
        b.wait_text("tr[data-pair-id=\"broker-bridge\"]", "topic bridge/{pair} · QoS 2 · MQTT 3.1.1").await;

        // The edit form has every field back, the password masked; an unchanged save keeps it.
        b.open_edit("broker-bridge", "Broker bridge").await;
        let url = format!("mqtts://127.0.0.1:{broker}");
        for (path, want) in [
            ("source", "mqtt"),
            ("source.topic", "plant/+/results"),
            ("source.qos", "1"),
            ("destination", "mqtt"),
            ("destination.url", url.as_str()),
            ("destination.version", "3.1.1"),
            ("destination.topic", "bridge/{pair}"),
            ("destination.qos", "2"),
            ("destination.client_id", "bridge-out"),
            ("destination.in_flight", "16"),
            ("destination.keep_alive_s", "15"),
            ("destination.auth.username", "bridge"),
            ("destination.auth.password", "********"),
            ("destination.tls.server_name", "broker.test"),
        ] {
            assert_eq!(b.field_value(path).await, want, "{path} pre-filled");
        }
        assert_eq!(b.field_value("source.drop_duplicates").await, json!(true), "checked again");
        let backup = b.backup_prefix(1).await;
        for (field, want) in [("", "mqtt"), (".topic", "backup/{pair}"), (".auth.username", "bridge-backup"), (".auth.password", "********")] {
            let path = format!("{backup}{field}");
            assert_eq!(b.field_value(&path).await, want, "{path} pre-filled");
        }
        assert!(b.text(&help("destination.auth.password")).await.contains("Stored"));
        assert!(!b.shown("#pair-hidden-settings").await, "the form shows every setting of an mqtt side");
        assert!(b.shown(&dp("destination.tls.server_name")).await, "TLS shown for mqtts://");
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/broker-bridge", None).json()["spec"].clone();
        assert_eq!(after, spec, "an unchanged save keeps the stored configuration");
        let exported = inst.exported_pair("broker-bridge");
        assert_eq!(exported["destination"]["auth"]["password"], "broker-password-1", "the stored password is kept");
        assert_eq!(exported["failover"][0]["auth"]["password"], "backup-password-1", "the backup's too");

        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}

/// NATS JetStream sides in the form: choosing NATS shows its fields (a source has its stream,
/// consumer and ack wait, a destination its publish window), the credentials chooser shows
/// only the chosen way's fields (user and password, a token, or a `.creds` file), TLS has a
/// server name; the server's problems land at their fields (a backup's creds file too); a
/// created pair is listed, comes back in the edit form with every field filled and its
/// password and token masked, and is saved unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_form_nats_sides() {
    let _turn = take_turn();
    scenario("pair form nats", async {
        let dir = tempfile::tempdir().expect("tmp");
        let files = tempfile::tempdir().expect("files");
        let pki = TestPki::generate(files.path());
        let creds = iobp_testkit::nats_auth::NatsOperator::generate(files.path()).user_creds("edge-1");
        let creds = creds.to_str().expect("utf-8 path").to_string();
        let ca = pki.ca.to_str().expect("utf-8 path").to_string();
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start("pair-form-nats").await;
        b.goto(&format!("{ops}/channels")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/channels").await;
        b.wait_js("the empty list", "return document.querySelector('#no-pairs') ? true : null").await;
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "JetStream bridge").await;
        let auth_mode = |prefix: &str| format!("select[data-nats-auth=\"{prefix}\"]");

        // Choosing NATS shows its fields: each side its own, no credentials until chosen.
        b.select(&dp("source"), "nats").await;
        b.select(&dp("destination"), "nats").await;
        let fields = |side: &str, own: &[&str]| -> Vec<String> {
            ["servers", "subject", "stream"].iter().chain(own).chain(&["tls.enabled"]).map(|f| format!("{side}.{f}")).collect()
        };
        assert_eq!(b.shown_paths("source.").await, fields("source", &["consumer", "ack_wait_s"]));
        assert_eq!(b.shown_paths("destination.").await, fields("destination", &["in_flight"]));
        let modes = b.js(&format!("return Array.from(document.querySelectorAll('{} option')).map((o) => o.value)", auth_mode("destination"))).await;
        assert_eq!(modes, json!(["none", "user", "token", "creds"]));
        b.select(&auth_mode("destination"), "creds").await;
        assert!(b.shown_paths("destination.auth.").await == ["destination.auth.creds_file"], "only the creds file");
        b.select(&auth_mode("destination"), "user").await;
        assert_eq!(b.shown_paths("destination.auth.").await, ["destination.auth.username", "destination.auth.password"]);
        b.select(&auth_mode("source"), "token").await;
        assert_eq!(b.shown_paths("source.auth.").await, ["source.auth.token"]);
        // TLS: a server name among a client's settings.
        b.click(&dp("destination.tls.enabled")).await;
        assert_eq!(
            b.shown_paths("destination.tls.").await,
            ["destination.tls.enabled", "destination.tls.ca", "destination.tls.server_name", "destination.tls.cert", "destination.tls.key", "destination.tls.insecure_skip_verify"],
        );

        // The server's problems at their fields: a wildcard where a destination publishes, a
        // backup's creds file that is not there.
        let server = format!("nats://127.0.0.1:{}", ports::tcp());
        b.fill(&dp("source.servers"), &server).await;
        b.fill(&dp("source.subject"), "orders.>").await;
        b.fill(&dp("source.stream"), "ORDERS").await;
        b.fill(&dp("source.consumer"), "bridge-orders").await;
        b.fill(&dp("source.auth.token"), "nats-token-1").await;
        b.fill(&dp("destination.servers"), &format!("{server}, nats://127.0.0.2:{}", ports::tcp())).await;
        b.fill(&dp("destination.subject"), "plant.*").await;
        b.fill(&dp("destination.auth.username"), "edge-1").await;
        b.fill(&dp("destination.auth.password"), "nats-password-1").await;
        b.fill(&dp("destination.tls.ca"), &ca).await;
        b.fill(&dp("destination.tls.server_name"), "nats.plant.test").await;
        b.click("#add-backup").await;
        let backup = b.backup_prefix(1).await;
        b.select(&dp(&backup), "nats").await;
        let at = |f: &str| format!("{backup}.{f}");
        b.fill(&dp(&at("servers")), &server).await;
        b.fill(&dp(&at("subject")), "backup.{pair}").await;
        b.select(&auth_mode(&backup), "creds").await;
        b.fill(&dp(&at("auth.creds_file")), "/nonexistent/edge-1.creds").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error("destination.subject"), "no wildcards").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "the server refused it");
        b.fill(&dp("destination.subject"), "plant.{pair}.results").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error(&at("auth.creds_file")), "cannot read /nonexistent/edge-1.creds").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "the server refused it");

        // Corrected: created, the password and the token masked, the creds file by its path.
        b.fill(&dp(&at("auth.creds_file")), &creds).await;
        b.fill(&dp("destination.in_flight"), "64").await;
        b.fill(&dp("source.ack_wait_s"), "60").await;
        b.submit_pair_form().await;
        let spec = inst.api("GET", "/api/v1/pairs/jetstream-bridge", None).json()["spec"].clone();
        let servers: Vec<String> = spec["destination"]["servers"].as_array().expect("servers").iter().map(|s| s.as_str().unwrap_or_default().to_string()).collect();
        assert_eq!(servers.len(), 2, "{spec}");
        assert_eq!(
            spec["destination"],
            json!({"type": "nats", "servers": servers, "subject": "plant.{pair}.results",
                   "auth": {"username": "edge-1", "password": "********"},
                   "tls": {"enabled": true, "ca": ca, "server_name": "nats.plant.test"}, "in_flight": 64}),
            "{spec}"
        );
        assert_eq!(
            spec["source"],
            json!({"type": "nats", "servers": [server], "subject": "orders.>", "stream": "ORDERS",
                   "consumer": "bridge-orders", "auth": {"token": "********"}, "ack_wait_s": 60}),
            "{spec}"
        );
        assert_eq!(
            spec["failover"],
            json!([{"type": "nats", "servers": [server], "subject": "backup.{pair}", "auth": {"creds_file": creds}}]),
            "{spec}"
        );
        let exported = inst.exported_pair("jetstream-bridge");
        assert_eq!(exported["destination"]["auth"]["password"], "nats-password-1");
        assert_eq!(exported["source"]["auth"]["token"], "nats-token-1");
        b.wait_text("tr[data-pair-id=\"jetstream-bridge\"]", "subject plant.{pair}.results").await;

        // The edit form has every field back, the secrets masked; an unchanged save keeps them.
        b.open_edit("jetstream-bridge", "JetStream bridge").await;
        for (path, want) in [
            ("source", "nats"),
            ("source.servers", server.as_str()),
            ("source.subject", "orders.>"),
            ("source.stream", "ORDERS"),
            ("source.consumer", "bridge-orders"),
            ("source.ack_wait_s", "60"),
            ("source.auth.token", "********"),
            ("destination", "nats"),
            ("destination.subject", "plant.{pair}.results"),
            ("destination.in_flight", "64"),
            ("destination.auth.username", "edge-1"),
            ("destination.auth.password", "********"),
            ("destination.tls.ca", ca.as_str()),
            ("destination.tls.server_name", "nats.plant.test"),
        ] {
            assert_eq!(b.field_value(path).await, want, "{path} pre-filled");
        }
        let backup = b.backup_prefix(1).await;
        assert_eq!(b.field_value(&format!("{backup}.auth.creds_file")).await, creds.as_str());
        for (prefix, mode) in [("source", "token"), ("destination", "user"), (backup.as_str(), "creds")] {
            let v = b.js(&format!("return document.querySelector('{}').value", auth_mode(prefix))).await;
            assert_eq!(v, mode, "{prefix}'s credentials");
        }
        assert!(!b.shown("#pair-hidden-settings").await, "the form shows every setting of a nats side");
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/jetstream-bridge", None).json()["spec"].clone();
        assert_eq!(after, spec, "an unchanged save keeps the stored configuration");
        let exported = inst.exported_pair("jetstream-bridge");
        assert_eq!(exported["destination"]["auth"]["password"], "nats-password-1", "the stored password is kept");
        assert_eq!(exported["source"]["auth"]["token"], "nats-token-1", "the token too");

        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}

/// A Modbus device connected through the form: Modbus is offered for a source and not for a
/// destination, the transport shows its own fields (TCP: host and port; RTU: the serial line),
/// a problem in a poll lands at the polls box naming the poll and field, the created pair's
/// readings (from the project's simulator) arrive at a TCP receiver, and the edit form has
/// everything back and saves it unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_form_modbus_source() {
    let _turn = take_turn();
    scenario("pair form modbus", async {
        let dir = tempfile::tempdir().expect("tmp");
        let device_port = ports::tcp();
        let endpoint = iobp_simulate::Endpoint::new(iobp_simulate::Link::Listen(format!("127.0.0.1:{device_port}")))
            .await
            .expect("device listens");
        tokio::spawn(iobp_simulate::modbus::serve(endpoint, iobp_simulate::modbus::Control::new(Some(1))));
        let dst = ports::tcp();
        let rx = Receiver::start(ports::localhost(dst));
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start("pair-form-modbus").await;
        b.goto(&format!("{ops}/channels")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/channels").await;
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "PLC tank").await;

        // Offered for a source only.
        let types = |side: &str| format!("return Array.from(document.querySelectorAll('#pair-form select{} option')).map((o) => o.value)", dp(side));
        let source_types = b.js(&types("source")).await;
        assert!(source_types.as_array().expect("types").contains(&json!("modbus")), "{source_types}");
        let destination_types = b.js(&types("destination")).await;
        assert!(!destination_types.as_array().expect("types").contains(&json!("modbus")), "{destination_types}");

        // Each transport shows its own fields.
        b.select(&dp("source"), "modbus").await;
        assert_eq!(
            b.shown_paths("source.").await,
            ["source.transport.type", "source.transport.timeout_ms", "source.transport.host", "source.transport.port", "source.polls"]
        );
        b.select(&dp("source.transport.type"), "rtu").await;
        assert_eq!(
            b.shown_paths("source.transport.").await,
            [
                "source.transport.type", "source.transport.timeout_ms", "source.transport.port", "source.transport.baud_rate",
                "source.transport.data_bits", "source.transport.parity", "source.transport.stop_bits", "source.transport.rs485",
            ]
        );
        b.select(&dp("source.transport.type"), "tcp").await;

        // A poll too wide for the protocol: refused, shown at the polls, naming poll and field.
        b.fill(&format!("#pair-form .modbus-tcp {}", dp("source.transport.host")), "127.0.0.1").await;
        b.fill(&format!("#pair-form .modbus-tcp {}", dp("source.transport.port")), &device_port.to_string()).await;
        b.fill(&dp("source.transport.timeout_ms"), "500").await;
        let polls = |count: u32| {
            json!([{"name": "tank", "unit": 1, "function": "holding_registers", "address": 100, "count": count,
                    "interval_ms": 50, "fields": [{"name": "level", "offset": 1, "type": "u16", "scale": 0.5}]}])
        };
        b.fill(&dp("source.polls"), &polls(126).to_string()).await;
        b.fill(&dp("destination.host"), "127.0.0.1").await;
        b.fill(&dp("destination.port"), &dst.to_string()).await;
        b.select(&dp("destination.framing.type"), "line").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error("source.polls"), "source.polls[0].count: must be between 1 and 125").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "the server refused it");

        // Corrected: created, and the device's readings arrive.
        b.fill(&dp("source.polls"), &polls(2).to_string()).await;
        b.submit_pair_form().await;
        wait_until("readings at the receiver", || rx.line_count() >= 5).await;
        for line in rx.received().lines() {
            let reading: serde_json::Value = serde_json::from_str(&line).expect("a JSON reading");
            assert_eq!((reading["poll"].clone(), reading["registers"].clone()), (json!("tank"), json!([100, 101])), "{line}");
            assert_eq!(reading["values"]["level"], 50.5, "{line}");
        }
        let spec = inst.api("GET", "/api/v1/pairs/plc-tank", None).json()["spec"].clone();
        assert_eq!(
            spec["source"],
            json!({"type": "modbus", "transport": {"type": "tcp", "host": "127.0.0.1", "port": device_port, "timeout_ms": 500},
                   "polls": polls(2)}),
            "{spec}"
        );
        b.wait_text("tr[data-pair-id=\"plc-tank\"]", &format!("TCP 127.0.0.1:{device_port} · 1 poll")).await;

        // The edit form has everything back; an unchanged save keeps it.
        b.open_edit("plc-tank", "PLC tank").await;
        assert_eq!(b.field_value("source").await, "modbus");
        assert_eq!(b.field_value("source.transport.host").await, "127.0.0.1");
        let shown: serde_json::Value =
            serde_json::from_str(b.field_value("source.polls").await.as_str().expect("text")).expect("JSON polls");
        assert_eq!(shown, polls(2));
        assert!(!b.shown("#pair-hidden-settings").await, "the form shows every setting of a modbus side");
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/plc-tank", None).json()["spec"].clone();
        assert_eq!(after, spec, "an unchanged save keeps the stored configuration");

        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}
