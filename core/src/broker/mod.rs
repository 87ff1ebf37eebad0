//! The broker (reference §7–8): a remoting server in front of the [store](crate::store).
//!
//! - [`Broker`]: start, serve, shut down; the timers (registration, offset persistence, client
//!   expiry).
//! - `processor`: one handler module per family of request codes.
//! - `topic_table`, `consumer_offsets`: the broker's durable tables under `<store>/config/`.
//! - `consumer_groups`: heartbeat-driven group membership (volatile, rebuilt by heartbeats).
//! - `long_poll`: held pulls, woken by the store's dispatcher.
//! - `idempotency`: the idempotency window (recent keys of idempotent sends, bounded).
//! - `queue_locks`: orderly consumers' queue locks (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ).
//! - `registration`: REGISTER_BROKER to every NameServer.
//! - `delay`: how the send path stores delay-level and timer messages; `schedule` and `timer`:
//!   the services that deliver them when due.

mod config;
mod consumer_groups;
mod consumer_offsets;
pub(crate) mod delay;
mod error;
mod idempotency;
mod json_file;
mod lifecycle;
mod long_poll;
mod pop;
mod processor;
mod queue_locks;
mod registration;
mod retry;
mod revive;
mod schedule;
mod state;
mod subscription_groups;
mod timer;
mod topic_table;

pub use config::{
    BrokerConfig, MAX_PULL_SUSPEND, MAX_QUEUE_LOCK_TTL_MS, MAX_QUEUES_PER_TOPIC,
    MIN_TIMER_MAX_DELAY_MS, valid_name,
};
pub use error::BrokerError;
pub use idempotency::{
    ENTRY_OVERHEAD_BYTES as IDEMPOTENCY_ENTRY_OVERHEAD_BYTES, IdempotencyKeyError,
    MAX_IDEMPOTENCY_KEY_LEN, MAX_IDEMPOTENCY_KEYS, MAX_IDEMPOTENCY_WINDOW_MS,
    check_key as check_idempotency_key,
};
pub use lifecycle::Broker;
pub use queue_locks::{MAX_LOCK_BATCH, MAX_QUEUE_LOCKS};
pub use topic_table::{MAX_TOPICS, TopicError, valid_topic_name};
