//! The loopback baselines: what a request/response exchange costs on this machine without a
//! broker behind it.
//!
//! Two servers, both answering every SEND_MESSAGE_V2 frame with a canned response of the broker's
//! size:
//! - **TCP echo** walks the length prefixes of what arrives and writes one canned frame per request,
//!   all replies of one read in one `write`; its client ([`tcp_load`]) keeps exactly N frames in
//!   flight over one connection, with one writer and one reader task. Nothing is decoded: this is
//!   the floor that loopback TCP, the kernel and tokio impose on the pattern.
//! - **Remoting echo** is the real protocol stack (`serve`, [`Connection`], the same
//!   `RemotingClient` load as the broker scenarios) with a handler that decodes the send header and
//!   answers at once. "Broker ÷ remoting echo" therefore isolates the broker's own work (topic
//!   lookup, the store's append, flushing), and "remoting echo ÷ TCP echo" the protocol stack's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tern_core::protocol::codes::response;
use tern_core::protocol::headers::{SendMessageRequestHeader, SendMessageResponseHeader};
use tern_core::protocol::{
    Connection, MAX_FRAME_BYTES, RemotingCommand, RequestHandler, SerializeType, ServerHandle,
    encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use super::load::{Tally, Window, interrupted};
use crate::error::{BenchError, Context, Result};

/// A send response like the broker's: a 32-hex-digit offset message id, a queue id and offset.
pub fn send_response(queue_id: i32) -> RemotingCommand {
    RemotingCommand::success().with_header(&SendMessageResponseHeader {
        msg_id: "7F00000100002A9F00000000DEADBEEF".into(),
        queue_id,
        queue_offset: 1_234_567,
        transaction_id: None,
        idempotent_replayed: None,
    })
}

/// The canned response frames of the TCP echo server, indexed by the request's serialize type
/// code (the byte after the length prefix), so each request gets a response in its own encoding.
fn canned_frames() -> Result<[Bytes; 2]> {
    let encode = |serialize: SerializeType| {
        let mut command = send_response(0).with_serialize_type(serialize);
        command.opaque = 1;
        encode_frame(&command)
            .map_err(|e| BenchError::Invalid(format!("encoding the canned response: {e}")))
    };
    Ok([
        encode(SerializeType::Json)?,
        encode(SerializeType::RocketMq)?,
    ])
}

/// Answers every SEND_MESSAGE_V2 after decoding its header, as the broker's first step does.
pub struct EchoHandler;

impl RequestHandler for EchoHandler {
    async fn handle(&self, _conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        Some(
            match SendMessageRequestHeader::read_v2(&request.ext_fields) {
                Ok(header) => send_response(header.queue_id),
                Err(e) => RemotingCommand::error(response::SYSTEM_ERROR, e.to_string()),
            },
        )
    }
}

/// Binds both echo servers on loopback and serves them on the current runtime. The remoting
/// server runs as long as its handle is kept.
pub async fn start_servers() -> Result<(SocketAddr, ServerHandle)> {
    let frames = Arc::new(canned_frames()?);
    let tcp = TcpListener::bind("127.0.0.1:0")
        .await
        .context(|| "binding the TCP echo server".to_owned())?;
    let tcp_addr = tcp
        .local_addr()
        .context(|| "TCP echo server address".to_owned())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            tokio::spawn(tcp_echo_connection(stream, frames.clone()));
        }
    });
    let remoting = tern_core::protocol::serve("127.0.0.1:0", Arc::new(EchoHandler))
        .await
        .context(|| "binding the remoting echo server".to_owned())?;
    Ok((tcp_addr, remoting))
}

/// Splits complete frames off the front of `buf`; calls `each` with every frame's first header
/// byte (its serialize type). Errors on a length outside the protocol's limits.
fn take_frames(buf: &mut BytesMut, mut each: impl FnMut(u8)) -> Result<()> {
    while buf.len() >= 4 {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if !(4..=MAX_FRAME_BYTES).contains(&len) {
            return Err(BenchError::Invalid(format!("echo: frame length {len}")));
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            break;
        }
        each(buf[4]);
        buf.advance(4 + len);
    }
    Ok(())
}

async fn tcp_echo_connection(mut stream: TcpStream, frames: Arc<[Bytes; 2]>) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let parsed = take_frames(&mut buf, |serialize| {
            out.extend_from_slice(&frames[usize::from(serialize == 1)]);
        });
        if parsed.is_err() || (!out.is_empty() && stream.write_all(&out).await.is_err()) {
            return;
        }
        out.clear();
    }
}

/// The TCP echo load: `request` (one encoded SEND_MESSAGE_V2 frame) sent with exactly
/// `in_flight` frames outstanding on one connection until the window closes.
///
/// A writer task sends as many frames as the window has free slots, in one `write`; the reader
/// matches replies to send times in order (the server answers in order) and frees a slot per
/// reply. That is the least work a client can do for this exchange.
pub async fn tcp_load(
    addr: &str,
    request: Bytes,
    in_flight: usize,
    window: Window,
) -> Result<Tally> {
    let stream = TcpStream::connect(addr)
        .await
        .context(|| format!("connecting to the TCP echo server {addr}"))?;
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let writer = {
        let slots = slots.clone();
        tokio::spawn(async move {
            let mut batch: Vec<u8> = Vec::with_capacity(request.len() * 64);
            // Ends when the semaphore is closed (the reader is done) or the socket fails.
            while let Ok(first) = slots.acquire().await {
                first.forget();
                let mut frames = 1;
                while let Ok(more) = slots.try_acquire() {
                    more.forget();
                    frames += 1;
                }
                let now = Instant::now();
                batch.clear();
                for _ in 0..frames {
                    batch.extend_from_slice(&request);
                    if sent_tx.send(now).is_err() {
                        return;
                    }
                }
                if write.write_all(&batch).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut tally = Tally::default();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let outcome = loop {
        if interrupted() {
            break Err(BenchError::Interrupted);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => {
                break Err(BenchError::Invalid(
                    "the TCP echo server closed the connection".into(),
                ));
            }
            Err(e) => break Err(e).context(|| "reading from the TCP echo server".to_owned()),
            Ok(_) => {}
        }
        let done = Instant::now();
        let mut replies = 0usize;
        let mut unmatched = false;
        let parsed = take_frames(&mut buf, |_| match sent_rx.try_recv() {
            Ok(started) => {
                tally.record(&window, started, done);
                replies += 1;
            }
            Err(_) => unmatched = true,
        });
        if let Err(e) = parsed {
            break Err(e);
        }
        if unmatched {
            break Err(BenchError::Invalid(
                "TCP echo: a reply without a request".into(),
            ));
        }
        if window.is_over(done) {
            break Ok(());
        }
        slots.add_permits(replies);
    };
    slots.close();
    writer.abort();
    outcome.map(|()| tally)
}
