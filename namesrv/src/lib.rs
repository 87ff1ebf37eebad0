//! Tern's NameServer: the route registry brokers register with and clients ask for routes.
//!
//! Not built yet: this crate arrives with the broker/NameServer issue (#3). It exists now so the
//! workspace has its final shape and the dependency rule (`namesrv` → `core`, never back) is
//! enforced by Cargo from the start.
