//! The plain pair (`tcp_server` → `tcp_client`, line messages): throughput as fast as the
//! load generator can send, the disk's own append + fdatasync latency for comparison, latency
//! at 10,000 and 1,000 msg/s, backlog drain (the destination goes away while messages arrive,
//! then comes back), and the instance's peak memory; then every message checked.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::BenchArgs;
use crate::instance::{Instance, metric, pair_json, reset_peak_rss, rss_kib, tcp_source};
use crate::load::{blast, connect, latency, throughput};
use crate::receiver::{Shared, lock, receiver, verified, wait_count};
use crate::report::{percentile, print_latency};

/// What later phases compare themselves with.
pub(crate) struct Figures {
    /// Messages per second in the throughput phase.
    pub(crate) rate: f64,
    /// p99 latency at 10,000 msg/s, ms.
    pub(crate) p99_at_10k: f64,
    /// Every message arrived exactly once and in order.
    pub(crate) in_order: bool,
}

/// The plain pair's ports and its receiver, listening before the instance starts.
pub(crate) struct Phase {
    src: u16,
    dst: u16,
    got: Shared,
    recv_task: JoinHandle<()>,
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Phase {
    pub(crate) async fn prepare(epoch: Instant) -> anyhow::Result<Phase> {
        let src = iobp_testkit::ports::free_port()?;
        let dst = iobp_testkit::ports::free_port()?;
        let got: Shared = Arc::default();
        let listener = TcpListener::bind(localhost(dst)).await?;
        let recv_task = tokio::spawn(receiver(listener, None, got.clone(), epoch));
        Ok(Phase { src, dst, got, recv_task })
    }

    /// The pair, `bench`.
    pub(crate) fn pair(&self, size: usize) -> String {
        pair_json("bench", &tcp_source(self.src, size), self.dst, "", size)
    }

    #[allow(clippy::cast_precision_loss)] // figures for display
    pub(crate) async fn run(
        mut self,
        inst: &Instance,
        data: &Path,
        args: &BenchArgs,
        epoch: Instant,
    ) -> anyhow::Result<Figures> {
        let (size, got) = (args.size, &self.got);
        let mut conn = connect(localhost(self.src)).await?;

        // Warm-up.
        blast(&mut conn, 0, 10_000, size, epoch).await?;
        wait_count(got, 10_000, Duration::from_secs(30)).await?;
        let mut seq = 10_000;
        // The peak from here on is the message path's; a first start also hashes the initial
        // admin password (Argon2, 7 MiB for a moment), which is not what this measures.
        let (start_hwm, _) = rss_kib(inst.child.id());
        reset_peak_rss(inst.child.id());

        // Throughput.
        let n = args.messages;
        let (rate, el) = throughput(&mut conn, got, seq, n, size, epoch).await?;
        seq += n;
        println!(
            "throughput (durable):   {rate:>12.0} msg/s  {:>8.1} MB/s   ({n} messages in {:.2} s)",
            rate * size as f64 / 1e6,
            el.as_secs_f64()
        );

        // The disk's own append + fdatasync, paced like the latency phases, for the same time:
        // what the latency figures below can at best be.
        let disk = disk_baseline(data, 1_000, args.latency_secs).await?;
        println!(
            "disk alone at    1000/s: p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms  ({} appends of 100 bytes + fdatasync in the data directory: the floor of the figures below)",
            percentile(&disk, 0.5),
            percentile(&disk, 0.99),
            percentile(&disk, 0.999),
            percentile(&disk, 1.0),
            disk.len()
        );

        // Latency at paced rates.
        let mut p99_at_10k = f64::NAN;
        for r in [10_000u64, 1_000] {
            let (lat, sent) =
                latency(&mut conn, got, seq, r, args.latency_secs, size, epoch).await?;
            seq += sent;
            print_latency("latency", r, &lat);
            if r == 10_000 {
                p99_at_10k = percentile(&lat, 0.99);
            }
        }

        // Backlog: the destination goes away while messages arrive, then comes back.
        self.recv_task.abort();
        let _ = (&mut self.recv_task).await;
        let m = args.backlog;
        let ops = inst.ops;
        let wait_pending = |want: u64| async move {
            let t = Instant::now();
            loop {
                let pending = metric(ops, "iobp_messages_pending{pair=\"bench\"}").await?
                    + metric(ops, "iobp_messages_in_flight{pair=\"bench\"}").await?;
                let destination =
                    metric(ops, "iobp_status{pair=\"bench\",indicator=\"destination\"}").await?;
                // 1 is green: the destination must be down while the backlog builds.
                if pending >= want && destination != 1 {
                    return Ok::<u64, anyhow::Error>(pending);
                }
                if t.elapsed() > Duration::from_secs(300) {
                    bail!("backlog never reached {want}: {pending} pending");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        // Let the instance notice the receiver is gone before filling the backlog.
        tokio::time::sleep(Duration::from_millis(300)).await;
        blast(&mut conn, seq, m, size, epoch).await?;
        seq += m;
        wait_pending(m).await?;
        let before = lock(got).count;
        let listener = TcpListener::bind(localhost(self.dst)).await?;
        let t = Instant::now();
        let _recv_task = tokio::spawn(receiver(listener, None, got.clone(), epoch));
        wait_count(got, before + m, Duration::from_secs(600)).await?;
        let el = t.elapsed();
        println!(
            "backlog drain:          {:>12.0} msg/s  ({m} buffered messages delivered in {:.2} s after the destination came back; includes reconnect)",
            m as f64 / el.as_secs_f64(),
            el.as_secs_f64()
        );
        let (hwm, rss) = rss_kib(inst.child.id());
        let mb =
            |k: Option<u64>| k.map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0));
        println!(
            "memory of the instance: peak RSS {} during the phases above, RSS now {} (peak at start {}, with the first-start password hashing)",
            mb(hwm),
            mb(rss),
            mb(start_hwm)
        );
        let in_order = verified("plain", got, seq);
        Ok(Figures { rate, p99_at_10k, in_order })
    }
}

/// Appends 100 bytes and syncs (`fdatasync`), `rate` times a second for `secs`, in a file of
/// the data directory: the disk's own latency, sorted, in ns.
async fn disk_baseline(dir: &Path, rate: u64, secs: u64) -> anyhow::Result<Vec<u64>> {
    let path = dir.join("bench-disk-baseline");
    let lat = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u64>> {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        let started = Instant::now();
        let mut lat = Vec::with_capacity(usize::try_from(rate * secs).unwrap_or(0));
        for i in 0..rate * secs {
            let due = started + Duration::from_micros(i * 1_000_000 / rate.max(1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let t = Instant::now();
            f.write_all(&[b'x'; 100])?;
            f.sync_data()?;
            lat.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
        drop(f);
        let _ = std::fs::remove_file(&path);
        lat.sort_unstable();
        Ok(lat)
    })
    .await
    .context("disk baseline")??;
    Ok(lat)
}
