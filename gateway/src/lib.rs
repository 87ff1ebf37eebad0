//! Tern's gateway: the stateless HTTP/QUIC edge in front of the brokers.

pub mod auth;
pub mod rate_limit;
pub mod receipt;
