//! In-process endpoints: a server in this process that clients in this process reach through a
//! memory pipe instead of a loopback socket.
//!
//! `tern-gateway --local` runs the broker in the gateway's process (as RocketMQ 5's proxy local
//! mode calls its broker in the same JVM). Over loopback TCP every call costs a write and a read
//! on each side, which dominated the gateway's produce profile; a registered endpoint keeps the
//! same protocol (frames, connections, handlers) over `tokio::io::duplex` pipes. The server keeps
//! listening on its socket for everyone else. A client's [`Connection::connect`] to a registered
//! address gets a pipe; nothing else changes for either side.
//!
//! [`Connection::connect`]: super::Connection::connect

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::DuplexStream;

/// Bytes each direction of a pipe buffers before the writer waits for the reader.
pub const PIPE_BYTES: usize = 256 * 1024;

/// Opens a new pipe to a server and returns the client's end.
pub type Connector = Arc<dyn Fn() -> DuplexStream + Send + Sync>;

fn endpoints() -> &'static Mutex<HashMap<String, Connector>> {
    static ENDPOINTS: OnceLock<Mutex<HashMap<String, Connector>>> = OnceLock::new();
    ENDPOINTS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Makes `addr` reachable in-process through `connector` (replacing an earlier registration).
pub fn register(addr: &str, connector: Connector) {
    endpoints()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(addr.to_string(), connector);
}

/// Removes `addr`'s endpoint: later connections go over the network again.
pub fn unregister(addr: &str) {
    endpoints()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(addr);
}

/// A pipe to `addr`'s in-process server, if one is registered.
pub fn connect(addr: &str) -> Option<DuplexStream> {
    let connector = endpoints()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(addr)
        .cloned()?;
    Some(connector())
}
