//! The manual the binary serves (`/docs`): reached from every page of both portals and from
//! the login page, browsed chapter to chapter, searched, without JavaScript of its own.

use serde_json::json;

use crate::support::{Browser, scenario, take_turn};
use crate::util::{Instance, TEST_ADMIN_PASSWORD};

/// Every page of each portal links to the manual; the link opens it in the same portal, its
/// table of contents leads to every chapter, and the search finds a section and leads to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_is_linked_from_every_page_of_both_portals() {
    let _turn = take_turn();
    scenario("manual", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let mgmt = format!("http://{}", inst.mgmt);
        let b = Browser::start("manual").await;

        // Logged out: the login page's link, and the manual needs no login.
        b.goto(&format!("{ops}/login")).await;
        b.click("#manual-link").await;
        b.wait_path("/docs").await;
        b.wait_text("main h1", "Introduction").await;
        b.wait_text(".mainnav a[aria-current=page]", "Manual").await;

        for (base, pages) in [
            (&ops, &["/", "/channels", "/pairs/nothing-here"][..]),
            (&mgmt, &["/", "/settings", "/users", "/logs", "/audit"][..]),
        ] {
            b.goto(&format!("{base}/login")).await;
            b.login("admin", TEST_ADMIN_PASSWORD).await;
            for page in pages {
                b.goto(&format!("{base}{page}")).await;
                let href = b
                    .wait_js(
                        &format!("the Manual link on {base}{page}"),
                        "const a = document.querySelector('.mainnav a[data-nav=manual]'); \
                         return a && a.offsetParent !== null ? a.getAttribute('href') : null",
                    )
                    .await;
                assert_eq!(href, json!("/docs"), "{base}{page}");
            }
            // The link opens the manual on the same portal, its chapters one click away.
            b.click(".mainnav a[data-nav=manual]").await;
            b.wait_path("/docs").await;
            let origin = b.js("return location.origin").await;
            assert_eq!(origin, json!(base), "the manual of the same portal");
            let chapters = b
                .js("return [...document.querySelectorAll('.docs-toc > ol > li > a')].map(a => a.getAttribute('href'))")
                .await;
            let chapters: Vec<String> = serde_json::from_value(chapters).expect("hrefs");
            assert!(chapters.len() >= 10, "{chapters:?}");
            assert!(chapters.contains(&"/docs/connectors".to_string()), "{chapters:?}");
            for href in &chapters {
                let status = b.fetch_status("GET", href, None).await;
                assert_eq!(status, 200, "{href}");
            }
            b.click(".docs-toc a[href='/docs/connectors']").await;
            b.wait_path("/docs/connectors").await;
            b.wait_text("main h1", "Connectors").await;
            let current = b.text(".docs-toc a[aria-current=page]").await;
            assert!(current.contains("Connectors"), "{current}");
            b.click(".docs-pager a[rel=next]").await;
            b.wait_js(
                "the next chapter",
                "return location.pathname !== '/docs/connectors' ? true : null",
            )
            .await;
        }

        // The search: a form without script, results that lead into a chapter.
        b.fill(".docs-search input[name=q]", "serial port").await;
        b.click(".docs-search button").await;
        b.wait_path("/docs/search").await;
        b.wait_text(".docs-hits-count", "section(s)").await;
        let first = b
            .js("const a = document.querySelector('.docs-hits a'); return a && a.getAttribute('href')")
            .await;
        let first = first.as_str().expect("a hit").to_string();
        assert!(first.starts_with("/docs/") && first.contains('#'), "{first}");
        b.click(".docs-hits a").await;
        let path = first.split('#').next().unwrap_or_default().to_string();
        b.wait_path(&path).await;
        b.screenshot("manual", false).await;

        // The password page links to it too.
        b.goto(&format!("{ops}/password")).await;
        let href =
            b.wait_js("the password page's link", "const a = document.querySelector('#manual-link'); return a && a.getAttribute('href')").await;
        assert_eq!(href, json!("/docs"));
        b.close().await;
    })
    .await;
}
