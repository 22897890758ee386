//! The scaling phases of `iobufferpro bench` (the rest is in `bench.rs`, whose helpers these
//! use): how an instance copes with many channel pairs, busy and idle.
//!
//! - **Many pairs** (`--pairs`, default 200): 10,000 msg/s in all, spread evenly over N
//!   `tcp_server` → `tcp_client` pairs of one instance, for `--latency-secs`; then the same
//!   total rate through one pair of a fresh instance, with the same load generator, for as
//!   long. Every message carries its pair's index, its sequence number in that pair and its
//!   send time; each pair has its own receiver, which checks that its messages arrive exactly
//!   once and in order. Per run: send → receive latency, the instance's CPU time per message,
//!   syncs per second (`iobp_disk_syncs_total`), threads, RSS and peak RSS.
//! - **Idle** (`--idle-pairs`, default 1000): N pairs whose sources wait for connections and
//!   whose destinations nobody listens on (they retry with the default backoff, as a
//!   configured but unused site would). The time until every source port accepts, at the
//!   first start (which imports the pairs) and at a restart on the same data directory; then,
//!   after the restart, CPU, syncs, threads and memory over 10 s of doing nothing.
//!
//! At the end, a line per target: many-pairs p99 <= 2 ms and CPU per message <= 2x one
//! pair's; idle start <= 1 s, RSS <= 50 MB, threads <= 50, CPU <= 2 % of a core.
//!
//! The figures come from `/proc` (Linux); elsewhere they print as n/a.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::bench::{
    BenchArgs, Instance, Received, Shared, connect, hold_ports, line_framing, lock, metric, now_ns,
    pair_json, percentile, put_tagged, receiver, reset_peak_rss, rss_kib, spawn_instance,
    start_instance,
};

/// Total rate of the many-pairs phase and of its one-pair comparison, in messages per second.
const MANY_RATE: u64 = 10_000;
/// Paced sending before the measured part (connections up, destinations connected).
const WARM_UP_SECS: u64 = 2;
/// How long the idle phase sits idle.
const IDLE_SECS: u64 = 10;
/// The process-wide sync counter in `/metrics`.
const SYNCS: &str = "iobp_disk_syncs_total";

/// Which of these phases run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phases {
    pub(crate) many: bool,
    pub(crate) idle: bool,
}

/// Runs the chosen phases under `data`; whether every message arrived exactly once and in
/// order.
pub(crate) async fn run(
    args: &BenchArgs,
    data: &Path,
    epoch: Instant,
    phases: Phases,
) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut targets = Vec::new();
    if phases.many {
        let (size, secs) = (args.size, args.latency_secs);
        let n = args.pairs;
        let many = load_run(&data.join("many-pairs"), n, secs, size, epoch).await?;
        many.print(&format!("many pairs ({n} x {} msg/s)", per_pair_rate(n)));
        let one = load_run(&data.join("many-pairs-one"), 1, secs, size, epoch).await?;
        one.print(&format!("one pair   (1 x {MANY_RATE} msg/s)"));
        let ratio = many.cpu_per_msg_us / one.cpu_per_msg_us;
        println!(
            "many vs one pair:       CPU per message {n} pairs / 1 pair = {ratio:.2}x; syncs {:.0}/s vs {:.0}/s; threads {} vs {}; load generator at most {:.1} / {:.1} ms behind schedule, bench process {:.0} % / {:.0} % of a core",
            many.syncs_per_s,
            one.syncs_per_s,
            show(many.threads),
            show(one.threads),
            ms(many.max_lag),
            ms(one.max_lag),
            many.bench_cpu_pct,
            one.bench_cpu_pct,
        );
        ok &= many.in_order && one.in_order;
        targets.push(target(
            &format!("many pairs: p99 ({n} pairs)"),
            percentile(&many.latencies, 0.99),
            2.0,
            " ms",
            3,
        ));
        targets.push(target("many pairs: CPU per message vs one pair", ratio, 2.0, "x", 2));
    }
    if phases.idle {
        let idle = idle_run(&data.join("idle"), args.idle_pairs, args.size).await?;
        idle.print(args.idle_pairs);
        targets.push(target("idle: first start", idle.first.ready.as_secs_f64(), 1.0, " s", 2));
        targets.push(target("idle: restart", idle.restart.ready.as_secs_f64(), 1.0, " s", 2));
        targets.push(target("idle: RSS", mib(idle.rss_kib), 50.0, " MB", 1));
        #[allow(clippy::cast_precision_loss)]
        targets.push(target(
            "idle: threads",
            idle.threads.map_or(f64::NAN, |t| t as f64),
            50.0,
            "",
            0,
        ));
        targets.push(target("idle: CPU, % of a core", idle.cpu_pct, 2.0, " %", 2));
    }
    for t in targets {
        println!("{t}");
    }
    Ok(ok)
}

