//! `iobufferpro bench`: measures a real instance (this binary, started as a child process)
//! with line messages over loopback. Prints figures; asserts nothing but exactly-once,
//! in-order delivery of every message it sends.
//!
//! Phases, on a plain `tcp_server` → `tcp_client` pair: throughput (as fast as the load
//! generator can send), latency at paced rates (10,000 and 1,000 msg/s; each message carries
//! its send time), backlog drain (destination down while messages arrive, then up), peak RSS
//! of the instance. Then the same throughput and 10,000 msg/s latency through a pair with
//! TLS on both sides (certificates from a lab PKI generated for the run), next to the plain
//! figures; serial → tcp throughput through a pseudo-terminal (Linux); the relay between this
//! instance and a second one (throughput, and latency at 10,000 msg/s, durable on both); the
//! failover time (the primary destination dies while 10,000 msg/s flow: how long until the
//! backup delivers, with default settings); re-delivery after a crash (a backlog drains, the
//! instance is killed with SIGKILL halfway and started again: how many messages arrive twice);
//! a UDP source at a paced 20,000 datagrams/s and in a burst (stored, refused and counted, or
//! lost uncounted); and — where `socat` is installed — the plain throughput phase through a
//! `socat` relay for comparison. Latency phases last 30 s by default: long enough to catch
//! periodic work (checkpoints every 100 ms, retention); p99.9 and the maximum are printed
//! beside p99, and next to the disk's own append + fdatasync latency measured in the same run
//! for as long (a virtual disk that stalls for 50 ms now and then bounds every tail above it).
//!
//! Then, each with instances of its own (`bench_many.rs`): many pairs — 10,000 msg/s spread
//! over `--pairs` pairs (200 by default; every message carries its pair, and each pair's
//! receiver checks exactly-once, in-order delivery), next to the same rate through one pair:
//! latency, CPU per message, fsyncs per second, threads and memory of the instance
//! (`--skip-many`); and idle — `--idle-pairs` pairs (1000) whose destinations nobody listens
//! on: the time until every source port accepts at the first start and at a restart, then CPU,
//! threads and memory over 10 s of idling (`--skip-idle`). Both end in a line per target
//! (met, or missed by how much). `--only many,idle` runs just these.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
pub struct BenchArgs {
    /// Messages in the throughput phase.
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// Message size in bytes, newline included.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// Messages buffered in the backlog phase.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Seconds per paced latency phase (and of the paced UDP phase, and of each run of the
    /// many-pairs phase).
    #[arg(long, default_value_t = 30)]
    pub(crate) latency_secs: u64,
    /// Where the instance keeps its data (default: a new directory under the system temp dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Skip the socat comparison.
    #[arg(long)]
    no_socat: bool,
    /// Messages in the serial (pseudo-terminal) phase; 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    serial_messages: u64,
    /// Skip the TLS phase.
    #[arg(long)]
    no_tls: bool,
    /// Skip the relay phase (a second instance).
    #[arg(long)]
    no_relay: bool,
    /// Skip the re-delivery after `kill -9` phase.
    #[arg(long)]
    no_crash: bool,
    /// Skip the UDP phases.
    #[arg(long)]
    no_udp: bool,
    /// Channel pairs in the many-pairs phase: 10,000 msg/s in all spread evenly over them,
    /// then through one pair for comparison (each for --latency-secs).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=99_999))]
    pub(crate) pairs: u64,
    /// Skip the many-pairs phase.
    #[arg(long)]
    skip_many: bool,
    /// Channel pairs in the idle phase (sources waiting, destinations unreachable).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) idle_pairs: u64,
    /// Skip the idle phase.
    #[arg(long)]
    skip_idle: bool,
    /// Run only these phases (comma-separated), none of the others.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Only>,
}

/// Phases `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// The many-pairs phase.
    Many,
    /// The idle phase.
    Idle,
}

/// What the receiving application saw.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) next: u64,
    pub(crate) count: u64,
    pub(crate) duplicates: u64,
    pub(crate) gaps: u64,
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) record_latency: bool,
    /// When the first line arrived (ns since the bench's epoch).
    first_at_ns: Option<u64>,
    /// Lines must carry this pair index ([`put_tagged`]); those that do not are counted in
    /// `misrouted` and otherwise ignored.
    pub(crate) tag: Option<u64>,
    pub(crate) misrouted: u64,
}

pub(crate) type Shared = Arc<Mutex<Received>>;

impl Received {
    /// A receiver's record that accepts only lines of pair `tag` ([`put_tagged`]).
    pub(crate) fn tagged(tag: u64) -> Shared {
        Arc::new(Mutex::new(Received { tag: Some(tag), ..Received::default() }))
    }
}

/// Epoch for the send timestamps carried in messages.
pub(crate) fn now_ns(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Writes message `seq` (12 digits, space, 20-digit send time, space, filler, newline).
fn put_message(out: &mut Vec<u8>, seq: u64, ts: u64, size: usize) {
    let start = out.len();
    out.resize(start + size, b'x');
    let m = &mut out[start..];
    put_digits(&mut m[0..12], seq);
    m[12] = b' ';
    put_digits(&mut m[13..33], ts);
    m[33] = b' ';
    m[size - 1] = b'\n';
}

/// Writes message `seq` of pair `tag` (< 100,000): [`put_message`] with the pair index in
/// the 5 digits after the send time, so a receiver can tell which pair a line came through.
pub(crate) fn put_tagged(out: &mut Vec<u8>, tag: u64, seq: u64, ts: u64, size: usize) {
    let start = out.len();
    put_message(out, seq, ts, size);
    put_digits(&mut out[start + 34..start + 39], tag);
}

fn put_digits(dst: &mut [u8], mut v: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + u8::try_from(v % 10).unwrap_or(0);
        v /= 10;
    }
}

