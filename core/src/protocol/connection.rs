//! One remoting connection, used by both ends.
//!
//! A connection owns two tasks: a reader that decodes frames and a writer that drains a bounded
//! queue of encoded frames, coalescing whatever is queued into one `write` so that many requests
//! in flight cost few system calls. Responses are matched to callers by `opaque`; requests from the
//! peer go to a [`RequestHandler`], each on its own task, so a long-polling pull never blocks the
//! requests behind it. A frame that does not decode closes the connection (with a log line): the
//! byte stream can no longer be trusted, but no other connection is affected.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use super::codes::response;
use super::command::RemotingCommand;
use super::error::RemotingError;
use super::frame::{decode_frame, encode_frame};

/// Frames queued for the writer before senders wait.
const WRITE_QUEUE_FRAMES: usize = 4096;
/// Bytes the writer gathers into one `write` call.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Requests from the peer handled at once on one connection; the reader waits beyond that.
pub const MAX_INBOUND_IN_FLIGHT: usize = 4096;
/// Our own requests awaiting a response on one connection.
pub const MAX_OUTBOUND_IN_FLIGHT: usize = 65_536;

/// Serves requests that arrive on a connection.
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request. `None` sends nothing (oneway requests never get a response, whatever
    /// this returns).
    fn handle(
        &self,
        conn: Connection,
        request: RemotingCommand,
    ) -> impl Future<Output = Option<RemotingCommand>> + Send;

    /// Called once when the connection has closed.
    fn connection_closed(&self, _conn: &Connection) {}
}

/// A handler for connections that never expect requests: answers REQUEST_CODE_NOT_SUPPORTED.
pub struct RejectRequests;

impl RequestHandler for RejectRequests {
    async fn handle(&self, _conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        Some(RemotingCommand::error(
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!("request code {} not supported here", request.code),
        ))
    }
}

struct Shared {
    id: u64,
    peer: String,
    peer_addr: Option<SocketAddr>,
    next_opaque: AtomicI32,
    pending: Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>,
    writer: mpsc::Sender<Bytes>,
    closed: AtomicBool,
    closed_notify: Notify,
}

/// A handle to a live connection; cheap to clone.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
}

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

impl Connection {
    /// Starts the reader and writer tasks for `stream`; requests from the peer go to `handler`.
    pub fn spawn<H: RequestHandler>(stream: TcpStream, handler: Arc<H>) -> Connection {
        let _ = stream.set_nodelay(true);
        let peer_addr = stream.peer_addr().ok();
        let peer = peer_addr.map_or_else(|| "?".into(), |a| a.to_string());
        let (read, write) = stream.into_split();
        Connection::spawn_io(read, write, peer, peer_addr, handler)
    }

    /// Starts a connection over any byte stream halves (a socket's, or an in-process pipe's:
    /// see [`super::in_process`]). `peer` names the other side in logs and tables.
    pub fn spawn_io<R, W, H>(
        read: R,
        write: W,
        peer: String,
        peer_addr: Option<SocketAddr>,
        handler: Arc<H>,
    ) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
        H: RequestHandler,
    {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
        let conn = Connection {
            shared: Arc::new(Shared {
                id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
                peer,
                peer_addr,
                next_opaque: AtomicI32::new(1),
                pending: Mutex::new(HashMap::new()),
                writer: tx,
                closed: AtomicBool::new(false),
                closed_notify: Notify::new(),
            }),
        };
        tokio::spawn(write_loop(write, rx, conn.clone()));
        tokio::spawn(read_loop(read, conn.clone(), handler));
        conn
    }