/// `rate / n` for display (a pair may get one message more or less than another).
#[allow(clippy::cast_precision_loss)]
fn per_pair_rate(n: u64) -> String {
    let r = MANY_RATE as f64 / n as f64;
    if r.fract() == 0.0 { format!("{r:.0}") } else { format!("{r:.2}") }
}

/// `target  <what> <= <limit><unit>: <value><unit>  met | missed by <excess><unit>`, with
/// `decimals` digits after the point.
fn target(what: &str, value: f64, limit: f64, unit: &str, decimals: usize) -> String {
    let verdict = if value.is_nan() {
        "unknown".to_string()
    } else if value <= limit {
        "met".to_string()
    } else {
        format!("missed by {:.decimals$}{unit}", value - limit)
    };
    format!("target  {what} <= {limit}{unit}: {value:.decimals$}{unit}  {verdict}")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| v.to_string())
}

/// What one load run measured.
struct LoadFigures {
    /// Send → receive, sorted, ns.
    latencies: Vec<u64>,
    messages: u64,
    cpu_per_msg_us: f64,
    syncs_per_s: f64,
    threads: Option<u64>,
    rss_kib: Option<u64>,
    peak_rss_kib: Option<u64>,
    in_order: bool,
    verification: String,
    max_lag: Duration,
    bench_cpu_pct: f64,
}

impl LoadFigures {
    fn print(&self, label: &str) {
        let lat = &self.latencies;
        println!(
            "{label}: p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms  CPU {:.1} µs/msg  syncs {:.0}/s  threads {}  RSS {:.1} MB (peak {:.1} MB)  in order: {} ({} messages; {})",
            percentile(lat, 0.5),
            percentile(lat, 0.99),
            percentile(lat, 0.999),
            percentile(lat, 1.0),
            self.cpu_per_msg_us,
            self.syncs_per_s,
            show(self.threads),
            mib(self.rss_kib),
            mib(self.peak_rss_kib),
            if self.in_order { "yes" } else { "NO" },
            self.messages,
            self.verification,
        );
    }
}

