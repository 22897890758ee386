//! Failover to a backup destination and back, set up in the form and shown live.

use std::io::Write as _;
use std::time::Duration;

use iobp_testkit::ports;
use iobp_testkit::receiver::Receiver;
use serde_json::json;

use crate::support::{Browser, WAIT, dp, field_error, lines, scenario, take_turn, wait_until};
use crate::util::{Instance, TEST_ADMIN_PASSWORD, connect, send_lines};

/// Failover through the form: a pair with a primary TCP destination and one backup (both
/// acknowledging receivers), its failover policy set in the form (ranges checked in the
/// browser). The primary's receiver stops in the middle of a stream: the pair page shows
/// "backup 1 of 2", the channel Yellow and why, the Channels list and the overview "on
/// backup"; the receiver returns: the primary again. Every message arrives at one of the two
/// receivers, in order at each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_backup_destination_and_back_set_up_and_shown_in_the_portal() {
    let _turn = take_turn();
    scenario("failover", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let (src, primary_port, backup_port) = (ports::tcp(), ports::tcp(), ports::tcp());
        let mut primary = Receiver::on(ports::localhost(primary_port)).acking().start();
        let backup = Receiver::on(ports::localhost(backup_port)).acking().start();
        let b = Browser::start("failover").await;
        b.goto(&format!("{ops}/channels")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/channels").await;
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "Lab with backup").await;
        b.fill(&dp("source.host"), "127.0.0.1").await;
        b.fill(&dp("source.port"), &src.to_string()).await;
        b.select(&dp("source.framing.type"), "line").await;
        b.fill(&dp("destination.host"), "127.0.0.1").await;
        b.fill(&dp("destination.port"), &primary_port.to_string()).await;
        b.select(&dp("destination.framing.type"), "line").await;
        b.select(&dp("destination.ack.type"), "byte").await;
        b.click("details.advanced summary").await;
        b.fill(&dp("retry.initial_ms"), "100").await;
        b.fill(&dp("retry.max_ms"), "400").await;
        assert!(!b.shown("[data-block=\"failover_policy\"]").await, "the failover policy comes with the first backup");
        b.click("#add-backup").await;
        let backup_prefix = b.backup_prefix(1).await;
        b.fill(&dp(&format!("{backup_prefix}.host")), "127.0.0.1").await;
        b.fill(&dp(&format!("{backup_prefix}.port")), &backup_port.to_string()).await;
        b.select(&dp(&format!("{backup_prefix}.framing.type")), "line").await;
        b.select(&dp(&format!("{backup_prefix}.ack.type")), "byte").await;
        assert_eq!(
            b.shown_paths("failover_policy.").await,
            ["failover_policy.failures", "failover_policy.failed_after_ms", "failover_policy.probe_interval_ms"]
        );
        let placeholders = b.js("return ['failures', 'failed_after_ms', 'probe_interval_ms'].map((f) => document.querySelector(`[data-path=\"failover_policy.${f}\"]`).placeholder)").await;
        assert_eq!(placeholders, json!(["1", "5000", "2000"]), "the defaults, as placeholders");
        // The server checks the ranges; its problems are shown at the fields.
        b.fill(&dp("failover_policy.failures"), "0").await;
        b.fill(&dp("failover_policy.failed_after_ms"), "3600001").await;
        b.fill(&dp("failover_policy.probe_interval_ms"), "50").await;
        b.click("#pair-submit").await;
        b.wait_text(&field_error("failover_policy.failures"), "between 1 and 1000").await;
        b.wait_text(&field_error("failover_policy.failed_after_ms"), "between 100 and 3600000").await;
        b.wait_text(&field_error("failover_policy.probe_interval_ms"), "between 100 and 3600000").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "the server refused it");
        b.fill(&dp("failover_policy.failures"), "1").await;
        b.fill(&dp("failover_policy.failed_after_ms"), "1000").await;
        b.fill(&dp("failover_policy.probe_interval_ms"), "200").await;
        b.form_screenshot("channels-form-failover-policy").await;
        b.submit_pair_form().await;
        b.wait_js("the pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"lab-with-backup\"] [data-backups=\"1\"]') ? true : null").await;
        let spec = inst.api("GET", "/api/v1/pairs/lab-with-backup", None).json()["spec"].clone();
        assert_eq!(spec["failover_policy"], json!({"failures": 1, "failed_after_ms": 1000, "probe_interval_ms": 200}), "{spec}");
        assert_eq!(
            spec["failover"],
            json!([{"type": "tcp_client", "host": "127.0.0.1", "port": backup_port, "tls": {"enabled": false},
                    "framing": {"type": "line", "delimiter": "\n"}, "ack": {"type": "byte", "ack": 6, "nak": 21}}]),
            "{spec}"
        );
        // Edit: pre-filled; an unchanged save keeps it.
        b.open_edit("lab-with-backup", "Lab with backup").await;
        for (path, want) in [("failover_policy.failures", "1"), ("failover_policy.failed_after_ms", "1000"), ("failover_policy.probe_interval_ms", "200")] {
            assert_eq!(b.field_value(path).await, want, "{path} pre-filled");
        }
        b.submit_pair_form().await;
        let after = inst.api("GET", "/api/v1/pairs/lab-with-backup", None).json()["spec"].clone();
        assert_eq!(after, spec, "an unchanged save keeps the stored configuration");

        // ---- The pair page: the primary delivers.
        b.goto(&format!("{ops}/pairs/lab-with-backup")).await;
        b.wait_indicator("#indicators", "destination", "green", WAIT).await;
        b.wait_text("#failover-active", "primary").await;
        assert_eq!(b.wait_indicator("#indicators", "channel", "green", WAIT).await, "Running");
        b.wait_text("#failover [data-current]", "Primary").await;

        // ---- A stream of messages; the primary's receiver stops in the middle of it.
        let total: u32 = 300;
        let stream = std::thread::spawn(move || {
            let mut s = connect(src);
            for i in 1..=total {
                s.write_all(format!("m {i}\n").as_bytes()).expect("send");
                std::thread::sleep(Duration::from_millis(10));
            }
            s.flush().expect("flush");
        });
        wait_until("the stream to reach the primary", || primary.lines().len() >= 50).await;
        primary.stop();
        b.wait_text("#failover-active", "backup 1 of 2").await;
        assert_eq!(b.wait_indicator("#indicators", "channel", "yellow", WAIT).await, "Degraded");
        b.wait_text("#indicators [data-box=\"destination\"] .what", "backup 1 of 2").await;
        b.wait_text("#indicators [data-box=\"channel\"] .detail", "delivering to backup 1 of 2").await;
        b.wait_text("#failover-reason", "the primary destination failed").await;
        b.wait_text("#failover-switches", "1 switch").await;
        b.wait_text("#failover [data-current]", "Backup 1").await;
        stream.join().expect("the stream");
        wait_until("the end of the stream at the backup", || backup.lines().iter().any(|l| l == &format!("m {total}"))).await;
        b.wait_count("#tiles", "received", u64::from(total)).await;
        b.wait_count("#tiles", "pending", 0).await;
        b.js("window.scrollTo(0, 0)").await;
        b.screenshot("pair-on-backup", false).await;
        b.phone().await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "the failover details fit a phone: {overflow}");
        b.viewport(1280, 900).await;
        // The Channels list and the overview say so too.
        b.goto(&format!("{ops}/channels")).await;
        b.wait_text("tr[data-pair-id=\"lab-with-backup\"] [data-failover-active=\"1\"]", "on backup 1").await;
        b.wait_indicator("tr[data-pair-id=\"lab-with-backup\"]", "channel", "yellow", WAIT).await;
        b.screenshot("channels-on-backup", false).await;
        b.goto(&format!("{ops}/")).await;
        b.wait_text("[data-pair-id=\"lab-with-backup\"] [data-failover=\"1\"]", "backup 1 of 2").await;
        b.wait_indicator("[data-pair-id=\"lab-with-backup\"]", "channel", "yellow", WAIT).await;
        b.screenshot("ops-overview-on-backup", false).await;

        // ---- The primary's receiver returns: failback, and the primary delivers again.
        b.goto(&format!("{ops}/pairs/lab-with-backup")).await;
        b.wait_text("#failover-active", "backup 1 of 2").await;
        let primary_again = Receiver::on(ports::localhost(primary_port)).acking().start();
        b.wait_text("#failover-active", "primary").await;
        assert_eq!(b.wait_indicator("#indicators", "channel", "green", WAIT).await, "Running");
        b.wait_text("#failover-switches", "2 switches").await;
        b.wait_text("#failover-reason", "answers again").await;
        send_lines(src, lines("after failback", 5));
        wait_until("the primary to get the new lines", || primary_again.lines().iter().any(|l| l == "after failback 5")).await;
        assert!(!backup.lines().iter().any(|l| l.starts_with("after failback")), "{:?}", backup.lines());

        // ---- Every message arrived at one of the two receivers, in order at each (a message
        // in flight at a switch may arrive at both).
        let index = |l: &String| l.strip_prefix("m ").and_then(|n| n.parse::<u32>().ok());
        let (first, second) = (primary.lines(), backup.lines());
        for i in 1..=total {
            let line = format!("m {i}");
            assert!(first.contains(&line) || second.contains(&line), "{line} arrived nowhere");
        }
        for (name, got) in [("primary", &first), ("backup", &second)] {
            let seq: Vec<u32> = got.iter().filter_map(index).collect();
            assert!(seq.windows(2).all(|w| w[0] <= w[1]), "in order at the {name}: {seq:?}");
        }
        assert!(!second.is_empty(), "the backup delivered");
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}
