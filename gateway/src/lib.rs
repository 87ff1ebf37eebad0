//! Tern's gateway: the stateless HTTP/QUIC edge in front of the brokers.
//!
//! Not built yet: this crate arrives with the gateway issue (#5). It exists now so the workspace has
//! its final shape and the dependency rule (`gateway` → `core`, never back) is enforced by Cargo
//! from the start.
