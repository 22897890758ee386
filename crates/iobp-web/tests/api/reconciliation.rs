//! A pair's accounting through the API and `/metrics`: polled while messages flow it never
//! reports a discrepancy, and once they stopped every identity holds exactly.

use std::time::Duration;

use axum::http::StatusCode;
use iobp_testkit::receiver::AsyncReceiver;
use iobp_testkit::{ports, wait};
use iobp_web::Portal;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciliation_stays_exact_under_traffic_in_the_api_and_the_metrics() {
    let api = setup().await;
    let otto = api.login(Portal::Ops, "otto").await;
    let vic = api.login(Portal::Ops, "vic").await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let pair = json!({
        "id": "acc",
        "source": {"type": "tcp_server", "host": ip, "port": src, "framing": {"type": "line"}},
        "destination": {"type": "tcp_client", "host": ip, "port": dst, "framing": {"type": "line"}}
    });
    let r = api.post("/api/v1/pairs").json(&pair).by(&otto).send().await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let n = 20_000usize;
    let sender = {
        let ip = ip.clone();
        tokio::spawn(async move {
            let mut s = loop {
                match tokio::net::TcpStream::connect((ip.as_str(), src)).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(wait::POLL).await,
                }
            };
            for chunk in 0..40 {
                let lines: Vec<String> =
                    (chunk * 500..(chunk + 1) * 500).map(|i| format!("line-{i:06}\n")).collect();
                let lines = lines.concat();
                s.write_all(lines.as_bytes()).await.expect("send");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.shutdown().await.expect("close");
        })
    };
    let gauge = "iobp_reconciliation_discrepancy{pair=\"acc\"}";
    let mut polls = 0;
    while !sender.is_finished() || got.line_count() < n {
        let r = api.get("/api/v1/pairs/acc/reconciliation").by(&vic).send().await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["discrepancy"], 0, "a false alarm under traffic: {}", r.body);
        let m = api.get("/metrics").on(Portal::Mgmt).send().await;
        let text = m.body.as_str().unwrap_or_default().to_string();
        assert!(text.contains(&format!("{gauge} 0\n")), "{text}");
        polls += 1;
        assert!(polls < 20_000, "the traffic never ended");
    }
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        let r = api.get("/api/v1/pairs/acc/reconciliation").by(&vic).send().await;
        last = r.body;
        if last["settled"] == true {
            break;
        }
        tokio::time::sleep(wait::POLL).await;
    }
    assert_eq!(last["settled"], true, "{last}");
    for field in ["stored_difference", "done_difference", "buffer_difference", "pair_difference"] {
        assert_eq!(last[field], 0, "{field}: {last}");
    }
    assert_eq!(
        (last["received"].as_u64(), last["delivered"].as_u64()),
        (Some(20_000), Some(20_000))
    );
    assert_eq!((last["pending"].as_u64(), last["refused"].as_u64()), (Some(0), Some(0)), "{last}");
    let m = api.get("/metrics").on(Portal::Mgmt).send().await;
    let text = m.body.as_str().unwrap_or_default().to_string();
    assert!(text.contains(&format!("{gauge} 0\n")), "{text}");
    assert!(text.contains("iobp_messages_undeliverable_total{pair=\"acc\"} 0\n"), "{text}");
    let r = api.get("/api/v1/pairs/nope/reconciliation").by(&vic).send().await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
