//! `tern-broker`: the broker process.
//!
//! Reads `--config` (TOML, see conf/broker.toml), applies command-line overrides, starts, prints
//! `tern-broker listening on <addr>` once it serves, and shuts down cleanly on SIGTERM or Ctrl-C
//! (flush, persist offsets, unregister, remove `abort`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use tern_core::broker::{Broker, BrokerConfig};
use tern_core::store::FlushDiskType;

/// A request allocates a few dozen small strings (headers are string maps on the wire); mimalloc
/// serves them markedly cheaper than glibc malloc.
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "tern-broker",
    version,
    about = "Tern broker (RocketMQ remoting protocol)"
)]
struct Args {
    /// TOML configuration file (conf/broker.toml documents every key).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:10911 (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// NameServer addresses, separated by `;` or `,`.
    #[arg(long)]
    namesrv: Option<String>,
    /// Store root directory.
    #[arg(long)]
    store_path: Option<PathBuf>,
    #[arg(long)]
    broker_name: Option<String>,
    #[arg(long)]
    cluster: Option<String>,
    #[arg(long)]
    broker_id: Option<i64>,
    /// ASYNC_FLUSH or SYNC_FLUSH.
    #[arg(long)]
    flush_disk_type: Option<String>,
    /// Create topics on their first send.
    #[arg(long)]
    auto_create_topic: Option<bool>,
    /// Request threads: 1 (single-threaded), N, or 0 for one per CPU.
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Seconds between NameServer registrations.
    #[arg(long)]
    register_interval_secs: Option<u64>,
}

fn configure(args: Args) -> Result<BrokerConfig, String> {
    let mut config = match &args.config {
        Some(path) => BrokerConfig::load(path).map_err(|e| e.to_string())?,
        None => BrokerConfig::default(),
    };
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.namesrv {
        config.namesrv_addrs = tern_core::daemon::split_addrs(&v);
    }
    if let Some(v) = args.store_path {
        config.store.store_path = v;
    }
    if let Some(v) = args.broker_name {
        config.broker_name = v;
    }
    if let Some(v) = args.cluster {
        config.cluster_name = v;
    }
    if let Some(v) = args.broker_id {
        config.broker_id = v;
    }
    if let Some(v) = args.flush_disk_type {
        config.store.flush_disk_type = match v.to_ascii_uppercase().as_str() {
            "ASYNC_FLUSH" => FlushDiskType::AsyncFlush,
            "SYNC_FLUSH" => FlushDiskType::SyncFlush,
            other => {
                return Err(format!(
                    "--flush-disk-type {other}: expected ASYNC_FLUSH or SYNC_FLUSH"
                ));
            }
        };
    }
    if let Some(v) = args.auto_create_topic {
        config.auto_create_topic = v;
    }
    if let Some(v) = args.worker_threads {
        config.worker_threads = v;
    }
    if let Some(v) = args.register_interval_secs {
        config.register_interval_ms = v.saturating_mul(1000);
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn main() -> ExitCode {
    tern_core::daemon::init_logging();
    let config = match configure(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tern-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if n > 0 {
                builder.worker_threads(n);
            }
            builder.thread_name("tern-broker").enable_all().build()
        }
    };
    match runtime {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(e) => {
            eprintln!("tern-broker: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: BrokerConfig) -> ExitCode {
    let broker = match Broker::start(config).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("tern-broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    tern_core::daemon::announce("tern-broker", broker.addr());
    tern_core::daemon::shutdown_signal().await;
    match broker.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern-broker: shutdown: {e}");
            ExitCode::FAILURE
        }
    }
}
