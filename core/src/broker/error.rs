//! Errors that stop a broker from starting or shutting down cleanly. Errors of single requests
//! are not here: they become response codes with remarks (see `processor`).

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{file} is corrupt: {reason}")]
    CorruptConfigFile { file: String, reason: String },
}
