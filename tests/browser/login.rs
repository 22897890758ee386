//! Where the login page sends a browser back to.

use serde_json::json;

use crate::support::{Browser, scenario, take_turn};
use crate::util::{Instance, TEST_ADMIN_PASSWORD};

/// After logging in, the login page returns only to a page of its own portal, whatever `next`
/// says; a logged-out page request is sent to the login page by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_page_returns_only_to_a_page_of_its_own_portal() {
    let _turn = take_turn();
    scenario("next", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start("next").await;
        // Logged out: the server sends the page request to the login page.
        b.goto(&format!("{ops}/channels")).await;
        b.wait_path("/login").await;
        let search = b.js("return location.search").await;
        assert_eq!(search, json!("?next=/channels"));
        // What the URL standard resolves off-site never passes for a path.
        let cases = json!([
            ["/\t/evil.example", "/"],
            ["/\n/evil.example", "/"],
            ["//evil.example", "/"],
            ["/\\evil.example", "/"],
            ["https://evil.example/", "/"],
            ["javascript:alert(1)", "/"],
            ["/login?next=/x", "/"],
            ["/channels?x=1#y", "/channels?x=1#y"],
            ["/pairs/a/../../channels", "/channels"]
        ]);
        let script = format!(
            "return {cases}.map(([n, want]) => [n, IOBP.safeNext(n), want]).filter(([, got, want]) => got !== want)"
        );
        let wrong = b.js(&script).await;
        assert_eq!(wrong, json!([]), "safeNext([input, got, expected])");
        // And through a real login: a tab-smuggled next stays on the portal.
        b.goto(&format!("{ops}/login?next=%2F%09%2Fevil.example")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        let at = b.js("return [location.origin, location.pathname]").await;
        assert_eq!(at, json!([ops, "/"]));
        b.close().await;
    })
    .await;
}
