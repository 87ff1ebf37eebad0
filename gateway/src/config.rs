//! The gateway's configuration: `conf/gateway.toml`, every key with its default.
//!
//! Every limit the gateway enforces on clients is a field here, so an operator can read the whole
//! envelope in one file, and [`GatewayConfig::validate`] refuses values that would disable a
//! limit (zero sizes, unbounded waits) instead of discovering them under load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::rate_limit::RateLimitConfig;

/// Longest long-poll `wait` a client may ask for (the contract's bound).
pub const MAX_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// HTTP listen address (HTTP/1.1 and h2c; HTTPS with ALPN h2/http1.1 when `tls` is set).
    pub listen: String,
    /// NameServers (`host:port`) the gateway finds brokers through.
    pub namesrv_addrs: Vec<String>,
    /// Allows a non-loopback `listen` without auth. Without it the gateway refuses to start that
    /// way: an open broker on a network is almost always a mistake.
    pub insecure_no_auth: bool,
    /// Creates a topic on its first produce (`--local` turns this on).
    pub auto_create_topics: bool,
    /// Queues of an auto-created topic.
    pub default_topic_queues: i32,
    /// Keys that seal receipts (64 hex characters or base64 of 32 bytes). The first seals, every
    /// one opens, so keys can be rotated. Every gateway instance must share them.
    pub receipt_keys: Vec<String>,
    /// A file holding one receipt key per line (read after `receipt_keys`).
    pub receipt_key_file: Option<PathBuf>,
    /// Broker call timeout (a produce, an ack); long polls add their wait to it.
    pub broker_timeout_ms: u64,
    pub tls: Option<TlsConfig>,
    pub limits: Limits,
    pub sse: SseConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8080".into(),
            namesrv_addrs: vec!["127.0.0.1:9876".into()],
            insecure_no_auth: false,
            auto_create_topics: false,
            default_topic_queues: 8,
            receipt_keys: Vec::new(),
            receipt_key_file: None,
            broker_timeout_ms: 3_000,
            tls: None,
            limits: Limits::default(),
            sse: SseConfig::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// What one client may ask of the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest produce body (raw, or a message of a batch after decoding). The broker's own
    /// limit is 4 MiB; larger bodies get 413 before they reach it.
    pub max_message_bytes: usize,
    /// Largest JSON request body (a batch, an ack list).
    pub max_json_bytes: usize,
    /// Most messages in one batch produce.
    pub max_batch_messages: usize,
    /// Most receipts in one ack or nack.
    pub max_receipts: usize,
    /// Most messages one receive or pull returns.
    pub max_receive: u32,
    /// Longest `wait` of a pull or receive, in seconds (at most 30).
    pub max_wait_secs: u64,
    /// Request head (request line + headers) size bound, in bytes.
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// A client must send a whole request head within this time (slowloris bound).
    pub header_read_timeout_ms: u64,
    /// A request body must arrive within this time.
    pub body_read_timeout_ms: u64,
    /// Concurrent connections at most; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Most receipts' worth of messages held in one SSE stream's in-flight window.
    pub max_in_flight: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 4 * 1024 * 1024,
            max_json_bytes: 8 * 1024 * 1024,
            max_batch_messages: 256,
            max_receipts: 1024,
            max_receive: 32,
            max_wait_secs: 30,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 10_000,
            max_in_flight: 1024,
        }
    }
}

impl Limits {
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// A `: ping` comment is sent this often on every stream, so proxies keep it open and a
    /// client notices a dead gateway.
    pub ping_interval_secs: u64,
    /// `maxInFlight` when the client names none.
    pub default_max_in_flight: u32,
    /// Invisible time of messages delivered to a manual-ack stream.
    pub invisible_secs: u64,
    /// Concurrent SSE streams at most (each holds a long poll open at the broker).
    pub max_streams: usize,
}

