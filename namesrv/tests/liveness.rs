//! Brokers leave the routes when their connection closes or when they go silent.

mod common;

use std::time::Duration;

use common::{Broker, body, register, route, route_brokers, start, wait_until};
use tern_core::protocol::RemotingClient;

const A: Broker = Broker {
    cluster: "c",
    name: "broker-a",
    addr: "10.0.0.1:10911",
    id: 0,
};
const B: Broker = Broker {
    cluster: "c",
    name: "broker-b",
    addr: "10.0.0.2:10911",
    id: 0,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_drops_its_broker_at_once() {
    // A two-minute timeout: only the closed connection can explain the drop.
    let (namesrv, ns) = start(120_000, 5_000).await;
    let broker_a = RemotingClient::new();
    let broker_b = RemotingClient::new();
    let reader = RemotingClient::new();
    register(&broker_a, &ns, &A, Some(&body(1, &[("t", 1)]))).await;
    register(&broker_b, &ns, &B, Some(&body(1, &[("t", 1)]))).await;
    assert_eq!(
        route_brokers(&reader, &ns, "t").await,
        ["broker-a", "broker-b"]
    );

    broker_b.close(&ns);
    let took = wait_until("broker-b gone", Duration::from_secs(2), || async {
        route_brokers(&reader, &ns, "t").await == ["broker-a"]
    })
    .await;
    assert!(took < Duration::from_secs(2));
    let info = common::cluster_info(&reader, &ns).await;
    assert!(!info.broker_addr_table.contains_key("broker-b"));

    broker_a.close(&ns);
    wait_until("broker-a gone", Duration::from_secs(2), || async {
        route(&reader, &ns, "t").await.is_none()
    })
    .await;
    assert!(
        common::cluster_info(&reader, &ns)
            .await
            .cluster_addr_table
            .is_empty()
    );
    namesrv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_dropped_after_the_timeout() {
    let (namesrv, ns) = start(1_000, 100).await;
    let broker_a = RemotingClient::new();
    let broker_b = RemotingClient::new();
    let reader = RemotingClient::new();
    register(&broker_a, &ns, &A, Some(&body(1, &[("t", 1)]))).await;
    register(&broker_b, &ns, &B, Some(&body(1, &[("t", 1)]))).await;

    // `a` keeps registering (over the same, open connection); `b` falls silent.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2_000) {
        register(&broker_a, &ns, &A, None).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(route_brokers(&reader, &ns, "t").await, ["broker-a"]);
    let info = common::cluster_info(&reader, &ns).await;
    assert_eq!(
        info.broker_addr_table.keys().collect::<Vec<_>>(),
        ["broker-a"]
    );

    // Once `a` stops, it goes too, within timeout + scan interval (plus scheduling slack).
    let took = wait_until("broker-a gone", Duration::from_secs(3), || async {
        route(&reader, &ns, "t").await.is_none()
    })
    .await;
    assert!(
        took >= Duration::from_millis(500),
        "dropped too early: {took:?}"
    );
    namesrv.shutdown().await;
}