fn get_digits(src: &[u8]) -> Option<u64> {
    src.iter().try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
}

/// The receiving application: accepts connections (the instance reconnects after the backlog
/// phase), with TLS if given, and checks every line.
pub(crate) async fn receiver(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    got: Shared,
    epoch: Instant,
) {
    // Connections live in this set: aborting the receiver closes them too (the application
    // going away).
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((conn, _)) = listener.accept().await else { return };
        let (got, tls) = (got.clone(), tls.clone());
        conns.spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(conn).await {
                        consume(s, &got, epoch).await;
                    }
                }
                None => consume(conn, &got, epoch).await,
            }
        });
    }
}

/// Reads one connection to its end, checking sequence numbers and recording latencies.
async fn consume<R: AsyncRead + Unpin>(mut conn: R, got: &Shared, epoch: Instant) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        take_lines(got, &mut carry, now_ns(epoch));
    }
}

/// A receiving application that acknowledges every line with an ACK byte (for destinations
/// with `ack: byte`).
async fn ack_receiver(listener: TcpListener, got: Shared, epoch: Instant) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((conn, _)) = listener.accept().await else { return };
        let got = got.clone();
        conns.spawn(async move {
            let (mut rd, mut wr) = conn.into_split();
            let mut buf = vec![0u8; 64 * 1024];
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                carry.extend_from_slice(&buf[..n]);
                let lines = take_lines(&got, &mut carry, now_ns(epoch));
                if wr.write_all(&vec![6u8; lines]).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Takes the complete lines out of `carry`, checking each; returns how many there were.
fn take_lines(got: &Shared, carry: &mut Vec<u8>, now: u64) -> usize {
    let mut g = got.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut start = 0;
    let mut lines = 0;
    while let Some(i) = memchr(b'\n', &carry[start..]) {
        let line = &carry[start..start + i];
        start += i + 1;
        lines += 1;
        let (Some(seq), Some(ts)) =
            (line.get(0..12).and_then(get_digits), line.get(13..33).and_then(get_digits))
        else {
            g.gaps += 1;
            continue;
        };
        if let Some(tag) = g.tag
            && line.get(34..39).and_then(get_digits) != Some(tag)
        {
            g.misrouted += 1;
            continue;
        }
        if g.count == 0 && g.first_at_ns.is_none() {
            g.first_at_ns = Some(now);
        }
        if seq < g.next {
            g.duplicates += 1;
            continue;
        }
        if seq > g.next {
            g.gaps += seq - g.next;
        }
        g.next = seq + 1;
        g.count += 1;
        if g.record_latency {
            g.latencies_ns.push(now.saturating_sub(ts));
        }
    }
    drop(g);
    carry.drain(..start);
    lines
}

fn memchr(b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == b)
}

async fn wait_count(got: &Shared, n: u64, limit: Duration) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let c = got.lock().unwrap_or_else(std::sync::PoisonError::into_inner).count;
        if c >= n {
            return Ok(t.elapsed());
        }
        if t.elapsed() > limit {
            bail!("only {c} of {n} messages arrived within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends `count` messages starting at `first` as fast as possible, in 64 KiB writes.
async fn blast<W: AsyncWrite + Unpin>(
    conn: &mut W,
    first: u64,
    count: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let per_write = (64 * 1024 / size).max(1) as u64;
    let mut buf = Vec::with_capacity(64 * 1024 + size);
    let mut seq = first;
    while seq < first + count {
        buf.clear();
        let ts = now_ns(epoch);
        for s in seq..(seq + per_write).min(first + count) {
            put_message(&mut buf, s, ts, size);
        }
        seq = (seq + per_write).min(first + count);
        conn.write_all(&buf).await.context("sending")?;
    }
    conn.flush().await.context("sending")?;
    Ok(())
}

/// Sends at `rate` messages per second for `secs`, each stamped with its own send time.
async fn paced<W: AsyncWrite + Unpin>(
    conn: &mut W,
    first: u64,
    rate: u64,
    secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<u64> {
    let total = rate * secs;
    // One tick per millisecond: the timer's resolution.
    let per_tick = (rate / 1000).max(1);
    let tick = Duration::from_micros(1_000_000 * per_tick / rate);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut buf = Vec::new();
    let mut seq = first;
    while seq < first + total {
        interval.tick().await;
        buf.clear();
        for _ in 0..per_tick {
            put_message(&mut buf, seq, now_ns(epoch), size);
            seq += 1;
        }
        conn.write_all(&buf).await.context("sending")?;
        // TLS holds written data in its record buffer until flushed.
        conn.flush().await.context("sending")?;
    }
    Ok(total)
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = (((sorted.len() - 1) as f64) * p).round() as usize;
    #[allow(clippy::cast_precision_loss)]
    let v = sorted[i] as f64;
    v / 1e6
}

/// A free port, never one this run handed out before: the system may give the same free port
/// twice while neither is bound yet (two pairs, or a pair and a portal, on one port).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let mut given = GIVEN_PORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.insert(port) {
            return Ok(port);
        }
    }
}

/// The ports [`free_port`] and [`hold_ports`] handed out in this run.
static GIVEN_PORTS: Mutex<std::collections::BTreeSet<u16>> =
    Mutex::new(std::collections::BTreeSet::new());

/// `n` distinct free ports, held (bound) until the caller drops the listeners: for more ports
/// than can be picked one by one without the system handing one out again meanwhile. Never a
/// port this run handed out before.
pub(crate) fn hold_ports(n: usize) -> anyhow::Result<Vec<(u16, std::net::TcpListener)>> {
    let mut given = GIVEN_PORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut held = Vec::with_capacity(n);
    let mut skipped = Vec::new();
    while held.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
        let port = l.local_addr()?.port();
        if given.insert(port) {
            held.push((port, l));
        } else {
            // Keep it bound so the system does not hand it out again in this loop.
            skipped.push(l);
        }
    }
    Ok(held)
}

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let t = Instant::now();
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) if t.elapsed() > Duration::from_secs(10) => return Err(e).context("connecting"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One value from the instance's `/metrics` (the bench has no HTTP client dependency, and
/// the public metrics need no login).
pub(crate) async fn metric(addr: SocketAddr, series: &str) -> anyhow::Result<u64> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse::<u64>().ok()))
        .with_context(|| format!("no {series} in /metrics"))
}

