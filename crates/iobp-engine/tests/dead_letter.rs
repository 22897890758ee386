//! The dead-letter policy: a poison message (the receiver answers HL7 `AE` to it, forever) is
//! parked after `after_rejections` refusals and delivery goes on in order; the parked message
//! survives a restart, is re-sent once the receiver is fixed, and the pair is Yellow while
//! something is parked. Without the policy the same message holds everything behind it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, Hl7Answer};
use iobp_codec::{Encoder, Framing};
use iobp_engine::{Color, TraceKind as K};
use iobp_testkit::ports;
use tokio::io::AsyncWriteExt;

fn hl7(n: u32, poison: bool) -> Vec<u8> {
    common::hl7_message(n, poison)
}

/// An MLLP receiver that answers `AE` to messages containing `POISON` while `refusing`, `AA`
/// otherwise; it keeps the control ids it accepted, in order.
async fn receiver(ip: &str, port: u16, refusing: Arc<AtomicBool>) -> Arc<Mutex<Vec<String>>> {
    common::hl7_receiver(ip, port, move |_, f| {
        if f.windows(6).any(|w| w == b"POISON") && refusing.load(Ordering::SeqCst) {
            Hl7Answer::Refuse("cannot file")
        } else {
            Hl7Answer::Accept
        }
    })
    .await
}

fn pair(id: &str, ip: &str, src: u16, dst: u16, policy: &str) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 20, "max_ms": 50}}{policy},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "mllp"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst}, "framing": {{"type": "mllp"}}, "ack": "mllp"}}}}"#
    )
}

