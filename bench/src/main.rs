//! `tern-bench`: Tern's load generator and benchmarks.
//!
//! Each subcommand lives in its own module; `main` only parses the command line and dispatches,
//! so adding a benchmark (`store`, `broker`, `http`, ...) means adding a module and an enum
//! variant.

mod broker;
mod error;
mod http;
mod raw;
mod stats;
mod store;
mod sysinfo;
mod timer;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

/// The same allocator as `tern-broker`, so that the load generator takes as little of the shared
/// CPU as it can.
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

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
    /// Broker benchmark: producer throughput and latency over the remoting protocol, and
    /// end-to-end latency, against loopback-echo and fdatasync baselines.
    Broker(broker::BrokerArgs),
    /// Timer messages: delivery lag behind a backlog of pending timers, and produce throughput
    /// with a million pending timers versus none.
    Timer(timer::TimerArgs),
    /// Pop consumption benchmark: pop + ack throughput and latency with 1 and 16 consumers,
    /// beside pull consumption of the same messages on the same broker.
    Pop(broker::pop::PopArgs),
    /// HTTP gateway benchmark: produce requests/s and latency through the gateway, and SSE
    /// delivery rate, against a bare hyper server measured in the same run.
    Http(http::HttpArgs),
    /// Internal: the loopback echo servers of `tern-bench broker`, run as its child process.
    #[command(hide = true)]
    EchoServer,
    /// Internal: the bare hyper server of `tern-bench http`, run as its child process.
    #[command(hide = true)]
    HttpEchoServer(http::EchoServerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Store(args) => store::run(args),
        Command::Broker(args) => broker::run(args),
        Command::Timer(args) => timer::run(args),
        Command::Pop(args) => broker::pop::run(args),
        Command::Http(args) => http::run(args),
        Command::EchoServer => broker::run_echo_server(),
        Command::HttpEchoServer(args) => http::run_echo_server(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
