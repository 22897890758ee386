//! `iobufferpro`: the binary. Command line, wiring and process concerns only; the work lives
//! in the crates under `crates/` (see ARCHITECTURE.md).

mod api_client;
mod config_cmd;
mod data_dir;
mod replay_cmd;
mod run;
mod service;
mod simulate_cmd;

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
    /// A consistent copy of the store — settings, pairs, users, audit trail — into a new
    /// directory, while ioBufferPro runs or not (the buffers' messages are not copied).
    Backup {
        /// Where the copy goes (a new or empty directory).
        out: PathBuf,
        /// Data directory.
        #[arg(long, env = "IOBP_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Check, export or import the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Replay messages of a pair on a running instance (through its API, as an operator):
    /// a sequence or time range, optionally a search, stored again in order for the pair's
    /// destination or into another pair.
    Replay(replay_cmd::ReplayArgs),
    /// Users, from the command line (ioBufferPro must not be running on the data directory).
    #[command(subcommand)]
    User(UserCommand),
    /// Device simulators for commissioning and tests: the other end of a channel pair before
    /// the real device is wired.
    #[command(subcommand)]
    Simulate(simulate_cmd::SimulateCommand),
    /// ioBufferPro as a Windows service: install, uninstall, start, stop (as Administrator).
    #[cfg(windows)]
    #[command(subcommand)]
    Service(service::windows::ServiceCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Give a user locked out a new random password (printed once, to be changed at the next
    /// login) and end their sessions; for when no admin can log in any more.
    ResetPassword {
        /// The user.
        #[arg(default_value = "admin")]
        username: String,
        /// Data directory.
        #[arg(long, env = "IOBP_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TlsCommand {
    /// Generate a lab CA with a server and a client certificate, to try TLS and mutual TLS
    /// without a company CA. Not for production.
    LabPki {
        /// Directory for ca.pem, server.pem, server.key, client.pem, client.key.
        #[arg(long)]
        out: PathBuf,
        /// The server's DNS names and IP addresses (repeat the option).
        #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration document without applying it; without a document, the
    /// stored configuration and the data directory's format (the systemd unit's
    /// `ExecStartPre=`).
    Check {
        /// The JSON document (`{"settings": {...}, "channel_pairs": [...]}`).
        file: Option<PathBuf>,
        /// Data directory (when no document is given).
        #[arg(long, env = "IOBP_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the stored configuration as a JSON document. Relay passwords are shown as
    /// `********` (an import of the document on the same data directory keeps the stored ones).
    Export {
        /// Data directory.
        #[arg(long, env = "IOBP_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print relay passwords in clear text (to move a configuration to another machine).
        #[arg(long)]
        include_secrets: bool,
    },
    /// Show what applying a document would change — settings, pairs added, removed, changed
    /// field by field, which pairs restart — on a data directory or a running instance
    /// (`--url`); changes nothing.
    Diff(config_cmd::DiffArgs),
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

fn lab_pki(out: &std::path::Path, names: &[String]) -> anyhow::Result<()> {
    let pki = iobp_tls::generate_lab_pki(out, names)?;
    println!("lab CA:             {}  (trust this on clients)", pki.ca.display());
    println!("server certificate: {}  key {}", pki.server_cert.display(), pki.server_key.display());
    println!("client certificate: {}  key {}", pki.client_cert.display(), pki.client_key.display());
    println!("server names: {}", names.join(", "));
    Ok(())
}

/// Keeps large, short-lived allocations out of glibc's heap. glibc raises its mmap threshold
/// after freeing a large block, so later blocks of that size come from a thread's heap and
/// stay resident after they are freed: every Argon2 password check (7 MiB; 19 MiB for hashes
/// made with the crate's default parameters by earlier builds) would leave that much behind per
/// hashing thread, more than the whole engine needs. A fixed threshold turns
/// the adaptation off: blocks of 4 MiB and more get their own mapping, returned at free. No
/// hot path allocates that much (log batches are at most 1 MiB and reused).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: mallopt only sets a glibc tunable; it is called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// Returns memory that glibc keeps in its arenas after frees to the system. After a flood of
/// portal connections it keeps what their tasks and buffers used, spread over many pages that
/// plain `free` never gives back (measured with `tests/flood.rs`, resident before, during and
/// after the flood: 17.9, 24.5 and 24.2 MB without this; 17.8, 23.1 and 18.7 MB with it). It
/// walks the heap, so it runs only after many connections closed (see `run::housekeeping`),
/// never on a hot path.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_freed_memory() {
    // SAFETY: malloc_trim only gives free memory of glibc's own arenas back; it takes their
    // locks and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed_memory() {}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(args) => run::main(args),
        Command::Config(ConfigCommand::Check { file: Some(file), .. }) => config_cmd::check(&file),
        Command::Config(ConfigCommand::Check { file: None, data_dir }) => {
            config_cmd::check_stored(data_dir)
        }
        Command::Config(ConfigCommand::Export { data_dir, include_secrets }) => {
            config_cmd::export(data_dir, include_secrets)
        }
        Command::Config(ConfigCommand::Diff(args)) => config_cmd::diff(&args),
        Command::Config(ConfigCommand::Import { file, data_dir, merge }) => {
            config_cmd::import(&file, data_dir, merge)
        }
        Command::Tls(TlsCommand::LabPki { out, names }) => lab_pki(&out, &names),
        Command::Simulate(kind) => simulate_cmd::main(kind),
        Command::Replay(args) => replay_cmd::main(&args),
        Command::Backup { out, data_dir } => config_cmd::backup(&out, data_dir),
        Command::User(UserCommand::ResetPassword { username, data_dir }) => {
            config_cmd::reset_password(&username, data_dir)
        }
        #[cfg(windows)]
        Command::Service(cmd) => service::windows::main(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
