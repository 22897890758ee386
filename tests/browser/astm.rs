//! A lab analyzer commissioned through the Operations Portal as a new user would: the Create
//! Channel Pair form with ASTM framing on both sides (the acknowledgement locked to None),
//! the analyzer and LIS simulators (`iobufferpro simulate astm-analyzer` / `astm-lis`, real
//! processes) on either end, the Live View showing each message's record types and sample
//! id, the message browser finding one sample by its id, and a range of samples replayed.

use std::process::{Command, Stdio};

use iobp_testkit::ports;

use crate::support::{Browser, Kind, WAIT, scenario, take_turn, wait_until};
use crate::util::{ChildGuard, Instance, TEST_ADMIN_PASSWORD, bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_analyzer_is_commissioned_through_the_form_and_its_samples_are_found_by_id() {
    let _turn = take_turn();
    scenario("astm", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start_in(Kind::Chromium, "astm").await;
        b.goto(&format!("{ops}/")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;

        // ---- The LIS simulator listens; the pair is created through the form.
        let (src, dst) = (ports::tcp(), ports::tcp());
        let lis = ChildGuard(
            Command::new(bin())
                .args(["simulate", "astm-lis", "--listen", &format!("127.0.0.1:{dst}"), "--expect", "60", "--quiet"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the LIS simulator"),
        );
        b.goto(&format!("{ops}/channels")).await;
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "Chemistry analyzer").await;
        b.fill("#pair-id-input", "chem-1").await;
        b.fill("[data-path=\"source.host\"]", "127.0.0.1").await;
        b.fill("[data-path=\"source.port\"]", &src.to_string()).await;
        b.select("[data-path=\"source.ack.type\"]", "byte").await;
        b.select("[data-path=\"source.framing.type\"]", "astm").await;
        b.wait_js(
            "the acknowledgement locked to None",
            "const s = document.querySelector('[data-path=\"source.ack.type\"]'); return s.disabled && s.value === 'none' ? true : null",
        )
        .await;
        b.wait_text("[data-block=\"source-framing\"]", "E1381 link protocol").await;
        b.select("#destination-type", "tcp_client").await;
        b.fill("[data-path=\"destination.host\"]", "127.0.0.1").await;
        b.fill("[data-path=\"destination.port\"]", &dst.to_string()).await;
        b.select("[data-path=\"destination.framing.type\"]", "astm").await;
        b.click("#pair-submit").await;
        b.wait_js("the new pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"chem-1\"]') ? true : null").await;
        let spec = inst.api("GET", "/api/v1/pairs/chem-1", None).json()["spec"].clone();
        assert_eq!(spec["source"]["framing"]["type"], "astm");
        assert_eq!(spec["destination"]["framing"]["type"], "astm");
        assert_eq!(spec["source"]["ack"]["type"], "none", "{spec:#}");
        b.wait_indicator("tr[data-pair-id=\"chem-1\"]", "destination", "green", WAIT).await;

        // ---- The analyzer sends 60 results, with a bad checksum now and then.
        b.click("tr[data-pair-id=\"chem-1\"] a[href=\"/pairs/chem-1\"]").await;
        b.wait_path("/pairs/chem-1").await;
        b.wait_js("the live stream", "return (window.IOBP.eventCounts.pairs || 0) >= 1 ? true : null").await;
        let analyzer = Command::new(bin())
            .args(["simulate", "astm-analyzer", "--connect", &format!("127.0.0.1:{src}"), "--count", "60", "--corrupt-every", "9"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run the analyzer simulator");
        assert!(analyzer.success());
        b.wait_js(
            "the Live View's record types and sample id",
            "const s = Array.from(document.querySelectorAll('#feed [data-summary]')).map((e) => e.textContent); return s.some((t) => /^H P O R R L · sample S000000[0-9]{2}$/.test(t)) ? true : null",
        )
        .await;
        b.wait_count("#tiles", "received", 60).await;
        b.wait_count("#tiles", "sent", 60).await;
        // The stream shows at most 100 messages a second (both views together); the page's
        // history has the last one.
        b.goto(&format!("{ops}/pairs/chem-1")).await;
        b.wait_js(
            "the newest sample in the Live View",
            "const s = Array.from(document.querySelectorAll('#feed [data-summary]')).map((e) => e.textContent); return s[0] === 'H P O R R L · sample S00000060' ? true : null",
        )
        .await;
        b.js("document.querySelector('#feed').scrollIntoView()").await;
        b.screenshot("astm-live-view", true).await;
        let mut lis = lis;
        wait_until("the LIS simulator got all 60", || lis.0.try_wait().ok().flatten().is_some()).await;
        let mut out = String::new();
        if let Some(mut o) = lis.0.stdout.take() {
            std::io::Read::read_to_string(&mut o, &mut out).expect("LIS output");
        }
        assert!(out.contains("60 in order, 0 repeated, 0 missing"), "{out}");

        // ---- The message browser finds sample S00000042 by the order record's field 3.
        b.click("#tab-messages").await;
        b.fill("#msg-astm-field", "O.3").await;
        b.fill("#msg-astm-value", "S00000042").await;
        b.click("#msg-search").await;
        b.wait_js(
            "exactly the one sample",
            "const r = document.querySelectorAll('#msg-list tbody tr'); return r.length === 1 && r[0].querySelector('td.preview').textContent.includes('S00000042') ? true : null",
        )
        .await;
        b.fill("#msg-astm-value", "S99999999").await;
        b.click("#msg-search").await;
        b.wait_text("#msg-empty", "No message matches").await;
        b.screenshot("astm-message-search", false).await;

        // ---- Replay: samples 41–45 previewed, then stored again after everything else.
        b.click("#msg-replay").await;
        b.wait_js("the replay dialog", "return document.querySelector('#replay-dialog') ? true : null").await;
        b.fill("#replay-from", "41").await;
        b.fill("#replay-to", "45").await;
        b.js("document.querySelector('#replay-astm-field').value = ''; document.querySelector('#replay-astm-value').value = '';").await;
        assert_eq!(b.js("return document.querySelector('#replay-dialog [data-value=\"replayed\"]').disabled").await, true, "preview first");
        b.click("#replay-dialog [data-value=\"preview\"]").await;
        b.wait_text("#replay-count", "5 message(s) selected, #41–#45").await;
        b.wait_text("#replay-preview", "S00000041").await;
        b.screenshot("replay-preview", true).await;
        b.click("#replay-dialog [data-value=\"replayed\"]").await;
        b.wait_js("the dialog closed", "return document.querySelector('#replay-dialog') ? null : true").await;
        b.wait_count("#tiles", "received", 65).await;
        let page = inst.api("GET", "/api/v1/pairs/chem-1/messages?from_seq=61", None).json();
        let samples: Vec<String> = page["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(samples.len(), 5, "{page:#}");
        for (i, t) in samples.iter().enumerate() {
            assert!(t.contains(&format!("S{:08}", 41 + i)), "copy {i} in order: {t}");
        }
        b.close().await;
    })
    .await;
}
