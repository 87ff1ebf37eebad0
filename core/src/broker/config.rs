//! The broker's configuration (`conf/broker.toml`).
//!
//! Every field has a default, so a file only needs what differs; unknown keys are refused so that
//! a typo is an error rather than a silently ignored setting. The `[store]` table is the store's own
//! [`StoreConfig`].

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::StoreConfig;

use super::error::BrokerError;
use super::idempotency::{MAX_IDEMPOTENCY_KEYS, MAX_IDEMPOTENCY_WINDOW_MS};

/// Most NameServers a broker registers with.
pub const MAX_NAMESRV_ADDRS: usize = 64;
/// Longest a pull may be held, whatever the client asks (longer asks are shortened).
pub const MAX_PULL_SUSPEND: Duration = Duration::from_secs(60);
/// Most request threads.
pub const MAX_WORKER_THREADS: usize = 256;
/// Longest invisible time a pop may ask for (7 days).
pub const MAX_POP_INVISIBLE_MS: u64 = 7 * 24 * 3_600_000;
/// Upper bound of `pop_max_inflight`.
pub const MAX_POP_INFLIGHT: usize = 10_000_000;
/// Upper bound of `pop_max_held`.
pub const MAX_POP_HELD: usize = 1_000_000;
/// Longest a queue lock may be configured to last without renewal (1 h).
pub const MAX_QUEUE_LOCK_TTL_MS: u64 = 3_600_000;
/// Most queues a topic may have.
pub const MAX_QUEUES_PER_TOPIC: i32 = 1024;
/// `timer_max_delay_ms` may not be set below this (3 days, RocketMQ's default
/// `timerMaxDelaySec`): producers may count on at least that much.
pub const MIN_TIMER_MAX_DELAY_MS: u64 = 3 * 24 * 3600 * 1000;
/// `timer_max_delay_ms` at most (a year; due times must stay far from overflowing).
pub const MAX_TIMER_MAX_DELAY_MS: u64 = 365 * 24 * 3600 * 1000;
/// `timer_max_pending` at most (~50 bytes of memory each).
pub const MAX_TIMER_PENDING: u64 = 100_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// The broker group's name (`brokerName`); masters and slaves of a group share it.
    pub broker_name: String,
    pub cluster_name: String,
    /// 0 for the master, > 0 for slaves.
    pub broker_id: i64,
    /// Address the remoting server binds.
    pub listen: String,
    /// IP announced to NameServers and clients (the listen port is appended).
    pub broker_ip: String,
    /// NameServers to register with (`host:port`); the broker registers with every one.
    pub namesrv_addrs: Vec<String>,
    pub register_interval_ms: u64,
    pub register_timeout_ms: u64,
    /// Create a topic on its first send (with `default_topic_queues` queues). Off by default:
    /// a typo in a producer should be an error, not a new topic.
    pub auto_create_topic: bool,
    pub default_topic_queues: i32,
    /// Consumer offsets are written to disk this often (and on shutdown).
    pub offset_persist_interval_ms: u64,
    /// A held pull re-checks its queue this often even without an arrival signal.
    pub long_poll_recheck_ms: u64,
    /// Messages and bytes one pull returns at most (RocketMQ's in-memory transfer limits).
    pub max_pull_messages: i32,
    pub max_pull_bytes: i32,
    /// A client silent this long is dropped from its groups.
    pub client_expiry_ms: u64,
    /// Threads serving requests (`tern-broker` only; an embedding process brings its own
    /// runtime). 1, the default, is a current-thread runtime: requests are short and the store's
    /// own threads (dispatch, flush, group commit) do the heavy lifting, so one thread avoids
    /// cross-thread wake-ups (RocketMQ also sends on one thread by default,
    /// `sendMessageThreadPoolNums = 1`). 0 means one per CPU.
    pub worker_threads: usize,
    /// Bounds on a pop's invisible time (RocketMQ: 10 s ..= 12 h). A visibility change may go
    /// below the minimum, down to 0 (a nack: deliver again now).
    pub pop_min_invisible_ms: u64,
    pub pop_max_invisible_ms: u64,
    /// Most popped-but-unacknowledged messages the broker tracks; pops beyond it are refused
    /// (each costs about 100 bytes of memory and of snapshot).
    pub pop_max_inflight: usize,
    /// Most pops held waiting for messages at once; more are answered POLLING_FULL.
    pub pop_max_held: usize,
    /// Longest delay a timer message (`TIMER_DELIVER_MS` / `TIMER_DELAY_SEC`) may ask for; further
    /// is refused (MESSAGE_ILLEGAL). At least 3 days. Keep it below the store's retention
    /// (`file_reserved_time_secs`), or a timer's record may expire before it is due.
    pub timer_max_delay_ms: u64,
    /// Most timer messages waiting at once; further timer sends are refused (SYSTEM_BUSY) until
    /// some are delivered. Each waiting timer costs the broker ~50 bytes of memory.
    pub timer_max_pending: u64,
    /// How long a send's idempotency key (`__TERN_IDEMPOTENCY_KEY`) is remembered: a repeat
    /// within it is answered with the first result and stores nothing. 0 disables idempotent
    /// sends (keyed messages are then refused). Needs the store's index, which keeps the window
    /// across restarts.
    pub idempotency_window_ms: u64,
    /// Most keys remembered in memory (about 250 bytes + the key and topic each). Beyond it the
    /// oldest are evicted and answered from the IndexFile instead, which costs an index lookup
    /// per new key while memory is not complete.
    pub idempotency_max_keys: usize,
    /// How long a queue lock (LOCK_BATCH_MQ, orderly consumers) holds without renewal.
    pub queue_lock_ttl_ms: u64,
    pub store: StoreConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            broker_name: "broker-a".into(),
            cluster_name: "DefaultCluster".into(),
            broker_id: 0,
            listen: "0.0.0.0:10911".into(),
            broker_ip: "127.0.0.1".into(),
            namesrv_addrs: vec!["127.0.0.1:9876".into()],
            register_interval_ms: 30_000,
            register_timeout_ms: 6_000,
            auto_create_topic: false,
            default_topic_queues: 4,
            offset_persist_interval_ms: 5_000,
            long_poll_recheck_ms: 5_000,
            max_pull_messages: 32,
            max_pull_bytes: 256 * 1024,
            client_expiry_ms: 120_000,
            worker_threads: 1,
            pop_min_invisible_ms: 10_000,
            pop_max_invisible_ms: 12 * 3_600_000,
            pop_max_inflight: 200_000,
            pop_max_held: 10_000,
            timer_max_delay_ms: MIN_TIMER_MAX_DELAY_MS,
            timer_max_pending: 2_000_000,
            idempotency_window_ms: 600_000,
            idempotency_max_keys: 100_000,
            queue_lock_ttl_ms: 60_000,
            store: StoreConfig::default(),
        }
    }
}