    /// Connects to `addr` and starts the connection.
    pub async fn connect<H: RequestHandler>(
        addr: &str,
        timeout: Duration,
        handler: Arc<H>,
    ) -> Result<Connection, RemotingError> {
        if let Some(stream) = super::in_process::connect(addr) {
            let (read, write) = tokio::io::split(stream);
            return Ok(Connection::spawn_io(
                read,
                write,
                format!("in-process:{addr}"),
                addr.parse().ok(),
                handler,
            ));
        }
        let sock: SocketAddr = addr
            .parse()
            .map_err(|_| RemotingError::BadAddress(addr.to_string()))?;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(sock)).await {
            Err(_) => {
                return Err(RemotingError::ConnectTimeout {
                    addr: addr.into(),
                    timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(RemotingError::Connect {
                    addr: addr.into(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(s)) => s,
        };
        Ok(Connection::spawn(stream, handler))
    }

    /// A process-unique id, for tables keyed by connection.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The peer's `ip:port`.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// The peer's address, when the socket knew it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared.peer_addr
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Resolves once the connection has closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.closed_notify.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Closes the connection: pending calls fail with `ConnectionClosed`.
    pub fn close(&self) {
        if !self.shared.closed.swap(true, Ordering::AcqRel) {
            let pending: Vec<_> = self
                .shared
                .pending
                .lock()
                .expect("pending lock")
                .drain()
                .collect();
            drop(pending); // dropping the senders wakes every waiter with an error
            self.shared.closed_notify.notify_waiters();
        }
    }

    /// Sends `request` and waits up to `timeout` for its response.
    pub async fn invoke(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, RemotingError> {
        let opaque = self.next_opaque();
        request.opaque = opaque;
        request.flag &= !super::codes::flag::RESPONSE;
        let frame = encode_frame(&request)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().expect("pending lock");
            if pending.len() >= MAX_OUTBOUND_IN_FLIGHT {
                return Err(RemotingError::TooManyInFlight {
                    addr: self.peer().into(),
                    limit: MAX_OUTBOUND_IN_FLIGHT,
                });
            }
            pending.insert(opaque, tx);
        }
        // Checked after registering so that `close` either sees our entry or we see `closed`.
        if self.is_closed() {
            self.forget(opaque);
            return Err(RemotingError::ConnectionClosed {
                addr: self.peer().into(),
            });
        }
        let outcome = tokio::time::timeout(timeout, async {
            self.send_frame(frame).await?;
            rx.await.map_err(|_| RemotingError::ConnectionClosed {
                addr: self.peer().into(),
            })
        })
        .await;
        match outcome {
            Ok(result) => {
                if result.is_err() {
                    self.forget(opaque);
                }
                result
            }
            Err(_) => {
                self.forget(opaque);
                Err(RemotingError::Timeout {
                    addr: self.peer().into(),
                    timeout,
                })
            }
        }
    }

    /// Sends `request` as a oneway call: no response is expected.
    pub async fn invoke_oneway(&self, mut request: RemotingCommand) -> Result<(), RemotingError> {
        request.opaque = self.next_opaque();
        request.mark_oneway();
        let frame = encode_frame(&request)?;
        self.send_frame(frame).await
    }

    /// Encodes a response (already paired with its request by `answering`). One that cannot be
    /// encoded (too large) becomes a SYSTEM_ERROR saying why, so the caller is never left waiting.
    fn encode_response(&self, response: RemotingCommand) -> Bytes {
        match encode_frame(&response) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(peer = %self.peer(), error = %e, "response cannot be encoded");
                let mut fallback = RemotingCommand::error(response::SYSTEM_ERROR, e.to_string())
                    .with_serialize_type(response.serialize_type);
                fallback.opaque = response.opaque;
                fallback.flag = response.flag;
                encode_frame(&fallback).expect("a short error response always encodes")
            }
        }
    }

    async fn send_frame(&self, frame: Bytes) -> Result<(), RemotingError> {
        if self.is_closed() {
            return Err(RemotingError::ConnectionClosed {
                addr: self.peer().into(),
            });
        }
        self.shared
            .writer
            .send(frame)
            .await
            .map_err(|_| RemotingError::ConnectionClosed {
                addr: self.peer().into(),
            })
    }

    fn next_opaque(&self) -> i32 {
        // Wraps after 2^31 calls; a wrapped opaque can only collide with a call pending for that
        // long, which the per-call timeout rules out.
        self.shared.next_opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    fn forget(&self, opaque: i32) {
        self.shared
            .pending
            .lock()
            .expect("pending lock")
            .remove(&opaque);
    }

    fn complete(&self, response: RemotingCommand) {
        let waiter = self
            .shared
            .pending
            .lock()
            .expect("pending lock")
            .remove(&response.opaque);
        match waiter {
            Some(tx) => {
                let _ = tx.send(response);
            }
            None => tracing::debug!(
                peer = %self.peer(),
                opaque = response.opaque,
                "response for a call that is no longer waiting (timed out?)"
            ),
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id())
            .field("peer", &self.peer())
            .finish()
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut socket: W,
    mut rx: mpsc::Receiver<Bytes>,
    conn: Connection,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH_BYTES);
    loop {
        let first = tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break,
            },
            _ = conn.closed() => break,
        };
        let result = if first.len() >= WRITE_BATCH_BYTES {
            socket.write_all(&first).await
        } else {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < WRITE_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(frame) => batch.extend_from_slice(&frame),
                    Err(_) => break,
                }
            }
            socket.write_all(&batch).await
        };
        if let Err(e) = result {
            tracing::debug!(peer = %conn.peer(), error = %e, "write failed; closing connection");
            break;
        }
    }
    conn.close();
    let _ = socket.shutdown().await;
}

