//! Connections, server and client pool over real loopback sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tern_core::protocol::codes::response;
use tern_core::protocol::{
    Connection, RemotingClient, RemotingCommand, RemotingError, RequestHandler, SerializeType,
    serve,
};
use tokio::io::AsyncWriteExt;

/// Echoes code 1 (after an optional delay given in ext `sleepMs`), counts oneway code 2.
struct Echo {
    oneways: AtomicUsize,
    closed: AtomicUsize,
}

impl RequestHandler for Echo {
    async fn handle(&self, _conn: Connection, req: RemotingCommand) -> Option<RemotingCommand> {
        match req.code {
            1 => {
                if let Some(ms) = req.ext("sleepMs").and_then(|v| v.parse().ok()) {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Some(RemotingCommand::success().with_body(req.body.clone()))
            }
            2 => {
                self.oneways.fetch_add(1, Ordering::SeqCst);
                None
            }
            _ => Some(RemotingCommand::error(
                response::REQUEST_CODE_NOT_SUPPORTED,
                "no",
            )),
        }
    }

    fn connection_closed(&self, _conn: &Connection) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

async fn echo_server() -> (tern_core::protocol::ServerHandle, Arc<Echo>, String) {
    let echo = Arc::new(Echo {
        oneways: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
    });
    let server = serve("127.0.0.1:0", echo.clone()).await.unwrap();
    let addr = server.local_addr().to_string();
    (server, echo, addr)
}

#[tokio::test]
async fn many_requests_in_flight_on_one_connection() {
    let (server, _echo, addr) = echo_server().await;
    let client = Arc::new(RemotingClient::new());
    let mut calls = Vec::new();
    for i in 0..2000u32 {
        let client = client.clone();
        let addr = addr.clone();
        calls.push(tokio::spawn(async move {
            // Later requests answer first: responses must still find their callers.
            let delay = (2000 - i) % 7;
            let req = RemotingCommand::request(1)
                .with_ext("sleepMs", delay)
                .with_body(i.to_be_bytes().to_vec())
                .with_serialize_type(if i % 2 == 0 {
                    SerializeType::Json
                } else {
                    SerializeType::RocketMq
                });
            let resp = client
                .invoke(&addr, req, Duration::from_secs(10))
                .await
                .unwrap();
            assert!(resp.is_response());
            assert_eq!(resp.body.as_ref(), i.to_be_bytes());
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(
        server.connection_count(),
        1,
        "the pool keeps one connection per peer"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn oneway_timeout_and_unknown_code() {
    let (server, echo, addr) = echo_server().await;
    let client = RemotingClient::new();
    for _ in 0..10 {
        client
            .invoke_oneway(&addr, RemotingCommand::request(2), Duration::from_secs(1))
            .await
            .unwrap();
    }
    let slow = RemotingCommand::request(1).with_ext("sleepMs", 2000);
    let err = client
        .invoke(&addr, slow, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Timeout { .. }), "{err}");
    let resp = client
        .invoke(&addr, RemotingCommand::request(99), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
    // The oneways were sent before the last call, on the same ordered connection.
    assert_eq!(echo.oneways.load(Ordering::SeqCst), 10);
    server.shutdown().await;
}

async fn ping(client: &RemotingClient, addr: &str) -> bytes::Bytes {
    let req = RemotingCommand::request(1).with_body(b"ping".to_vec());
    client
        .invoke(addr, req, Duration::from_secs(2))
        .await
        .unwrap()
        .body
}

#[tokio::test]
async fn garbage_closes_only_its_own_connection() {
    let (server, echo, addr) = echo_server().await;
    let client = RemotingClient::new();
    assert_eq!(ping(&client, &addr).await.as_ref(), b"ping");

    for garbage in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xFF; 64],
        vec![0, 0, 0, 8, 9, 0, 0, 0, 1, 2, 3, 4],
        vec![0, 0, 0, 12, 0, 0, 0, 8, b'{', b'x', b'x', b'}', 0, 0, 0, 0],
    ] {
        let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
        raw.write_all(&garbage).await.unwrap();
        // The server closes the socket: a read returns EOF (or a reset).
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::AsyncReadExt;
            raw.read_to_end(&mut sink).await
        })
        .await
        .expect("server closes a connection that sent garbage");
        let _ = read;
    }
    assert_eq!(
        ping(&client, &addr).await.as_ref(),
        b"ping",
        "other connections unaffected"
    );
    assert!(echo.closed.load(Ordering::SeqCst) >= 4);
    server.shutdown().await;
}

#[tokio::test]
async fn closed_connection_fails_pending_calls_and_pool_reconnects() {
    let (server, _echo, addr) = echo_server().await;
    let client = Arc::new(RemotingClient::new());
    let pending = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let slow = RemotingCommand::request(1).with_ext("sleepMs", 5000);
            client.invoke(&addr, slow, Duration::from_secs(10)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .connection(&addr, Duration::from_secs(1))
        .await
        .unwrap()
        .close();
    let err = pending.await.unwrap().unwrap_err();
    assert!(
        matches!(err, RemotingError::ConnectionClosed { .. }),
        "{err}"
    );
    let resp = client
        .invoke(&addr, RemotingCommand::request(1), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(resp.is_success());
    server.shutdown().await;

    let err = RemotingClient::new()
        .invoke(
            "127.0.0.1:1",
            RemotingCommand::request(1),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RemotingError::Connect { .. }), "{err}");
}
