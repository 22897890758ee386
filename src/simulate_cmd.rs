//! `iobufferpro simulate <kind>`: the device simulators of `iobp-simulate` on the command
//! line, for commissioning (a device on the other end before the real one is wired) and for
//! trying ioBufferPro out. Each runs until it has done what it was asked (`--count` messages
//! sent, `--expect` messages received) or until Ctrl-C, printing what it does. A receiver with
//! `--expect` exits with an error when a message was lost or arrived out of order.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use iobp_simulate::astm::{AnalyzerOptions, LisOptions, run_analyzer, run_lis, sample_number};
use iobp_simulate::framed::{Kind, ReceiverOptions, ReceiverReport, SenderOptions, SenderReport};
use iobp_simulate::{Endpoint, Link};

#[derive(Debug, Subcommand)]
pub(crate) enum SimulateCommand {
    /// A lab analyzer sending ASTM E1394 result messages with the E1381 link protocol (to an
    /// `astm` source).
    AstmAnalyzer(AnalyzerArgs),
    /// A laboratory information system receiving ASTM messages (from an `astm` destination);
    /// prints each message's sample id and record types.
    AstmLis(LisArgs),
    /// Newline-framed text lines: a paced sender, or a receiver that verifies their order.
    Lines {
        #[command(subcommand)]
        role: FramedRole,
    },
    /// HL7 v2 over MLLP: a sender that waits for each ACK, or an acknowledging receiver that
    /// verifies their order.
    Mllp {
        #[command(subcommand)]
        role: FramedRole,
    },
    /// A Modbus device (TCP server, or RTU on a serial port) whose registers change over time:
    /// register 0 counts requests, 1 seconds, 2–3 milliseconds, 4 a sine wave, 5 a ramp, 6–7
    /// the sine as f32; any other register holds its own address; bits flip every second.
    Modbus(ModbusArgs),
}

/// `simulate modbus`.
#[derive(Debug, Args)]
pub(crate) struct ModbusArgs {
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    baud: BaudArg,
    /// Answer only this unit id (default: any).
    #[arg(long, value_name = "N")]
    unit: Option<u8>,
    /// Reads touching these addresses answer an exception (e.g. `200-209`).
    #[arg(long, value_name = "FROM-TO", value_parser = parse_range)]
    exception: Option<(u16, u16)>,
    /// The exception code of `--exception` (2: illegal data address).
    #[arg(long, default_value_t = iobp_simulate::modbus::ILLEGAL_DATA_ADDRESS)]
    exception_code: u8,
    /// Stop answering after this many seconds (the client sees timeouts)…
    #[arg(long, value_name = "SECS")]
    silent_after: Option<u64>,
    /// …for this many seconds, then answer again (default: for good).
    #[arg(long, value_name = "SECS", requires = "silent_after")]
    silent_for: Option<u64>,
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let n = |x: &str| x.trim().parse::<u16>().map_err(|e| format!("`{x}`: {e}"));
    let (a, b) = (n(a)?, n(b)?);
    if a > b {
        return Err(format!("{a} is after {b}"));
    }
    Ok((a, b))
}

/// Runs the Modbus device until Ctrl-C, printing what it answered every 10 s.
async fn modbus(args: ModbusArgs) -> anyhow::Result<()> {
    use iobp_simulate::modbus::{Control, ExceptionRange, serve};
    let link = args.link.link(&args.baud);
    if matches!(link, Link::Connect(_)) {
        anyhow::bail!("a Modbus device listens (--listen) or uses a serial port (--serial)");
    }
    let control = Control::new(args.unit);
    if let Some((from, to)) = args.exception {
        control.set_exception(Some(ExceptionRange { from, to, code: args.exception_code }));
    }
    if let Some(after) = args.silent_after {
        let c = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(after)).await;
            println!("modbus: silent from now on");
            c.set_silent(true);
            if let Some(d) = args.silent_for {
                tokio::time::sleep(std::time::Duration::from_secs(d)).await;
                println!("modbus: answering again");
                c.set_silent(false);
            }
        });
    }
    let endpoint = iobp_simulate::Endpoint::new(link.clone()).await?;
    println!("modbus device on {link}");
    let c = control.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
        every.tick().await;
        loop {
            every.tick().await;
            println!("modbus: {} answered, {} ignored", c.answered(), c.ignored());
        }
    });
    tokio::select! {
        r = serve(endpoint, control) => r?,
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}

