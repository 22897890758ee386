//! The Management Dashboard's main story: health, settings, users, logs and the audit trail
//! (the Firefox run of it: `firefox`).

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use serde_json::Value;

use crate::support::{Browser, Kind, WAIT, lines, scenario, take_turn};
use crate::util::{self, Instance, TEST_ADMIN_PASSWORD, send_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_dashboard_health_settings_users_logs_and_audit() {
    management_dashboard_story(Kind::Chromium).await;
}

/// The story, in the browser `kind`.
pub async fn management_dashboard_story(kind: Kind) {
    let _turn = take_turn();
    scenario("management dashboard", async {
        let dir = tempfile::tempdir().expect("tmp");
        let mut inst = Instance::start_fresh(dir.path(), &[], "info");
        inst.login_api();
        let receivers: Vec<Receiver> = (0..2)
            .map(|i| {
                let (src, dst) = (ports::tcp(), ports::tcp());
                let body = format!(
                    r#"{{"id": "m-{i}", "name": "Plant line {i}", "retry": {{"initial_ms": 100, "max_ms": 400}}, "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                        "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
                );
                let r = inst.api("POST", "/api/v1/pairs", Some(&body));
                assert_eq!(r.status, 201, "{}", r.body);
                let rec = Receiver::start(ports::localhost(dst));
                send_lines(src, lines("sample", 4));
                rec
            })
            .collect();
        // A third pair whose destination is down (red).
        let body = format!(
            r#"{{"id": "m-down", "name": "Archive (receiver down)", "retry": {{"initial_ms": 100, "max_ms": 400}}, "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {}, "framing": {{"type": "line"}}}},
                "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {}, "framing": {{"type": "line"}}}}}}"#,
            ports::tcp(),
            ports::tcp()
        );
        assert_eq!(inst.api("POST", "/api/v1/pairs", Some(&body)).status, 201);
        // Enough audit entries for two pages of 25.
        for _ in 0..26 {
            let r = util::http(inst.mgmt, "POST", "/api/v1/session", Some(&format!(r#"{{"username": "admin", "password": "{TEST_ADMIN_PASSWORD}"}}"#)), None, None);
            assert_eq!(r.status, 200);
        }
        let ops = format!("http://{}", inst.ops);
        let mgmt = format!("http://{}", inst.mgmt);
        let b = Browser::start_in(kind, "management-dashboard").await;

        // ---- System Health Overview.
        b.goto(&format!("{mgmt}/")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;
        b.wait_text("#h-version", env!("CARGO_PKG_VERSION")).await;
        assert_eq!(b.wait_text("#h-pairs", "3").await, "3");
        b.wait_text("#h-pairs-colors", "2 Running").await;
        b.wait_text("#h-pairs-colors", "1 Error").await;
        b.wait_js("CPU", "return /%|n\\/a/.test(document.querySelector('#h-cpu').textContent) ? true : null").await;
        b.wait_js("memory", "return /[KMG]iB/.test(document.querySelector('#h-mem').textContent) ? true : null").await;
        b.wait_text("#h-disk-sub", "free of").await;
        b.wait_text("#h-storage", "of 1,000 MiB").await;
        b.wait_text("#h-datadir", &dir.path().display().to_string()).await;
        b.wait_indicator("#health-pairs-table tr[data-pair-id=\"m-down\"]", "destination", "red", WAIT).await;
        b.wait_indicator("#health-pairs-table tr[data-pair-id=\"m-0\"]", "destination", "green", WAIT).await;
        b.wait_js("live health events", "return (window.IOBP.eventCounts.health || 0) >= 3 ? true : null").await;
        b.viewport(1280, 1000).await;
        b.screenshot("mgmt-health", true).await;
        b.viewport(1280, 900).await;

        // ---- The link to the other portal: same host, the Operations Portal's port.
        b.goto(&format!("{ops}/login")).await;
        b.wait_text("h1", "Operations Portal").await;
        b.goto(&format!("{mgmt}/")).await;
        let href = b.wait_js("the link to the Operations Portal", "const a = document.querySelector('#other-portal'); return a && a.getAttribute('href') ? a.href : null").await;
        assert_eq!(href, format!("{ops}/"), "the Operations Portal as this browser last saw it");
        let pair_link = b.wait_js("a pair link", "const a = document.querySelector('#health-pairs-table tr[data-pair-id=\"m-0\"] a'); return a ? a.href : null").await;
        assert_eq!(pair_link, format!("{ops}/pairs/m-0"));

        // ---- Settings: load, browser validation, save, restart-only fields.
        b.click("a[data-nav=\"settings\"]").await;
        b.wait_path("/settings").await;
        b.wait_js("the settings", "return document.querySelector('#s-max_storage_mb').value === '1000' ? true : null").await;
        assert_eq!(b.js("return document.querySelector('#s-log_level').value").await, "info");
        assert_eq!(b.js("return document.querySelector('[data-restart=\"ops_listen\"]').hidden").await, false, "restart note on ops_listen");
        assert_eq!(b.js("return document.querySelector('[data-restart=\"max_storage_mb\"]').hidden").await, true);
        b.screenshot("mgmt-settings", false).await;
        b.fill("#s-max_storage_mb", "0").await;
        b.fill("#s-mgmt_listen", "not an address").await;
        b.click("#settings-save").await;
        b.wait_text(".field.invalid:has(#s-max_storage_mb) .field-error", "at least 1").await;
        b.wait_text(".field.invalid:has(#s-mgmt_listen) .field-error", "address").await;
        b.click("#settings-revert").await;
        b.fill("#s-retention_hours", "48").await;
        b.click("#settings-save").await;
        b.wait_text("#settings-status", "Saved").await;
        assert_eq!(inst.api("GET", "/api/v1/settings", None).json()["settings"]["retention_hours"], 48);
        b.fill("#s-ops_listen", "0.0.0.0:18080").await;
        b.click("#settings-save").await;
        b.wait_text("#settings-restart", "ops_listen").await;
        assert_eq!(inst.api("GET", "/api/v1/settings", None).json()["settings"]["ops_listen"], "0.0.0.0:18080");

        // ---- Users.
        b.click("a[data-nav=\"users\"]").await;
        b.wait_js("the users", "return document.querySelector('#users-table tr[data-user=\"admin\"]') ? true : null").await;
        assert_eq!(b.js("return document.querySelector('#users-table tr[data-user=\"admin\"] button[data-action=\"delete\"]')").await, Value::Null, "admins cannot delete themselves");
        let body = r#"{"username": "temp.user", "password": "temporary-password", "role": "operator"}"#;
        assert_eq!(inst.api("POST", "/api/v1/users", Some(body)).status, 201);
        b.goto(&format!("{mgmt}/users")).await;
        b.click("#users-table tr[data-user=\"temp.user\"] button[data-action=\"delete\"]").await;
        b.wait_js("the confirmation", "return document.querySelector('#confirm-dialog[open]') ? true : null").await;
        b.fill("#confirm-input", "temp.user").await;
        b.click("#confirm-dialog .btn.danger").await;
        b.wait_js("temp.user gone", "return document.querySelector('#users-table tr[data-user=\"admin\"]') && !document.querySelector('#users-table tr[data-user=\"temp.user\"]') ? true : null").await;
        let users = inst.api("GET", "/api/v1/users", None).json();
        assert!(!users.to_string().contains("temp.user"), "{users}");

        // ---- Logs: newest first, level filter, refresh.
        b.click("a[data-nav=\"logs\"]").await;
        b.wait_path("/logs").await;
        b.wait_js("log lines", "return Array.from(document.querySelectorAll('#log-list td.message')).some((t) => t.textContent.includes('started')) ? true : null").await;
        let times = b.js("return Array.from(document.querySelectorAll('#log-list tbody tr')).map((r) => r.cells[0].textContent)").await;
        let times: Vec<String> = serde_json::from_value(times).expect("times");
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
        b.screenshot("mgmt-logs", false).await;
        b.select("#log-level", "error").await;
        b.wait_js("only errors", "const rows = Array.from(document.querySelectorAll('#log-list tbody tr')); return (document.querySelector('#log-empty') || (rows.length && rows.every((r) => r.textContent.includes('ERROR')))) ? true : null").await;
        b.select("#log-level", "info").await;
        b.click("#log-refresh").await;
        b.wait_text("#log-status", "lines").await;

        // ---- Audit trail: who, what, when, from where; paging.
        b.click("a[data-nav=\"audit\"]").await;
        b.wait_path("/audit").await;
        b.wait_js("audit entries", "return document.querySelector('#audit-list tr[data-action=\"settings.update\"]') ? true : null").await;
        b.wait_text("#audit-list", "pair.create").await;
        b.wait_text("#audit-list", "127.0.0.1").await;
        b.screenshot("mgmt-audit", false).await;
        b.select("#audit-size", "25").await;
        b.wait_text("#audit-page", "Page 1").await;
        let first_page = b.js("return Array.from(document.querySelectorAll('#audit-list tbody tr')).map((r) => Number(r.dataset.id))").await;
        let first_page: Vec<i64> = serde_json::from_value(first_page).expect("ids");
        assert_eq!(first_page.len(), 25);
        b.click("#audit-older").await;
        b.wait_text("#audit-page", "Page 2").await;
        let second = b.js("return Array.from(document.querySelectorAll('#audit-list tbody tr')).map((r) => Number(r.dataset.id))").await;
        let second: Vec<i64> = serde_json::from_value(second).expect("ids");
        assert!(!second.is_empty() && second[0] < *first_page.last().expect("id"), "{first_page:?} then {second:?}");
        b.click("#audit-newer").await;
        b.wait_text("#audit-page", "Page 1").await;
        drop(receivers);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}
