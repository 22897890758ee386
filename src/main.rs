//! `iobufferpro`: the binary. Command line, wiring and process concerns only; the work lives
//! in the crates under `crates/` (see ARCHITECTURE.md).

use clap::Parser;

/// Store-and-forward message buffer and router: every message on disk before delivery, in
/// order, never lost.
#[derive(Debug, Parser)]
#[command(name = "iobufferpro", version, about, long_about = None)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!(
        "ioBufferPro {} (log format version {}): the engine arrives with the next milestone; \
         see --help.",
        env!("CARGO_PKG_VERSION"),
        iobp_log::format::FORMAT_VERSION
    );
}
