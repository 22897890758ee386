//! Figures for the durable log, printed, not asserted: `cargo bench -p iobp-log --bench log`.
//!
//! Every append measured here is durable (its commit resolved after fdatasync). Set
//! `IOBP_BENCH_DIR` to measure another disk; `IOBP_BENCH_QUICK=1` shrinks the run.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iobp_log::{Batch, Commit, Log, LogOptions};

fn quick() -> bool {
    std::env::var_os("IOBP_BENCH_QUICK").is_some()
}

fn scale(n: u64) -> u64 {
    if quick() { (n / 20).max(1) } else { n }
}

fn bench_root() -> tempfile::TempDir {
    let base = std::env::var_os("IOBP_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The disk's own fdatasync latency for a small append, as the log does it.
fn disk_fdatasync(dir: &Path) -> (Duration, Duration) {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe");
    let buf = [0x5Au8; 124];
    let mut lat = Vec::new();
    for _ in 0..scale(3000) {
        f.write_all(&buf).expect("write");
        let t = Instant::now();
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed());
    }
    drop(f);
    let _ = std::fs::remove_file(path);
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn open(dir: &Path) -> Log {
    let opts = LogOptions {
        budget: Some(iobp_log::StorageBudget::new(u64::MAX)),
        ..LogOptions::default()
    };
    Log::open(dir, opts).expect("open")
}

/// Batch API: one producer queues batches of `batch` records, keeping a few commits in flight.
fn batch_api(dir: &Path, size: usize, total: u64, batch: usize) -> f64 {
    let log = open(dir);
    let payloads: Vec<Vec<u8>> =
        (0..batch).map(|i| vec![u8::try_from(i % 251).unwrap_or(0); size]).collect();
    let mut window: VecDeque<Commit> = VecDeque::new();
    let t = Instant::now();
    let mut queued = 0;
    while queued < total {
        match log.try_append_batch(&payloads) {
            Ok(c) => {
                window.push_back(c);
                queued += batch as u64;
            }
            Err(iobp_log::Error::Backlogged) => {
                if let Some(c) = window.pop_front() {
                    c.wait().expect("durable");
                } else {
                    iobp_log::block_on(log.ready()).expect("ready");
                }
            }
            Err(e) => panic!("{e}"),
        }
        if window.len() > 8 {
            window.pop_front().map(|c| c.wait().expect("durable"));
        }
    }
    for c in window {
        c.wait().expect("durable");
    }
    let r = rate(queued, t.elapsed());
    log.delete().expect("delete");
    r
}

/// `tasks` concurrent appenders, each with at most `depth` single appends outstanding
/// (depth 1: each waits for its append to be durable before the next).
fn concurrent(dir: &Path, size: usize, total: u64, tasks: u64, depth: usize) -> f64 {
    let log = open(dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("rt");
    let per_task = total / tasks;
    let t = Instant::now();
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                let p = vec![7u8; size];
                let mut window = VecDeque::new();
                for _ in 0..per_task {
                    if depth == 1 {
                        log.append(&p).await.expect("append");
                        continue;
                    }
                    window.push_back(
                        log.append_queued(std::slice::from_ref(&p)).await.expect("queue"),
                    );
                    if window.len() >= depth {
                        window.pop_front().expect("commit").await.expect("durable");
                    }
                }
                for c in window {
                    c.await.expect("durable");
                }
            }));
        }
        for h in handles {
            h.await.expect("task");
        }
    });
    let r = rate(per_task * tasks, t.elapsed());
    log.delete().expect("delete");
    r
}

fn single_latency(dir: &Path) -> (Duration, Duration, Duration) {
    let log = open(dir);
    let p = [1u8; 100];
    let mut lat = Vec::new();
    for _ in 0..scale(5000) {
        let t = Instant::now();
        log.try_append(&p).expect("append").wait().expect("durable");
        lat.push(t.elapsed());
    }
    lat.sort();
    log.delete().expect("delete");
    (percentile(&lat, 0.5), percentile(&lat, 0.99), percentile(&lat, 0.999))
}

