//! What every Tern server binary (`tern-broker`, `tern-namesrv`, later `tern-gateway`) does the
//! same way: log to stderr filtered by `RUST_LOG`, announce its address on stdout (scripts and the
//! cross-process tests read that line), and run until SIGTERM or Ctrl-C.

use std::io::Write;

/// Logs to stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Prints `<name> listening on <addr>` and flushes stdout.
pub fn announce(name: &str, addr: impl std::fmt::Display) {
    println!("{name} listening on {addr}");
    let _ = std::io::stdout().flush();
}

/// A command-line list of addresses (`a:1;b:2` or `a:1,b:2`), blanks dropped.
pub fn split_addrs(list: &str) -> Vec<String> {
    list.split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
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
