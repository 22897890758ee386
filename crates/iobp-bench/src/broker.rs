//! MQTT through a real broker (Debian's `mosquitto`, started by the bench on loopback with its
//! store in memory, so the figures are ours and the broker's forwarding, not its disk):
//! TCP → instance (`mqtt` destination, `QoS` 1) → mosquitto → instance (`mqtt` source) → TCP.
//! What is measured and printed: [`crate::through_broker`]; the broker's own figure here is
//! `mosquitto_pub -q 1 -l` with the same messages.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use iobp_testkit::{Broker, MosquittoConfig};

use crate::instance::Binary;
use crate::load::put_message;
use crate::through_broker::{Route, measure};

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
    let route = Route {
        name: "mqtt",
        into: "into the broker",
        into_means: "QoS 1, Done only on PUBACK",
        broker: "mosquitto",
        destination: format!(
            r#"{{"type": "mqtt", "url": "{url}", "topic": "bench/out", "in_flight": 512}}"#
        ),
        source: format!(r#"{{"type": "mqtt", "url": "{url}", "topic": "bench/out"}}"#),
    };
    let port = broker.port();
    let plain = || async move {
        let plain = plain_publisher(port, n.min(200_000), size)?;
        Ok(format!(
            "{:<27}{plain:>12.0} msg/s  (QoS 1 from stdin, the broker's own figure on this machine)",
            "mosquitto_pub alone:"
        ))
    };
    let measured = measure(route, binary, data, n, latency_secs, size, epoch, plain).await;
    drop(broker);
    measured
}
