//! The per-message trace through the paths operators ask about: a message the receiver refused
//! once (`AE`) and then accepted, a message in flight when the primary destination stopped
//! answering and that a backup delivered, a replay into another pair (both traces name the
//! other side), and all of it still there after a restart.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::{Harness, Hl7Answer};
use iobp_codec::{Encoder, Framing};
use iobp_engine::{ReplaySelection, TraceEvent, TraceKind};
use iobp_testkit::ports;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn hl7(n: u32) -> Vec<u8> {
    format!("MSH|^~\\&|LAB|A|HIS|B|20261204||ORU^R01|{n}|P|2.5\rOBX|1|ST|GLU^{n}\r").into_bytes()
}

/// An MLLP receiver: answers `AE` to control id `refuse_once` the first time, `AA` otherwise,
/// and nothing at all while `silent`. Keeps the control ids it accepted.
struct Receiver {
    got: Arc<Mutex<Vec<String>>>,
    silent: Arc<AtomicBool>,
}

async fn receiver(ip: &str, port: u16, refuse_once: Option<u32>) -> Receiver {
    let silent = Arc::new(AtomicBool::new(false));
    let (quiet, refused) = (silent.clone(), AtomicU32::new(0));
    let got = common::hl7_receiver(ip, port, move |id, _| {
        if quiet.load(Ordering::SeqCst) {
            Hl7Answer::Silent
        } else if refuse_once.is_some_and(|r| r.to_string() == id)
            && refused.fetch_add(1, Ordering::SeqCst) == 0
        {
            Hl7Answer::Refuse("no such patient")
        } else {
            Hl7Answer::Accept
        }
    })
    .await;
    Receiver { got, silent }
}

async fn send(ip: &str, port: u16, numbers: std::ops::RangeInclusive<u32>) {
    let mut s = common::connect((ip, port)).await;
    let enc = Encoder::new(Framing::mllp());
    let mut out = Vec::new();
    for n in numbers {
        enc.encode(&hl7(n), &mut out).expect("encode");
    }
    s.write_all(&out).await.expect("send");
    // Read the ACKs so the connection stays healthy; they are not checked here.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(std::time::Duration::from_millis(300), s.read(&mut sink)).await;
}

fn kinds(events: &[TraceEvent]) -> Vec<TraceKind> {
    events.iter().map(|e| e.k).collect()
}

async fn trace(h: &Harness, pair: &str, seq: u64) -> Vec<TraceEvent> {
    h.engine.trace(pair, seq).await.expect("trace").events
}

