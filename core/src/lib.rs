//! Tern's broker core.
//!
//! This crate owns everything a broker process is made of; the NameServer and the gateway depend on
//! it, never the other way round.
//!
//! - [`store`]: the message store: CommitLog, ConsumeQueue, IndexFile, flush, recovery, retention.
//! - [`broker`]: the broker process: request handlers, topics, offsets, long polling.
//! - [`daemon`]: logging, address announcement and signals shared by the server binaries.
//! - [`protocol`]: RocketMQ's remoting protocol: frame codec, typed headers, connections.
//! - [`client`]: the client library (producer, pull consumer, consumer groups) over that protocol.
//! - [`java_hash`]: Java's `String.hashCode`, which RocketMQ uses for tags codes, index slots and
//!   ordering-key queue selection, so every process must compute it bit for bit the same way.

pub mod broker;
pub mod client;
pub mod daemon;
pub mod java_hash;
pub mod protocol;
pub mod store;
