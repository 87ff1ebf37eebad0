//! Running a NameServer: the remoting server plus the scan that drops silent brokers.
//!
//! This is the library entry point both the `tern-namesrv` binary and the gateway's `--local`
//! mode use, so it owns no process-wide state (no signal handlers, no logging setup): start as
//! many as you like in one process, each on its own address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tern_core::protocol::{ServerHandle, serve};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::config::NamesrvConfig;
use crate::error::NamesrvError;
use crate::processor::NamesrvProcessor;
use crate::route_table::RouteTable;

/// A running NameServer. Dropping it does not stop it; call [`NameServer::shutdown`].
pub struct NameServer {
    server: ServerHandle,
    routes: Arc<RouteTable>,
    stop: watch::Sender<bool>,
    scanner: Mutex<Option<JoinHandle<()>>>,
}

impl NameServer {
    /// Validates `config`, binds `config.listen` and starts serving. Must be called inside a
    /// tokio runtime.
    pub async fn start(config: NamesrvConfig) -> Result<NameServer, NamesrvError> {
        config.validate()?;
        let routes = Arc::new(RouteTable::new());
        let processor = Arc::new(NamesrvProcessor::new(
            routes.clone(),
            config.broker_timeout(),
        ));
        let server =
            serve(&config.listen, processor)
                .await
                .map_err(|source| NamesrvError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;
        let (stop, stopped) = watch::channel(false);
        let scanner = tokio::spawn(scan_loop(routes.clone(), config.scan_interval(), stopped));
        tracing::info!(
            addr = %server.local_addr(),
            broker_timeout_ms = config.broker_timeout_ms,
            scan_interval_ms = config.scan_interval_ms,
            "NameServer started"
        );
        Ok(NameServer {
            server,
            routes,
            stop,
            scanner: Mutex::new(Some(scanner)),
        })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The route registry, for in-process users and tests.
    pub fn routes(&self) -> &Arc<RouteTable> {
        &self.routes
    }

    /// Stops the scan, stops accepting and closes every connection. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let scanner = self
            .scanner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(scanner) = scanner {
            let _ = scanner.await;
        }
        self.server.shutdown().await;
        tracing::info!(addr = %self.local_addr(), "NameServer stopped");
    }
}

/// Drops brokers silent for longer than their timeout, every `every`.
async fn scan_loop(routes: Arc<RouteTable>, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    // After a stall (a suspended process), one scan catches up; a burst would find nothing more.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                routes.expire(Instant::now());
            }
            changed = stopped.changed() => {
                if changed.is_err() || *stopped.borrow() {
                    break;
                }
            }
        }
    }
}
