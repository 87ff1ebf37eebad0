//! Tern's RocketMQ client: producing, pulling and consuming in groups over the remoting protocol.
//!
//! Used by the gateway, the cross-process tests and the benchmark. It talks to NameServers and
//! brokers exactly like RocketMQ's Java client does (reference §7–8), so it interoperates with
//! both Tern and RocketMQ processes.
//!
//! - [`ClientConfig`]: NameServers, timeouts and the periodic intervals, validated.
//! - [`route`]: topic routes from the NameServers ([`RouteCache`], [`TopicRoute`],
//!   [`MessageQueue`]).
//! - [`Producer`]: send, ordered send, send to a queue, batch send; retries on another broker.
//! - [`PullConsumer`]: pull by offset (long polling), consumer offsets, queue offsets.
//! - [`ConsumerGroup`]: clustering or broadcasting consumption with rebalance, heartbeats,
//!   acknowledgements and offset commits, delivering through a [`MessageStream`].
//! - [`PopConsumer`]: pop consumption (the broker assigns messages; ack, nack, visibility).
//! - [`message_id`] / [`client_id`]: `UNIQ_KEY` generation and client identity.
//! - [`queue_lock`]: raw LOCK_BATCH_MQ / UNLOCK_BATCH_MQ calls for orderly consumption.
//! - [`Admin`]: broker groups, topic creation, deletion and listing, queue and group offsets
//!   (lag, resets), message lookups by id or key.
//! - [`rebalance`]: RocketMQ's average allocation; [`process_queue`]: the safe commit offset.
//!
//! Every method that reaches the network returns [`ClientError`]; nothing a peer sends can make
//! the client panic.

pub mod admin;
pub mod client_id;
pub mod config;
pub mod consumer;
pub mod consumer_config;
pub mod error;
mod idempotent;
pub mod membership;
pub mod message;
pub mod message_id;
pub mod pop;
pub mod process_queue;
pub mod producer;
pub mod pull;
pub mod queue_lock;
pub mod rebalance;
pub mod route;
pub mod subscription;

#[cfg(test)]
mod tests;

pub use admin::{Admin, GroupQueueOffset, QueueOffsets, ResetTarget};
pub use config::ClientConfig;
pub use consumer::{ConsumerGroup, MessageStream};
pub use consumer_config::{AckMode, ConsumeFrom, ConsumerConfig, MessageModel};
pub use error::ClientError;
pub use message::{Message, ReceivedMessage};
pub use message_id::new_unique_id;
pub use pop::{PopConsumer, PoppedMessage, Receipt, ReceiveOptions};
pub use process_queue::ProcessQueue;
pub use producer::{BatchSendResult, Producer, SendResult, SendStatus};
pub use pull::{PullConsumer, PullResult, PullStatus};
pub use queue_lock::{lock_queues, unlock_queues};
pub use rebalance::allocate_average;
pub use route::{MessageQueue, RouteCache, TopicRoute};
pub use subscription::Subscription;
