//! A relay between two instances set up through the portals of both.

use std::net::SocketAddr;

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use serde_json::json;

use crate::support::{Browser, WAIT, dp, field_error, lines, scenario, take_turn, wait_until};
use crate::util::{Instance, TEST_ADMIN_PASSWORD, send_lines};

/// The password of the relay user the tests create.
const RELAY_PASSWORD: &str = "relay-password-1";

/// A relay between two real instances, set up through the portals of both: instance B gets a
/// relay user (Users page) and a pair whose source waits for a remote instance (no url);
/// instance A a pair whose destination pushes to B's url as that user. Messages sent into A
/// arrive at B's receiver, exactly once and in order; both pair pages show the link connected,
/// B's its lag ("caught up") and the duplicates counter; an unchanged edit of A keeps the
/// stored password and the link working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_between_two_instances_set_up_through_both_portals() {
    let _turn = take_turn();
    scenario("relay", async {
        let (dir_a, dir_b) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        // B listens on another loopback address: a browser keeps cookies by host, not by
        // port, so the two instances' sessions must not share a host.
        let on_b = |port: u16| SocketAddr::from(([127, 0, 0, 2], port));
        let a = Instance::start(dir_a.path(), &[]);
        let b = Instance::start_on(dir_b.path(), on_b(ports::tcp()), on_b(ports::tcp()), &[]);
        let (ops_a, ops_b, mgmt_b) = (format!("http://{}", a.ops), format!("http://{}", b.ops), format!("http://{}", b.mgmt));
        let (src, dst) = (ports::tcp(), ports::tcp());
        let receiver = Receiver::start(ports::localhost(dst));
        let br = Browser::start("relay").await;

        // ---- B: a relay user, created on the Users page. A machine account never logs into
        // the portals: "must change password" is off for it unless chosen.
        br.goto(&format!("{mgmt_b}/users")).await;
        br.login("admin", TEST_ADMIN_PASSWORD).await;
        br.wait_path("/users").await;
        br.wait_js("the user list", "return document.querySelector('#users-table tr[data-user=\"admin\"]') ? true : null").await;
        br.click("#create-user").await;
        let must = "return document.querySelector('#u-must').checked";
        assert_eq!(br.js(must).await, true, "people choose their own password at first login");
        br.select("#u-role", "relay").await;
        assert_eq!(br.js(must).await, false, "off for a relay user");
        br.wait_text("#u-role-help", "machine account").await;
        br.wait_text("#u-must-help", "never logs into the portals").await;
        br.select("#u-role", "operator").await;
        assert_eq!(br.js(must).await, true, "on again for a person");
        br.select("#u-role", "relay").await;
        assert_eq!(br.js(must).await, false);
        br.fill("#u-name", "relay-a").await;
        br.fill("#u-pw", RELAY_PASSWORD).await;
        br.fill("#u-pw2", RELAY_PASSWORD).await;
        // A relay user reaches only the channels granted to it.
        br.fill("#u-push", "plant-a").await;
        br.click("#user-submit").await;
        br.wait_js("relay-a in the list", "return document.querySelector('#users-table tr[data-user=\"relay-a\"]') ? true : null").await;
        let row = br.text("#users-table tr[data-user=\"relay-a\"]").await;
        assert!(!row.contains("must change"), "{row}");
        let users = b.api("GET", "/api/v1/users", None).json();
        let user = users.as_array().and_then(|u| u.iter().find(|u| u["username"] == "relay-a")).cloned().expect("relay-a stored");
        assert_eq!([&user["role"], &user["must_change_password"]], [&json!("relay"), &json!(false)], "{user}");
        assert_eq!(user["relay_grants"], json!([{"channel_id": "plant-a", "direction": "push"}]), "{user}");
        assert!(br.text("#users-table tr[data-user=\"relay-a\"] td.grants").await.contains("push plant-a"));
        // Grants are edited in place: pull from a second channel too.
        br.click("#users-table tr[data-user=\"relay-a\"] [data-action=\"grants\"]").await;
        br.wait_js("the grants dialog", "return document.querySelector('#grants-dialog[open]') ? true : null").await;
        assert_eq!(br.js("return document.querySelector('#g-push').value").await, json!("plant-a"));
        br.fill("#g-pull", "plant-a-out, not a channel!").await;
        br.click("#grants-dialog .btn.primary").await;
        br.wait_text("#grants-form .field-error", "not a channel id").await;
        br.fill("#g-pull", "plant-a-out").await;
        br.click("#grants-dialog .btn.primary").await;
        br.wait_js("the dialog to close", "return document.querySelector('#grants-dialog') ? null : true").await;
        br.wait_text("#users-table tr[data-user=\"relay-a\"] td.grants", "pull plant-a-out").await;

        // ---- B: a pair whose source waits for the remote instance to push (no url).
        br.goto(&format!("{ops_b}/channels")).await;
        br.login("admin", TEST_ADMIN_PASSWORD).await;
        br.wait_path("/channels").await;
        br.click("#create-pair").await;
        br.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        br.fill("#pair-name-input", "From plant A").await;
        br.select("#source-type", "remote_icombuffer").await;
        br.wait_js("the relay fields", "return document.querySelector('[data-path=\"source.channel_id\"]') ? true : null").await;
        assert_eq!(br.shown_paths("source.").await, ["source.url", "source.channel_id"], "without url: no credentials, no HTTPS settings");
        assert!(br.shown("[data-side=\"source\"] .relay-waits").await, "a side without url says it waits");
        br.wait_text(&format!(".field:has({}) .help", dp("source.url")), "pulls").await;
        br.wait_text(&format!(".field:has({}) .help", dp("source.channel_id")), "same on both instances").await;
        br.wait_text("[data-side=\"source\"] .relay-explain", "a destination pushes, a source pulls").await;
        br.fill(&dp("source.channel_id"), "plant-a").await;
        br.fill(&dp("destination.host"), "127.0.0.1").await;
        br.fill(&dp("destination.port"), &dst.to_string()).await;
        br.select(&dp("destination.framing.type"), "line").await;
        br.click("details.advanced summary").await;
        br.fill(&dp("retry.initial_ms"), "100").await;
        br.fill(&dp("retry.max_ms"), "400").await;
        br.submit_pair_form().await;
        br.wait_js("B's pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"from-plant-a\"]') ? true : null").await;
        let spec_b = b.api("GET", "/api/v1/pairs/from-plant-a", None).json()["spec"].clone();
        assert_eq!(spec_b["source"], json!({"type": "remote_icombuffer", "channel_id": "plant-a"}), "{spec_b}");

        // ---- A: a pair whose destination pushes to B as relay-a.
        br.goto(&format!("{ops_a}/channels")).await;
        br.login("admin", TEST_ADMIN_PASSWORD).await;
        br.wait_path("/channels").await;
        br.click("#create-pair").await;
        br.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        br.fill("#pair-name-input", "To plant B").await;
        br.fill(&dp("source.host"), "127.0.0.1").await;
        br.fill(&dp("source.port"), &src.to_string()).await;
        br.select(&dp("source.framing.type"), "line").await;
        br.select("#destination-type", "remote_icombuffer").await;
        br.wait_js("the relay fields", "return document.querySelector('[data-path=\"destination.channel_id\"]') ? true : null").await;
        assert!(!br.shown(&dp("destination.auth.username")).await, "no credentials without url");
        br.wait_text(&format!(".field:has({}) .help", dp("destination.url")), "pushes").await;
        // An https:// url brings the HTTPS settings: the url decides, there is no switch.
        br.fill(&dp("destination.url"), "https://plant-b.example:8443").await;
        assert_eq!(
            br.shown_paths("destination.tls.").await,
            ["ca", "server_name", "cert", "key", "insecure_skip_verify"].map(|f| format!("destination.tls.{f}")),
            "the settings of a TLS client"
        );
        assert!(br.shown(&dp("destination.auth.username")).await, "credentials with a url");
        assert!(!br.shown("[data-side=\"destination\"] .relay-waits").await);
        let label = br.text(&format!(".field:has({}) label", dp("destination.tls.insecure_skip_verify"))).await;
        assert!(label.contains("lab use only"), "{label}");
        assert!(!br.shown("[data-side=\"destination\"] .insecure-warning").await);
        br.click(&dp("destination.tls.insecure_skip_verify")).await;
        br.wait_js("the warning", "const w = document.querySelector('[data-side=\"destination\"] .insecure-warning'); return w && !w.hidden ? true : null").await;
        br.fill(&dp("destination.tls.ca"), "/etc/iobufferpro/plant-b-ca.pem").await;
        br.fill(&dp("destination.tls.cert"), "/etc/iobufferpro/client.pem").await;
        br.fill(&dp("destination.channel_id"), "plant-a").await;
        br.click("#pair-submit").await;
        br.wait_text(&field_error("destination.tls.key"), "needs both cert and key").await;
        br.wait_text(&field_error("destination.auth.username"), "required").await;
        assert_eq!(a.api("GET", "/api/v1/pairs", None).json(), json!([]), "the server refused it");
        br.fill(&dp("destination.tls.key"), "/etc/iobufferpro/client.key").await;
        br.click(&dp("destination.tls.insecure_skip_verify")).await;
        br.fill(&dp("destination.auth.username"), "relay-a").await;
        br.fill(&dp("destination.auth.password"), RELAY_PASSWORD).await;
        br.form_screenshot("channels-form-relay").await;
        for f in ["ca", "cert", "key"] {
            br.fill(&dp(&format!("destination.tls.{f}")), "").await;
        }
        // The real link is plain HTTP: the HTTPS settings go away with the https://.
        br.fill(&dp("destination.url"), &ops_b).await;
        assert!(!br.shown("[data-side=\"destination\"] [data-tls=\"remote\"]").await, "no HTTPS settings for http://");
        br.click("details.advanced summary").await;
        br.fill(&dp("retry.initial_ms"), "100").await;
        br.fill(&dp("retry.max_ms"), "400").await;
        br.submit_pair_form().await;
        br.wait_js("A's pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"to-plant-b\"]') ? true : null").await;
        let spec_a = a.api("GET", "/api/v1/pairs/to-plant-b", None).json()["spec"].clone();
        assert_eq!(
            spec_a["destination"],
            json!({"type": "remote_icombuffer", "url": ops_b, "channel_id": "plant-a", "auth": {"username": "relay-a", "password": "********"}}),
            "{spec_a}"
        );
        assert_eq!(a.exported_pair("to-plant-b")["destination"]["auth"]["password"], RELAY_PASSWORD);

        // ---- A's pair page: connected to B; messages sent into A arrive at B's receiver.
        br.goto(&format!("{ops_a}/pairs/to-plant-b")).await;
        assert_eq!(br.wait_indicator("#indicators", "destination", "green", WAIT).await, "Connected");
        br.wait_text("#indicators [data-relay=\"destination\"] [data-relay-peers]", &b.ops.to_string()).await;
        let sent = lines("relay", 500);
        send_lines(src, &sent);
        wait_until("500 lines at B's receiver", || receiver.lines().len() >= sent.len()).await;
        assert_eq!(receiver.lines(), sent, "exactly once, in order");
        br.wait_count("#tiles", "sent", 500).await;
        assert!(!br.shown("#tiles [data-count=\"duplicates_dropped\"]").await, "no duplicates tile for a sender without any");
        br.js("window.scrollTo(0, 0)").await;
        br.screenshot("pair-relay-sender", false).await;

        // ---- B's pair page: the remote instance connected, caught up, no duplicates.
        br.goto(&format!("{ops_b}/pairs/from-plant-a")).await;
        assert_eq!(br.wait_indicator("#indicators", "source", "green", WAIT).await, "Connected");
        br.wait_text("#indicators [data-relay=\"source\"] [data-relay-peers]", "relay-a@").await;
        br.wait_text("#indicators [data-relay=\"source\"] [data-relay-lag]", "caught up").await;
        br.wait_count("#tiles", "received", 500).await;
        br.wait_count("#tiles", "sent", 500).await;
        br.wait_count("#tiles", "duplicates_dropped", 0).await;
        br.wait_feed("relay 500").await;
        br.js("window.scrollTo(0, 0)").await;
        br.screenshot("pair-relay", false).await;
        br.phone().await;
        let overflow = br.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "the relay details fit a phone: {overflow}");
        br.viewport(1280, 900).await;
        // B's overview card says the same.
        br.goto(&format!("{ops_b}/")).await;
        br.wait_text("[data-pair-id=\"from-plant-a\"] [data-relay=\"source\"] [data-relay-peers]", "relay-a@").await;
        br.wait_text("[data-pair-id=\"from-plant-a\"] [data-relay=\"source\"] [data-relay-lag]", "caught up").await;
        br.screenshot("ops-overview-relay", false).await;
        // A's too.
        br.goto(&format!("{ops_a}/")).await;
        br.wait_text("[data-pair-id=\"to-plant-b\"] [data-relay=\"destination\"] [data-relay-peers]", &b.ops.to_string()).await;

        // ---- An unchanged edit of A keeps the stored password (shown masked): the link
        // connects again after the restart and carries more messages.
        br.goto(&format!("{ops_a}/channels")).await;
        br.open_edit("to-plant-b", "To plant B").await;
        assert_eq!(br.field_value("destination.auth.password").await, "********");
        br.wait_text(&format!(".field:has({}) .help", dp("destination.auth.password")), "Stored").await;
        br.submit_pair_form().await;
        assert_eq!(a.api("GET", "/api/v1/pairs/to-plant-b", None).json()["spec"], spec_a, "an unchanged save keeps the configuration");
        assert_eq!(a.exported_pair("to-plant-b")["destination"]["auth"]["password"], RELAY_PASSWORD, "the stored password is kept");
        br.wait_indicator("tr[data-pair-id=\"to-plant-b\"]", "destination", "green", WAIT).await;
        send_lines(src, lines("after edit", 5));
        wait_until("the lines sent after the edit", || receiver.lines().iter().any(|l| l == "after edit 5")).await;
        assert_eq!(receiver.lines()[500..], lines("after edit", 5)[..], "{:?}", &receiver.lines()[500..]);
        br.close().await;
        let _ = a.terminate();
        let _ = b.terminate();
    })
    .await;
}
