//! RocketMQ's remoting protocol (reference §7): frames, commands, typed headers and bodies, and
//! the tokio connection, server and client pool every Tern process talks through.
//!
//! - [`frame`]: bytes ⇄ [`RemotingCommand`], both header encodings, every size limited.
//! - [`header`] / [`headers`]: typed views of `extFields`; [`body`]: JSON bodies.
//! - [`connection`]: one socket, many calls in flight, requests served concurrently.
//! - [`server`] / [`client`]: accepting connections; one pooled connection per peer.

pub mod batch;
pub mod body;
pub mod client;
pub mod codes;
pub mod command;
pub mod connection;
pub mod error;
pub mod frame;
pub mod header;
pub mod headers;
pub mod in_process;
pub mod retry_policy;
pub mod server;
pub mod subscription;

pub use client::RemotingClient;
pub use command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
pub use connection::{Connection, RejectRequests, RequestHandler};
pub use error::RemotingError;
pub use frame::{FrameError, MAX_FRAME_BYTES, decode_frame, encode_frame};
pub use header::{CommandHeader, HeaderError};
pub use server::{ServerHandle, serve, serve_listener};
