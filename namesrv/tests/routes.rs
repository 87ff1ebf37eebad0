//! Registrations and route queries over real sockets.

mod common;

use std::collections::BTreeSet;

use common::{Broker, body, cluster_info, register, route, route_brokers, route_request, start};
use tern_core::protocol::body::{TopicList, decode_json};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::{RegisterBrokerResponseHeader, UnregisterBrokerRequestHeader};
use tern_core::protocol::{RemotingClient, RemotingCommand, SerializeType};

const A: Broker = Broker {
    cluster: "east",
    name: "broker-a",
    addr: "10.0.0.1:10911",
    id: 0,
};
const B: Broker = Broker {
    cluster: "west",
    name: "broker-b",
    addr: "10.0.0.2:10911",
    id: 0,
};

#[tokio::test]
async fn two_brokers_in_two_clusters() {
    let (namesrv, ns) = start(120_000, 5_000).await;
    let client = RemotingClient::new();
    register(
        &client,
        &ns,
        &A,
        Some(&body(1, &[("orders", 8), ("audit", 1)])),
    )
    .await;
    register(&client, &ns, &B, Some(&body(1, &[("orders", 4)]))).await;

    // The raw JSON, with RocketMQ's field names.
    let resp = client
        .invoke(&ns, route_request("orders"), common::CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resp.code, response::SUCCESS);
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["queueDatas"][0]["brokerName"], "broker-a");
    assert_eq!(json["queueDatas"][0]["writeQueueNums"], 8);
    assert_eq!(json["queueDatas"][0]["perm"], 6);
    assert_eq!(json["queueDatas"][1]["readQueueNums"], 4);
    assert_eq!(json["brokerDatas"][0]["cluster"], "east");
    assert_eq!(json["brokerDatas"][1]["brokerAddrs"]["0"], "10.0.0.2:10911");

    let audit = route(&client, &ns, "audit").await.unwrap();
    assert_eq!(audit.broker_datas.len(), 1);
    assert_eq!(audit.broker_datas[0].master_addr(), Some(A.addr));

    let info = cluster_info(&client, &ns).await;
    assert_eq!(
        info.cluster_addr_table["east"],
        BTreeSet::from(["broker-a".to_string()])
    );
    assert_eq!(
        info.cluster_addr_table["west"],
        BTreeSet::from(["broker-b".to_string()])
    );
    assert_eq!(info.broker_addr_table["broker-b"].broker_addrs[&0], B.addr);

    let resp = client
        .invoke(
            &ns,
            RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
            common::CALL_TIMEOUT,
        )
        .await
        .unwrap();
    let list: TopicList = decode_json(&resp.body).unwrap();
    assert_eq!(
        list.topic_list,
        BTreeSet::from(["audit".into(), "orders".into()])
    );
    namesrv.shutdown().await;
}

#[tokio::test]
async fn an_unknown_topic_is_topic_not_exist() {
    let (namesrv, ns) = start(120_000, 5_000).await;
    let client = RemotingClient::new();
    let resp = client
        .invoke(&ns, route_request("ghost"), common::CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST);
    assert_eq!(
        resp.remark_or_empty(),
        "No topic route info in name server for the topic: ghost"
    );
    namesrv.shutdown().await;
}

#[tokio::test]
async fn re_registering_fewer_topics_removes_stale_queue_data() {
    let (namesrv, ns) = start(120_000, 5_000).await;
    let client = RemotingClient::new();
    register(&client, &ns, &A, Some(&body(1, &[("x", 1), ("shared", 1)]))).await;
    register(&client, &ns, &B, Some(&body(1, &[("shared", 1)]))).await;
    register(&client, &ns, &A, Some(&body(2, &[("shared", 1)]))).await;
    assert!(route(&client, &ns, "x").await.is_none());
    assert_eq!(
        route_brokers(&client, &ns, "shared").await,
        ["broker-a", "broker-b"]
    );
    register(&client, &ns, &B, Some(&body(2, &[]))).await;
    assert_eq!(route_brokers(&client, &ns, "shared").await, ["broker-a"]);
    // A registration without a body is a heartbeat: the routes stay.
    register(&client, &ns, &A, None).await;
    assert_eq!(route_brokers(&client, &ns, "shared").await, ["broker-a"]);
    namesrv.shutdown().await;
}

#[tokio::test]
async fn a_slave_learns_its_master() {
    let (namesrv, ns) = start(120_000, 5_000).await;
    let client = RemotingClient::new();
    let master = register(&client, &ns, &A, Some(&body(1, &[("t", 4)]))).await;
    let header: RegisterBrokerResponseHeader = master.header().unwrap();
    assert_eq!(header.master_addr, None);
    let slave = Broker {
        addr: "10.0.0.3:10911",
        id: 1,
        ..A
    };
    // The slave's topic table never changes queue data.
    let resp = register(&client, &ns, &slave, Some(&body(9, &[("slave-only", 1)]))).await;
    let header: RegisterBrokerResponseHeader = resp.header().unwrap();
    assert_eq!(header.master_addr.as_deref(), Some(A.addr));
    assert_eq!(header.ha_server_addr, Some(common::ha_addr(A.addr)));
    assert!(route(&client, &ns, "slave-only").await.is_none());
    let r = route(&client, &ns, "t").await.unwrap();
    assert_eq!(r.broker_datas[0].broker_addrs.len(), 2);
    assert_eq!(r.broker_datas[0].broker_addrs[&1], slave.addr);

    // The master unregisters: the slave keeps the group (and its routes) alive for readers.
    let unregister = RemotingCommand::request_with(
        request::UNREGISTER_BROKER,
        &UnregisterBrokerRequestHeader {
            broker_name: A.name.into(),
            broker_addr: A.addr.into(),
            cluster_name: A.cluster.into(),
            broker_id: 0,
        },
    );
    let resp = client
        .invoke(&ns, unregister, common::CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resp.code, response::SUCCESS);
    let r = route(&client, &ns, "t").await.unwrap();
    assert_eq!(r.broker_datas[0].master_addr(), None);
    assert_eq!(r.broker_datas[0].broker_addrs.len(), 1);
    namesrv.shutdown().await;
}

#[tokio::test]
async fn binary_headers_are_answered_in_kind() {
    let (namesrv, ns) = start(120_000, 5_000).await;
    let client = RemotingClient::new();
    let req = common::register_request(&A, Some(&body(1, &[("bin", 2)])))
        .with_serialize_type(SerializeType::RocketMq);
    let resp = client.invoke(&ns, req, common::CALL_TIMEOUT).await.unwrap();
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    assert_eq!(resp.serialize_type, SerializeType::RocketMq);
    let req = route_request("bin").with_serialize_type(SerializeType::RocketMq);
    let resp = client.invoke(&ns, req, common::CALL_TIMEOUT).await.unwrap();
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(resp.serialize_type, SerializeType::RocketMq);
    let r: tern_core::protocol::body::TopicRouteData = decode_json(&resp.body).unwrap();
    assert_eq!(r.queue_datas[0].write_queue_nums, 2);
    namesrv.shutdown().await;
}
