//! The Operations Portal's main story: first login with the first-start password, then the
//! whole life of a channel pair (the Firefox run of it: `firefox`).

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use serde_json::json;

use crate::support::{
    Browser, Kind, WAIT, common_bauds_and_other, lines, scenario, take_turn, wait_until,
};
use crate::util::{Instance, TEST_ADMIN_PASSWORD, send_lines};

/// First login with the first-start password, then the whole life of a channel pair through
/// the Operations Portal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_portal_first_login_and_a_channel_pair_from_creation_to_deletion() {
    operations_portal_story(Kind::Chromium).await;
}

/// The story, in the browser `kind`.
pub async fn operations_portal_story(kind: Kind) {
    let _turn = take_turn();
    scenario("operations portal", async {
        let dir = tempfile::tempdir().expect("tmp");
        let mut inst = Instance::start_fresh(dir.path(), &[], "info");
        let first_password = inst.initial_password().expect("first-start password file");
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start_in(kind, "operations-portal").await;

        // ---- First login: the generated password, then the password page.
        b.goto(&format!("{ops}/")).await;
        b.wait_path("/login").await;
        b.wait_text("h1", "Operations Portal").await;
        b.screenshot("login", false).await;
        b.fill("#username", "admin").await;
        b.fill("#password", "not the password").await;
        b.click("#login-submit").await;
        b.wait_text("#login-form .form-error", "Wrong user name or password").await;
        b.login("admin", &first_password).await;
        b.wait_path("/password").await;
        b.wait_text("#pw-lead", "first login").await;
        b.screenshot("password", false).await;
        b.fill("#current", &first_password).await;
        b.fill("#new", "short").await;
        b.fill("#again", "short").await;
        b.click("#password-submit").await;
        b.wait_text("#password-form .field-error", "at least 10 characters").await;
        b.fill("#new", TEST_ADMIN_PASSWORD).await;
        b.fill("#again", TEST_ADMIN_PASSWORD).await;
        b.click("#password-submit").await;
        b.wait_path("/").await;
        b.wait_js("the empty overview", "return document.querySelector('#no-pairs') ? true : null").await;
        assert_eq!(b.text("#username").await, "admin");
        assert_eq!(b.text("#role").await, "admin");
        assert!(inst.initial_password().is_none(), "the first-start password file is gone");
        inst.login_api();

        // ---- Create Channel Pair: the form checks only that required fields are filled in;
        // every other rule is the server's, whose problems are shown at their fields.
        let (src, dst) = (ports::tcp(), ports::tcp());
        let mut receiver = Receiver::start(ports::localhost(dst));
        b.click("a[data-nav=\"channels\"]").await;
        b.wait_path("/channels").await;
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "Lab analyzer").await;
        assert_eq!(
            b.js("return document.querySelector('#pair-id-input').value").await,
            "lab-analyzer",
            "the id follows the name until edited"
        );
        b.fill("#pair-id-input", "lab-1").await;
        assert_eq!(b.js("return document.querySelector('#source-type').value").await, "tcp_server");
        // Only the chosen type's fields are shown.
        let shown = b.js("return Array.from(document.querySelectorAll('[data-side=\"source\"] [data-path]')).filter((e) => !e.closest('[hidden]')).map((e) => e.dataset.path)").await;
        let shown: Vec<String> = serde_json::from_value(shown).expect("paths");
        for p in ["source.host", "source.port", "source.max_connections", "source.framing.type", "source.ack.type", "source.tls.enabled"] {
            assert!(shown.iter().any(|s| s == p), "{p} in {shown:?}");
        }
        assert!(!shown.iter().any(|s| s == "source.baud_rate" || s == "source.url"), "{shown:?}");
        b.select("#source-type", "serial").await;
        b.wait_js("the serial fields", "return document.querySelector('[data-path=\"source.baud_rate\"]') ? true : null").await;
        assert!(b.js("return !document.querySelector('[data-path=\"source.host\"]')").await == true);
        b.select("#source-type", "tcp_server").await;
        b.fill("[data-path=\"source.host\"]", "127.0.0.1").await;
        b.fill("[data-path=\"source.port\"]", "70000").await;
        b.select("[data-path=\"source.framing.type\"]", "line").await;
        b.wait_js("the line framing fields", "return document.querySelector('[data-path=\"source.framing.delimiter\"]') ? true : null").await;
        b.fill("[data-path=\"source.framing.max_message_bytes\"]", "64").await;
        b.fill("[data-path=\"destination.host\"]", "127.0.0.1").await;
        b.select("[data-path=\"destination.framing.type\"]", "line").await;
        b.click("details.advanced summary").await;
        b.fill("[data-path=\"retry.initial_ms\"]", "100").await;
        b.fill("[data-path=\"retry.max_ms\"]", "400").await;
        // A required field left empty is marked before anything is sent.
        b.click("#pair-submit").await;
        b.wait_text(".field.invalid:has([data-path=\"destination.port\"]) .field-error", "required").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "nothing was sent");
        assert!(!b.shown(".field.invalid:has([data-path=\"source.port\"])").await, "the port's range is the server's to check");
        // The server: a port out of range, shown at its field.
        b.fill("[data-path=\"destination.port\"]", &dst.to_string()).await;
        b.click("#pair-submit").await;
        b.wait_text(".field.invalid:has([data-path=\"source.port\"]) .field-error", "must be at most 65535").await;
        assert!(!b.shown(".field.invalid:has([data-path=\"destination.port\"])").await, "the corrected field is no longer marked");
        // The server: the source port is the Operations Portal's; the problem names the field.
        b.fill("[data-path=\"source.port\"]", &inst.ops.port().to_string()).await;
        b.click("#pair-submit").await;
        b.wait_text(".field.invalid:has([data-path=\"source.port\"]) .field-error", "already used").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "nothing was created");
        b.fill("[data-path=\"source.port\"]", &src.to_string()).await;
        b.viewport(1280, 1400).await;
        b.js("window.scrollTo(0, 0)").await;
        assert_eq!(
            b.js("return document.querySelector('#pair-form .form-error').hidden").await,
            true,
            "the summary goes once the marked fields were corrected"
        );
        b.screenshot("channels-create-form", true).await;
        b.viewport(1280, 900).await;
        b.click("#pair-submit").await;
        b.wait_js("the new pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"lab-1\"]') ? true : null").await;
        assert!(b.js("return document.querySelector('#form-panel').hidden").await == true);
        let spec = inst.api("GET", "/api/v1/pairs/lab-1", None).json()["spec"].clone();
        assert_eq!(spec["name"], "Lab analyzer");
        assert_eq!(spec["source"]["type"], "tcp_server");
        assert_eq!(spec["source"]["port"], src);
        assert_eq!(spec["source"]["framing"]["type"], "line");
        assert_eq!(spec["destination"]["port"], dst);
        assert_eq!(spec["source"]["framing"]["max_message_bytes"], 64);
        assert_eq!(spec["retry"]["initial_ms"], 100);
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        b.screenshot("channels", false).await;

        // ---- The pair page: status, Live View from both sides, counters.
        b.click("tr[data-pair-id=\"lab-1\"] a[href=\"/pairs/lab-1\"]").await;
        b.wait_path("/pairs/lab-1").await;
        b.wait_text("#pair-name", "Lab analyzer").await;
        assert_eq!(b.wait_indicator("#indicators", "source", "green", WAIT).await, "Connected");
        assert_eq!(b.wait_indicator("#indicators", "destination", "green", WAIT).await, "Connected");
        assert_eq!(b.wait_indicator("#indicators", "channel", "green", WAIT).await, "Running");
        b.wait_text("#feed", "No message received yet").await;
        b.wait_js("the live stream", "return (window.IOBP.eventCounts.pairs || 0) >= 1 ? true : null").await;
        let first = lines("hello", 5);
        send_lines(src, &first);
        let hex = b.wait_feed("hello 5").await;
        assert_eq!(hex, "68 65 6c 6c 6f 20 35", "hex of the message");
        assert_eq!(b.feed_texts().await[..5], ["hello 5", "hello 4", "hello 3", "hello 2", "hello 1"], "newest first");
        b.wait_count("#tiles", "received", 5).await;
        b.wait_count("#tiles", "sent", 5).await;
        b.wait_count("#tiles", "pending", 0).await;
        b.click("#view-destination").await;
        b.wait_feed("hello 5").await;
        b.wait_text("#feed-explain", "delivered").await;
        send_lines(src, lines("more", 2));
        b.wait_feed("more 2").await;
        assert_eq!(b.feed_texts().await[0], "more 2", "the destination view follows deliveries live");
        b.click("#view-source").await;
        b.wait_feed("more 2").await;
        b.wait_js("chart samples", "return (window.IOBP.eventCounts.pairs || 0) >= 4 ? true : null").await;
        b.viewport(1280, 1500).await;
        b.js("window.scrollTo(0, 0)").await;
        b.screenshot("pair-live-view", true).await;
        b.viewport(1280, 900).await;
        wait_until("seven lines at the receiver", || receiver.lines().len() >= 7).await;
        assert_eq!(receiver.lines()[..5], first[..], "delivered in order");

        // ---- Stop and start (pause and play) from the page.
        assert_eq!(b.text("#pair-toggle").await, "■ Stop");
        b.click("#pair-toggle").await;
        assert_eq!(b.wait_indicator("#indicators", "channel", "white", WAIT).await, "Stopped");
        b.wait_indicator("#indicators", "source", "white", WAIT).await;
        b.wait_text("#pair-toggle", "Start").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs/lab-1", None).json()["enabled"], false);
        b.click("#pair-toggle").await;
        assert_eq!(b.wait_indicator("#indicators", "channel", "green", WAIT).await, "Running");
        b.wait_indicator("#indicators", "destination", "green", WAIT).await;
        b.wait_text("#pair-toggle", "Stop").await;

        // ---- The receiving application goes down: red, messages wait; it returns: green.
        receiver.stop();
        let label = b.wait_indicator("#indicators", "destination", "red", WAIT).await;
        assert_eq!(label, "Disconnected");
        b.wait_js("the last error", "return document.querySelector('#pair-last-error').textContent.includes('destination') ? true : null").await;
        send_lines(src, lines("while down", 3));
        b.wait_feed("while down 3").await;
        b.wait_js("pending messages", "const e = document.querySelector('#tiles [data-count=\"pending\"] .n'); return e && Number(e.textContent.replace(/[^0-9]/g, '')) + Number(document.querySelector('#tiles [data-count=\"in_flight\"] .n').textContent.replace(/[^0-9]/g, '')) === 3 ? true : null").await;
        b.screenshot("pair-destination-down", false).await;
        let receiver = Receiver::start(ports::localhost(dst));
        assert_eq!(b.wait_indicator("#indicators", "destination", "green", WAIT).await, "Connected");
        b.wait_count("#tiles", "pending", 0).await;
        wait_until("the messages kept while the receiver was down", || {
            receiver.lines().iter().any(|l| l == "while down 3")
        })
        .await;

        // ---- Message browser: filter, inspect, re-send a Done message.
        b.click("#tab-messages").await;
        b.select("#msg-state", "done").await;
        b.click("#msg-search").await;
        let seq = b
            .wait_js(
                "hello 3 in the message browser",
                "for (const tr of document.querySelectorAll('#msg-list tbody tr')) { if (tr.querySelector('td.preview').textContent === 'hello 3' && tr.dataset.state === 'done') return tr.dataset.seq; } return null",
            )
            .await;
        let seq = seq.as_str().expect("seq").to_string();
        b.fill("#msg-from", "3").await;
        b.click("#msg-search").await;
        b.wait_js("the list from seq 3", "const r = document.querySelectorAll('#msg-list tbody tr'); return r.length && Array.from(r).every((tr) => Number(tr.dataset.seq) >= 3) ? true : null").await;
        b.click("#msg-newest").await;
        // A cell, as a user clicks (geckodriver cannot click a table row as a whole).
        b.click(&format!("#msg-list tr[data-seq=\"{seq}\"] td.preview")).await;
        b.wait_js("the message dialog", "return document.querySelector('#message-dialog[open]') ? true : null").await;
        assert_eq!(b.text("#message-text").await, "hello 3");
        assert_eq!(b.text("#message-hex").await, "68 65 6c 6c 6f 20 33");
        b.wait_text("#message-detail .tag", "Done").await;
        b.screenshot("message-browser", false).await;
        b.click("#message-dialog .dlg-foot .btn.primary").await;
        b.wait_js("the dialog to close", "return document.querySelector('#message-dialog') ? null : true").await;
        // The original went to the first receiver; this one gets only the copy.
        wait_until("the re-sent copy", || receiver.lines().iter().any(|l| l == "hello 3")).await;
        // Search again until the copy is listed as delivered too.
        b.wait_js(
            "the delivered copy in the browser",
            "if (Array.from(document.querySelectorAll('#msg-list tr[data-state=\"done\"] td.preview')).filter((t) => t.textContent === 'hello 3').length >= 2) return true; \
             document.querySelector('#msg-search').click(); return null",
        )
        .await;

        // ---- A frame longer than the source's framing allows: rejected, listed, never silent.
        send_lines(src, &["x".repeat(100)]);
        b.wait_count("#tiles", "rejected", 1).await;
        b.wait_text("#rej-count", "(1)").await;
        b.click("#tab-rejections").await;
        b.wait_text("#rej-list tbody tr", "source").await;
        let audit = inst.api("GET", "/api/v1/audit?limit=20", None).json();
        assert!(audit.as_array().expect("list").iter().any(|e| e["action"] == "message.resend"), "{audit}");

        // ---- The overview, live, on a desktop and on a phone.
        b.click("a[data-nav=\"overview\"]").await;
        b.wait_path("/").await;
        b.wait_indicator("[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        let before = b.text("[data-pair-id=\"lab-1\"] [data-count=\"received\"] .n").await;
        send_lines(src, lines("overview", 1));
        b.wait_js("the overview to update live", &format!(
            "const e = document.querySelector('[data-pair-id=\"lab-1\"] [data-count=\"received\"] .n'); return e && e.textContent !== {} ? true : null",
            json!(before)
        )).await;
        b.wait_text("#summary", "1 Running").await;
        b.screenshot("ops-overview", true).await;
        b.phone().await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "no horizontal scrolling on a phone: {overflow}");
        b.screenshot("ops-overview-phone", true).await;
        b.goto(&format!("{ops}/pairs/lab-1")).await;
        b.wait_indicator("#indicators", "destination", "green", WAIT).await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "the pair page fits a phone: {overflow}");
        b.screenshot("pair-phone", false).await;
        b.goto(&format!("{ops}/channels")).await;
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "the channels page fits a phone: {overflow}");
        b.viewport(1280, 900).await;

        // ---- Play and pause from the Channels page.
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]").await;
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "channel", "white", WAIT).await;
        b.wait_text("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]", "Start").await;
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]").await;
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "channel", "green", WAIT).await;
        b.wait_text("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]", "Stop").await;

        // ---- Edit: the same form, filled in, id read-only; saving restarts the pair.
        b.goto(&format!("{ops}/pairs/lab-1")).await;
        b.click("#pair-edit").await;
        b.wait_path("/channels").await;
        b.wait_text("#form-title", "Edit Lab analyzer").await;
        b.click("#pair-cancel").await;
        b.wait_js("the form to close", "return document.querySelector('#form-panel').hidden ? true : null").await;
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"edit\"]").await;
        b.wait_text("#form-title", "Edit Lab analyzer").await;
        assert_eq!(b.js("return document.querySelector('#pair-id-input').readOnly").await, true);
        assert_eq!(b.js("return document.querySelector('#pair-id-input').value").await, "lab-1");
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.port\"]').value").await, src.to_string());
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.framing.type\"]').value").await, "line");
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.framing.delimiter\"]').value").await, "\\n");
        b.fill("#pair-name-input", "Lab analyzer 2").await;
        b.click("#pair-submit").await;
        b.wait_text("tr[data-pair-id=\"lab-1\"] a", "Lab analyzer 2").await;
        let spec = inst.api("GET", "/api/v1/pairs/lab-1", None).json()["spec"].clone();
        assert_eq!(spec["name"], "Lab analyzer 2");
        assert_eq!(spec["source"]["framing"], json!({"type": "line", "delimiter": "\n", "max_message_bytes": 64}));
        assert_eq!(spec["retry"]["max_ms"], 400);

        // ---- Delete, confirmed by typing the id.
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"delete\"]").await;
        b.wait_js("the confirmation", "return document.querySelector('#confirm-dialog[open]') ? true : null").await;
        let disabled = "return document.querySelector('#confirm-dialog .btn.danger').disabled";
        assert_eq!(b.js(disabled).await, true);
        b.fill("#confirm-input", "lab-").await;
        assert_eq!(b.js(disabled).await, true, "a wrong id does not confirm");
        b.fill("#confirm-input", "lab-1").await;
        assert_eq!(b.js(disabled).await, false);
        b.click("#confirm-dialog .btn.danger").await;
        b.wait_js("the empty list", "return document.querySelector('#no-pairs') ? true : null").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]));

        // ---- The other connector types: serial (free baud rate), idle-gap framing, byte
        // acknowledgements, a remote instance with credentials. The form builds their JSON.
        b.click("#create-pair").await;
        b.fill("#pair-name-input", "Serial analyzer").await;
        b.select("#source-type", "serial").await;
        b.fill("[data-path=\"source.port\"]", "/dev/ttyIOBP-none").await;
        let bauds = b.js("return Array.from(document.querySelectorAll('[data-path=\"source.baud_rate\"] option')).map((o) => o.value)").await;
        assert_eq!(bauds, common_bauds_and_other(&inst), "the server's common baud rates, then Other…");
        b.select("[data-path=\"source.baud_rate\"]", "other").await;
        b.fill(".field:has([data-path=\"source.baud_rate\"]) input[type=\"number\"]", "31250").await;
        b.select("[data-path=\"source.data_bits\"]", "7").await;
        b.select("[data-path=\"source.parity\"]", "Even").await;
        b.select("[data-path=\"source.stop_bits\"]", "2").await;
        b.select("[data-path=\"source.flow_control\"]", "RTS/CTS").await;
        b.select("[data-path=\"source.framing.type\"]", "idle_gap").await;
        b.fill("[data-path=\"source.framing.gap_ms\"]", "50").await;
        b.select("[data-path=\"source.ack.type\"]", "byte").await;
        b.select("#destination-type", "remote_icombuffer").await;
        b.fill("[data-path=\"destination.url\"]", "http://127.0.0.1:9").await;
        b.fill("[data-path=\"destination.channel_id\"]", "plant-2").await;
        b.click("#pair-submit").await;
        b.wait_text(".field.invalid:has([data-path=\"destination.auth.username\"]) .field-error", "required").await;
        b.fill("[data-path=\"destination.auth.username\"]", "relay-user").await;
        b.fill("[data-path=\"destination.auth.password\"]", "relay-password-1").await;
        b.click("#pair-submit").await;
        b.wait_js("the serial pair", "return document.querySelector('#pairs-table tr[data-pair-id=\"serial-analyzer\"]') ? true : null").await;
        let spec = inst.api("GET", "/api/v1/pairs/serial-analyzer", None).json()["spec"].clone();
        let source = &spec["source"];
        assert_eq!(
            [&source["type"], &source["port"], &source["baud_rate"], &source["data_bits"], &source["parity"], &source["stop_bits"], &source["flow_control"]],
            [&json!("serial"), &json!("/dev/ttyIOBP-none"), &json!(31250), &json!(7), &json!("Even"), &json!(2), &json!("RTS/CTS")],
            "{spec}"
        );
        assert_eq!(source["framing"], json!({"type": "idle_gap", "gap_ms": 50}), "{spec}");
        assert_eq!(source["ack"], json!({"type": "byte", "ack": 6, "nak": 21}), "{spec}");
        assert_eq!(
            spec["destination"],
            json!({"type": "remote_icombuffer", "url": "http://127.0.0.1:9", "channel_id": "plant-2", "auth": {"username": "relay-user", "password": "********"}}),
            "the API never shows a stored password"
        );
        b.click("tr[data-pair-id=\"serial-analyzer\"] button[data-action=\"edit\"]").await;
        b.wait_text("#form-title", "Edit Serial analyzer").await;
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.baud_rate\"]').value").await, "other");
        assert_eq!(b.js("return document.querySelector('.field:has([data-path=\"source.baud_rate\"]) input[type=\"number\"]').value").await, "31250");
        assert_eq!(b.js("return document.querySelector('[data-path=\"destination.url\"]').value").await, "http://127.0.0.1:9");
        b.click("#pair-cancel").await;
        assert_eq!(inst.api("DELETE", "/api/v1/pairs/serial-analyzer?confirm=serial-analyzer", None).status, 204);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}
