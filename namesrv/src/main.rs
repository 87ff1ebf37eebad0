//! `tern-namesrv`: the NameServer process.
//!
//! Reads `--config` (TOML, see conf/namesrv.toml), applies command-line overrides, starts, prints
//! `tern-namesrv listening on <addr>` once it serves, and shuts down cleanly on SIGTERM or Ctrl-C.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tern_namesrv::{NameServer, NamesrvConfig};

#[derive(Parser, Debug)]
#[command(
    name = "tern-namesrv",
    version,
    about = "Tern NameServer (RocketMQ remoting protocol)"
)]
struct Args {
    /// TOML configuration file (conf/namesrv.toml documents every key).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:9876 (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// Drop a broker that has not registered for this many seconds.
    #[arg(long)]
    broker_timeout_secs: Option<u64>,
    /// Look for silent brokers this often, in seconds.
    #[arg(long)]
    scan_interval_secs: Option<u64>,
}

fn configure(args: Args) -> Result<NamesrvConfig, String> {
    let mut config = match &args.config {
        Some(path) => NamesrvConfig::load(path).map_err(|e| e.to_string())?,
        None => NamesrvConfig::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.broker_timeout_secs {
        config.broker_timeout_ms = v.saturating_mul(1000);
    }
    if let Some(v) = args.scan_interval_secs {
        config.scan_interval_ms = v.saturating_mul(1000);
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match configure(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tern-namesrv: {e}");
            return ExitCode::from(2);
        }
    };
    let namesrv = match NameServer::start(config).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tern-namesrv: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("tern-namesrv listening on {}", namesrv.local_addr());
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    namesrv.shutdown().await;
    ExitCode::SUCCESS
}
