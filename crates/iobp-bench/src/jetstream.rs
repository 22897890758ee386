//! NATS JetStream through a real server (Debian's `nats-server -js`, started by the bench on
//! loopback with a file store in its own directory): TCP → instance (`nats` destination) →
//! JetStream stream `BENCH` → instance (`nats` source, durable pull consumer) → TCP.
//! What is measured and printed: [`crate::through_broker`]; the server's own figure here is
//! an async-nats loop keeping as many PubAcks outstanding as our destination does.

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream;
use iobp_testkit::Broker;

use crate::instance::Binary;
use crate::load::put_message;
use crate::through_broker::{Route, measure};

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
    let route = Route {
        name: "jetstream",
        into: "into the stream",
        into_means: "Done only on the PubAck, Nats-Msg-Id on each, file storage",
        broker: "JetStream",
        destination: format!(
            r#"{{"type": "nats", "servers": ["{url}"], "subject": "bench.out", "stream": "BENCH"}}"#
        ),
        source: format!(
            r#"{{"type": "nats", "servers": ["{url}"], "subject": "bench.out", "stream": "BENCH"}}"#
        ),
    };
    let plain = || async {
        let plain = plain_publisher(&js, n.min(200_000), size).await?;
        Ok(format!(
            "{:<27}{plain:>12.0} msg/s  (JetStream publishes, {WINDOW} PubAcks outstanding: the server's own figure here)",
            "async-nats alone:"
        ))
    };
    let measured = measure(route, binary, data, n, latency_secs, size, epoch, plain).await;
    drop(server);
    measured
}
