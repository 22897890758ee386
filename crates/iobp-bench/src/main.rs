//! `iobp-bench`: measures a real `iobufferpro` instance (the binary, started as a child
//! process; `--binary`, by default the one next to this executable) with line messages over
//! loopback. Prints figures; asserts nothing but exactly-once, in-order delivery of every
//! message it sends. Not part of the shipped binary: its dependencies (a pseudo-terminal, a
//! TLS client, the load generator) stay out of what ships.
//!
//! Phases, on a plain `tcp_server` → `tcp_client` pair ([`throughput`]): throughput (as fast
//! as the load generator can send), latency at paced rates (10,000 and 1,000 msg/s; each
//! message carries its send time), backlog drain (destination down while messages arrive,
//! then up), peak RSS of the instance. Then the same throughput and 10,000 msg/s latency
//! through a pair with TLS on both sides ([`tls`]; certificates from a lab PKI generated for
//! the run), next to the plain figures; serial → tcp throughput through a pseudo-terminal
//! ([`serial`], Linux); the relay between this instance and a second one ([`relay`]:
//! throughput, and latency at 10,000 msg/s, durable on both); the failover time
//! ([`failover`]: the primary destination dies while 10,000 msg/s flow: how long until the
//! backup delivers, with default settings); re-delivery after a crash ([`redelivery`]: a
//! backlog drains, the instance is killed with SIGKILL halfway and started again: how many
//! messages arrive twice); a UDP source at a paced 20,000 datagrams/s and in a burst
//! ([`udp`]: stored, refused and counted, or lost uncounted); and — where `socat` is
//! installed — the plain throughput phase through a `socat` relay for comparison ([`socat`]).
//! Latency phases last 30 s by default: long enough to catch periodic work (checkpoints every
//! 100 ms, retention); p99.9 and the maximum are printed beside p99, and next to the disk's
//! own append + fdatasync latency measured in the same run for as long (a virtual disk that
//! stalls for 50 ms now and then bounds every tail above it).
//!
//! Then, each with instances of its own: many pairs ([`many`]) — 10,000 msg/s spread over
//! `--pairs` pairs (200 by default; every message carries its pair, and each pair's receiver
//! checks exactly-once, in-order delivery), next to the same rate through one pair: latency,
//! CPU per message, fsyncs per second, threads and memory of the instance (`--skip-many`);
//! and idle ([`idle`]) — `--idle-pairs` pairs (1000) whose destinations nobody listens on:
//! the time until every source port accepts at the first start and at a restart, then CPU,
//! threads and memory over 10 s of idling (`--skip-idle`); and MQTT ([`broker`]) — through a
//! mosquitto the bench starts: the rate into the broker with acknowledgements, end to end
//! through a destination and a source pair, the broker's own `mosquitto_pub` figure, and latency
//! at 1,000 msg/s (`--skip-mqtt`); and JetStream ([`jetstream`]), the same through a
//! `nats-server -js` (`--skip-jetstream`). Each ends in a line per target (met, or missed by how much).
//! `--only many,idle,mqtt,jetstream` runs just these.
//!
//! Shared parts: [`load`] (the message format and the load generator), [`receiver`] (the
//! verifying receiving application), [`instance`] (the child instances and what `/metrics`
//! and `/proc` say about them), [`report`] (percentiles and target lines).

mod astm;
mod broker;
mod failover;
mod idle;
mod instance;
mod jetstream;
mod load;
mod many;
mod receiver;
mod redelivery;
mod relay;
mod report;
mod serial;
mod socat;
mod through_broker;
mod throughput;
mod tls;
mod udp;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use clap::Parser;

use crate::instance::Binary;

