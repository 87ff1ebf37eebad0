//! Errors that stop a NameServer from starting. Errors of single requests are not here: they
//! become response codes with remarks (see [`crate::processor`]), and a bad registration is a
//! [`crate::route_table::RouteError`].

/// The NameServer could not start.
#[derive(Debug, thiserror::Error)]
pub enum NamesrvError {
    /// The configuration file is unreadable, malformed or holds a value out of range.
    #[error("configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}
