//! Tern's gateway: the stateless HTTP edge in front of the brokers.
//!
//! - [`config`]: `conf/gateway.toml` and its limits.
//! - [`server`]: connections, TLS, HTTP/1.1 + HTTP/2, slow-client bounds, graceful shutdown.
//! - [`http`]: the v1 API, one module per endpoint family.
//! - [`auth`]: JWT verification and scopes; [`names`]: tenant namespacing.
//! - [`receipt`]: sealed receipts; [`rate_limit`]: per-tenant token buckets.
//! - [`state`]: [`Gateway`], what every handler shares (clients, keys, metrics).
//! - [`metrics`]: Prometheus text; [`error`]: problem+json.
//! - [`local`]: `--local`, a NameServer and a broker in the same process.
//!
//! The gateway keeps no durable state: everything that must outlive a request or be shared by
//! gateway instances (offsets, in-flight receipts, the idempotency window) lives in the brokers.

pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod local;
pub mod metrics;
pub mod names;
pub mod rate_limit;
pub mod receipt;
pub mod server;
pub mod state;

pub use state::Gateway;
