//! `tern-bench`: Tern's load generator and benchmarks.
//!
//! Each subcommand lives in its own module; `main` only parses the command line and dispatches,
//! so adding `broker` or `http` benchmarks means adding a module and an enum variant.

mod error;
mod raw;
mod stats;
mod store;
mod sysinfo;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tern-bench",
    version,
    about = "Tern load generator and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Storage-engine benchmark: MessageStore appends against raw write/fsync baselines on the
    /// same filesystem.
    Store(store::StoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Store(args) => store::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
