//! `iobufferpro simulate <kind>`: the device simulators of `iobp-simulate` on the command
//! line. Each runs until it has done what it was asked (a number of messages) or until
//! Ctrl-C, printing what it does.

use clap::{Args, Subcommand};
use iobp_simulate::Link;

#[derive(Debug, Subcommand)]
pub(crate) enum SimulateCommand {}

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
    rt.block_on(async move { match kind {} })
}
