//! Errors of remoting calls.

use std::time::Duration;

use super::frame::FrameError;

/// A remoting call that did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemotingError {
    #[error("connect to {addr} failed: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connect to {addr} timed out after {timeout:?}")]
    ConnectTimeout { addr: String, timeout: Duration },
    #[error("no response from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    #[error("connection to {addr} closed before the response arrived")]
    ConnectionClosed { addr: String },
    #[error("request cannot be encoded: {0}")]
    Encode(#[from] FrameError),
    #[error("address `{0}` is not host:port")]
    BadAddress(String),
    #[error("too many requests in flight on the connection to {addr} (limit {limit})")]
    TooManyInFlight { addr: String, limit: usize },
}
