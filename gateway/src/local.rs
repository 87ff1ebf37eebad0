//! `--local`: a NameServer and a broker inside the gateway's process, the one-command default.
//!
//! Like RocketMQ 5's proxy "local mode": the same NameServer and broker the separate binaries
//! run, started in-process, with their data under one directory. Both still listen on TCP
//! (127.0.0.1:9876 and 127.0.0.1:10911 by default), so RocketMQ clients and `tern-broker` tools
//! can share the topics with HTTP clients. The gateway itself reaches the broker through
//! in-process pipes (`tern_core::protocol::in_process`), not the socket.

use std::path::{Path, PathBuf};

use tern_core::broker::{Broker, BrokerConfig};
use tern_namesrv::{NameServer, NamesrvConfig};

use crate::receipt::generate_key;

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub data_dir: PathBuf,
    pub namesrv_listen: String,
    pub broker_listen: String,
    /// A broker configuration file (conf/broker.toml format); listen address, NameServer and
    /// store path are overridden by the options above.
    pub broker_config: Option<PathBuf>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            data_dir: PathBuf::from("data"),
            namesrv_listen: "127.0.0.1:9876".into(),
            broker_listen: "127.0.0.1:10911".into(),
            broker_config: None,
        }
    }
}

/// The embedded processes.
pub struct Local {
    pub namesrv: NameServer,
    pub broker: Broker,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("embedded NameServer: {0}")]
    Namesrv(String),
    #[error("embedded broker: {0}")]
    Broker(String),
    #[error("receipt key file {path}: {source}")]
    ReceiptKey {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Local {
    pub async fn start(options: &LocalOptions) -> Result<Local, LocalError> {
        let namesrv = NameServer::start(NamesrvConfig {
            listen: options.namesrv_listen.clone(),
            ..NamesrvConfig::default()
        })
        .await
        .map_err(|e| LocalError::Namesrv(e.to_string()))?;
        let mut config = match &options.broker_config {
            Some(path) => {
                BrokerConfig::load(path).map_err(|e| LocalError::Broker(e.to_string()))?
            }
            None => BrokerConfig::default(),
        };
        config.listen = options.broker_listen.clone();
        config.namesrv_addrs = vec![namesrv.local_addr().to_string()];
        config.store.store_path = options.data_dir.join("broker");
        config.auto_create_topic = true;
        let broker = match Broker::start(config).await {
            Ok(b) => b,
            Err(e) => {
                namesrv.shutdown().await;
                return Err(LocalError::Broker(e.to_string()));
            }
        };
        // The gateway's calls to its own broker skip the loopback socket.
        broker.serve_in_process();
        Ok(Local { namesrv, broker })
    }

    pub fn namesrv_addr(&self) -> String {
        self.namesrv.local_addr().to_string()
    }

    /// Stops the broker (flush, offsets, unregister), then the NameServer.
    pub async fn shutdown(self) -> Result<(), LocalError> {
        let result = self
            .broker
            .shutdown()
            .await
            .map_err(|e| LocalError::Broker(e.to_string()));
        self.namesrv.shutdown().await;
        result
    }
}

/// The receipt key of a local gateway: kept in `<data>/gateway/receipt.key` so receipts stay
/// valid across restarts (the file is created with a random key on first start, mode 0600).
pub fn local_receipt_key(data_dir: &Path) -> Result<String, LocalError> {
    let path = data_dir.join("gateway").join("receipt.key");
    let err = |source| LocalError::ReceiptKey {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok(text.trim().to_string()),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        Err(_) => {}
    }
    std::fs::create_dir_all(path.parent().unwrap_or(data_dir)).map_err(err)?;
    let key: String = generate_key().iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        file.write_all(key.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(key)
}
