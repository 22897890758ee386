//! A Viewer's read-only view, and the API refusing it anyway.

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use serde_json::json;

use crate::support::{Browser, WAIT, lines, scenario, take_turn, wait_until};
use crate::util::{Instance, TEST_ADMIN_PASSWORD, send_lines};

/// A Viewer created on the users page sees no controls that change anything, and the API
/// refuses them when tried anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_edit_controls_and_the_api_refuses_changes() {
    let _turn = take_turn();
    scenario("viewer", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let (src, dst) = (ports::tcp(), ports::tcp());
        let body = format!(
            r#"{{"id": "view-1", "name": "Ward monitor", "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
        );
        let r = inst.api("POST", "/api/v1/pairs", Some(&body));
        assert_eq!(r.status, 201, "{}", r.body);
        let receiver = Receiver::start(ports::localhost(dst));
        send_lines(src, lines("reading", 3));
        inst.wait_for("view-1", 20, "delivery", |s| s["counts"]["sent"] == 3);
        let ops = format!("http://{}", inst.ops);
        let mgmt = format!("http://{}", inst.mgmt);
        let b = Browser::start("viewer").await;

        // ---- The admin creates a viewer, changes and restores a role, on the users page.
        b.goto(&format!("{mgmt}/users")).await;
        b.wait_text("h1", "Management Dashboard").await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/users").await;
        b.wait_js("the user list", "return document.querySelector('#users-table tr[data-user=\"admin\"]') ? true : null").await;
        b.click("#create-user").await;
        b.fill("#u-name", "vera").await;
        b.select("#u-role", "viewer").await;
        b.fill("#u-pw", "viewer-password-1").await;
        b.fill("#u-pw2", "viewer-password-2").await;
        b.click("#user-submit").await;
        b.wait_text("#user-form .field-error", "differ").await;
        b.fill("#u-pw2", "viewer-password-1").await;
        b.click("#user-submit").await;
        b.wait_js("vera in the list", "return document.querySelector('#users-table tr[data-user=\"vera\"]') ? true : null").await;
        b.wait_text("#users-table tr[data-user=\"vera\"]", "must change at next login").await;
        b.select("#users-table tr[data-user=\"vera\"] select", "operator").await;
        b.wait_js("the role confirmation", "return document.querySelector('#confirm-dialog[open]') ? true : null").await;
        b.click("#confirm-dialog .btn.primary").await;
        b.wait_js("vera is operator", "const s = document.querySelector('#users-table tr[data-user=\"vera\"] select'); return s && s.value === 'operator' && !s.disabled && !document.querySelector('#confirm-dialog') ? true : null").await;
        wait_until("vera to be operator in the store", || {
            let users = inst.api("GET", "/api/v1/users", None).json();
            users.as_array().is_some_and(|a| a.iter().any(|u| u["username"] == "vera" && u["role"] == "operator"))
        })
        .await;
        b.select("#users-table tr[data-user=\"vera\"] select", "viewer").await;
        b.click("#confirm-dialog .btn.primary").await;
        b.wait_js("vera is viewer again", "const s = document.querySelector('#users-table tr[data-user=\"vera\"] select'); return s && s.value === 'viewer' && !s.disabled && !document.querySelector('#confirm-dialog') ? true : null").await;
        // A password reset through the dialog (the viewer must change it at next login).
        b.click("#users-table tr[data-user=\"vera\"] button[data-action=\"reset\"]").await;
        b.wait_js("the reset dialog", "return document.querySelector('#reset-dialog[open]') ? true : null").await;
        b.fill("#r-pw", "short-1").await;
        b.fill("#r-pw2", "short-1").await;
        b.click("#reset-dialog .btn.primary").await;
        b.wait_text(".field.invalid:has(#r-pw) .field-error", "at least 10").await;
        b.fill("#r-pw", "viewer-password-1").await;
        b.fill("#r-pw2", "viewer-password-1").await;
        b.click("#reset-dialog .btn.primary").await;
        b.wait_js("the dialog to close", "return document.querySelector('#reset-dialog') ? null : true").await;
        b.wait_text("#users-table tr[data-user=\"vera\"]", "must change at next login").await;
        b.screenshot("mgmt-users", false).await;
        b.click("#logout").await;
        b.wait_path("/login").await;

        // ---- The viewer's first login on the Operations Portal: a new password first.
        b.goto(&format!("{ops}/channels")).await;
        b.login("vera", "viewer-password-1").await;
        b.wait_path("/password").await;
        b.fill("#current", "viewer-password-1").await;
        b.fill("#new", "viewer-password-2").await;
        b.fill("#again", "viewer-password-2").await;
        b.click("#password-submit").await;
        b.wait_path("/channels").await;
        b.wait_js("the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"view-1\"]') ? true : null").await;
        assert_eq!(b.text("#role").await, "viewer");
        let controls = "return Array.from(document.querySelectorAll('#create-pair, button[data-action], #pair-form, #pair-toggle, #pair-delete, #pair-edit')).filter((e) => !e.hidden && e.offsetParent !== null).length";
        assert_eq!(b.js(controls).await, 0, "no create, start/stop, edit or delete for a viewer");
        b.goto(&format!("{ops}/")).await;
        b.wait_js("the overview", "return document.querySelector('[data-pair-id=\"view-1\"]') ? true : null").await;
        assert_eq!(b.js("return document.querySelector('#create-link').hidden").await, true);
        b.goto(&format!("{ops}/pairs/view-1")).await;
        b.wait_indicator("#indicators", "destination", "green", WAIT).await;
        assert_eq!(b.js(controls).await, 0, "no controls on the pair page either");
        b.click("#tab-messages").await;
        b.click("#msg-list tbody tr").await;
        b.wait_js("the message dialog", "return document.querySelector('#message-dialog[open]') ? true : null").await;
        assert_eq!(
            b.js("return Array.from(document.querySelectorAll('#message-dialog button')).some((x) => x.textContent.includes('Re-send'))").await,
            false,
            "no re-send for a viewer"
        );
        b.click("#message-dialog .close").await;

        // ---- Trying anyway: the API refuses with 403.
        assert_eq!(b.fetch_status("POST", "/api/v1/pairs/view-1/stop", None).await, 403);
        assert_eq!(b.fetch_status("DELETE", "/api/v1/pairs/view-1?confirm=view-1", None).await, 403);
        let pair = json!({"id": "sneaky", "source": {"type": "udp", "host": "127.0.0.1", "port": ports::tcp()}, "destination": {"type": "udp", "host": "127.0.0.1", "port": ports::tcp()}});
        assert_eq!(b.fetch_status("POST", "/api/v1/pairs", Some(&pair)).await, 403);
        assert_eq!(b.fetch_status("POST", "/api/v1/pairs/view-1/messages/0/resend", None).await, 403);
        assert_eq!(inst.pair("view-1")["channel"], "green", "still running");

        // ---- On the Management Dashboard the viewer reads, and is told what is admin-only.
        b.goto(&format!("{mgmt}/users")).await;
        b.login("vera", "viewer-password-2").await;
        b.wait_text("#role-needed", "Admins only").await;
        b.goto(&format!("{mgmt}/audit")).await;
        b.wait_text("#role-needed", "Admins only").await;
        b.goto(&format!("{mgmt}/settings")).await;
        b.wait_text("#settings-readonly", "Only admins").await;
        assert_eq!(b.js("return document.querySelector('#s-max_storage_mb').disabled").await, true);
        b.goto(&format!("{mgmt}/")).await;
        b.wait_js("the health page", "return document.querySelector('#health-pairs-table tr[data-pair-id=\"view-1\"]') ? true : null").await;
        drop(receiver);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}