/// Peak and current resident memory of a process, in KiB (Linux).
pub(crate) fn rss_kib(pid: u32) -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets a process's peak RSS (`VmHWM`) to its current RSS (Linux; ignored elsewhere).
pub(crate) fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub(crate) struct Instance {
    pub(crate) child: Child,
    pub(crate) ops: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts this binary on `data` with the given channel pairs (a JSON array body).
pub(crate) fn start_instance(data: &std::path::Path, pairs: &[String]) -> anyhow::Result<Instance> {
    let config = data.join("bench-config.json");
    std::fs::create_dir_all(data)?;
    std::fs::write(&config, format!(r#"{{"channel_pairs": [{}]}}"#, pairs.join(",")))?;
    spawn_instance(data, Some(&config))
}

/// Starts this binary on `data`, applying the configuration document `config` if given (else
/// it runs the pairs stored there); returns once the instance says it is running.
pub(crate) fn spawn_instance(
    data: &std::path::Path,
    config: Option<&std::path::Path>,
) -> anyhow::Result<Instance> {
    let ops = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mgmt = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("run");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let mut child = cmd
        .arg("--data-dir")
        .arg(data)
        .args(["--ops-listen", &ops.to_string(), "--mgmt-listen", &mgmt.to_string()])
        .env("IOBP_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the instance")?;
    let stdout = child.stdout.take().context("instance stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    for _ in 0..5 {
        line.clear();
        reader.read_line(&mut line)?;
        if line.contains("running") || line.is_empty() {
            break;
        }
    }
    if !line.contains("running") {
        bail!("instance did not start: {line}");
    }
    Ok(Instance { child, ops })
}

/// A line-framed pair from `source` to a `tcp_client` destination.
pub(crate) fn pair_json(id: &str, source: &str, dst: u16, dst_tls: &str, size: usize) -> String {
    format!(
        r#"{{"id": "{id}", "retry": {{"initial_ms": 100, "max_ms": 500}},
            "source": {source},
            "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line", "max_message_bytes": {max}}}{dst_tls}}}}}"#,
        max = size.max(64)
    )
}

