//! A tokio remoting server: accepts connections and hands their requests to one handler.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::DuplexStream;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::command::RemotingCommand;
use super::connection::{Connection, RequestHandler};
use super::in_process::{Connector, PIPE_BYTES};

/// Connections one server accepts at once; beyond it new sockets are closed with a warning.
pub const MAX_CONNECTIONS: usize = 10_000;

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    local_addr: SocketAddr,
    /// Serves one in-process pipe (the server's end) like an accepted socket.
    serve_pipe: Arc<dyn Fn(DuplexStream) + Send + Sync>,
    stop: watch::Sender<bool>,
    connections: Arc<Mutex<HashMap<u64, Connection>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every open connection.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().expect("task lock").take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let open: Vec<Connection> = self
            .connections
            .lock()
            .expect("connections lock")
            .values()
            .cloned()
            .collect();
        for conn in open {
            conn.close();
        }
    }

    /// A connector for [`super::in_process::register`]: each call opens a pipe whose far end
    /// this server serves like an accepted connection (same handler, same connection table).
    pub fn in_process_connector(&self) -> Connector {
        let serve_pipe = self.serve_pipe.clone();
        Arc::new(move || {
            let (client, server) = tokio::io::duplex(PIPE_BYTES);
            serve_pipe(server);
            client
        })
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.connections.lock().expect("connections lock").len()
    }
}

/// Wraps the user's handler to keep the server's connection table current.
struct Tracked<H> {
    inner: Arc<H>,
    connections: Arc<Mutex<HashMap<u64, Connection>>>,
}

impl<H: RequestHandler> RequestHandler for Tracked<H> {
    async fn handle(&self, conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        self.inner.handle(conn, request).await
    }

    fn connection_closed(&self, conn: &Connection) {
        self.connections
            .lock()
            .expect("connections lock")
            .remove(&conn.id());
        self.inner.connection_closed(conn);
    }
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and serves it with `handler`.
pub async fn serve<H: RequestHandler>(addr: &str, handler: Arc<H>) -> io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    Ok(serve_listener(listener, handler))
}

/// Serves an already bound listener.
pub fn serve_listener<H: RequestHandler>(listener: TcpListener, handler: Arc<H>) -> ServerHandle {
    let local_addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    let (stop, mut stopped) = watch::channel(false);
    let connections = Arc::new(Mutex::new(HashMap::new()));
    let tracked = Arc::new(Tracked {
        inner: handler,
        connections: connections.clone(),
    });
    let serve_pipe = {
        let tracked = tracked.clone();
        let table = connections.clone();
        Arc::new(move |pipe: DuplexStream| {
            let (read, write) = tokio::io::split(pipe);
            let conn =
                Connection::spawn_io(read, write, "in-process".into(), None, tracked.clone());
            table
                .lock()
                .expect("connections lock")
                .insert(conn.id(), conn);
        })
    };
    let table = connections.clone();
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            if table.lock().expect("connections lock").len() >= MAX_CONNECTIONS {
                tracing::warn!(%peer, limit = MAX_CONNECTIONS, "connection limit reached; closing");
                drop(stream);
                continue;
            }
            let conn = Connection::spawn(stream, tracked.clone());
            table
                .lock()
                .expect("connections lock")
                .insert(conn.id(), conn);
        }
    });
    ServerHandle {
        local_addr,
        serve_pipe,
        stop,
        connections,
        task: Mutex::new(Some(task)),
    }
}
