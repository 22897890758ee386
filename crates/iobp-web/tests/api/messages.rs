//! The message browser through the API: list, inspect (text, hex, base64), filter, re-send.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use iobp_testkit::{ports, wait};
use iobp_web::Portal;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::{pair_json, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_can_be_browsed_inspected_and_resent() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let port = ports::tcp();
    let r = api.post("/api/v1/pairs").json(&pair_json("m", port)).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "the source never listened: {e}"),
        }
        tokio::time::sleep(wait::POLL).await;
    };
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
