//! Hostile or broken input costs the sender its connection, never the server or other peers.

mod common;

use std::time::Duration;

use common::{Broker, body, register, route_brokers, start};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A: Broker = Broker {
    cluster: "c",
    name: "broker-a",
    addr: "10.0.0.1:10911",
    id: 0,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_its_own_connection() {
    let (namesrv, ns) = start(120_000, 5_000).await;
    let broker = RemotingClient::new();
    register(&broker, &ns, &A, Some(&body(1, &[("t", 1)]))).await;
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
        &[0, 0, 0, 12, 9, 0, 0, 4, 1, 2, 3, 4, 5, 6, 7, 8], // unknown serialize type
        &[0, 0, 0, 10, 0, 0, 0, 6, b'{', b'"', b'c', b'o', b'd', b'e'], // truncated JSON
    ];
    for bytes in garbage {
        let mut socket = tokio::net::TcpStream::connect(&ns).await.unwrap();
        socket.write_all(bytes).await.unwrap();
        // The server closes the connection: EOF (or a reset), not a hang.
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("the server closes a connection that sent garbage");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // The broker's connection, opened before the garbage, still works, and so do new ones.
    register(&broker, &ns, &A, None).await;
    let fresh = RemotingClient::new();
    assert_eq!(route_brokers(&fresh, &ns, "t").await, ["broker-a"]);
    namesrv.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_error_codes() {
    let (namesrv, ns) = start(120_000, 5_000).await;
    let client = RemotingClient::new();
    let resp = client
        .invoke(&ns, RemotingCommand::request(12_345), common::CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);

    let mut no_addr = common::register_request(&A, None);
    no_addr.ext_fields.remove("brokerAddr");
    let mut bad_body = common::register_request(&A, None).with_body(b"\xff\xfe".to_vec());
    bad_body.ext_fields.remove("bodyCrc32");
    for (req, needle) in [
        (no_addr, "header field `brokerAddr` is missing"),
        (bad_body, "malformed"),
        (
            RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC),
            "`topic`",
        ),
    ] {
        let resp = client.invoke(&ns, req, common::CALL_TIMEOUT).await.unwrap();
        assert_eq!(resp.code, response::SYSTEM_ERROR);
        assert!(resp.remark_or_empty().contains(needle), "{:?}", resp.remark);
    }
    // Nothing above registered anything; the connection is still usable.
    let info = common::cluster_info(&client, &ns).await;
    assert!(info.broker_addr_table.is_empty());
    namesrv.shutdown().await;
}
