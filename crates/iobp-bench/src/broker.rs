//! MQTT through a real broker (Debian's `mosquitto`, started by the bench on loopback with its
//! store in memory, so the figures are ours and the broker's forwarding, not its disk):
//! TCP → instance (`mqtt` destination, `QoS` 1) → mosquitto → instance (`mqtt` source) → TCP.
//!
//! Printed: the rate into the broker with acknowledgements (the destination's delivered count,
//! from `/metrics`), the rate through both pairs end to end, the broker's own figure for a
//! plain publisher (`mosquitto_pub -q 1 -l`, the same messages), and latency at 1,000 msg/s end
//! to end. Targets: ≥ 100,000 msg/s into the broker; p99 ≤ 5 ms at 1,000 msg/s.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use iobp_testkit::{Broker, MosquittoConfig};

use crate::instance::{Binary, line_framing, metric, pair_json};
use crate::load::{blast, connect, latency, put_message, throughput};
use crate::receiver::{Shared, receiver, verified, wait_count};
use crate::report::{percentile, print_latency, target, target_at_least};

/// The broker's own figure: `mosquitto_pub` publishing `n` lines at `QoS` 1 from stdin.
#[allow(clippy::cast_precision_loss)] // figures for display
fn plain_publisher(port: u16, n: u64, size: usize) -> anyhow::Result<f64> {
    let mut lines = Vec::with_capacity(usize::try_from(n).unwrap_or(0) * size);
    for seq in 0..n {
        put_message(&mut lines, seq, 0, size);
    }
    let t = Instant::now();
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", "bench/plain", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto_pub")?;
    child.stdin.take().context("stdin")?.write_all(&lines)?;
    let status = child.wait()?;
    if !status.success() {
        bail!("mosquitto_pub failed: {status}");
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Runs the phase with instances under `data`; returns whether every message arrived in order
/// (at least once, no duplicates expected without faults) and the target lines.
#[allow(clippy::cast_precision_loss)] // figures for display
pub(crate) async fn run(
    binary: &Binary,
    data: &Path,
    n: u64,
    latency_secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<(bool, Vec<String>)> {
    // In memory: the figures are ours and the broker's forwarding, not its disk.
    let broker = match Broker::try_mosquitto(&MosquittoConfig::default()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("mqtt: skipped ({e} is not installed)");
            return Ok((true, Vec::new()));
        }
        started => started.context("starting mosquitto")?,
    };
    let url = broker.url();
    let src = iobp_testkit::ports::free_port()?;
    let dst = iobp_testkit::ports::free_port()?;
    let got: Shared = Arc::default();
    let listener = std::net::TcpListener::bind(("127.0.0.1", dst))?;
    listener.set_nonblocking(true)?;
    let _receiver =
        tokio::spawn(receiver(TcpListener::from_std(listener)?, None, got.clone(), epoch));
    let out = format!(
        r#"{{"id": "mqtt-out", "retry": {{"initial_ms": 100, "max_ms": 500}},
            "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}},
            "destination": {{"type": "mqtt", "url": "{url}", "topic": "bench/out", "in_flight": 512}}}}"#,
        line_framing(size)
    );
    let source = format!(r#"{{"type": "mqtt", "url": "{url}", "topic": "bench/out"}}"#);
    let inn = pair_json("mqtt-in", &source, dst, "", size);
    let inst = binary.start(&data.join("mqtt"), &[inn, out])?;
    let sent_series = r#"iobp_messages_sent_total{pair="mqtt-out"}"#;

    // Warm-up: the subscription is in place once these arrive.
    let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], src))).await?;
    let warm = 10_000;
    blast(&mut conn, 0, warm, size, epoch).await?;
    wait_count(&got, warm, Duration::from_secs(60)).await?;

    // Into the broker, acknowledged: the destination's delivered count.
    let t = Instant::now();
    let rate_task = tokio::spawn({
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
    let into = n as f64 / rate_task.await?.duration_since(t).as_secs_f64();
    println!(
        "mqtt into the broker:   {into:>12.0} msg/s  (QoS 1, Done only on PUBACK; {n} messages)"
    );
    println!(
        "mqtt end to end:        {e2e:>12.0} msg/s  ({n} messages in {:.2} s: TCP -> instance -> mosquitto -> instance -> TCP, durable on our side both ways)",
        el.as_secs_f64()
    );
    let plain = plain_publisher(broker.port(), n.min(200_000), size)?;
    println!(
        "mosquitto_pub alone:    {plain:>12.0} msg/s  (QoS 1 from stdin, the broker's own figure on this machine)"
    );

    let (lat, sent) = latency(&mut conn, &got, warm + n, 1_000, latency_secs, size, epoch).await?;
    print_latency("mqtt latency", 1_000, &lat);
    let ok = verified("mqtt", &got, warm + n + sent);
    drop(inst);
    drop(broker);
    let targets = vec![
        target_at_least("mqtt: into the broker, msg/s", into, 100_000.0, "", 0),
        target("mqtt: p99 at 1,000 msg/s end to end", percentile(&lat, 0.99), 5.0, " ms", 3),
    ];
    Ok((ok, targets))
}
