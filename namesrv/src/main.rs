//! `tern-namesrv`: the NameServer process.
//!
//! Reads `--config` (TOML, see conf/namesrv.toml), applies command-line overrides, starts, prints
//! `tern-namesrv listening on <addr>` once it serves, and shuts down cleanly on SIGTERM or Ctrl-C.

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

#[tokio::main]
async fn main() -> ExitCode {
    tern_core::daemon::init_logging();
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
    tern_core::daemon::announce("tern-namesrv", namesrv.local_addr());
    tern_core::daemon::shutdown_signal().await;
    namesrv.shutdown().await;
    ExitCode::SUCCESS
}