fn fill(dir: &Path, n: u64, size: usize) {
    let log = open(dir);
    let payloads: Vec<Vec<u8>> = (0..4096).map(|_| vec![3u8; size]).collect();
    let mut left = n;
    let mut window = VecDeque::new();
    while left > 0 {
        let k = usize::try_from(left.min(4096)).unwrap_or(4096);
        match log.try_append_batch(&payloads[..k]) {
            Ok(c) => {
                window.push_back(c);
                left -= k as u64;
            }
            Err(iobp_log::Error::Backlogged) => {
                if let Some(c) = window.pop_front() {
                    let _: Result<_, _> = Commit::wait(c);
                }
            }
            Err(e) => panic!("{e}"),
        }
        if window.len() > 8 {
            window.pop_front().map(|c| c.wait().expect("durable"));
        }
    }
    for c in window {
        c.wait().expect("durable");
    }
    log.close().expect("close");
}

fn drain(dir: &Path, n: u64) -> f64 {
    let log = open(dir);
    let mut batch = Batch::default();
    let mut got = 0;
    let t = Instant::now();
    while got < n {
        log.read_batch_into(&mut batch, 8192, 1 << 20).expect("read");
        let Some(last) = batch.last_seq() else { break };
        got += batch.len() as u64;
        log.ack_through(last).expect("ack");
    }
    let r = rate(got, t.elapsed());
    assert_eq!(got, n, "drained everything");
    log.close().expect("close");
    r
}

#[allow(clippy::cast_precision_loss)] // figures for display
fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let root = bench_root();
    let dir = root.path();
    println!(
        "iobp-log benchmark (dir {}, {} cores)",
        dir.display(),
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    let (f50, f99) = disk_fdatasync(dir);
    println!(
        "disk fdatasync (124 B append):       p50 {:>8.1} us   p99 {:>8.1} us",
        us(f50),
        us(f99)
    );

    let (l50, l99, l999) = single_latency(&dir.join("lat"));
    println!(
        "single append latency (100 B):       p50 {:>8.1} us   p99 {:>8.1} us   p99.9 {:>8.1} us   (p99 = {:.2} x disk p99)",
        us(l50),
        us(l99),
        us(l999),
        l99.as_secs_f64() / f99.as_secs_f64()
    );
    for size in [100usize, 1024] {
        let total = scale(if size == 100 { 4_000_000 } else { 1_000_000 });
        let r = batch_api(&dir.join(format!("batch{size}")), size, total, 1024);
        println!(
            "batch API, {size:>4} B, batches of 1024:  {r:>12.0} appends/s  ({:.0} MB/s payload)",
            r * size as f64 / 1e6
        );
    }
    for size in [100usize, 1024] {
        for tasks in [1u64, 4, 64] {
            let total = scale(match tasks {
                1 => 10_000,
                4 => 40_000,
                _ => 400_000,
            });
            let r = concurrent(&dir.join(format!("c{size}-{tasks}")), size, total, tasks, 1);
            println!(
                "{tasks:>2} concurrent appenders, {size:>4} B, each waits per append: {r:>10.0} appends/s"
            );
        }
        let total = scale(if size == 100 { 2_000_000 } else { 1_000_000 });
        let r = concurrent(&dir.join(format!("p{size}")), size, total, 64, 32);
        println!("64 concurrent appenders, {size:>4} B, 32 in flight each:    {r:>10.0} appends/s");
    }
    let n = scale(5_000_000);
    let drain_dir = dir.join("drain");
    fill(&drain_dir, n, 100);
    let r = drain(&drain_dir, n);
    println!("drain (read + ack), 100 B records:   {r:>12.0} records/s ({n} records)");
    drop(std::fs::remove_dir_all(&drain_dir));

    let n = scale(10_000_000);
    let recovery_dir = dir.join("recovery");
    let t = Instant::now();
    fill(&recovery_dir, n, 100);
    let fill_time = t.elapsed();
    let t = Instant::now();
    let log = open(&recovery_dir);
    let open_time = t.elapsed();
    let report = log.open_report().clone();
    let t = Instant::now();
    let first = log.read_batch(1, 1 << 20).expect("read").first_seq();
    let first_read = t.elapsed();
    println!(
        "recovery with {n} records buffered:  open {:>8.1} ms, first read {:>6.1} ms ({} segments; filled in {:.1} s)",
        open_time.as_secs_f64() * 1e3,
        first_read.as_secs_f64() * 1e3,
        report.segments,
        fill_time.as_secs_f64()
    );
    assert_eq!(first, Some(1));
    drop(log);
    let _keep: Arc<()> = Arc::new(());
}
