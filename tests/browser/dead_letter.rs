//! Poison messages in the Operations Portal: a pair with a dead-letter policy whose receiver
//! refuses one message (NAK byte) forever; the message is parked, the rest delivered; the
//! pair page shows the Parked count and tab, and an operator re-sends it once the receiver
//! takes it; the Accounting panel adds it all up.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use iobp_testkit::ports;

use crate::support::{Browser, Kind, scenario, take_turn, wait_until};
use crate::util::{Instance, TEST_ADMIN_PASSWORD, send_lines};

/// A line receiver answering each line with ACK (0x06), or NAK (0x15) for lines containing
/// `POISON` while `refusing`; it keeps the lines it accepted.
fn receiver(port: u16, refusing: Arc<AtomicBool>) -> Arc<Mutex<Vec<String>>> {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let into = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (into, refusing) = (into.clone(), refusing.clone());
            std::thread::spawn(move || {
                let Ok(mut w) = conn.try_clone() else { return };
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    let refuse = line.contains("POISON") && refusing.load(Ordering::SeqCst);
                    if !refuse {
                        into.lock().expect("lock").push(line);
                    }
                    if w.write_all(&[if refuse { 0x15 } else { 0x06 }]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_message_is_shown_and_re_sent_from_the_pair_page() {
    let _turn = take_turn();
    scenario("dead letter", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let (src, dst) = (ports::tcp(), ports::tcp());
        let refusing = Arc::new(AtomicBool::new(true));
        let got = receiver(dst, refusing.clone());
        let body = format!(
            r#"{{"id": "orders", "retry": {{"initial_ms": 20, "max_ms": 50}}, "dead_letter": {{"after_rejections": 2}},
                "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}, "ack": "byte"}}}}"#
        );
        assert_eq!(inst.api("POST", "/api/v1/pairs", Some(&body)).status, 201);
        send_lines(src, ["order 1", "order 2 POISON", "order 3"]);
        wait_until("the others delivered", || got.lock().expect("lock").len() >= 2).await;
        assert_eq!(*got.lock().expect("lock"), ["order 1", "order 3"]);

        let b = Browser::start_in(Kind::Chromium, "dead-letter").await;
        let ops = format!("http://{}", inst.ops);
        b.goto(&format!("{ops}/")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;
        b.goto(&format!("{ops}/pairs/orders")).await;
        b.wait_count("#tiles", "parked", 1).await;
        b.wait_text("#parked-count", "(1)").await;
        b.click("#tab-parked").await;
        b.wait_text("#parked-list", "order 2 POISON").await;
        b.screenshot("pair-parked", true).await;
        // The receiver is fixed; the operator re-sends the message.
        refusing.store(false, Ordering::SeqCst);
        b.click("#parked-list [data-action=\"resend\"]").await;
        b.wait_text("#parked-empty", "No message is parked").await;
        wait_until("the re-sent message delivered", || got.lock().expect("lock").len() >= 3).await;
        assert_eq!(got.lock().expect("lock")[2], "order 2 POISON");
        // The Accounting panel adds it up: 3 received and 1 re-sent = 3 delivered + 1 parked.
        b.wait_text("#acc-exact", "Every message is accounted for").await;
        b.wait_text("#acc-received", "4 received").await;
        b.wait_text("#acc-delivered", "3 delivered").await;
        b.wait_text("#acc-parked", "1 parked").await;
        b.wait_text("#acc-refused", "0 refused at the source").await;
                let audit = inst.api("GET", "/api/v1/audit?limit=5", None);
        assert!(audit.body.contains("message.parked.resend"), "{}", audit.body);
        // What happened to it, in the message browser's inspect dialog: its trace.
        b.click("#tab-messages").await;
        b.click("#msg-search").await;
        b.click("#msg-list tr[data-seq=\"2\"] td.preview").await;
        let kinds = b
            .wait_js(
                "the message's trace",
                "const r = document.querySelectorAll('#message-trace tr[data-kind]'); return r.length >= 5 ? Array.from(r).map((x) => x.dataset.kind).join(',') : null",
            )
            .await;
        assert_eq!(kinds.as_str(), Some("stored,refused,refused,parked,parked_resent"));
        let trace = b.text("#message-trace").await;
        assert!(trace.contains("answer: NAK 0x15"), "{trace}");
        assert!(trace.contains("after 2 refusals"), "{trace}");
        assert!(trace.contains("stored again as #4"), "{trace}");
        b.screenshot("message-trace", false).await;
        b.close().await;
    })
    .await;
}
