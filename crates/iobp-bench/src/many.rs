//! Many pairs (`--pairs`, default 200), with instances of their own: 10,000 msg/s in all,
//! spread evenly over N `tcp_server` → `tcp_client` pairs of one instance, for
//! `--latency-secs`; then the same total rate through one pair of a fresh instance, with the
//! same load generator, for as long. Every message carries its pair's index, its sequence
//! number in that pair and its send time; each pair has its own receiver, which checks that
//! its messages arrive exactly once and in order. Per run: send → receive latency, the
//! instance's CPU time per message, syncs per second (`iobp_disk_syncs_total`), threads, RSS
//! and peak RSS. Targets: p99 <= 2 ms, CPU per message <= 2x one pair's.
//!
//! The figures come from `/proc` (Linux); elsewhere they print as n/a.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::instance::{
    Binary, Instance, cpu_time, metric, pair_json, reset_peak_rss, rss_kib, tcp_source, threads,
};
use crate::load::{connect, now_ns, put_tagged};
use crate::receiver::{Received, Shared, lock, receiver};
use crate::report::{mib, ms, percentile, show, target};

/// Total rate of the many-pairs phase and of its one-pair comparison, in messages per second.
const MANY_RATE: u64 = 10_000;
/// Paced sending before the measured part (connections up, destinations connected).
const WARM_UP_SECS: u64 = 2;
/// The process-wide sync counter in `/metrics`.
pub(crate) const SYNCS: &str = "iobp_disk_syncs_total";

/// Runs `n` pairs, then one, each for `secs`, under `data`: whether every message arrived
/// exactly once and in order, and the target lines.
pub(crate) async fn run(
    binary: &Binary,
    data: &Path,
    n: u64,
    secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<(bool, Vec<String>)> {
    let many = load_run(binary, &data.join("many-pairs"), n, secs, size, epoch).await?;
    many.print(&format!("many pairs ({n} x {} msg/s)", per_pair_rate(n)));
    let one = load_run(binary, &data.join("many-pairs-one"), 1, secs, size, epoch).await?;
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
    let targets = vec![
        target(
            &format!("many pairs: p99 ({n} pairs)"),
            percentile(&many.latencies, 0.99),
            2.0,
            " ms",
            3,
        ),
        target("many pairs: CPU per message vs one pair", ratio, 2.0, "x", 2),
    ];
    Ok((many.in_order && one.in_order, targets))
}

/// `rate / n` for display (a pair may get one message more or less than another).
#[allow(clippy::cast_precision_loss)]
fn per_pair_rate(n: u64) -> String {
    let r = MANY_RATE as f64 / n as f64;
    if r.fract() == 0.0 { format!("{r:.0}") } else { format!("{r:.2}") }
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
    binary: &Binary,
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
    let (dsts, sources) =
        (iobp_testkit::ports::hold_ports(count)?, iobp_testkit::ports::hold_ports(count)?);
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
        pairs.push(pair_json(&format!("many-{i}"), &tcp_source(*src, size), dst, "", size));
    }
    let source_ports: Vec<u16> = sources.iter().map(|(p, _)| *p).collect();
    drop(sources);
    let inst = binary.start(dir, &pairs)?;
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
    // An older build (`--binary`) may not count syncs: then the figure is NaN.
    let syncs0 = metric(inst.ops, SYNCS).await.ok();
    let (cpu0, own0) = (cpu_time(pid), cpu_time(std::process::id()));
    let t = Instant::now();
    let max_lag = paced_many(&mut conns, &mut next, MANY_RATE, secs, size, epoch).await?;
    wait_all(&inst, &gots, &next, Duration::from_secs(60)).await?;
    let el = t.elapsed();
    let (cpu1, own1) = (cpu_time(pid), cpu_time(std::process::id()));
    let threads = threads(pid);
    let (peak_rss_kib, rss_kib) = rss_kib(pid);
    let syncs1 = metric(inst.ops, SYNCS).await.ok();
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
        syncs_per_s: match (syncs0, syncs1) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / el.as_secs_f64(),
            _ => f64::NAN,
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_pair_rate_shows_decimals_only_when_it_has_them() {
        assert_eq!(per_pair_rate(200), "50");
        assert_eq!(per_pair_rate(3), "3333.33");
    }
}