/// One instance with `n` pairs sharing [`MANY_RATE`] for `secs`, after a warm-up.
#[allow(clippy::cast_precision_loss)]
async fn load_run(
    dir: &Path,
    n: u64,
    secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<LoadFigures> {
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let count = usize::try_from(n)?;
    // Every port from the run's register, the sources' held until the instance starts: a
    // receiver bound to any free port could take a source port picked and released before.
    let (dsts, sources) = (hold_ports(count)?, hold_ports(count)?);
    // A receiver per pair, listening before the instance starts (its destinations connect at
    // once), each checking that only its pair's messages come, in order.
    let mut gots: Vec<Shared> = Vec::new();
    let mut receivers = tokio::task::JoinSet::new();
    let mut pairs = Vec::new();
    for (i, ((dst, listener), (src, _))) in (0..n).zip(dsts.into_iter().zip(&sources)) {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener).context("receiver listener")?;
        let got = Received::tagged(i);
        receivers.spawn(receiver(listener, None, got.clone(), epoch));
        gots.push(got);
        let source = format!(
            r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}}"#,
            line_framing(size)
        );
        pairs.push(pair_json(&format!("many-{i}"), &source, dst, "", size));
    }
    let source_ports: Vec<u16> = sources.iter().map(|(p, _)| *p).collect();
    drop(sources);
    let inst = start_instance(dir, &pairs)?;
    let pid = inst.child.id();
    let mut conns = Vec::new();
    for src in source_ports {
        conns.push(connect(localhost(src)).await?);
    }
    let mut next = vec![0u64; conns.len()];
    paced_many(&mut conns, &mut next, MANY_RATE, WARM_UP_SECS, size, epoch).await?;
    wait_all(&inst, &gots, &next, Duration::from_secs(60)).await?;

    for g in &gots {
        let mut g = lock(g);
        g.latencies_ns.clear();
        g.record_latency = true;
    }
    let before_next = next.clone();
    reset_peak_rss(pid);
    // Scraping /metrics costs the instance CPU: not inside the measured span.
    let syncs0 = metric(inst.ops, SYNCS).await?;
    let (cpu0, own0) = (cpu_time(pid), cpu_time(std::process::id()));
    let t = Instant::now();
    let max_lag = paced_many(&mut conns, &mut next, MANY_RATE, secs, size, epoch).await?;
    wait_all(&inst, &gots, &next, Duration::from_secs(60)).await?;
    let el = t.elapsed();
    let (cpu1, own1) = (cpu_time(pid), cpu_time(std::process::id()));
    let threads = threads(pid);
    let (peak_rss_kib, rss_kib) = rss_kib(pid);
    let syncs1 = metric(inst.ops, SYNCS).await?;
    let messages: u64 = next.iter().zip(&before_next).map(|(a, b)| a - b).sum();

    // Let anything sent twice arrive before the check.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::with_capacity(usize::try_from(messages).unwrap_or(0));
    let (mut received, mut duplicates, mut gaps, mut misrouted, mut bad_pairs) = (0, 0, 0, 0, 0);
    for (g, &sent) in gots.iter().zip(&next) {
        let mut g = lock(g);
        g.record_latency = false;
        latencies.append(&mut g.latencies_ns);
        received += g.count;
        duplicates += g.duplicates;
        gaps += g.gaps;
        misrouted += g.misrouted;
        if g.count != sent || g.next != sent || g.gaps + g.duplicates + g.misrouted > 0 {
            bad_pairs += 1;
        }
    }
    latencies.sort_unstable();
    drop(conns);
    drop(inst);
    receivers.shutdown().await;

    let cpu_per_msg_us = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 1e6 / messages.max(1) as f64,
        _ => f64::NAN,
    };
    let bench_cpu_pct = match (own0, own1) {
        (Some(a), Some(b)) => 100.0 * b.saturating_sub(a).as_secs_f64() / el.as_secs_f64(),
        _ => f64::NAN,
    };
    Ok(LoadFigures {
        latencies,
        messages,
        cpu_per_msg_us,
        syncs_per_s: syncs1.saturating_sub(syncs0) as f64 / el.as_secs_f64(),
        threads,
        rss_kib,
        peak_rss_kib,
        in_order: bad_pairs == 0,
        verification: format!(
            "{received} received in all since the warm-up began, {duplicates} twice, {gaps} missing or out of order, {misrouted} from another pair; {bad_pairs} of {n} pairs wrong"
        ),
        max_lag,
        bench_cpu_pct,
    })
}

/// Sends `rate` messages per second in all for `secs`, spread evenly over `conns` by one task
/// that wakes every millisecond and writes what is due: message g of the run goes to
/// connection g % n, so each connection gets rate / n per second, evenly spaced, and together
/// they make one even stream. `next` holds each connection's next sequence number. Returns how
/// far the generator fell behind its schedule at most (whether the load was the one asked for).
async fn paced_many(
    conns: &mut [TcpStream],
    next: &mut [u64],
    rate: u64,
    secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<Duration> {
    let n = conns.len() as u64;
    let total = rate * secs;
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); conns.len()];
    let mut due_conns: Vec<usize> = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let (mut sent, mut max_lag) = (0u64, Duration::ZERO);
    while sent < total {
        interval.tick().await;
        let now = started.elapsed();
        // Message g is due at g / rate seconds.
        let due = u64::try_from(now.as_micros() * u128::from(rate) / 1_000_000 + 1)
            .unwrap_or(u64::MAX)
            .min(total);
        if due <= sent {
            continue;
        }
        max_lag = max_lag.max(now.saturating_sub(Duration::from_micros(sent * 1_000_000 / rate)));
        for g in sent..due {
            let c = usize::try_from(g % n)?;
            if bufs[c].is_empty() {
                due_conns.push(c);
            }
            put_tagged(&mut bufs[c], c as u64, next[c], now_ns(epoch), size);
            next[c] += 1;
        }
        sent = due;
        for &c in &due_conns {
            conns[c].write_all(&bufs[c]).await.context("sending")?;
            bufs[c].clear();
        }
        due_conns.clear();
    }
    Ok(max_lag)
}

