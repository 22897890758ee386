//! The message browser through the API: list, inspect (text, hex, base64), filter, re-send.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use iobp_testkit::{ports, wait};
use iobp_web::Portal;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::{pair_json, setup};

/// Connects to a pair's TCP source, waiting while it binds.
async fn connect_source(port: u16) -> tokio::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < deadline, "the source never listened: {e}"),
        }
        tokio::time::sleep(wait::POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_can_be_browsed_inspected_and_resent() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let port = ports::tcp();
    let r = api.post("/api/v1/pairs").json(&pair_json("m", port)).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut s = connect_source(port).await;
    s.write_all(b"hello\nbinary \xff\x00 bytes\n").await.expect("send");
    drop(s);
    wait::until_async(5, "both messages stored", || {
        api.web.engine.snapshot("m").is_some_and(|s| s.received == 2)
    })
    .await;
    let r = api.get("/api/v1/pairs/m/messages").by(&otto).send().await;
    let msgs = r.body["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        (msgs[0]["text"].as_str(), msgs[0]["state"].as_str()),
        (Some("hello"), Some("pending"))
    );
    assert_eq!(msgs[1]["text"], "binary \\xff\u{0} bytes");
    let r = api.get("/api/v1/pairs/m/messages/2").by(&otto).send().await;
    assert!(r.body["hex"].as_str().is_some_and(|h| h.contains("ff 00")), "{}", r.body);
    assert_eq!(r.body["base64"], "YmluYXJ5IP8AIGJ5dGVz");
    // Not delivered yet: cannot be re-sent.
    let r = api.post("/api/v1/pairs/m/messages/1/resend").by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = api.get("/api/v1/pairs/m/messages?state=done").by(&otto).send().await;
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(0));
    let since = json!(0);
    let r = api
        .get(format!("/api/v1/pairs/m/messages?since_ms={since}&limit=1"))
        .by(&otto)
        .send()
        .await;
    assert_eq!(r.body["messages"][0]["seq"], 1);
}

/// A message's trace through the API: stored (with the sender), waiting; then, once a
/// re-send copied it, both the original and the copy name each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_trace_says_what_happened_to_it() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let vic = api.login(Portal::Ops, "vic").await;
    let port = ports::tcp();
    let r = api.post("/api/v1/pairs").json(&pair_json("t", port)).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut s = connect_source(port).await;
    s.write_all(b"first\nsecond\n").await.expect("send");
    drop(s);
    wait::until_async(5, "both stored", || {
        api.web.engine.snapshot("t").is_some_and(|s| s.received == 2)
    })
    .await;
    // A viewer may read it.
    let r = api.get("/api/v1/pairs/t/messages/2/trace").by(&vic).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["seq"], 2);
    assert_eq!(r.body["state"], "pending");
    let events = r.body["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{}", r.body);
    assert_eq!(events[0]["kind"], "stored");
    assert_eq!((events[0]["from_seq"].as_u64(), events[0]["to_seq"].as_u64()), (Some(1), Some(2)));
    assert!(events[0]["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert!(r.body["received_ms"].as_u64().is_some());
    assert_eq!(r.body["events_lost"], 0);
    // Never stored: no events, absent; an unknown pair: 404; garbage: 400.
    let r = api.get("/api/v1/pairs/t/messages/99/trace").by(&vic).send().await;
    assert_eq!((r.status, r.body["state"].as_str()), (StatusCode::OK, Some("absent")));
    assert_eq!(r.body["events"].as_array().map(Vec::len), Some(0));
    let r = api.get("/api/v1/pairs/nope/messages/1/trace").by(&vic).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.get("/api/v1/pairs/t/messages/x/trace").by(&vic).send().await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// The browser's search: by text, by an ASTM E1394 field (the sample id), page by page
/// through a large buffer (`scanned_to`), and clear errors for a malformed search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_text_and_by_an_astm_field() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let port = ports::tcp();
    let r = api.post("/api/v1/pairs").json(&pair_json("lab", port)).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut s = connect_source(port).await;
    // Line-framed: each E1394 record of a message on one line, records separated by CR.
    let mut sent = Vec::new();
    for n in 1..=25_000u32 {
        sent.extend_from_slice(
            format!(
                "H|\\^&|||analyzer\rP|1||PAT{n}\rO|1|S{n:08}||^^^GLU\rR|1|^^^GLU|{n}\rL|1|N\r\n"
            )
            .as_bytes(),
        );
    }
    s.write_all(&sent).await.expect("send");
    drop(s);
    wait::until_async(30, "all stored", || {
        api.web.engine.snapshot("lab").is_some_and(|s| s.received == 25_000)
    })
    .await;
    let get = |q: &str| api.get(format!("/api/v1/pairs/lab/messages?{q}")).by(&otto).send();
    let r = get("astm_field=O.3&astm_value=S00000042").await;
    let found = r.body["messages"].as_array().expect("messages");
    assert_eq!(found.len(), 1, "{}", r.body);
    assert_eq!(found[0]["seq"], 42);
    assert!(found[0]["text"].as_str().is_some_and(|t| t.contains("PAT42")));
    // Past the first 20,000 examined: the search says where to go on.
    let r = get("astm_field=O.3&astm_value=S00024999").await;
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(0));
    let scanned_to = r.body["scanned_to"].as_u64().expect("scanned_to");
    assert!(scanned_to > 1 && scanned_to < 25_001, "{}", r.body);
    let r = get(&format!("astm_field=O.3&astm_value=S00024999&from_seq={scanned_to}")).await;
    assert_eq!(r.body["messages"][0]["seq"], 24_999, "{}", r.body);
    assert_eq!(r.body["scanned_to"], r.body["next_seq"]);
    // By text: every message with PAT1234 in it (PAT1234 and PAT12340..PAT12349).
    let r = get("contains=PAT1234%0D&limit=500").await;
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(1), "{}", r.body);
    let r = get("contains=PAT1234&limit=500").await;
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(11));
    for (q, why) in [
        ("astm_field=O3&astm_value=x", "like `O.3`"),
        ("astm_field=O.3", "go together"),
        ("contains=a&astm_field=O.3&astm_value=b", "not both"),
    ] {
        let r = get(q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.body.to_string().contains(why), "{q}: {}", r.body);
    }
}