pub(crate) fn line_framing(size: usize) -> String {
    format!(r#""framing": {{"type": "line", "max_message_bytes": {}}}"#, size.max(64))
}

fn socat_available() -> bool {
    Command::new("socat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn main(args: &BenchArgs) -> anyhow::Result<()> {
    if args.size < 40 {
        bail!("--size must be at least 40 bytes (sequence number and timestamp)");
    }
    // The idle phase holds two ports per pair until its instance starts.
    let _ = crate::run::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(bench(args))
}

pub(crate) fn lock(got: &Shared) -> std::sync::MutexGuard<'_, Received> {
    got.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `n` messages from `first`, as fast as possible: messages per second and the time taken.
async fn throughput<W: AsyncWrite + Unpin>(
    conn: &mut W,
    got: &Shared,
    first: u64,
    n: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<(f64, Duration)> {
    let t = Instant::now();
    let before = lock(got).count;
    blast(conn, first, n, size, epoch).await?;
    wait_count(got, before + n, Duration::from_secs(600)).await?;
    let el = t.elapsed();
    #[allow(clippy::cast_precision_loss)]
    Ok((n as f64 / el.as_secs_f64(), el))
}

/// Paced sending for `secs` at `rate`; the sorted send → receive latencies and the count.
async fn latency<W: AsyncWrite + Unpin>(
    conn: &mut W,
    got: &Shared,
    first: u64,
    rate: u64,
    secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<(Vec<u64>, u64)> {
    {
        let mut g = lock(got);
        g.latencies_ns.clear();
        g.record_latency = true;
    }
    let before = lock(got).count;
    let sent = paced(conn, first, rate, secs, size, epoch).await?;
    wait_count(got, before + sent, Duration::from_secs(60)).await?;
    let mut lat = {
        let mut g = lock(got);
        g.record_latency = false;
        std::mem::take(&mut g.latencies_ns)
    };
    lat.sort_unstable();
    Ok((lat, sent))
}

fn print_latency(label: &str, rate: u64, lat: &[u64]) {
    println!(
        "{label} at {rate:>6} msg/s: p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms  ({} messages, send -> receive, durable in between)",
        percentile(lat, 0.5),
        percentile(lat, 0.99),
        percentile(lat, 0.999),
        percentile(lat, 1.0),
        lat.len()
    );
}

/// Exactly once and in order: `sent` messages numbered from 0, each received once.
fn verified(label: &str, got: &Shared, sent: u64) -> bool {
    let g = lock(got);
    println!(
        "verification ({label}): {} messages received, next expected {}, {} duplicates, {} missing or out of order",
        g.count, g.next, g.duplicates, g.gaps
    );
    g.count == sent && g.next == sent && g.gaps == 0
}

/// The TLS side of the bench: a lab PKI, the bench's own receiver (TLS server) and sender
/// (TLS client).
struct BenchTls {
    pki: iobp_tls::LabPki,
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl BenchTls {
    fn new(dir: &std::path::Path) -> anyhow::Result<BenchTls> {
        let pki = iobp_tls::generate_lab_pki(dir, &["localhost".into(), "127.0.0.1".into()])?;
        let acceptor =
            TlsAcceptor::from(iobp_tls::server_config(&pki.server_cert, &pki.server_key)?);
        let connector = TlsConnector::from(iobp_tls::client_config(&iobp_tls::ClientTls {
            ca: Some(pki.ca.clone()),
            ..iobp_tls::ClientTls::default()
        })?);
        Ok(BenchTls { pki, acceptor, connector })
    }

    async fn connect(
        &self,
        addr: SocketAddr,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = connect(addr).await?;
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")?;
        self.connector.connect(name, tcp).await.context("TLS handshake with the instance")
    }
}

/// A pseudo-terminal pair standing in for a serial instrument (Linux).
#[cfg(target_os = "linux")]
struct Pty {
    master: std::fs::File,
    _slave: std::os::fd::OwnedFd,
    path: PathBuf,
}

#[cfg(target_os = "linux")]
impl Pty {
    fn open() -> anyhow::Result<Pty> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        for fd in [&pty.master, &pty.slave] {
            let mut t = tcgetattr(fd)?;
            cfmakeraw(&mut t);
            tcsetattr(fd, SetArg::TCSANOW, &t)?;
        }
        let path = nix::unistd::ttyname(std::os::fd::AsFd::as_fd(&pty.slave))?;
        Ok(Pty { master: std::fs::File::from(pty.master), _slave: pty.slave, path })
    }
}

/// Writes `count` messages from `first` into the pseudo-terminal (the "instrument").
#[cfg(target_os = "linux")]
fn write_serial(
    master: &mut std::fs::File,
    first: u64,
    count: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    use std::io::Write;
    let per_write = (64 * 1024 / size).max(1) as u64;
    let mut buf = Vec::with_capacity(64 * 1024 + size);
    let mut seq = first;
    while seq < first + count {
        buf.clear();
        let ts = now_ns(epoch);
        let end = (seq + per_write).min(first + count);
        for s in seq..end {
            put_message(&mut buf, s, ts, size);
        }
        seq = end;
        master.write_all(&buf).context("writing to the pseudo-terminal")?;
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss, clippy::too_many_lines)] // figures for display; one linear script
async fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let owned_dir = args.data_dir.is_none();
    let data = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("iobufferpro-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let epoch = Instant::now();
    let size = args.size;
    println!(
        "ioBufferPro {} bench: {}-byte line messages over loopback, {} cores",
        env!("CARGO_PKG_VERSION"),
        size,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let picked = |phase| args.only.is_empty() || args.only.contains(&phase);
    let scaling = crate::bench_many::Phases {
        many: picked(Only::Many) && !args.skip_many,
        idle: picked(Only::Idle) && !args.skip_idle,
    };
    if !args.only.is_empty() {
        let ok = crate::bench_many::run(args, &data, epoch, scaling).await;
        if owned_dir {
            let _ = std::fs::remove_dir_all(&data);
        }
        if !ok? {
            bail!("delivery was not exactly once and in order");
        }
        return Ok(());
    }

    // The pairs: plain, TLS on both sides, serial (pty) → tcp.
    let (src, dst) = (free_port()?, free_port()?);
    let mut pairs = vec![pair_json(
        "bench",
        &format!(
            r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}}"#,
            line_framing(size)
        ),
        dst,
        "",
        size,
    )];
    let tls = if args.no_tls { None } else { Some(BenchTls::new(&data.join("bench-tls"))?) };
    let (tls_src, tls_dst) = (free_port()?, free_port()?);
    if let Some(t) = &tls {
        let (cert, key, ca) =
            (t.pki.server_cert.display(), t.pki.server_key.display(), t.pki.ca.display());
        pairs.push(pair_json(
            "tls",
            &format!(
                r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {tls_src}, {},
                    "tls": {{"enabled": true, "cert": "{cert}", "key": "{key}"}}}}"#,
                line_framing(size)
            ),
            tls_dst,
            &format!(r#", "tls": {{"enabled": true, "ca": "{ca}"}}"#),
            size,
        ));
    }
    #[cfg(target_os = "linux")]
    let pty = if args.serial_messages > 0 { Some(Pty::open()?) } else { None };
    let serial_dst = free_port()?;
    #[cfg(target_os = "linux")]
    if let Some(p) = &pty {
        pairs.push(pair_json(
            "serial",
            &format!(
                r#"{{"type": "serial", "port": "{}", "baud_rate": 115200, "flow_control": "RTS/CTS", {}}}"#,
                p.path.display(),
                line_framing(size)
            ),
            serial_dst,
            "",
            size,
        ));
    }

    // The relay: a second instance receives what this one pushes.
    let (relay_src, relay_dst) = (free_port()?, free_port()?);
    let relay = if args.no_relay {
        None
    } else {
        Some(RelayPeer::start(&data, relay_dst, size, epoch).await?)
    };
    if let Some(r) = &relay {
        pairs.push(r.sender_pair(relay_src, size));
    }
    // Failover: a primary destination and a backup, both acknowledging, default settings.
    let (ha_src, ha_primary, ha_backup) = (free_port()?, free_port()?, free_port()?);
    pairs.push(failover_pair(ha_src, ha_primary, ha_backup, size));

    let got: Shared = Arc::default();
    let listener = TcpListener::bind(localhost(dst)).await?;
    let mut recv_task = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    let inst = start_instance(&data, &pairs)?;
    let mut conn = connect(localhost(src)).await?;

    // Warm-up.
    blast(&mut conn, 0, 10_000, size, epoch).await?;
    wait_count(&got, 10_000, Duration::from_secs(30)).await?;
    let mut seq = 10_000;
    // The peak from here on is the message path's; a first start also hashes the initial
    // admin password (Argon2, 7 MiB for a moment), which is not what this measures.
    let (start_hwm, _) = rss_kib(inst.child.id());
    reset_peak_rss(inst.child.id());

    // Throughput.
    let n = args.messages;
    let (rate, el) = throughput(&mut conn, &got, seq, n, size, epoch).await?;
    seq += n;
    println!(
        "throughput (durable):   {rate:>12.0} msg/s  {:>8.1} MB/s   ({n} messages in {:.2} s)",
        rate * size as f64 / 1e6,
        el.as_secs_f64()
    );

    // The disk's own append + fdatasync, paced like the latency phases, for the same time: what
    // the latency figures below can at best be.
    let disk = disk_baseline(&data, 1_000, args.latency_secs).await?;
    println!(
        "disk alone at    1000/s: p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms  ({} appends of 100 bytes + fdatasync in the data directory: the floor of the figures below)",
        percentile(&disk, 0.5),
        percentile(&disk, 0.99),
        percentile(&disk, 0.999),
        percentile(&disk, 1.0),
        disk.len()
    );

    // Latency at paced rates.
    let mut plain_p99 = f64::NAN;
    for r in [10_000u64, 1_000] {
        let (lat, sent) = latency(&mut conn, &got, seq, r, args.latency_secs, size, epoch).await?;
        seq += sent;
        print_latency("latency", r, &lat);
        if r == 10_000 {
            plain_p99 = percentile(&lat, 0.99);
        }
    }

    // Backlog: the destination goes away while messages arrive, then comes back.
    recv_task.abort();
    let _ = (&mut recv_task).await;
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
    let before = lock(&got).count;
    let listener = TcpListener::bind(localhost(dst)).await?;
    let t = Instant::now();
    let _recv_task = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    wait_count(&got, before + m, Duration::from_secs(600)).await?;
    let el = t.elapsed();
    println!(
        "backlog drain:          {:>12.0} msg/s  ({m} buffered messages delivered in {:.2} s after the destination came back; includes reconnect)",
        m as f64 / el.as_secs_f64(),
        el.as_secs_f64()
    );
    let (hwm, rss) = rss_kib(inst.child.id());
    let mb = |k: Option<u64>| k.map_or("n/a".into(), |k| format!("{:.1} MB", k as f64 / 1024.0));
    println!(
        "memory of the instance: peak RSS {} during the phases above, RSS now {} (peak at start {}, with the first-start password hashing)",
        mb(hwm),
        mb(rss),
        mb(start_hwm)
    );
    let mut ok = verified("plain", &got, seq);
    drop(conn);

    // TLS on both sides of a pair, next to the plain figures above.
    if let Some(t) = &tls {
        let got_tls: Shared = Arc::default();
        let listener = TcpListener::bind(localhost(tls_dst)).await?;
        let _tls_recv =
            tokio::spawn(receiver(listener, Some(t.acceptor.clone()), got_tls.clone(), epoch));
        let mut conn = t.connect(localhost(tls_src)).await?;
        blast(&mut conn, 0, 10_000, size, epoch).await?;
        wait_count(&got_tls, 10_000, Duration::from_secs(30)).await?;
        let mut seq = 10_000;
        let (tls_rate, el) = throughput(&mut conn, &got_tls, seq, n, size, epoch).await?;
        seq += n;
        println!(
            "TLS throughput:         {tls_rate:>12.0} msg/s  {:>8.1} MB/s   ({n} messages in {:.2} s; TLS 1.3 in and out)",
            tls_rate * size as f64 / 1e6,
            el.as_secs_f64()
        );
        let (lat, sent) =
            latency(&mut conn, &got_tls, seq, 10_000, args.latency_secs, size, epoch).await?;
        seq += sent;
        print_latency("TLS latency", 10_000, &lat);
        let tls_p99 = percentile(&lat, 0.99);
        println!(
            "TLS vs plain:           throughput {:.0} % of plain (costs {:.0} %, target <= 30 %), p99 at 10,000 msg/s {tls_p99:.3} ms vs {plain_p99:.3} ms",
            100.0 * tls_rate / rate,
            100.0 * (1.0 - tls_rate / rate)
        );
        ok &= verified("TLS", &got_tls, seq);
    }

    // Serial → tcp through a pseudo-terminal.
    #[cfg(target_os = "linux")]
    if let Some(mut p) = pty {
        let got_serial: Shared = Arc::default();
        let listener = TcpListener::bind(localhost(serial_dst)).await?;
        let _serial_recv = tokio::spawn(receiver(listener, None, got_serial.clone(), epoch));
        let k = args.serial_messages;
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            write_serial(&mut p.master, 0, 10_000, size, epoch)?;
            // The measured part starts once the warm-up has arrived.
            go_rx.recv().context("bench stopped")?;
            write_serial(&mut p.master, 10_000, k, size, epoch)?;
            Ok::<Pty, anyhow::Error>(p)
        });
        wait_count(&got_serial, 10_000, Duration::from_secs(30)).await?;
        let t = Instant::now();
        go_tx.send(()).context("pty writer stopped")?;
        wait_count(&got_serial, 10_000 + k, Duration::from_secs(600)).await?;
        let el = t.elapsed();
        let _pty = writer.join().map_err(|_| anyhow::anyhow!("pty writer panicked"))??;
        println!(
            "serial (pty) -> tcp:    {:>12.0} msg/s  {:>8.1} MB/s   ({k} messages in {:.2} s; a pseudo-terminal has no baud rate, a real line is far slower)",
            k as f64 / el.as_secs_f64(),
            k as f64 * size as f64 / 1e6 / el.as_secs_f64(),
            el.as_secs_f64()
        );
        ok &= verified("serial", &got_serial, 10_000 + k);
    }
    if let Some(r) = &relay {
        ok &= relay_phase(r, relay_src, n, args.latency_secs, size, epoch).await?;
    }
    failover_phase(ha_src, ha_primary, ha_backup, size, epoch).await?;
    drop(inst);
    drop(relay);
    if !args.no_crash {
        redelivery_phase(&data, args.backlog, size, epoch).await?;
    }
    if !args.no_udp {
        udp_phase(&data, 20_000, args.latency_secs, 100_000, size, epoch).await?;
    }
    ok &= crate::bench_many::run(args, &data, epoch, scaling).await?;
    if owned_dir {
        let _ = std::fs::remove_dir_all(&data);
    }

    if args.no_socat {
        println!("socat comparison: skipped (--no-socat)");
    } else if socat_available() {
        let socat_rate = socat_throughput(n, size).await?;
        println!(
            "socat relay (no storage): {socat_rate:>10.0} msg/s  {:>8.1} MB/s   -> ioBufferPro reaches {:.0} % of socat",
            socat_rate * size as f64 / 1e6,
            100.0 * rate / socat_rate
        );
    } else {
        println!("socat comparison: skipped (socat is not installed; apt-get install socat)");
    }
    if !ok {
        bail!("delivery was not exactly once and in order");
    }
    Ok(())
}