/// Waits until every pair's receiver has counted what was sent to it; if that takes longer
/// than `limit`, says what the instance reports for the first pairs still waiting.
async fn wait_all(
    inst: &Instance,
    gots: &[Shared],
    sent: &[u64],
    limit: Duration,
) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let behind: Vec<(usize, u64, u64)> = gots
            .iter()
            .zip(sent)
            .enumerate()
            .filter_map(|(i, (g, &s))| {
                let c = lock(g).count;
                (c < s).then_some((i, c, s))
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if t.elapsed() > limit {
            let mut why = String::new();
            for &(i, c, s) in behind.iter().take(5) {
                let m = |series: &str| {
                    let series = format!("{series}{{pair=\"many-{i}\"}}");
                    async move { metric(inst.ops, &series).await.map_or("?".into(), |v| v.to_string()) }
                };
                let _ = write!(
                    why,
                    "\n  pair many-{i}: {c} of {s} received; the instance: {} source connections, {} stored, {} sent, {} pending, {} destination connections",
                    m("iobp_source_connections").await,
                    m("iobp_messages_received_total").await,
                    m("iobp_messages_sent_total").await,
                    m("iobp_messages_pending").await,
                    m("iobp_destination_connections").await,
                );
            }
            bail!(
                "{} pairs still waiting for messages after {} s:{why}",
                behind.len(),
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
async fn idle_run(dir: &Path, n: u64, size: usize) -> anyhow::Result<IdleFigures> {
    let count = usize::try_from(n)?;
    // Held until just before the start, so nothing else takes them meanwhile. Nobody will
    // listen on the destination ports.
    let sources = hold_ports(count)?;
    let dead = hold_ports(count)?;
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

    let first = timed_start(dir, Some(&config), &ports).await?;
    let stop = stop(first.0).await?;
    let (inst, restart) = timed_start(dir, None, &ports).await?;
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
    dir: &Path,
    config: Option<&Path>,
    ports: &[u16],
) -> anyhow::Result<(Instance, Start)> {
    let t = Instant::now();
    let inst = spawn_instance(dir, config)?;
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

/// Stops an instance as a service manager would (SIGTERM) and waits until it exits.
async fn stop(mut inst: Instance) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &inst.child.id().to_string()])
        .status()
        .context("kill -TERM")?;
    if !status.success() {
        bail!("kill -TERM {} failed", inst.child.id());
    }
    while inst.child.try_wait()?.is_none() {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("the instance did not stop within 120 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(t.elapsed())
}

/// User + system CPU time of a process so far, all its threads, running and ended (Linux:
/// `/proc/<pid>/stat`, in clock ticks).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`,
    // after which comes field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on every common
/// Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Threads of a process (Linux: `/proc/<pid>/status`).
fn threads(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_say_met_or_by_how_much_they_were_missed() {
        assert!(target("p99", 1.5, 2.0, " ms", 3).ends_with("1.500 ms  met"));
        assert!(target("p99", 2.5, 2.0, " ms", 2).ends_with("missed by 0.50 ms"));
        assert!(target("threads", 1010.0, 50.0, "", 0).ends_with(": 1010  missed by 960"));
        assert!(target("threads", f64::NAN, 50.0, "", 0).ends_with("unknown"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_threads_and_cpu_time() {
        let me = std::process::id();
        assert!(threads(me).is_some_and(|t| t >= 1));
        assert!(cpu_time(me).is_some());
    }
}