/// Replay: a range previewed (nothing stored), then replayed into another pair in order, and
/// by a search into the same pair; audited with the selection; a Viewer is refused; a
/// selection by sequence and by time at one end, or an unknown target, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_is_previewed_then_replayed_in_order_into_another_pair_and_audited() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let (port, other_port) = (ports::tcp(), ports::tcp());
    for (id, p) in [("lab", port), ("archive", other_port)] {
        let r = api.post("/api/v1/pairs").json(&pair_json(id, p)).by(&otto).send().await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let mut s = connect_source(port).await;
    let lines: Vec<String> = (1..=100).map(|i| format!("result {i:03}\n")).collect();
    s.write_all(lines.concat().as_bytes()).await.expect("send");
    drop(s);
    wait::until_async(10, "stored", || {
        api.web.engine.snapshot("lab").is_some_and(|s| s.received == 100)
    })
    .await;
    let replay = |body: Value| api.post("/api/v1/pairs/lab/replay").json(&body).by(&otto).send();
    // Preview: counted and shown, nothing stored.
    let r = replay(json!({"from_seq": 21, "to_seq": 40, "dry_run": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((r.body["count"].as_u64(), r.body["replayed"].as_u64()), (Some(20), Some(0)));
    assert_eq!(r.body["preview"].as_array().map(Vec::len), Some(5));
    assert_eq!(r.body["preview"][0]["text"], "result 021");
    assert!(r.body["not_retained"].is_null());
    assert_eq!(api.web.engine.snapshot("archive").map(|s| s.received), Some(0));
    // Into another pair: the same messages, in order, after what it holds.
    let r = replay(json!({"from_seq": 21, "to_seq": 40, "into": "archive"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["replayed"], 20);
    assert_eq!(
        (r.body["new_first_seq"].as_u64(), r.body["new_last_seq"].as_u64()),
        (Some(1), Some(20))
    );
    let page = api.get("/api/v1/pairs/archive/messages?from_seq=1&limit=50").by(&otto).send().await;
    let texts: Vec<String> = page.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: Vec<String> = (21..=40).map(|i| format!("result {i:03}")).collect();
    assert_eq!(texts, want);
    assert_eq!(api.web.engine.snapshot("archive").map(|s| s.received), Some(20), "counted");
    // By a search, into the pair itself: after everything it holds.
    let r = replay(json!({"contains": "result 09"})).await;
    assert_eq!((r.body["count"].as_u64(), r.body["new_first_seq"].as_u64()), (Some(10), Some(101)));
    // Audited with the selection.
    let ada = api.login(Portal::Mgmt, "ada").await;
    let audit = api.get("/api/v1/audit").on(Portal::Mgmt).by(&ada).send().await;
    let text = audit.body.to_string();
    assert!(text.contains("message.replay"), "{text}");
    assert!(text.contains("from #21, to #40"), "{text}");
    assert!(text.contains("#21–#40 as #1–#20"), "{text}");
    // Refusals.
    let vic = api.login(Portal::Ops, "vic").await;
    let r =
        api.post("/api/v1/pairs/lab/replay").json(&json!({"dry_run": true})).by(&vic).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = replay(json!({"from_seq": 1, "since_ms": 5})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = replay(json!({"from_seq": 1, "into": "nowhere"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = replay(json!({"form_seq": 1})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a misspelt field: {}", r.body);
}

/// A message found by its own id: HL7 MSH-10, the control id (and any other HL7 field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_messages_are_found_by_their_control_id() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let port = ports::tcp();
    let r = api.post("/api/v1/pairs").json(&pair_json("his", port)).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut s = connect_source(port).await;
    let messages: Vec<String> = (1..=50)
        .map(|n| {
            format!("MSH|^~\\&|LAB|A|HIS|B|20261204||ADT^A01|CTRL{n}|P|2.5\rPID|1||MRN{n}\r\n")
        })
        .collect();
    s.write_all(messages.concat().as_bytes()).await.expect("send");
    drop(s);
    wait::until_async(10, "stored", || {
        api.web.engine.snapshot("his").is_some_and(|s| s.received == 50)
    })
    .await;
    let get = |q: &str| api.get(format!("/api/v1/pairs/his/messages?{q}")).by(&otto).send();
    let r = get("hl7_field=MSH.10&hl7_value=CTRL17").await;
    let found = r.body["messages"].as_array().expect("messages");
    assert_eq!(found.len(), 1, "{}", r.body);
    assert_eq!(found[0]["seq"], 17);
    let r = get("hl7_field=PID.3&hl7_value=MRN42").await;
    assert_eq!(r.body["messages"][0]["seq"], 42, "{}", r.body);
    for (q, why) in [
        ("hl7_field=MSH10&hl7_value=x", "like `MSH.10`"),
        ("hl7_field=MSH.10", "go together"),
        ("hl7_field=MSH.10&hl7_value=x&contains=y", "one of"),
    ] {
        let r = get(q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.body.to_string().contains(why), "{q}: {}", r.body);
    }
}