async fn send(ip: &str, port: u16, messages: &[Vec<u8>]) {
    let mut s = common::connect((ip, port)).await;
    let enc = Encoder::new(Framing::mllp());
    let mut out = Vec::new();
    for m in messages {
        enc.encode(m, &mut out).expect("encode");
    }
    s.write_all(&out).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_parked_after_its_refusals_and_the_rest_goes_on_in_order() {
    let mut h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let refusing = Arc::new(AtomicBool::new(true));
    let got = receiver(&ip, dst, refusing.clone()).await;
    h.add(&pair("lab", &ip, src, dst, r#", "dead_letter": {"after_rejections": 3}"#)).await;
    let messages: Vec<Vec<u8>> = (1..=20).map(|n| hl7(n, n == 7)).collect();
    send(&ip, src, &messages).await;
    let want: Vec<String> = (1..=20).filter(|n| *n != 7).map(|n| n.to_string()).collect();
    iobp_testkit::wait::until_async(20, "the other 19 delivered", || {
        got.lock().expect("lock").len() >= 19
    })
    .await;
    assert_eq!(*got.lock().expect("lock"), want, "in order, the poison one left out");
    let s = h.snap("lab");
    assert_eq!((s.parked, s.sent, s.pending), (1, 19, 0), "{s:#?}");
    assert_eq!(s.channel, Color::Yellow, "something is parked");
    assert!(s.retries >= 2, "refused twice before it was parked: {s:#?}");
    let parked = h.engine.parked("lab").await.expect("parked");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].original_seq, 7);
    assert_eq!(parked[0].payload, messages[6]);

    // Parked messages survive a restart of the engine.
    h = h.restart().await;
    let parked = h.engine.parked("lab").await.expect("parked after a restart");
    assert_eq!(parked.len(), 1);
    assert_eq!(h.snap("lab").parked, 1);

    // The receiver is fixed: the message is re-sent and arrives, after the others.
    refusing.store(false, Ordering::SeqCst);
    let new_seq = h.engine.resend_parked("lab", parked[0].id).await.expect("re-send");
    assert_eq!(new_seq, 21);
    iobp_testkit::wait::until_async(20, "the re-sent message delivered", || {
        got.lock().expect("lock").len() >= 20
    })
    .await;
    assert_eq!(got.lock().expect("lock").last().map(String::as_str), Some("7"));
    // The trace tells the story: stored, refused three times, parked, re-sent as 21.
    let t7 = h.engine.trace("lab", 7).await.expect("trace").events;
    let kinds: Vec<K> = t7.iter().map(|e| e.k).collect();
    assert_eq!(kinds, [K::Stored, K::Refused, K::Refused, K::Refused, K::Parked, K::ParkedResent]);
    assert_eq!(t7[4].n, Some(3));
    assert_eq!(t7[5].seq, Some(21));
    let t21 = h.engine.trace("lab", 21).await.expect("trace").events;
    assert_eq!((t21[0].k, t21[0].seq), (K::CopyOf, Some(7)), "{t21:#?}");
    assert_eq!(t21.last().map(|e| e.k), Some(K::Delivered));
    assert!(h.engine.parked("lab").await.expect("parked").is_empty());
    h.wait_for("lab", 10, "nothing parked, Green", |s| s.parked == 0 && s.channel == Color::Green)
        .await;
    let again = h.engine.resend_parked("lab", parked[0].id).await;
    assert!(again.is_err(), "a message is re-sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_policy_a_poison_message_holds_everything_behind_it_and_a_discard_is_final() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let refusing = Arc::new(AtomicBool::new(true));
    let got = receiver(&ip, dst, refusing.clone()).await;
    h.add(&pair("strict", &ip, src, dst, "")).await;
    let messages: Vec<Vec<u8>> = (1..=5).map(|n| hl7(n, n == 2)).collect();
    send(&ip, src, &messages).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*got.lock().expect("lock"), ["1"], "strict FIFO: 3, 4, 5 wait behind 2");
    assert_eq!(h.snap("strict").parked, 0);
    // With the policy added by an edit, it is parked and the rest flows; then discarded.
    h.engine
        .update(
            iobp_config::parse_pair(&pair(
                "strict",
                &ip,
                src,
                dst,
                r#", "dead_letter": {"after_rejections": 2}"#,
            ))
            .expect("spec"),
        )
        .await
        .expect("edit");
    iobp_testkit::wait::until_async(20, "the rest delivered", || {
        got.lock().expect("lock").len() >= 4
    })
    .await;
    assert_eq!(*got.lock().expect("lock"), ["1", "3", "4", "5"]);
    let parked = h.engine.parked("strict").await.expect("parked");
    assert_eq!(parked.len(), 1);
    h.engine.discard_parked("strict", parked[0].id).await.expect("discard");
    assert!(h.engine.parked("strict").await.expect("parked").is_empty());
    assert_eq!(h.snap("strict").parked, 0);
}

/// A power cut (torn writes) after a message was parked: after the restart it is still
/// parked, read back from what survived on disk — its park event was durable before the
/// message was marked Done in the buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_message_survives_a_power_cut() {
    use iobp_log::sim::{SimFs, TornWrites};
    let fs = SimFs::new();
    let h = Harness::with_fs(&fs).await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let refusing = Arc::new(AtomicBool::new(true));
    let got = receiver(&ip, dst, refusing.clone()).await;
    h.add(&pair("lab", &ip, src, dst, r#", "dead_letter": {"after_rejections": 2}"#)).await;
    let messages: Vec<Vec<u8>> = (1..=5).map(|n| hl7(n, n == 3)).collect();
    send(&ip, src, &messages).await;
    iobp_testkit::wait::until_async(20, "the other 4 delivered", || {
        got.lock().expect("lock").len() >= 4
    })
    .await;
    h.wait_for("lab", 10, "one parked", |s| s.parked == 1).await;
    let after = fs.power_cut(TornWrites::Garbage, 11);
    let h = h.restart_after_power_cut(&after).await;
    let parked = h.engine.parked("lab").await.expect("parked after the power cut");
    assert_eq!(parked.len(), 1, "the park event was durable before the cut: {parked:?}");
    assert_eq!(parked[0].payload, messages[2]);
    assert_eq!(h.snap("lab").parked, 1);
}