impl Default for SseConfig {
    fn default() -> Self {
        SseConfig {
            ping_interval_secs: 15,
            default_max_in_flight: 64,
            invisible_secs: 60,
            max_streams: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("listen `{}`: {e}", self.listen)))
    }

    pub fn broker_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_timeout_ms)
    }

    /// Checks every limit; the gateway refuses to start on a bad value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        let listen = self.listen_addr()?;
        if !self.auth.enabled && !listen.ip().is_loopback() && !self.insecure_no_auth {
            return Err(ConfigError::Invalid(format!(
                "listen {listen} is not a loopback address and auth is off: configure [auth] or \
                 pass --insecure-no-auth"
            )));
        }
        if self.namesrv_addrs.is_empty() {
            return bad("namesrv_addrs must name at least one NameServer");
        }
        if !(1..=1024).contains(&self.default_topic_queues) {
            return bad("default_topic_queues must be 1..=1024");
        }
        if !(10..=300_000).contains(&self.broker_timeout_ms) {
            return bad("broker_timeout_ms must be 10..=300000");
        }
        let l = &self.limits;
        let checks: [(bool, &str); 12] = [
            (
                (1..=tern_core::client::message::MAX_MESSAGE_BODY).contains(&l.max_message_bytes),
                "limits.max_message_bytes must be 1..=4194304 (the broker's limit)",
            ),
            (
                (1024..=64 << 20).contains(&l.max_json_bytes),
                "limits.max_json_bytes must be 1 KiB..=64 MiB",
            ),
            (
                (1..=1024).contains(&l.max_batch_messages),
                "limits.max_batch_messages must be 1..=1024",
            ),
            (
                (1..=1024).contains(&l.max_receipts),
                "limits.max_receipts must be 1..=1024",
            ),
            (
                (1..=1024).contains(&l.max_receive),
                "limits.max_receive must be 1..=1024",
            ),
            (
                l.max_wait_secs <= MAX_WAIT.as_secs(),
                "limits.max_wait_secs must be 0..=30",
            ),
            (
                // hyper's HTTP/1 read buffer, which bounds the head, is at least 8 KiB.
                (8 * 1024..=1 << 20).contains(&l.max_header_bytes),
                "limits.max_header_bytes must be 8 KiB..=1 MiB",
            ),
            (
                (8..=1000).contains(&l.max_headers),
                "limits.max_headers must be 8..=1000",
            ),
            (
                (100..=600_000).contains(&l.header_read_timeout_ms),
                "limits.header_read_timeout_ms must be 100..=600000",
            ),
            (
                (100..=600_000).contains(&l.body_read_timeout_ms),
                "limits.body_read_timeout_ms must be 100..=600000",
            ),
            (
                (1..=1_000_000).contains(&l.max_connections),
                "limits.max_connections must be 1..=1000000",
            ),
            (
                (1..=65_536).contains(&l.max_in_flight),
                "limits.max_in_flight must be 1..=65536",
            ),
        ];
        if let Some((_, message)) = checks.iter().find(|(ok, _)| !ok) {
            return bad(message);
        }
        let s = &self.sse;
        if !(1..=300).contains(&s.ping_interval_secs) {
            return bad("sse.ping_interval_secs must be 1..=300");
        }
        if !(1..=l.max_in_flight).contains(&s.default_max_in_flight) {
            return bad("sse.default_max_in_flight must be 1..=limits.max_in_flight");
        }
        if !(1..=43_200).contains(&s.invisible_secs) {
            return bad("sse.invisible_secs must be 1..=43200");
        }
        if !(1..=1_000_000).contains(&s.max_streams) {
            return bad("sse.max_streams must be 1..=1000000");
        }
        self.rate_limit.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_file_lists_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/gateway.toml");
        let file = GatewayConfig::load(&path).unwrap();
        assert_eq!(file, GatewayConfig::default());
        file.validate().unwrap();
    }

    #[test]
    fn refuses_open_listen_without_auth() {
        let config = GatewayConfig {
            listen: "0.0.0.0:8080".into(),
            ..GatewayConfig::default()
        };
        assert!(config.validate().is_err());
        let insecure = GatewayConfig {
            insecure_no_auth: true,
            ..config
        };
        insecure.validate().unwrap();
    }

    #[test]
    fn refuses_unbounded_limits() {
        let mut config = GatewayConfig::default();
        config.limits.max_wait_secs = 31;
        assert!(config.validate().is_err());
        let mut config = GatewayConfig::default();
        config.limits.max_header_bytes = 0;
        assert!(config.validate().is_err());
        config.limits.max_header_bytes = 4096;
        assert!(config.validate().is_err());
    }
}
