//! Idle (`--idle-pairs`, default 1000), with an instance of its own: N pairs whose sources
//! wait for connections and whose destinations nobody listens on (they retry with the default
//! backoff, as a configured but unused site would). The time until every source port accepts,
//! at the first start (which imports the pairs) and at a restart on the same data directory;
//! then, after the restart, CPU, syncs, threads and memory over 10 s of doing nothing.
//! Targets: start <= 1 s, RSS <= 50 MB, threads <= 50, CPU <= 2 % of a core.
//!
//! The figures come from `/proc` (Linux); elsewhere they print as n/a.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::net::TcpStream;

use crate::instance::{Binary, Instance, cpu_time, line_framing, metric, rss_kib, stop, threads};
use crate::many::SYNCS;
use crate::report::{mib, show, target};

/// How long the idle phase sits idle.
const IDLE_SECS: u64 = 10;

/// Runs the phase in `dir` with `n` pairs: the target lines.
pub(crate) async fn run(
    binary: &Binary,
    dir: &Path,
    n: u64,
    size: usize,
) -> anyhow::Result<Vec<String>> {
    let idle = idle_run(binary, dir, n, size).await?;
    idle.print(n);
    #[allow(clippy::cast_precision_loss)]
    let threads = idle.threads.map_or(f64::NAN, |t| t as f64);
    Ok(vec![
        target("idle: first start", idle.first.ready.as_secs_f64(), 1.0, " s", 2),
        target("idle: restart", idle.restart.ready.as_secs_f64(), 1.0, " s", 2),
        target("idle: RSS", mib(idle.rss_kib), 50.0, " MB", 1),
        target("idle: threads", threads, 50.0, "", 0),
        target("idle: CPU, % of a core", idle.cpu_pct, 2.0, " %", 2),
    ])
}

/// How long until an instance ran and every source port accepted a connection.
struct Start {
    /// Until the instance printed that it runs.
    running: Duration,
    /// Until every source port accepted.
    ready: Duration,
}

/// What the idle phase measured.
struct IdleFigures {
    first: Start,
    restart: Start,
    cpu_pct: f64,
    syncs_per_s: f64,
    threads: Option<u64>,
    rss_kib: Option<u64>,
    peak_rss_kib: Option<u64>,
}

impl IdleFigures {
    fn print(&self, n: u64) {
        println!(
            "idle ({n} pairs, {IDLE_SECS} s):   CPU {:.2} % of a core  syncs {:.1}/s  threads {}  RSS {:.1} MB (peak {:.1} MB since the restart)  (destinations unreachable, retrying with the default backoff)",
            self.cpu_pct,
            self.syncs_per_s,
            show(self.threads),
            mib(self.rss_kib),
            mib(self.peak_rss_kib),
        );
    }
}

/// `n` pairs with nothing to do: started (importing them), stopped, started again, then
/// watched for [`IDLE_SECS`].
#[allow(clippy::cast_precision_loss)]
async fn idle_run(binary: &Binary, dir: &Path, n: u64, size: usize) -> anyhow::Result<IdleFigures> {
    let count = usize::try_from(n)?;
    // Held until just before the start, so nothing else takes them meanwhile. Nobody will
    // listen on the destination ports.
    let sources = iobp_testkit::ports::hold_ports(count)?;
    let dead = iobp_testkit::ports::hold_ports(count)?;
    let framing = line_framing(size);
    let pairs: Vec<String> = sources
        .iter()
        .zip(&dead)
        .enumerate()
        .map(|(i, ((src, _), (dst, _)))| {
            format!(
                r#"{{"id": "idle-{i}",
                    "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {framing}}},
                    "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, {framing}}}}}"#
            )
        })
        .collect();
    let ports: Vec<u16> = sources.iter().map(|(p, _)| *p).collect();
    let config = dir.join("bench-config.json");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&config, format!(r#"{{"channel_pairs": [{}]}}"#, pairs.join(",")))?;
    drop(sources);
    drop(dead);

    let first = timed_start(binary, dir, Some(&config), &ports).await?;
    let stop = stop(first.0).await?;
    let (inst, restart) = timed_start(binary, dir, None, &ports).await?;
    let pid = inst.child.id();
    // Printed now, so that the idle instance can be looked at (`perf top -p`) meanwhile.
    println!(
        "idle start ({n} pairs):  first start {:.2} s until every source port accepted ({:.2} s until running; imports the pairs), stop (SIGTERM) {:.2} s, restart {:.2} s ({:.2} s until running); now idle for {IDLE_SECS} s: pid {pid}",
        first.1.ready.as_secs_f64(),
        first.1.running.as_secs_f64(),
        stop.as_secs_f64(),
        restart.ready.as_secs_f64(),
        restart.running.as_secs_f64(),
    );
    // Scraping /metrics (a long page with this many pairs) costs CPU: outside the span.
    let syncs0 = metric(inst.ops, SYNCS).await?;
    let cpu0 = cpu_time(pid);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let el = t.elapsed();
    let cpu1 = cpu_time(pid);
    let threads = threads(pid);
    let (peak_rss_kib, rss_kib) = rss_kib(pid);
    let syncs1 = metric(inst.ops, SYNCS).await?;
    drop(inst);
    let cpu_pct = match (cpu0, cpu1) {
        (Some(a), Some(b)) => 100.0 * b.saturating_sub(a).as_secs_f64() / el.as_secs_f64(),
        _ => f64::NAN,
    };
    Ok(IdleFigures {
        first: first.1,
        restart,
        cpu_pct,
        syncs_per_s: syncs1.saturating_sub(syncs0) as f64 / el.as_secs_f64(),
        threads,
        rss_kib,
        peak_rss_kib,
    })
}

/// Starts an instance on `dir` and waits until every port in `ports` accepts a connection.
async fn timed_start(
    binary: &Binary,
    dir: &Path,
    config: Option<&Path>,
    ports: &[u16],
) -> anyhow::Result<(Instance, Start)> {
    let t = Instant::now();
    let inst = binary.spawn(dir, config)?;
    let running = t.elapsed();
    // One refused attempt per round, not one per port still waiting: the polling must not
    // take the CPU the instance needs to start.
    let mut waiting: Vec<u16> = ports.iter().rev().copied().collect();
    while let Some(&p) = waiting.last() {
        if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p))).await.is_ok() {
            waiting.pop();
            continue;
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!(
                "{} of {} source ports still refuse connections after 120 s",
                waiting.len(),
                ports.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((inst, Start { running, ready: t.elapsed() }))
}
