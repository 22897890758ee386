//! NATS JetStream through a real server (Debian's `nats-server -js`, started by the bench on
//! loopback with a file store in the run's directory): TCP → instance (`nats` destination) →
//! JetStream stream `BENCH` → instance (`nats` source, durable pull consumer) → TCP.
//!
//! Printed: the rate into the stream with acknowledgements (the destination's delivered count,
//! from `/metrics`), the rate through both pairs end to end, the server's own figure for a
//! plain publisher (an async-nats loop keeping as many PubAcks outstanding as our destination
//! does), and latency at 1,000 msg/s end to end. Targets: ≥ 100,000 msg/s into the stream;
//! p99 ≤ 5 ms at 1,000 msg/s.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use iobp_testkit::Broker;
use tokio::net::TcpListener;

use crate::instance::{Binary, line_framing, metric, pair_json};
use crate::load::{blast, connect, latency, put_message, throughput};
use crate::receiver::{Shared, receiver, verified, wait_count};
use crate::report::{percentile, print_latency, target, target_at_least};

/// PubAcks our destination keeps outstanding (its default `in_flight`), and the plain
/// publisher too.
const WINDOW: usize = 256;

/// The server's own figure: `n` publishes with at most [`WINDOW`] PubAcks outstanding.
#[allow(clippy::cast_precision_loss)] // figures for display
async fn plain_publisher(js: &jetstream::Context, n: u64, size: usize) -> anyhow::Result<f64> {
    let mut line = Vec::with_capacity(size);
    let mut waiting = VecDeque::with_capacity(WINDOW);
    let t = Instant::now();
    for seq in 0..n {
        line.clear();
        put_message(&mut line, seq, 0, size);
        let ack = js.publish("plain.x", line.clone().into()).await?;
        waiting.push_back(ack);
        if waiting.len() >= WINDOW
            && let Some(a) = waiting.pop_front()
        {
            a.await?;
        }
    }
    for a in waiting {
        a.await?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Runs the phase with instances under `data`; whether every message arrived in order, and
/// the target lines.
#[allow(clippy::cast_precision_loss)] // figures for display
pub(crate) async fn run(
    binary: &Binary,
    data: &Path,
    n: u64,
    latency_secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<(bool, Vec<String>)> {
    let server = match Broker::try_nats("127.0.0.1", &[]) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("jetstream: skipped ({e} is not installed)");
            return Ok((true, Vec::new()));
        }
        started => started.context("starting nats-server")?,
    };
    let url = server.url();
    let js = jetstream::new(async_nats::connect(&url).await?);
    for (name, subject) in [("BENCH", "bench.>"), ("PLAIN", "plain.>")] {
        js.create_stream(jetstream::stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            storage: jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating stream {name}: {e}"))?;
    }
    let src = iobp_testkit::ports::free_port()?;
    let dst = iobp_testkit::ports::free_port()?;
    let got: Shared = Arc::default();
    let listener = std::net::TcpListener::bind(("127.0.0.1", dst))?;
    listener.set_nonblocking(true)?;
    let _receiver =
        tokio::spawn(receiver(TcpListener::from_std(listener)?, None, got.clone(), epoch));
    let out = format!(
        r#"{{"id": "nats-out", "retry": {{"initial_ms": 100, "max_ms": 500}},
            "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}},
            "destination": {{"type": "nats", "servers": ["{url}"], "subject": "bench.out", "stream": "BENCH"}}}}"#,
        line_framing(size)
    );
    let source = format!(
        r#"{{"type": "nats", "servers": ["{url}"], "subject": "bench.out", "stream": "BENCH"}}"#
    );
    let inn = pair_json("nats-in", &source, dst, "", size);
    let inst = binary.start(&data.join("jetstream"), &[inn, out])?;
    let sent_series = r#"iobp_messages_sent_total{pair="nats-out"}"#;

    let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], src))).await?;
    let warm = 10_000;
    blast(&mut conn, 0, warm, size, epoch).await?;
    wait_count(&got, warm, Duration::from_secs(60)).await?;

    let t = Instant::now();
    let into_task = tokio::spawn({
        let ops = inst.ops;
        async move {
            loop {
                if metric(ops, sent_series).await.unwrap_or(0) >= warm + n {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let (e2e, el) = throughput(&mut conn, &got, warm, n, size, epoch).await?;
    let into = n as f64 / into_task.await?.duration_since(t).as_secs_f64();
    println!(
        "jetstream into stream:  {into:>12.0} msg/s  (Done only on the PubAck, Nats-Msg-Id on each; {n} messages, file storage)"
    );
    println!(
        "jetstream end to end:   {e2e:>12.0} msg/s  ({n} messages in {:.2} s: TCP -> instance -> JetStream -> instance -> TCP, durable on our side both ways)",
        el.as_secs_f64()
    );
    let plain = plain_publisher(&js, n.min(200_000), size).await?;
    println!(
        "async-nats alone:       {plain:>12.0} msg/s  (JetStream publishes, {WINDOW} PubAcks outstanding: the server's own figure here)"
    );
    let (lat, sent) = latency(&mut conn, &got, warm + n, 1_000, latency_secs, size, epoch).await?;
    print_latency("jetstream latency", 1_000, &lat);
    let ok = verified("jetstream", &got, warm + n + sent);
    drop(inst);
    drop(server);
    let targets = vec![
        target_at_least("jetstream: into the stream, msg/s", into, 100_000.0, "", 0),
        target("jetstream: p99 at 1,000 msg/s end to end", percentile(&lat, 0.99), 5.0, " ms", 3),
    ];
    Ok((ok, targets))
}
