//! Figures, reported and not asserted: first paint and memory.

use std::time::{Duration, Instant};

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;

use crate::support::{Browser, lines, repo, scenario, take_turn};
use crate::util::{Instance, TEST_ADMIN_PASSWORD, send_lines};

/// Reports (does not assert) the Operations Portal's first paint and the instance's memory with
/// ten running pairs and both portals open with their live streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_figures_first_paint_and_memory_with_both_portals_open() {
    let _turn = take_turn();
    scenario("figures", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let mut receivers = Vec::new();
        for i in 0..10 {
            let (src, dst) = (ports::tcp(), ports::tcp());
            receivers.push(Receiver::start(ports::localhost(dst)));
            let body = format!(
                r#"{{"id": "fig-{i:02}", "name": "Figure pair {i}", "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                    "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
            );
            let r = inst.api("POST", "/api/v1/pairs", Some(&body));
            assert_eq!(r.status, 201, "{}", r.body);
            send_lines(src, lines("figure", 10));
        }
        let ops = format!("http://{}", inst.ops);
        let mgmt = format!("http://{}", inst.mgmt);
        let b = Browser::start("figures").await;
        b.goto(&format!("{ops}/login")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;
        // A fresh navigation of the logged-in overview: what an operator sees each morning.
        b.goto(&format!("{ops}/")).await;
        b.wait_js("ten pair cards", "return document.querySelectorAll('.pair-card').length === 10 ? true : null").await;
        // The paint entries are recorded once the frame is presented: give them a moment.
        let paint_script = "return performance.getEntriesByType('paint').map((e) => [e.name, e.startTime])";
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut paint = b.js(paint_script).await;
        while paint.as_array().is_none_or(|a| a.len() < 2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            paint = b.js(paint_script).await;
        }
        let nav = b.js("const n = performance.getEntriesByType('navigation')[0]; return n ? [n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize] : null").await;
        let cards_ms = b.js("return performance.now()").await;
        let paint_of = |name: &str| {
            paint.as_array().and_then(|a| a.iter().find(|e| e[0] == name)).and_then(|e| e[1].as_f64())
        };
        let (fp, fcp) = (paint_of("first-paint"), paint_of("first-contentful-paint"));
        // The Management Dashboard in a second window, both with their live streams.
        let ops_window = b.client.window().await.expect("window");
        let second = b.client.new_window(false).await.expect("new window");
        b.client.switch_to_window(second.handle).await.expect("switch");
        b.goto(&format!("{mgmt}/login")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;
        b.wait_text("#h-pairs", "10").await;
        b.wait_js("health events", "return (window.IOBP.eventCounts.health || 0) >= 1 ? true : null").await;
        let mgmt_events = b.js("return window.IOBP.eventCounts.pairs || 0").await.as_u64().unwrap_or(0);
        b.client.switch_to_window(ops_window.clone()).await.expect("switch back");
        let ops_events = b.js("return window.IOBP.eventCounts.pairs || 0").await.as_u64().unwrap_or(0);
        // Idle for a while with both streams connected.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let ops_events_after = b.js("return window.IOBP.eventCounts.pairs || 0").await.as_u64().unwrap_or(0);
        assert!(ops_events_after > ops_events, "the overview's stream stays connected");
        assert_eq!(b.js("return document.querySelectorAll('.pair-card[data-channel=\"green\"]').length").await, 10);
        let status = std::fs::read_to_string(format!("/proc/{}/status", inst.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map_or_else(|| "n/a".into(), |v| v.trim().to_string())
        };
        let (rss, hwm) = (field("VmRSS:"), field("VmHWM:"));
        let report = format!(
            "Operations Portal, logged-in overview with 10 pairs (headless Chromium, debug build of the server):\n\
             \x20 first-paint: {}\n\x20 first-contentful-paint: {}\n\x20 DOMContentLoaded, load, transfer size: {nav}\n\
             \x20 ten cards shown at: {cards_ms} ms after navigation start (includes the test's polling)\n\
             Instance with 10 running pairs, both portals open in two windows with their SSE streams, after 5 s idle:\n\
             \x20 VmRSS: {rss}\n\x20 VmHWM (peak): {hwm}\n\
             \x20 pairs events received: overview {ops_events_after}, health page {mgmt_events}+\n",
            fp.map_or("n/a".into(), |v| format!("{v:.0} ms")),
            fcp.map_or("n/a".into(), |v| format!("{v:.0} ms")),
        );
        eprintln!("{report}");
        let out = repo().join("test-output");
        std::fs::create_dir_all(&out).expect("test-output");
        std::fs::write(out.join("portal-figures.txt"), &report).expect("write figures");
        drop(receivers);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}