/// Where a simulator's peer is: exactly one of `--connect`, `--listen`, `--serial`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct LinkArgs {
    /// Connect to HOST:PORT (ioBufferPro's `tcp_server` side listens there).
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
    /// Listen on HOST:PORT (ioBufferPro's `tcp_client` side connects there).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Use this serial port (8N1, no flow control; `--baud` sets the speed).
    #[arg(long, value_name = "PATH")]
    serial: Option<String>,
}

/// The serial speed, for `--serial`.
#[derive(Debug, Args)]
pub(crate) struct BaudArg {
    /// Baud rate of `--serial`.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
}

impl LinkArgs {
    pub(crate) fn link(&self, baud: &BaudArg) -> Link {
        match (&self.connect, &self.listen, &self.serial) {
            (Some(a), _, _) => Link::Connect(a.clone()),
            (_, Some(a), _) => Link::Listen(a.clone()),
            (_, _, Some(p)) => Link::Serial { path: p.clone(), baud: baud.baud },
            // clap's group requires exactly one.
            (None, None, None) => Link::Connect(String::new()),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AnalyzerArgs {
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    baud: BaudArg,
    /// Result messages to send.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// Sample number of the first message (sample ids S00000001, S00000002, …).
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Messages per second at most (default: as fast as the receiver answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Send every N-th frame with a wrong checksum (the receiver must NAK it).
    #[arg(long, value_name = "N")]
    corrupt_every: Option<u64>,
    /// Garble every N-th ACK received (counts as a NAK: the frame goes again).
    #[arg(long, value_name = "N")]
    garble_ack_every: Option<u64>,
    /// Add a comment record longer than one frame to every N-th message (ETB frames).
    #[arg(long, value_name = "N")]
    long_every: Option<u64>,
    /// How long to wait for an answer (E1381: 15000).
    #[arg(long, default_value_t = 15_000)]
    timeout_ms: u64,
    /// Send no faster than a serial line at this baud rate would (over TCP or a pty).
    #[arg(long, value_name = "BAUD")]
    line_baud: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct LisArgs {
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    baud: BaudArg,
    /// Stop after this many messages, and fail unless they were the analyzer simulator's
    /// samples `--first` … in order, none lost.
    #[arg(long)]
    expect: Option<u64>,
    /// The first sample number expected (with `--expect`).
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Garble every N-th ACK sent (the sender must send the frame again).
    #[arg(long, value_name = "N")]
    garble_ack_every: Option<u64>,
    /// Refuse every N-th good frame with NAK.
    #[arg(long, value_name = "N")]
    nak_every: Option<u64>,
    /// Print only the summary, not each message.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FramedRole {
    /// Send numbered messages.
    Send(SendArgs),
    /// Receive and verify numbered messages.
    Receive(ReceiveArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    baud: BaudArg,
    /// Messages to send.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// The number of the first message.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Messages per second at most (default: as fast as the link takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Bytes per line at least (lines only).
    #[arg(long, default_value_t = 0)]
    size: usize,
}

#[derive(Debug, Args)]
pub(crate) struct ReceiveArgs {
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    baud: BaudArg,
    /// Stop after this many messages in order, and fail if any was lost.
    #[arg(long)]
    expect: Option<u64>,
    /// The number the first message must carry.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// MLLP: answer every N-th message AE (the sender must send it again).
    #[arg(long, value_name = "N")]
    refuse_every: Option<u64>,
}

/// Runs a simulator on a runtime of its own.
pub(crate) fn main(kind: SimulateCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        tokio::select! {
            r = simulate(kind) => r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted");
                Ok(())
            }
        }
    })
}

async fn simulate(kind: SimulateCommand) -> anyhow::Result<()> {
    match kind {
        SimulateCommand::AstmAnalyzer(a) => analyzer(a).await,
        SimulateCommand::AstmLis(a) => lis(a).await,
        SimulateCommand::Lines { role } => framed(Kind::Lines, role).await,
        SimulateCommand::Mllp { role } => framed(Kind::Mllp, role).await,
        SimulateCommand::Modbus(args) => modbus(args).await,
    }
}

async fn endpoint(link: Link) -> anyhow::Result<Endpoint> {
    eprintln!("link: {link}");
    Ok(Endpoint::new(link).await?)
}

async fn analyzer(a: AnalyzerArgs) -> anyhow::Result<()> {
    let endpoint = endpoint(a.link.link(&a.baud)).await?;
    let opts = AnalyzerOptions {
        count: a.count,
        first: a.first,
        corrupt_every: a.corrupt_every,
        garble_ack_every: a.garble_ack_every,
        long_every: a.long_every,
        answer_timeout: Duration::from_millis(a.timeout_ms),
        rate: a.rate,
        line_baud: a.line_baud,
        ..AnalyzerOptions::default()
    };
    let started = Instant::now();
    let mut last = Instant::now();
    let report = run_analyzer(&endpoint, &opts, |r| {
        if last.elapsed() >= Duration::from_secs(1) || r.delivered == opts.count {
            last = Instant::now();
            eprintln!("{} of {} messages delivered", r.delivered, opts.count);
        }
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "delivered {} messages in {secs:.1} s ({:.0}/s): {} frames, {} sent corrupted, {} ACKs \
         garbled, {} attempts failed and retried, {} connection(s)",
        report.delivered,
        rate(report.delivered, secs),
        report.frames,
        report.corrupted,
        report.garbled,
        report.failed_attempts,
        report.connections
    );
    Ok(())
}

async fn lis(a: LisArgs) -> anyhow::Result<()> {
    let endpoint = endpoint(a.link.link(&a.baud)).await?;
    let opts = LisOptions { garble_ack_every: a.garble_ack_every, nak_every: a.nak_every };
    let mut check = ReceiverReport::new(a.first);
    let started = Instant::now();
    let report = run_lis(&endpoint, &opts, |m| {
        let sample = iobp_codec::astm::field(&m, b'O', 3).map_or_else(
            || "(no order record)".to_string(),
            |s| String::from_utf8_lossy(s).into_owned(),
        );
        if !a.quiet {
            println!("{sample}  {}  ({} bytes)", iobp_codec::astm::record_types(&m), m.len());
        }
        check.check(sample_number(&m));
        a.expect.is_none_or(|e| check.in_order < e)
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "received {} messages ({:.0}/s): {} in order, {} repeated, {} missing; {} bad frames \
         refused, {} incomplete discarded, {} ACKs garbled and {} NAKs on purpose",
        report.messages,
        rate(report.messages, secs),
        check.in_order,
        check.duplicates,
        check.missing,
        report.bad_frames,
        report.discarded,
        report.garbled,
        report.nakked
    );
    verdict(a.expect, &check)
}

async fn framed(kind: Kind, role: FramedRole) -> anyhow::Result<()> {
    match role {
        FramedRole::Send(a) => {
            let endpoint = endpoint(a.link.link(&a.baud)).await?;
            let opts = SenderOptions {
                kind,
                count: a.count,
                first: a.first,
                rate: a.rate,
                size: a.size,
                ..SenderOptions::default()
            };
            let started = Instant::now();
            let mut report = SenderReport::default();
            let mut failures = 0;
            while report.sent < opts.count {
                let mut io = match endpoint.next().await {
                    Ok(io) => io,
                    Err(e) if failures < 50 => {
                        failures += 1;
                        eprintln!("{e}; trying again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(e) => return Err(e).context("giving up"),
                };
                if let Err(e) = iobp_simulate::framed::send_on(&mut io, &opts, &mut report).await {
                    eprintln!("{e}; reconnecting at message {}", opts.first + report.sent);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "sent {} messages in {secs:.1} s ({:.0}/s), {} sent again",
                report.sent,
                rate(report.sent, secs),
                report.resent
            );
            Ok(())
        }
        FramedRole::Receive(a) => {
            let endpoint = endpoint(a.link.link(&a.baud)).await?;
            let opts = ReceiverOptions { kind, first: a.first, refuse_every: a.refuse_every };
            let started = Instant::now();
            let mut report = ReceiverReport::new(a.first);
            loop {
                let mut io = endpoint.next().await?;
                if let Err(e) =
                    iobp_simulate::framed::receive_on(&mut io, &opts, &mut report, a.expect).await
                {
                    eprintln!("{e}");
                }
                eprintln!("{} received so far, {} in order", report.received, report.in_order);
                if a.expect.is_some_and(|e| report.in_order >= e)
                    || matches!(endpoint.link(), Link::Connect(_) | Link::Serial { .. })
                        && a.expect.is_none()
                {
                    break;
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "received {} messages ({:.0}/s): {} in order, {} repeated, {} missing, {} \
                 unreadable, {} refused on purpose",
                report.received,
                rate(report.received, secs),
                report.in_order,
                report.duplicates,
                report.missing,
                report.unreadable,
                report.refused
            );
            verdict(a.expect, &report)
        }
    }
}

fn verdict(expect: Option<u64>, r: &ReceiverReport) -> anyhow::Result<()> {
    if expect.is_some() && (r.missing > 0 || r.unreadable > 0) {
        bail!("{} message(s) missing, {} unreadable", r.missing, r.unreadable);
    }
    Ok(())
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}