/// Measure throughput, latency, memory and backlog drain of a real ioBufferPro instance.
#[derive(Debug, Parser)]
#[command(name = "iobp-bench", version, about, long_about = None)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
struct BenchArgs {
    /// The `iobufferpro` binary to measure (default: `iobufferpro` next to this executable,
    /// i.e. from the same `cargo build`).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Messages in the throughput phase.
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// Message size in bytes, newline included.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages buffered in the backlog phase.
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Seconds per paced latency phase (and of the paced UDP phase, and of each run of the
    /// many-pairs phase).
    #[arg(long, default_value_t = 30)]
    latency_secs: u64,
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
    pairs: u64,
    /// Skip the many-pairs phase.
    #[arg(long)]
    skip_many: bool,
    /// Channel pairs in the idle phase (sources waiting, destinations unreachable).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    idle_pairs: u64,
    /// Skip the idle phase.
    #[arg(long)]
    skip_idle: bool,
    /// Skip the MQTT phase (through a mosquitto the bench starts).
    #[arg(long)]
    skip_mqtt: bool,
    /// Skip the JetStream phase (through a nats-server the bench starts).
    #[arg(long)]
    skip_jetstream: bool,
    /// Skip the ASTM phase (the analyzer and LIS simulators through an instance).
    #[arg(long)]
    skip_astm: bool,
    /// Messages per run of the ASTM phase.
    #[arg(long, default_value_t = 2_000)]
    astm_messages: u64,
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
    /// The MQTT phase.
    Mqtt,
    /// The JetStream phase.
    Jetstream,
    /// The ASTM phase.
    Astm,
}

/// Which of the scaling phases (each with instances of its own) run.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::struct_excessive_bools)] // one switch per phase, read once
struct Scaling {
    many: bool,
    idle: bool,
    mqtt: bool,
    jetstream: bool,
    astm: bool,
}

fn main() -> std::process::ExitCode {
    let args = BenchArgs::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.size < 40 {
        bail!("--size must be at least 40 bytes (sequence number and timestamp)");
    }
    let binary = Binary::locate(args.binary.clone())?;
    // The idle phase holds two ports per pair until its instance starts.
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(bench(args, &binary))
}

/// Raises this process's open-file limit to its hard limit; a failure only warns (the idle
/// phase may then fail with fewer pairs than asked for, saying so).
fn raise_fd_limit() {
    #[cfg(unix)]
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
}

async fn bench(args: &BenchArgs, binary: &Binary) -> anyhow::Result<()> {
    let owned_dir = args.data_dir.is_none();
    let data = args.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("iobufferpro-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let epoch = Instant::now();
    println!(
        "ioBufferPro {} bench: {}-byte line messages over loopback, {} cores",
        env!("CARGO_PKG_VERSION"),
        args.size,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    println!("instance binary: {}", binary.path().display());
    let picked = |phase| args.only.is_empty() || args.only.contains(&phase);
    let scaling = Scaling {
        many: picked(Only::Many) && !args.skip_many,
        idle: picked(Only::Idle) && !args.skip_idle,
        mqtt: picked(Only::Mqtt) && !args.skip_mqtt,
        jetstream: picked(Only::Jetstream) && !args.skip_jetstream,
        astm: picked(Only::Astm) && !args.skip_astm,
    };
    let result = if args.only.is_empty() {
        all_phases(args, binary, &data, epoch, scaling).await
    } else {
        scaling_phases(args, binary, &data, epoch, scaling).await
    };
    if owned_dir {
        let _ = std::fs::remove_dir_all(&data);
    }
    if !result? {
        bail!("delivery was not exactly once and in order");
    }
    Ok(())
}

/// Every phase but those skipped by name; whether every message arrived exactly once and in
/// order.
async fn all_phases(
    args: &BenchArgs,
    binary: &Binary,
    data: &std::path::Path,
    epoch: Instant,
    scaling: Scaling,
) -> anyhow::Result<bool> {
    let size = args.size;
    // One instance carries the pairs of these phases: plain, TLS on both sides, serial (pty)
    // → tcp, relay out, failover. Each phase's receiver that must be there when the instance
    // starts is listening before it does.
    let plain = throughput::Phase::prepare(epoch).await?;
    let mut pairs = vec![plain.pair(size)];
    let tls = if args.no_tls { None } else { Some(tls::Phase::prepare(&data.join("bench-tls"))?) };
    if let Some(t) = &tls {
        pairs.push(t.pair(size));
    }
    let serial = if args.serial_messages > 0 { serial::Phase::prepare()? } else { None };
    if let Some(s) = &serial {
        pairs.push(s.pair(size));
    }
    // The relay: a second instance receives what this one pushes.
    let relay = if args.no_relay {
        None
    } else {
        Some(relay::Phase::start(binary, data, size, epoch).await?)
    };
    if let Some(r) = &relay {
        pairs.push(r.pair(size));
    }
    let failover = failover::Phase::prepare()?;
    pairs.push(failover.pair(size));

    let inst = binary.start(data, &pairs)?;
    let plain = plain.run(&inst, data, args, epoch).await?;
    let mut ok = plain.in_order;
    if let Some(t) = tls {
        ok &= t.run(&plain, args.messages, args.latency_secs, size, epoch).await?;
    }
    if let Some(s) = serial {
        ok &= s.run(args.serial_messages, size, epoch).await?;
    }
    if let Some(r) = &relay {
        ok &= r.run(args.messages, args.latency_secs, size, epoch).await?;
    }
    failover.run(size, epoch).await?;
    drop(inst);
    drop(relay);
    if !args.no_crash {
        redelivery::run(binary, data, args.backlog, size, epoch).await?;
    }
    if !args.no_udp {
        udp::run(binary, data, 20_000, args.latency_secs, 100_000, size, epoch).await?;
    }
    ok &= scaling_phases(args, binary, data, epoch, scaling).await?;

    if args.no_socat {
        println!("socat comparison: skipped (--no-socat)");
    } else {
        socat::run(args.messages, size, plain.rate).await?;
    }
    Ok(ok)
}

/// The scaling phases chosen, each with instances of its own under `data`, then a line per
/// target; whether every message arrived exactly once and in order.
async fn scaling_phases(
    args: &BenchArgs,
    binary: &Binary,
    data: &std::path::Path,
    epoch: Instant,
    phases: Scaling,
) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut targets = Vec::new();
    if phases.many {
        let (in_order, many_targets) =
            many::run(binary, data, args.pairs, args.latency_secs, args.size, epoch).await?;
        ok &= in_order;
        targets.extend(many_targets);
    }
    if phases.idle {
        targets.extend(idle::run(binary, &data.join("idle"), args.idle_pairs, args.size).await?);
    }
    if phases.mqtt {
        let (in_order, mqtt_targets) = broker::run(
            binary,
            data,
            args.messages.min(1_000_000),
            args.latency_secs,
            args.size,
            epoch,
        )
        .await?;
        ok &= in_order;
        targets.extend(mqtt_targets);
    }
    if phases.jetstream {
        let n = args.messages.min(1_000_000);
        let (in_order, js_targets) =
            jetstream::run(binary, data, n, args.latency_secs, args.size, epoch).await?;
        ok &= in_order;
        targets.extend(js_targets);
    }
    if phases.astm {
        ok &= astm::run(binary, data, args.astm_messages).await?;
    }
    for t in targets {
        println!("{t}");
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        BenchArgs::command().debug_assert();
    }

    #[test]
    fn only_takes_a_comma_separated_list_of_scaling_phases() {
        let args = BenchArgs::parse_from(["iobp-bench", "--only", "many,idle", "--pairs", "3"]);
        assert_eq!(args.only, [Only::Many, Only::Idle]);
        assert_eq!(args.pairs, 3);
        assert!(BenchArgs::try_parse_from(["iobp-bench", "--only", "tls"]).is_err());
    }
}