/// The trace of a message a receiver already has: its `Delivered` follows once the receiver's
/// ACK is back, a moment after the receiver kept the message.
async fn trace_delivered(h: &Harness, pair: &str, seq: u64) -> Vec<TraceEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events = trace(h, pair, seq).await;
        if events.last().is_some_and(|e| e.k == TraceKind::Delivered)
            || std::time::Instant::now() > deadline
        {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_follows_a_message_through_a_refusal_a_failover_a_replay_and_a_restart() {
    let mut h = Harness::new().await;
    let ip = ports::loopback();
    let (src, primary, backup, other_src) =
        (ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip));
    let first = receiver(&ip, primary, Some(3)).await;
    let second = receiver(&ip, backup, None).await;
    let dest = |port: u16| {
        format!(
            r#"{{"type": "tcp_client", "host": "{ip}", "port": {port}, "framing": {{"type": "mllp"}},
                "ack": {{"type": "mllp", "timeout_ms": 400}}}}"#
        )
    };
    h.add(&format!(
        r#"{{"id": "lab", "retry": {{"initial_ms": 20, "max_ms": 50}},
            "source": {{"type": "tcp_server", "host": "{ip}", "port": {src}, "framing": {{"type": "mllp"}}, "ack": "mllp"}},
            "destination": {},
            "failover": [{}],
            "failover_policy": {{"failures": 1, "failed_after_ms": 1000}},
            "failback": false}}"#,
        dest(primary),
        dest(backup)
    ))
    .await;
    // A second pair that replays land in (its destination is never up: they stay pending).
    let nowhere = ports::tcp_on(&ip);
    h.add(&common::line_pair("copy", (&ip, other_src), (&ip, nowhere))).await;

    // 1 … 5; the receiver refuses 3 once.
    send(&ip, src, 1..=5).await;
    iobp_testkit::wait::until_async(20, "1 … 5 delivered", || {
        first.got.lock().expect("lock").len() >= 5
    })
    .await;
    let t3 = trace_delivered(&h, "lab", 3).await;
    assert_eq!(
        kinds(&t3),
        [TraceKind::Stored, TraceKind::Refused, TraceKind::Delivered],
        "{t3:#?}"
    );
    assert!(t3[0].peer.as_deref().is_some_and(|p| p.starts_with("127.")), "{t3:#?}");
    assert_eq!(t3[1].ack.as_deref(), Some("AE no such patient"));
    assert_eq!(t3[2].ack.as_deref(), Some("AA"));
    let primary_route = "the primary destination (tcp_client)";
    assert_eq!(t3[1].route.as_deref(), Some(primary_route));
    assert_eq!(t3[2].route.as_deref(), Some(primary_route));
    assert!(t3[1].t <= t3[2].t, "in time order: {t3:#?}");

    // The primary stops answering: 6 times out there, and the backup delivers it.
    first.silent.store(true, Ordering::SeqCst);
    send(&ip, src, 6..=6).await;
    iobp_testkit::wait::until_async(20, "6 delivered by the backup", || {
        second.got.lock().expect("lock").contains(&"6".to_string())
    })
    .await;
    let t6 = trace_delivered(&h, "lab", 6).await;
    let k6 = kinds(&t6);
    assert_eq!(k6.first(), Some(&TraceKind::Stored), "{t6:#?}");
    assert_eq!(k6.last(), Some(&TraceKind::Delivered), "{t6:#?}");
    let returned = t6.iter().find(|e| e.k == TraceKind::Returned).expect("a failed attempt");
    assert_eq!(returned.route.as_deref(), Some(primary_route));
    assert!(
        returned.err.as_deref().is_some_and(|e| e.contains("no acknowledgement")),
        "{returned:?}"
    );
    let done = t6.last().expect("delivered");
    assert_eq!(done.route.as_deref(), Some("backup destination 1 (tcp_client)"));
    assert_eq!(done.ack.as_deref(), Some("AA"));

    // Replay 3 into the other pair: each trace names the other side.
    let sel = ReplaySelection { from_seq: Some(3), to_seq: Some(3), ..Default::default() };
    let out = h.engine.replay("lab", sel, Some("copy")).await.expect("replay");
    let (copy_seq, _) = out.new_seqs.expect("replayed");
    let t3 = trace_delivered(&h, "lab", 3).await;
    let copied = t3.last().expect("events");
    assert_eq!(copied.k, TraceKind::Copied, "{t3:#?}");
    assert_eq!((copied.pair.as_deref(), copied.seq), (Some("copy"), Some(copy_seq)));
    let tc = trace(&h, "copy", copy_seq).await;
    assert_eq!(kinds(&tc), [TraceKind::CopyOf], "{tc:#?}");
    assert_eq!((tc[0].pair.as_deref(), tc[0].seq), (Some("lab"), Some(3)));
    assert_eq!(tc[0].err.as_deref(), Some("replay"));

    // After a restart everything is still there, and the copy still waiting for delivery
    // has the restart in its trace.
    let before = trace(&h, "lab", 6).await;
    h = h.restart().await;
    assert_eq!(trace(&h, "lab", 6).await, before, "the trace survives a restart");
    let tc = trace(&h, "copy", copy_seq).await;
    assert_eq!(kinds(&tc), [TraceKind::CopyOf, TraceKind::Started], "{tc:#?}");
    assert_eq!(tc[1].err.as_deref(), Some("the instance started"));
    // A message that was never stored has no trace.
    assert!(trace(&h, "lab", 1000).await.is_empty());
}

/// A message the destination cannot carry: its trace says so (parked messages: see
/// `dead_letter.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeliverable_message_is_in_its_trace() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    // Lines in, lines out: a line with the destination's delimiter in it cannot go.
    let r = iobp_testkit::receiver::AsyncReceiver::start((ip.as_str(), dst));
    h.add(&format!(
        r#"{{"id": "lines", "source": {{"type": "tcp_server", "host": "{ip}", "port": {src},
              "framing": {{"type": "stx_etx"}}}},
            "destination": {{"type": "tcp_client", "host": "{ip}", "port": {dst},
              "framing": {{"type": "line"}}}}}}"#
    ))
    .await;
    let mut s = common::connect((&ip, src)).await;
    s.write_all(b"\x02one\x03\x02two\nhalves\x03\x02three\x03").await.expect("send");
    assert_eq!(r.wait_lines(2, 20).await, ["one", "three"]);
    let t2 = trace(&h, "lines", 2).await;
    assert_eq!(kinds(&t2), [TraceKind::Stored, TraceKind::Undeliverable], "{t2:#?}");
    let t3 = trace(&h, "lines", 3).await;
    assert_eq!(kinds(&t3), [TraceKind::Stored, TraceKind::Delivered], "{t3:#?}");
}