/// Frames handled between two hand-overs to the writer and the woken callers.
const FRAMES_PER_TURN: usize = 16;

/// Frames up to this size are gathered into one buffer per read batch; larger ones (pull
/// responses) are queued on their own to avoid copying them.
const INLINE_FRAME_BYTES: usize = 16 * 1024;

async fn read_loop<R: AsyncRead + Unpin, H: RequestHandler>(
    mut socket: R,
    conn: Connection,
    handler: Arc<H>,
) {
    let permits = Arc::new(Semaphore::new(MAX_INBOUND_IN_FLIGHT));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Responses produced while handling one read's frames, written with one writer wake-up.
    let mut batch = BytesMut::new();
    'outer: loop {
        let mut handled = 0usize;
        loop {
            // Hand over every few frames: flush the responses gathered so far and let the
            // writer and the woken callers run, so that the peer can work on the first answers
            // while this side decodes the rest. Without it both sides take turns on whole
            // batches and a two-core machine runs at the speed of one.
            handled += 1;
            if handled.is_multiple_of(FRAMES_PER_TURN) {
                if !flush_batch(&conn, &mut batch).await {
                    break 'outer;
                }
                tokio::task::yield_now().await;
            }
            match decode_frame(&mut buf) {
                Ok(Some(command)) => {
                    if command.is_response() {
                        conn.complete(command);
                        continue;
                    }
                    // Most requests (a send under ASYNC_FLUSH, an offset query) finish without
                    // waiting: run them here, on the reader, and spare a task spawn and two
                    // cross-task wake-ups. One that has to wait moves to its own task.
                    let mut task = Box::pin(serve_one(handler.clone(), conn.clone(), command));
                    match std::future::poll_fn(|cx| Poll::Ready(task.as_mut().poll(cx))).await {
                        Poll::Ready(Some(frame)) if frame.len() <= INLINE_FRAME_BYTES => {
                            batch.extend_from_slice(&frame);
                        }
                        Poll::Ready(Some(frame)) => {
                            if !flush_batch(&conn, &mut batch).await
                                || conn.send_frame(frame).await.is_err()
                            {
                                break 'outer;
                            }
                        }
                        Poll::Ready(None) => {}
                        Poll::Pending => {
                            let Ok(permit) = permits.clone().acquire_owned().await else {
                                break 'outer;
                            };
                            let conn = conn.clone();
                            tokio::spawn(async move {
                                let _permit = permit;
                                if let Some(frame) = task.await
                                    && let Err(e) = conn.send_frame(frame).await
                                {
                                    tracing::debug!(peer = %conn.peer(), error = %e, "response not sent");
                                }
                            });
                        }
                    }
                    if batch.len() >= WRITE_BATCH_BYTES && !flush_batch(&conn, &mut batch).await {
                        break 'outer;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %conn.peer(), error = %e, "malformed frame; closing connection");
                    break 'outer;
                }
            }
        }
        if !flush_batch(&conn, &mut batch).await {
            break;
        }
        let read = tokio::select! {
            read = socket.read_buf(&mut buf) => read,
            _ = conn.closed() => break,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(peer = %conn.peer(), error = %e, "read failed; closing connection");
                break;
            }
        }
    }
    conn.close();
    handler.connection_closed(&conn);
}

/// Queues the gathered responses; `false` when the connection is gone.
async fn flush_batch(conn: &Connection, batch: &mut BytesMut) -> bool {
    if batch.is_empty() {
        return true;
    }
    conn.send_frame(batch.split().freeze()).await.is_ok()
}

/// Handles one request; the encoded response, or `None` for oneway requests and handlers that
/// answer nothing.
async fn serve_one<H: RequestHandler>(
    handler: Arc<H>,
    conn: Connection,
    request: RemotingCommand,
) -> Option<Bytes> {
    let oneway = request.is_oneway();
    let template = RemotingCommand {
        opaque: request.opaque,
        serialize_type: request.serialize_type,
        ..RemotingCommand::default()
    };
    let response = handler.handle(conn.clone(), request).await;
    if oneway {
        return None;
    }
    Some(conn.encode_response(response?.answering(&template)))
}
