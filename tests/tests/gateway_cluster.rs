//! Several stateless `tern-gateway` processes in front of real NameServer and broker processes,
//! sharing one receipt key: what the shared architecture doc promises about a gateway fleet
//! ("HTTP API", "Receipts", "Idempotency", "Ordering keys").
//!
//! - [`stateless`]: produce, receive and ack on different gateways; receipts cross gateways,
//!   and a gateway with another key refuses them.
//! - [`gateway_restart`]: a gateway SIGKILLed under load and restarted loses nothing.
//! - [`ordering`]: per-key order and queue placement over two gateways and two brokers.
//! - [`idempotency`]: an `Idempotency-Key` retried through another gateway.
//! - [`broker_restart`]: a SYNC_FLUSH broker SIGKILLed and restarted while HTTP clients retry.
//! - [`sse`]: a manual-ack event stream on one gateway, acks through another.

#[path = "gateway_cluster/broker_restart.rs"]
mod broker_restart;
#[path = "gateway_cluster/gateway_restart.rs"]
mod gateway_restart;
#[path = "gateway_cluster/idempotency.rs"]
mod idempotency;
#[path = "gateway_cluster/ordering.rs"]
mod ordering;
#[path = "gateway_cluster/sse.rs"]
mod sse;
#[path = "gateway_cluster/stateless.rs"]
mod stateless;
#[path = "gateway_cluster/support.rs"]
mod support;
