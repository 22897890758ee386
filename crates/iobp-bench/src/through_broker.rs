//! The measuring part of the broker phases (`broker` for MQTT, `jetstream`): one instance with
//! two pairs, TCP → instance (`out`: to the broker) → broker → instance (`in`: from it) → TCP.
//!
//! Printed: the rate into the broker with acknowledgements (the `out` pair's delivered count,
//! from `/metrics`), the rate end to end, the broker's own figure for a plain publisher (given
//! by the phase), and latency at 1,000 msg/s end to end. Targets: ≥ 100,000 msg/s into the
//! broker; p99 ≤ 5 ms at 1,000 msg/s.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::instance::{Binary, line_framing, metric, pair_json};
use crate::load::{blast, connect, latency, throughput};
use crate::receiver::{Shared, receiver, verified, wait_count};
use crate::report::{percentile, print_latency, target, target_at_least};

/// What a broker phase measures through.
pub(crate) struct Route<'a> {
    /// The phase's name in the figures and targets (`mqtt`, `jetstream`).
    pub name: &'a str,
    /// What "into the broker" is called (`into the broker`, `into the stream`).
    pub into: &'a str,
    /// What the into-the-broker figure means (printed after it).
    pub into_means: &'a str,
    /// The broker in the end-to-end line (`mosquitto`, `JetStream`).
    pub broker: &'a str,
    /// The `out` pair's destination (JSON).
    pub destination: String,
    /// The `in` pair's source (JSON).
    pub source: String,
}

/// Runs the two pairs under `data`, measures, and prints; `plain` measures the broker's own
/// figure (after the throughput run, before latency) and returns its printed line. Returns
/// whether every message arrived in order, and the target lines.
#[allow(clippy::cast_precision_loss, clippy::too_many_arguments)] // figures for display
pub(crate) async fn measure<P, F>(
    route: Route<'_>,
    binary: &Binary,
    data: &Path,
    n: u64,
    latency_secs: u64,
    size: usize,
    epoch: Instant,
    plain: P,
) -> anyhow::Result<(bool, Vec<String>)>
where
    P: FnOnce() -> F,
    F: Future<Output = anyhow::Result<String>>,
{
    let name = route.name;
    let src = iobp_testkit::ports::free_port()?;
    let dst = iobp_testkit::ports::free_port()?;
    let got: Shared = Arc::default();
    let listener = std::net::TcpListener::bind(("127.0.0.1", dst))?;
    listener.set_nonblocking(true)?;
    let _receiver =
        tokio::spawn(receiver(TcpListener::from_std(listener)?, None, got.clone(), epoch));
    let out = format!(
        r#"{{"id": "{name}-out", "retry": {{"initial_ms": 100, "max_ms": 500}},
            "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}},
            "destination": {}}}"#,
        line_framing(size),
        route.destination
    );
    let inn = pair_json(&format!("{name}-in"), &route.source, dst, "", size);
    let inst = binary.start(&data.join(name), &[inn, out])?;
    let sent_series = format!(r#"iobp_messages_sent_total{{pair="{name}-out"}}"#);

    // Warm-up: the subscription (or consumer) is in place once these arrive.
    let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], src))).await?;
    let warm = 10_000;
    blast(&mut conn, 0, warm, size, epoch).await?;
    wait_count(&got, warm, Duration::from_secs(60)).await?;

    // Into the broker, acknowledged: the `out` pair's delivered count.
    let t = Instant::now();
    let into_task = tokio::spawn({
        let ops = inst.ops;
        async move {
            loop {
                if metric(ops, &sent_series).await.unwrap_or(0) >= warm + n {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let (e2e, el) = throughput(&mut conn, &got, warm, n, size, epoch).await?;
    let into = n as f64 / into_task.await?.duration_since(t).as_secs_f64();
    let label = format!("{name} {}:", route.into);
    println!("{label:<27}{into:>12.0} msg/s  ({}; {n} messages)", route.into_means);
    let label = format!("{name} end to end:");
    println!(
        "{label:<27}{e2e:>12.0} msg/s  ({n} messages in {:.2} s: TCP -> instance -> {} -> instance -> TCP, durable on our side both ways)",
        el.as_secs_f64(),
        route.broker
    );
    println!("{}", plain().await?);

    let (lat, sent) = latency(&mut conn, &got, warm + n, 1_000, latency_secs, size, epoch).await?;
    print_latency(&format!("{name} latency"), 1_000, &lat);
    let ok = verified(name, &got, warm + n + sent);
    drop(inst);
    let targets = vec![
        target_at_least(&format!("{name}: {}, msg/s", route.into), into, 100_000.0, "", 0),
        target(
            &format!("{name}: p99 at 1,000 msg/s end to end"),
            percentile(&lat, 0.99),
            5.0,
            " ms",
            3,
        ),
    ];
    Ok((ok, targets))
}
