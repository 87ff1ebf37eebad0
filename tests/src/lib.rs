//! Support code for Tern's cross-process tests: tests that start real binaries and watch them from
//! outside, because what they check (surviving a SIGKILL, a second process refused by the store
//! lock) cannot be observed from inside one process.
//!
//! - [`process`]: starting `tern-namesrv` / `tern-broker` / `tern-gateway` children on ephemeral
//!   loopback ports.
//! - [`http`]: an HTTP/SSE client for the gateway tests.
//! - [`store_crash`]: what the `store_crash_writer` child writes and reports, shared with the
//!   `store_crash` integration test that kills it and checks the store afterwards.

pub mod http;
pub mod process;
pub mod store_crash;
