//! The one error type of the benchmark binary.
//!
//! A benchmark that hits an ordinary failure (disk full, bad flag, store refusing to open) must say
//! what it was doing and exit non-zero, never panic half-way with a backtrace and leave gigabytes
//! of files behind; every fallible step therefore returns this type.

use std::io;

use tern_core::broker::BrokerError;
use tern_core::protocol::RemotingError;
use tern_core::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line value that parses but makes no sense (e.g. a zero body size).
    #[error("invalid arguments: {0}")]
    Args(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("{context}: {source}")]
    Store { context: String, source: StoreError },
    /// A remoting call to the broker (or an echo server) that got no response.
    #[error("{context}: {source}")]
    Remoting {
        context: String,
        source: RemotingError,
    },
    /// The in-process broker refused to start or stop.
    #[error("{context}: {source}")]
    Broker {
        context: String,
        source: BrokerError,
    },
    /// An HTTP exchange with the gateway (or the bare server) that failed below the status code:
    /// connecting, a closed connection, a malformed response.
    #[error("{context}: {source}")]
    Http {
        context: String,
        source: hyper::Error,
    },
    /// Ctrl-C: the run stopped early; everything it started has been cleaned up.
    #[error("interrupted")]
    Interrupted,
    #[error("writing JSON results: {0}")]
    Json(#[from] serde_json::Error),
    /// The store behaved in a way that makes the measurement meaningless (e.g. a put timed out).
    #[error("benchmark invalid: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// Adds "what we were doing" to I/O and store errors, like `anyhow::Context` without the crate.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Io {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, StoreError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Store {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, RemotingError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Remoting {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, BrokerError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Broker {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, hyper::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| BenchError::Http {
            context: what(),
            source,
        })
    }
}