impl BrokerConfig {
    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<BrokerConfig, BrokerError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| BrokerError::Config(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| BrokerError::Config(format!("{}: {e}", path.display())))
    }

    /// Checks every limit; the broker refuses to start on a bad value.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let bad = |m: String| Err(BrokerError::Config(m));
        if !valid_name(&self.broker_name) {
            return bad(format!(
                "broker_name `{}` must match [A-Za-z0-9_-]{{1,64}}",
                self.broker_name
            ));
        }
        if !valid_name(&self.cluster_name) {
            return bad(format!(
                "cluster_name `{}` must match [A-Za-z0-9_-]{{1,64}}",
                self.cluster_name
            ));
        }
        if self.broker_id < 0 {
            return bad("broker_id must be >= 0".into());
        }
        if self.namesrv_addrs.len() > MAX_NAMESRV_ADDRS {
            return bad(format!("at most {MAX_NAMESRV_ADDRS} namesrv_addrs"));
        }
        for addr in &self.namesrv_addrs {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!("namesrv address `{addr}` is not ip:port"));
            }
        }
        if self.broker_ip.parse::<std::net::IpAddr>().is_err() {
            return bad(format!(
                "broker_ip `{}` is not an IP address",
                self.broker_ip
            ));
        }
        if !(1..=MAX_QUEUES_PER_TOPIC).contains(&self.default_topic_queues) {
            return bad(format!(
                "default_topic_queues must be 1..={MAX_QUEUES_PER_TOPIC}"
            ));
        }
        if !(1..=crate::store::MAX_GET_COUNT as i32).contains(&self.max_pull_messages) {
            return bad(format!(
                "max_pull_messages must be 1..={}",
                crate::store::MAX_GET_COUNT
            ));
        }
        if !(1024..=crate::protocol::MAX_FRAME_BYTES as i32 / 2).contains(&self.max_pull_bytes) {
            return bad("max_pull_bytes must be 1 KiB ..= 8 MiB".into());
        }
        for (name, ms) in [
            ("register_interval_ms", self.register_interval_ms),
            ("register_timeout_ms", self.register_timeout_ms),
            (
                "offset_persist_interval_ms",
                self.offset_persist_interval_ms,
            ),
            ("long_poll_recheck_ms", self.long_poll_recheck_ms),
            ("client_expiry_ms", self.client_expiry_ms),
        ] {
            if ms == 0 || ms > 3_600_000 {
                return bad(format!("{name} must be 1 ..= 3600000"));
            }
        }
        if self.pop_min_invisible_ms == 0
            || self.pop_min_invisible_ms > self.pop_max_invisible_ms
            || self.pop_max_invisible_ms > MAX_POP_INVISIBLE_MS
        {
            return bad(format!(
                "pop invisible times must satisfy 1 <= pop_min_invisible_ms <= pop_max_invisible_ms <= {MAX_POP_INVISIBLE_MS}"
            ));
        }
        if !(1..=MAX_POP_INFLIGHT).contains(&self.pop_max_inflight) {
            return bad(format!("pop_max_inflight must be 1 ..= {MAX_POP_INFLIGHT}"));
        }
        if !(1..=MAX_POP_HELD).contains(&self.pop_max_held) {
            return bad(format!("pop_max_held must be 1 ..= {MAX_POP_HELD}"));
        }
        if self.worker_threads > MAX_WORKER_THREADS {
            return bad(format!("worker_threads must be 0 ..= {MAX_WORKER_THREADS}"));
        }
        if !(MIN_TIMER_MAX_DELAY_MS..=MAX_TIMER_MAX_DELAY_MS).contains(&self.timer_max_delay_ms) {
            return bad(format!(
                "timer_max_delay_ms must be {MIN_TIMER_MAX_DELAY_MS} (3 days) ..= {MAX_TIMER_MAX_DELAY_MS} (a year)"
            ));
        }
        if !(1..=MAX_TIMER_PENDING).contains(&self.timer_max_pending) {
            return bad(format!(
                "timer_max_pending must be 1 ..= {MAX_TIMER_PENDING}"
            ));
        }
        if self.idempotency_window_ms > MAX_IDEMPOTENCY_WINDOW_MS {
            return bad(format!(
                "idempotency_window_ms must be 0 ..= {MAX_IDEMPOTENCY_WINDOW_MS}"
            ));
        }
        if self.idempotency_window_ms > 0 && !self.store.message_index_enable {
            return bad(
                "idempotency_window_ms > 0 needs [store] message_index_enable = true (the index \
                 keeps the window across restarts); set idempotency_window_ms = 0 to disable"
                    .into(),
            );
        }
        if !(1..=MAX_IDEMPOTENCY_KEYS).contains(&self.idempotency_max_keys) {
            return bad(format!(
                "idempotency_max_keys must be 1 ..= {MAX_IDEMPOTENCY_KEYS}"
            ));
        }
        if !(1..=MAX_QUEUE_LOCK_TTL_MS).contains(&self.queue_lock_ttl_ms) {
            return bad(format!(
                "queue_lock_ttl_ms must be 1 ..= {MAX_QUEUE_LOCK_TTL_MS}"
            ));
        }
        self.store
            .validate()
            .map_err(|e| BrokerError::Config(format!("[store]: {e}")))?;
        Ok(())
    }
}

/// Broker and cluster names: what NameServer tables and file names can hold safely.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