/// The receiving instance of the relay phase.
struct RelayPeer {
    inst: Instance,
    password: String,
    got: Shared,
    _receiver: tokio::task::JoinHandle<()>,
}

impl RelayPeer {
    /// Starts the second instance: a relay source (channel `bench`) to a receiver on `dst`.
    async fn start(
        data: &std::path::Path,
        dst: u16,
        size: usize,
        epoch: Instant,
    ) -> anyhow::Result<RelayPeer> {
        let dir = data.join("relay-receiver");
        let source = r#"{"type": "remote_icombuffer", "channel_id": "bench"}"#;
        // A relay user granted push into `bench`, stored before the instance starts (the
        // instance then creates no first-start admin; the bench needs none).
        let password = "bench-relay-password".to_string();
        {
            std::fs::create_dir_all(&dir)?;
            let store = iobp_store::Store::open(&dir)?;
            let hash = iobp_web::auth::Passwords::new()
                .hash(&password)
                .await
                .map_err(|e| anyhow::anyhow!("hashing the relay password: {e:?}"))?;
            store.create_user("bench-relay", &hash, iobp_store::Role::Relay, false)?;
            let grant = iobp_store::RelayGrant {
                channel_id: "bench".into(),
                direction: iobp_store::RelayDirection::Push,
            };
            store.set_relay_grants("bench-relay", &[grant])?;
        }
        let inst = start_instance(&dir, &[pair_json("relay-in", source, dst, "", size)])?;
        let got: Shared = Arc::default();
        let listener = std::net::TcpListener::bind(("127.0.0.1", dst))?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let receiver = tokio::spawn(receiver(listener, None, got.clone(), epoch));
        Ok(RelayPeer { inst, password, got, _receiver: receiver })
    }

