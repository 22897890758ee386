//! `iobufferpro`: the binary. Command line, wiring and process concerns only; the work lives
//! in the crates under `crates/` (see ARCHITECTURE.md).

mod bench;
mod config_cmd;
mod data_dir;
mod run;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Store-and-forward message buffer and router: every message on disk before delivery, in
/// order, never lost.
#[derive(Debug, Parser)]
#[command(name = "iobufferpro", version, about, long_about = None)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a command, `iobufferpro` runs with these options.
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run ioBufferPro (the default when no command is given).
    Run(run::RunArgs),
    /// Check, export or import the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Measure throughput, latency, memory and backlog drain of a real instance.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration document without applying it.
    Check {
        /// The JSON document (`{"settings": {...}, "channel_pairs": [...]}`).
        file: PathBuf,
    },
    /// Print the stored configuration as a JSON document.
    Export {
        /// Data directory.
        #[arg(long, env = "IOBP_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Store a configuration document (ioBufferPro must not be running on this directory).
    Import {
        /// The JSON document.
        file: PathBuf,
        /// Data directory.
        #[arg(long, env = "IOBP_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Keep stored pairs the document does not mention (default: the document replaces
        /// the whole configuration).
        #[arg(long)]
        merge: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(args) => run::main(args),
        Command::Config(ConfigCommand::Check { file }) => config_cmd::check(&file),
        Command::Config(ConfigCommand::Export { data_dir }) => config_cmd::export(data_dir),
        Command::Config(ConfigCommand::Import { file, data_dir, merge }) => {
            config_cmd::import(&file, data_dir, merge)
        }
        Command::Bench(args) => bench::main(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
