//! Pairs are created, edited, stopped, started and deleted at runtime while traffic flows;
//! one pair's trouble never affects another.

mod common;

use std::time::Duration;

use common::*;
use iobp_config::parse_pair;
use iobp_engine::{Color, EngineError};
use iobp_testkit::ports;
use iobp_testkit::receiver::AsyncReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends numbered lines continuously (one connection, reconnecting if the source restarts)
/// until told to stop; returns how many were written.
fn start_sender(
    ip: String,
    port: u16,
) -> (tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        'outer: while !*stop_rx.borrow() {
            let mut s = connect((&ip, port)).await;
            while !*stop_rx.borrow() {
                // Only count a line once it is fully written; a broken connection resends it.
                if s.write_all(format!("n{i:07}\n").as_bytes()).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue 'outer;
                }
                i += 1;
                if i.is_multiple_of(200) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            let _ = s.shutdown().await;
        }
        i
    });
    (stop_tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_and_edit_while_traffic_flows() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst, dst2) = (ports::tcp_on(&ip), ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    let got2 = AsyncReceiver::start((ip.as_str(), dst2));
    h.add(&line_pair("p", (&ip, src), (&ip, dst))).await;
    let (stop, sender) = start_sender(ip.clone(), src);
    h.wait_for("p", 10, "traffic", |s| s.sent > 1000).await;

    // Stop: both sides white, the buffer keeps what arrived; start: delivery resumes.
    h.engine.stop_pair("p").await.expect("stop");
    let s = h.snap("p");
    assert_eq!(
        (s.channel, s.source.color, s.destination.color),
        (Color::White, Color::White, Color::White)
    );
    assert!(!s.enabled);
    h.engine.start_pair("p").await.expect("start");
    h.wait_for("p", 10, "running again", |s| s.channel != Color::White && s.sent > 3000).await;

    // Edit: point the destination elsewhere; the pair restarts, the buffer is kept.
    let mut spec = h.engine.get("p").expect("spec");
    spec.destination =
        parse_pair(&line_pair("p", (&ip, src), (&ip, dst2))).expect("spec").destination;
    h.engine.update(spec).await.expect("edit");
    h.wait_for("p", 10, "delivering to the new destination", |_| !got2.lines().is_empty()).await;

    stop.send(true).expect("stop sender");
    let written = sender.await.expect("sender");
    let numbers = || -> (Vec<u64>, Vec<u64>) {
        let mut all: Vec<String> = got.lines();
        all.extend(got2.lines());
        let nums: Vec<u64> = all.iter().map(|l| l[1..].parse().expect("number")).collect();
        let mut unique = nums.clone();
        unique.sort_unstable();
        unique.dedup();
        (nums, unique)
    };
    // Lines still in the socket when the sender stopped are read, stored and delivered a
    // little later: wait until what arrived matches what was accepted, with nothing left.
    h.wait_for("p", 20, "every accepted message delivered", |s| {
        s.pending == 0
            && s.in_flight == 0
            && s.sent >= s.received
            && numbers().1.len() as u64 == s.received
    })
    .await;
    let snap = h.snap("p");
    // Lines the sender wrote into the socket while the pair was stopping were never read, so
    // never accepted (senders that need to know use an ack mode). Every accepted line is
    // delivered at least once, in order; duplicates only for in-flight lines, and counted.
    let (nums, unique) = numbers();
    assert_eq!(unique.len() as u64, snap.received, "every accepted message delivered: {snap:#?}");
    assert!(snap.received <= written && snap.received > 3000);
    let dups = (nums.len() - unique.len()) as u64;
    assert!(dups <= snap.retries, "{dups} duplicates but {} retries counted", snap.retries);
    let mut last = None;
    for n in &nums {
        // Redelivery restarts from an earlier point; otherwise numbers only go up.
        assert!(last.is_none_or(|l| *n > l || unique.binary_search(n).is_ok()));
        last = Some(*n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_pair_and_its_messages() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    h.add(&line_pair("gone", (&ip, src), (&ip, dst))).await;
    send_lines((&ip, src), (0..500).map(|i| format!("x{i}"))).await;
    h.wait_for("gone", 10, "stored", |s| s.received == 500 && s.pending == 500).await;
    let dir = h.dir.path().join("logs").join("gone");
    assert!(dir.exists());
    h.engine.delete("gone").await.expect("delete");
    assert!(h.engine.snapshot("gone").is_none());
    assert!(!dir.exists(), "buffered messages removed for good");
    assert!(
        std::fs::read_dir(h.dir.path().join("logs")).expect("ls").next().is_none(),
        "nothing left behind"
    );
    // The port is free again and the id can be reused, with an empty buffer.
    h.add(&line_pair("gone", (&ip, src), (&ip, dst))).await;
    assert_eq!(h.snap("gone").pending, 0);
    assert!(matches!(h.engine.delete("never").await, Err(EngineError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pairs_one_dead_destination_the_others_unaffected() {
    let h = Harness::new().await;
    let mut receivers = Vec::new();
    let mut sources = Vec::new();
    for i in 0..50 {
        let ip = ports::loopback();
        let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
        if i != 7 {
            receivers.push((i, AsyncReceiver::start((ip.as_str(), dst))));
        }
        h.add(&line_pair(&format!("p{i:02}"), (&ip, src), (&ip, dst))).await;
        sources.push((ip, src));
    }
    let mut tasks = Vec::new();
    for (i, (ip, src)) in sources.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            send_lines((&ip, src), (0..400).map(move |n| format!("pair{i} line{n}"))).await;
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    for (i, got) in &receivers {
        let lines = got.wait_lines(400, 30).await;
        assert_eq!(lines.len(), 400, "pair {i}");
        assert_eq!(lines[399], format!("pair{i} line399"));
    }
    let dead = h.snap("p07");
    assert_eq!((dead.received, dead.sent, dead.pending), (400, 0, 400));
    assert_eq!(dead.destination.color, Color::Red);
    assert_eq!(dead.channel, Color::Red);
    for s in h.engine.snapshots().iter().filter(|s| s.id != "p07") {
        assert_eq!((s.sent, s.channel), (400, Color::Green), "{}", s.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_leaves_the_running_pair_alone() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let got = AsyncReceiver::start((ip.as_str(), dst));
    h.add(&line_pair("keep", (&ip, src), (&ip, dst))).await;
    let mut broken = h.engine.get("keep").expect("spec");
    if let iobp_config::EndpointSpec::TcpServer(s) = &mut broken.source {
        s.port = 0;
    }
    let err = h.engine.update(broken).await.expect_err("refused");
    assert!(err.to_string().contains("source.port"), "{err}");
    // Still the old configuration, still running.
    send_lines((&ip, src), ["still here".to_string()]).await;
    assert_eq!(got.wait_lines(1, 10).await, vec!["still here"]);
    // A second pair on the same port is refused too, naming the field and the other pair.
    let err = h
        .engine
        .create(parse_pair(&line_pair("clash", (&ip, src), (&ip, dst))).expect("spec"))
        .await
        .expect_err("clash");
    let text = err.to_string();
    assert!(text.contains("source.port") && text.contains("keep"), "{text}");
}

/// Applying a document whose pair is unchanged (what `run --config` does at every start) leaves
/// the running pair alone: a sender's connection survives it and its next message arrives. A
/// changed pair restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_an_unchanged_pair_does_not_restart_it() {
    let h = Harness::new().await;
    let ip = ports::loopback();
    let (src, dst) = (ports::tcp_on(&ip), ports::tcp_on(&ip));
    let receiver = AsyncReceiver::start((ip.as_str(), dst));
    let spec = h.add(&line_pair("same", (&ip, src), (&ip, dst))).await;
    let mut sender = common::connect((&ip, src)).await;
    sender.write_all(b"before\n").await.expect("send");
    receiver.wait_lines(1, 10).await;
    let doc = iobp_config::ConfigDocument { settings: None, channel_pairs: vec![spec.clone()] };
    h.engine.apply(&doc).await.expect("apply");
    sender.write_all(b"after\n").await.expect("send on the same connection");
    assert_eq!(receiver.wait_lines(2, 10).await, ["before", "after"]);
    let connections = h.snap("same").source.connections;
    assert_eq!(connections, 1, "the sender's connection was never dropped");

    // A changed pair does restart (and drops its connections).
    let mut changed = spec;
    changed.name = "renamed".into();
    h.engine
        .apply(&iobp_config::ConfigDocument { settings: None, channel_pairs: vec![changed] })
        .await
        .expect("apply");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), sender.read(&mut buf))
        .await
        .expect("the restart closes the connection");
    assert!(matches!(n, Ok(0) | Err(_)), "closed: {n:?}");
}
