//! `iobufferpro simulate <kind>`: the device simulators of `iobp-simulate` on the command
//! line. Each runs until it has done what it was asked (a number of messages) or until
//! Ctrl-C, printing what it does.

use clap::{Args, Subcommand};
use iobp_simulate::Link;

#[derive(Debug, Subcommand)]
pub(crate) enum SimulateCommand {
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

/// Runs a simulator on a runtime of its own.
pub(crate) fn main(kind: SimulateCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        match kind {
            SimulateCommand::Modbus(args) => modbus(args).await,
        }
    })
}