    /// The sending instance's pair: TCP in, relayed to this instance.
    fn sender_pair(&self, src: u16, size: usize) -> String {
        format!(
            r#"{{"id": "relay-out", "retry": {{"initial_ms": 100, "max_ms": 500}},
                "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}},
                "destination": {{"type": "remote_icombuffer", "url": "http://{}", "channel_id": "bench",
                                 "auth": {{"username": "bench-relay", "password": "{}"}}}}}}"#,
            line_framing(size),
            self.inst.ops,
            self.password
        )
    }
}

/// TCP in; out to a primary destination with one backup, both acknowledging; everything
/// else at its defaults (the failover target is for default settings).
fn failover_pair(src: u16, primary: u16, backup: u16, size: usize) -> String {
    let dest = |port: u16| {
        format!(
            r#"{{"type": "tcp_client", "host": "127.0.0.1", "port": {port}, "framing": {{"type": "line"}}, "ack": "byte"}}"#
        )
    };
    format!(
        // Its receivers come only when the phase starts, minutes later: a capped reconnect
        // backoff keeps the destination from sleeping through it. Failover settings: default.
        r#"{{"id": "ha", "retry": {{"initial_ms": 100, "max_ms": 500}},
            "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}},
            "destination": {}, "failover": [{}]}}"#,
        line_framing(size),
        dest(primary),
        dest(backup)
    )
}

