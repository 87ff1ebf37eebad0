//! A pool of remoting connections, one per peer address, shared by every caller.
//!
//! One connection carries many requests at once (responses are matched by `opaque`), so the pool
//! never needs more than one per address. A closed connection is replaced on the next call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::command::RemotingCommand;
use super::connection::{Connection, RejectRequests, RequestHandler};
use super::error::RemotingError;

/// Time allowed for a TCP connect, unless the call's own timeout is shorter.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

/// Connections to any number of peers.
pub struct RemotingClient<H: RequestHandler = RejectRequests> {
    handler: Arc<H>,
    slots: Mutex<HashMap<String, Slot>>,
    /// The connections made so far, for the lock-free-ish fast path of [`Self::connection`].
    live: Mutex<HashMap<String, Connection>>,
    connect_timeout: Duration,
}

impl RemotingClient<RejectRequests> {
    /// A client that rejects requests from its peers.
    pub fn new() -> RemotingClient<RejectRequests> {
        RemotingClient::with_handler(Arc::new(RejectRequests))
    }
}

impl Default for RemotingClient<RejectRequests> {
    fn default() -> Self {
        RemotingClient::new()
    }
}

impl<H: RequestHandler> RemotingClient<H> {
    /// A client whose connections serve peer requests with `handler`.
    pub fn with_handler(handler: Arc<H>) -> RemotingClient<H> {
        RemotingClient {
            handler,
            slots: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The live connection to `addr`, connecting if there is none.
    pub async fn connection(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<Connection, RemotingError> {
        // Fast path, taken by every call but the first: a lookup by `&str`, no allocation, no
        // async lock.
        if let Some(conn) = self.live.lock().expect("live lock").get(addr)
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        let slot = {
            let mut slots = self.slots.lock().expect("slots lock");
            slots.entry(addr.to_string()).or_default().clone()
        };
        // One connect per address at a time; the others wait for its outcome.
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref()
            && !conn.is_closed()
        {
            return Ok(conn.clone());
        }
        let conn = Connection::connect(
            addr,
            timeout.min(self.connect_timeout),
            self.handler.clone(),
        )
        .await?;
        *guard = Some(conn.clone());
        self.live
            .lock()
            .expect("live lock")
            .insert(addr.to_string(), conn.clone());
        Ok(conn)
    }

    /// Calls `addr` and waits up to `timeout` in total (connecting included).
    pub async fn invoke(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let started = Instant::now();
        let conn = self.connection(addr, timeout).await?;
        let left = timeout.saturating_sub(started.elapsed());
        conn.invoke(request, left).await
    }

    /// A oneway call to `addr`.
    pub async fn invoke_oneway(
        &self,
        addr: &str,
        request: RemotingCommand,
        timeout: Duration,
    ) -> Result<(), RemotingError> {
        self.connection(addr, timeout)
            .await?
            .invoke_oneway(request)
            .await
    }

    /// Closes the connection to `addr`, if any.
    pub fn close(&self, addr: &str) {
        self.live.lock().expect("live lock").remove(addr);
        let slot = self.slots.lock().expect("slots lock").remove(addr);
        if let Some(slot) = slot
            && let Ok(guard) = slot.try_lock()
            && let Some(conn) = guard.as_ref()
        {
            conn.close();
        }
    }

    /// Closes every connection.
    pub fn close_all(&self) {
        self.live.lock().expect("live lock").clear();
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .expect("slots lock")
            .drain()
            .map(|(_, s)| s)
            .collect();
        for slot in slots {
            if let Ok(guard) = slot.try_lock()
                && let Some(conn) = guard.as_ref()
            {
                conn.close();
            }
        }
    }
}
