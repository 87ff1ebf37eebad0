//! `tern-gateway`: the HTTP edge. `--local` adds a NameServer and a broker in the same process.
//!
//! Reads `--config` (TOML, see conf/gateway.toml), applies command-line overrides, prints
//! `tern-gateway listening on <addr>` once it serves, and on SIGTERM or Ctrl-C stops accepting,
//! lets requests in flight finish, ends SSE streams, then stops the embedded broker and
//! NameServer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use mimalloc::MiMalloc;
use tern_gateway::config::{GatewayConfig, TlsConfig};
use tern_gateway::local::{Local, LocalOptions, local_receipt_key};
use tern_gateway::{Gateway, http, server};

#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "tern-gateway", version, about = "Tern HTTP gateway")]
struct Args {
    /// TOML configuration file (conf/gateway.toml documents every key).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Run a NameServer and a broker in this process (data under --data-dir, topics created on
    /// first produce, auth off unless configured).
    #[arg(long)]
    local: bool,
    /// HTTP listen address (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// NameServer addresses, separated by `;` or `,` (not with --local).
    #[arg(long, conflicts_with = "local")]
    namesrv: Option<String>,
    /// --local: data directory (default ./data).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// --local: the embedded NameServer's address.
    #[arg(long, default_value = "127.0.0.1:9876")]
    namesrv_listen: String,
    /// --local: the embedded broker's address.
    #[arg(long, default_value = "127.0.0.1:10911")]
    broker_listen: String,
    /// --local: broker configuration file (conf/broker.toml format).
    #[arg(long)]
    broker_config: Option<PathBuf>,
    /// Receipt key (64 hex characters or base64 of 32 bytes); repeat to add rotation keys.
    #[arg(long)]
    receipt_key: Vec<String>,
    /// Create topics on first produce.
    #[arg(long)]
    auto_create_topics: Option<bool>,
    /// Allow a non-loopback listen address without auth.
    #[arg(long)]
    insecure_no_auth: bool,
    /// TLS certificate chain (PEM); with --tls-key, serves HTTPS (h2 and http/1.1 by ALPN).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    worker_threads: Option<usize>,
}

fn configure(args: &Args) -> Result<GatewayConfig, String> {
    let mut config = match &args.config {
        Some(path) => GatewayConfig::load(path).map_err(|e| e.to_string())?,
        None => GatewayConfig::default(),
    };
    if let Some(v) = &args.listen {
        config.listen = v.clone();
    }
    if let Some(v) = &args.namesrv {
        config.namesrv_addrs = tern_core::daemon::split_addrs(v);
    }
    if args.local {
        config.auto_create_topics = true;
    }
    if let Some(v) = args.auto_create_topics {
        config.auto_create_topics = v;
    }
    if args.insecure_no_auth {
        config.insecure_no_auth = true;
    }
    if let (Some(cert_file), Some(key_file)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(TlsConfig {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        });
    }
    config.receipt_keys.extend(args.receipt_key.iter().cloned());
    Ok(config)
}

fn main() -> ExitCode {
    tern_core::daemon::init_logging();
    let args = Args::parse();
    let config = match configure(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tern-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.worker_threads {
        runtime.worker_threads(n.max(1));
    }
    match runtime.thread_name("tern-gateway").enable_all().build() {
        Ok(runtime) => runtime.block_on(run(args, config)),
        Err(e) => {
            eprintln!("tern-gateway: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, mut config: GatewayConfig) -> ExitCode {
    let fail = |e: String| {
        eprintln!("tern-gateway: {e}");
        ExitCode::FAILURE
    };
    let local = if args.local {
        let options = LocalOptions {
            data_dir: args.data_dir.clone(),
            namesrv_listen: args.namesrv_listen.clone(),
            broker_listen: args.broker_listen.clone(),
            broker_config: args.broker_config.clone(),
        };
        let local = match Local::start(&options).await {
            Ok(l) => l,
            Err(e) => return fail(e.to_string()),
        };
        config.namesrv_addrs = vec![local.namesrv_addr()];
        Some(local)
    } else {
        None
    };
    let mut receipt_keys = config.receipt_keys.clone();
    if let Some(path) = &config.receipt_key_file {
        match std::fs::read_to_string(path) {
            Ok(text) => receipt_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            ),
            Err(e) => return fail(format!("receipt_key_file {}: {e}", path.display())),
        }
    }
    if receipt_keys.is_empty() {
        if args.local {
            match local_receipt_key(&args.data_dir) {
                Ok(key) => receipt_keys.push(key),
                Err(e) => return fail(e.to_string()),
            }
        } else {
            return fail(
                "no receipt key: set receipt_keys (or receipt_key_file, or --receipt-key); every \
                 gateway instance must share them"
                    .into(),
            );
        }
    }
    let status = serve(config, receipt_keys).await;
    if let Some(local) = local
        && let Err(e) = local.shutdown().await
    {
        return fail(format!("shutdown: {e}"));
    }
    status
}

async fn serve(config: GatewayConfig, receipt_keys: Vec<String>) -> ExitCode {
    let fail = |e: String| {
        eprintln!("tern-gateway: {e}");
        ExitCode::FAILURE
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let tls = match &config.tls {
        Some(tls) => match server::tls_acceptor(tls) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => return fail(format!("tls: {e}")),
        },
        None => None,
    };
    let limits = config.limits.clone();
    let listen = config.listen.clone();
    let gateway = match Gateway::new(config, receipt_keys, stopped) {
        Ok(g) => Arc::new(g),
        Err(e) => return fail(e.to_string()),
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen on {listen}: {e}")),
    };
    let addr = listener.local_addr().map_or(listen, |a| a.to_string());
    tern_core::daemon::announce("tern-gateway", &addr);
    let app = http::router(gateway.clone());
    server::serve(listener, tls, app, limits, async move {
        tern_core::daemon::shutdown_signal().await;
        tracing::info!("shutting down: draining requests and streams");
        let _ = stop.send(true);
    })
    .await;
    gateway.close();
    ExitCode::SUCCESS
}