/// Two instances: throughput and latency of a relay, durable on both sides.
#[allow(clippy::cast_precision_loss)]
async fn relay_phase(
    peer: &RelayPeer,
    src: u16,
    n: u64,
    latency_secs: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<bool> {
    let got = &peer.got;
    let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], src))).await?;
    blast(&mut conn, 0, 10_000, size, epoch).await?;
    wait_count(got, 10_000, Duration::from_secs(60)).await?;
    let (rate, el) = throughput(&mut conn, got, 10_000, n, size, epoch).await?;
    println!(
        "relay throughput:       {rate:>12.0} msg/s  {:>8.1} MB/s   ({n} messages in {:.2} s: TCP -> instance A -> relay -> instance B -> TCP, durable in both)",
        rate * size as f64 / 1e6,
        el.as_secs_f64()
    );
    let (lat, sent) =
        latency(&mut conn, got, 10_000 + n, 10_000, latency_secs, size, epoch).await?;
    print_latency("relay latency", 10_000, &lat);
    Ok(verified("relay", got, 10_000 + n + sent))
}

/// Failover with default settings: the time from the primary's death to the first message
/// delivered by the backup, while 10,000 msg/s flow.
#[allow(clippy::cast_precision_loss)]
async fn failover_phase(
    src: u16,
    primary: u16,
    backup: u16,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let (got_p, got_b): (Shared, Shared) = (Arc::default(), Arc::default());
    let p_task = tokio::spawn(ack_receiver(
        TcpListener::bind(("127.0.0.1", primary)).await?,
        got_p.clone(),
        epoch,
    ));
    let _b_task = tokio::spawn(ack_receiver(
        TcpListener::bind(("127.0.0.1", backup)).await?,
        got_b.clone(),
        epoch,
    ));
    let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], src))).await?;
    let sender = tokio::spawn(async move {
        paced(&mut conn, 0, 10_000, 3, size, epoch).await?;
        Ok::<TcpStream, anyhow::Error>(conn)
    });
    wait_count(&got_p, 5_000, Duration::from_secs(30)).await?;
    // The primary dies: its listener and connection go away at once.
    p_task.abort();
    let died = now_ns(epoch);
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(t) = lock(&got_b).first_at_ns {
            break t;
        }
        if Instant::now() > deadline {
            bail!("the backup received nothing within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let _conn = sender.await.context("failover sender")??;
    // Everything sent reaches one of the two (the backup starts with what was in flight).
    let total = 30_000;
    let t = Instant::now();
    while lock(&got_p).count + lock(&got_b).count < total {
        if t.elapsed() > Duration::from_secs(60) {
            bail!(
                "failover lost messages: {} + {} of {total}",
                lock(&got_p).count,
                lock(&got_b).count
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (p, b) = (lock(&got_p).count, lock(&got_b).count);
    println!(
        "failover:               first message on the backup {:.1} ms after the primary died (default settings; {p} messages to the primary, {b} to the backup, {} delivered twice)",
        first.saturating_sub(died) as f64 / 1e6,
        (p + b).saturating_sub(total)
    );
    Ok(())
}

/// Appends 100 bytes and syncs (`fdatasync`), `rate` times a second for `secs`, in a file of
/// the data directory: the disk's own latency, sorted, in ns.
async fn disk_baseline(dir: &std::path::Path, rate: u64, secs: u64) -> anyhow::Result<Vec<u64>> {
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

/// Re-delivery after a crash: `m` messages are buffered while the destination is away; it
/// comes, and halfway through the drain the instance is killed (SIGKILL) and started again.
/// What the receiver gets twice is what the last checkpoint did not cover.
async fn redelivery_phase(
    data: &std::path::Path,
    m: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (src, dst) = (free_port()?, free_port()?);
    let source = format!(
        r#"{{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, {}}}"#,
        line_framing(size)
    );
    let pair = pair_json("redeliver", &source, dst, "", size);
    let dir = data.join("redelivery");
    let inst = start_instance(&dir, std::slice::from_ref(&pair))?;
    let mut conn = connect(localhost(src)).await?;
    blast(&mut conn, 0, m, size, epoch).await?;
    let t = Instant::now();
    while metric(inst.ops, "iobp_messages_received_total{pair=\"redeliver\"}").await? < m {
        if t.elapsed() > Duration::from_secs(300) {
            bail!("the backlog was not stored within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);
    let got: Shared = Arc::default();
    let listener = TcpListener::bind(localhost(dst)).await?;
    let recv = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    wait_count(&got, m / 2, Duration::from_secs(600)).await?;
    drop(inst); // SIGKILL
    let before = lock(&got).count;
    let inst = start_instance(&dir, &[pair])?;
    wait_count(&got, m, Duration::from_secs(600)).await?;
    // Let late duplicates in flight arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (dups, gaps) = {
        let g = lock(&got);
        (g.duplicates, g.gaps)
    };
    println!(
        "re-delivery after kill -9 mid-drain: {dups} messages delivered twice ({before} of {m} delivered before the kill; target <= 20,000), {gaps} missing"
    );
    drop(inst);
    recv.abort();
    Ok(())
}

/// A UDP source → TCP pair: `rate` datagrams per second for `secs`, then a burst of `burst`
/// as fast as possible. Each datagram is stored, or refused and counted (buffer full, or
/// dropped by the kernel and counted from the socket's drop counter); "uncounted" is what
/// neither accounts for.
async fn udp_phase(
    data: &std::path::Path,
    rate: u64,
    secs: u64,
    burst: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<()> {
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let src = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let dst = free_port()?;
    let pair = pair_json(
        "udp",
        &format!(r#"{{"type": "udp", "host": "127.0.0.1", "port": {src}}}"#),
        dst,
        "",
        size,
    );
    let inst = start_instance(&data.join("udp"), &[pair])?;
    let got: Shared = Arc::default();
    let listener = TcpListener::bind(localhost(dst)).await?;
    let recv = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut first = 0;
    for (label, count, per_sec) in [("paced", rate * secs, rate), ("burst", burst, 0)] {
        let (before_stored, before_refused) = (
            metric(inst.ops, "iobp_messages_received_total{pair=\"udp\"}").await?,
            metric(inst.ops, "iobp_messages_refused_total{pair=\"udp\"}").await?,
        );
        let start = first;
        let sent =
            tokio::task::spawn_blocking(move || send_udp(src, start, count, per_sec, size, epoch))
                .await
                .context("udp sender")??;
        first += sent;
        // Everything still in the socket or waiting for its commit settles.
        let t = Instant::now();
        let (mut stored, mut refused);
        loop {
            stored = metric(inst.ops, "iobp_messages_received_total{pair=\"udp\"}").await?
                - before_stored;
            refused = metric(inst.ops, "iobp_messages_refused_total{pair=\"udp\"}").await?
                - before_refused;
            if stored + refused >= sent || t.elapsed() > Duration::from_secs(5) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let what = if per_sec > 0 {
            format!("{per_sec}/s for {secs} s")
        } else {
            "as fast as possible".into()
        };
        println!(
            "udp {label} ({what}): {sent} datagrams sent, {stored} stored, {refused} refused and counted, {} lost uncounted",
            sent.saturating_sub(stored + refused)
        );
    }
    drop(inst);
    recv.abort();
    Ok(())
}

/// Sends datagrams (a message without its newline each) from a thread; `per_sec` 0: unpaced.
fn send_udp(
    port: u16,
    first: u64,
    count: u64,
    per_sec: u64,
    size: usize,
    epoch: Instant,
) -> anyhow::Result<u64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(("127.0.0.1", port))?;
    let started = Instant::now();
    let mut buf = Vec::with_capacity(size);
    for i in 0..count {
        if let Some(us) = (i * 1_000_000).checked_div(per_sec) {
            let due = started + Duration::from_micros(us);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        }
        buf.clear();
        put_message(&mut buf, first + i, now_ns(epoch), size);
        // Loopback may refuse a send when its queue is full: that datagram was never sent.
        while sock.send(&buf[..size - 1]).is_err() {
            std::thread::yield_now();
        }
    }
    Ok(count)
}

/// The throughput phase through `socat TCP-LISTEN:a,fork TCP:127.0.0.1:b`.
#[allow(clippy::cast_precision_loss)]
async fn socat_throughput(n: u64, size: usize) -> anyhow::Result<f64> {
    let (a, b) = (free_port()?, free_port()?);
    let got: Shared = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", b)).await?;
    let epoch = Instant::now();
    let task = tokio::spawn(receiver(listener, None, got.clone(), epoch));
    let mut socat = Command::new("socat")
        .arg(format!("TCP-LISTEN:{a},bind=127.0.0.1,fork,reuseaddr"))
        .arg(format!("TCP:127.0.0.1:{b}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting socat")?;
    let result = async {
        let mut conn = connect(SocketAddr::from(([127, 0, 0, 1], a))).await?;
        blast(&mut conn, 0, 10_000, size, epoch).await?;
        wait_count(&got, 10_000, Duration::from_secs(30)).await?;
        let t = Instant::now();
        blast(&mut conn, 10_000, n, size, epoch).await?;
        wait_count(&got, 10_000 + n, Duration::from_secs(600)).await?;
        Ok::<f64, anyhow::Error>(n as f64 / t.elapsed().as_secs_f64())
    }
    .await;
    let _ = socat.kill();
    let _ = socat.wait();
    task.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_requested_size_and_parse_back() {
        let mut b = Vec::new();
        put_message(&mut b, 42, 123_456_789, 100);
        assert_eq!(b.len(), 100);
        assert_eq!(b[99], b'\n');
        assert_eq!(get_digits(&b[0..12]), Some(42));
        assert_eq!(get_digits(&b[13..33]), Some(123_456_789));
    }

    #[test]
    fn tagged_messages_carry_their_pair_and_are_checked_against_it() {
        let mut b = Vec::new();
        put_tagged(&mut b, 7, 0, 5, 40);
        put_tagged(&mut b, 7, 1, 6, 40);
        put_tagged(&mut b, 8, 2, 7, 40);
        assert_eq!(b.len(), 120);
        assert_eq!(get_digits(&b[34..39]), Some(7));
        assert_eq!(b[39], b'\n');
        let got = Received::tagged(7);
        assert_eq!(take_lines(&got, &mut b, 10), 3);
        let g = lock(&got);
        assert_eq!((g.count, g.next, g.gaps, g.misrouted), (2, 2, 0, 1));
    }
}
