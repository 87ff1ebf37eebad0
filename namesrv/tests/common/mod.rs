//! Helpers shared by the NameServer's socket tests: an in-process NameServer on 127.0.0.1:0 and
//! typed calls made through a real [`RemotingClient`].

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::time::{Duration, Instant};

use tern_core::protocol::body::{
    ClusterInfo, DataVersion, RegisterBrokerBody, TopicConfig, TopicRouteData, decode_json,
    encode_json,
};
use tern_core::protocol::codes::{perm, request, response};
use tern_core::protocol::headers::{RegisterBrokerRequestHeader, TopicRequestHeader};
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_namesrv::{NameServer, NamesrvConfig};

pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A NameServer on a free loopback port with the given timeout and scan interval.
pub async fn start(broker_timeout_ms: u64, scan_interval_ms: u64) -> (NameServer, String) {
    let namesrv = NameServer::start(NamesrvConfig {
        listen: "127.0.0.1:0".into(),
        broker_timeout_ms,
        scan_interval_ms,
    })
    .await
    .expect("start NameServer");
    let addr = namesrv.local_addr().to_string();
    (namesrv, addr)
}

/// A broker's identity for [`register`].
pub struct Broker<'a> {
    pub cluster: &'a str,
    pub name: &'a str,
    pub addr: &'a str,
    pub id: i64,
}

/// A registration body listing `topics` (name, queues) at data version `version`.
pub fn body(version: i64, topics: &[(&str, i32)]) -> RegisterBrokerBody {
    let mut body = RegisterBrokerBody::default();
    let wrapper = &mut body.topic_config_serialize_wrapper;
    for (name, queues) in topics {
        wrapper.topic_config_table.insert(
            name.to_string(),
            TopicConfig::new(*name, *queues, perm::READ | perm::WRITE),
        );
    }
    wrapper.data_version = DataVersion {
        timestamp: 1_700_000_000_000,
        counter: version,
    };
    body
}

/// The REGISTER_BROKER request a RocketMQ broker sends (JSON header, masked CRC).
pub fn register_request(broker: &Broker<'_>, body: Option<&RegisterBrokerBody>) -> RemotingCommand {
    let bytes = body.map(encode_json).unwrap_or_default();
    let header = RegisterBrokerRequestHeader {
        broker_name: broker.name.into(),
        broker_addr: broker.addr.into(),
        cluster_name: broker.cluster.into(),
        ha_server_addr: ha_addr(broker.addr),
        broker_id: broker.id,
        heartbeat_timeout_millis: None,
        compressed: Some(false),
        body_crc32: Some((crc32fast::hash(&bytes) & 0x7FFF_FFFF) as i32),
    };
    RemotingCommand::request_with(request::REGISTER_BROKER, &header).with_body(bytes)
}

/// The HA address the tests announce for a broker: its address with `-ha` appended.
pub fn ha_addr(addr: &str) -> String {
    format!("{addr}-ha")
}

/// Registers and expects SUCCESS; returns the response (its header has masterAddr for slaves).
pub async fn register(
    client: &RemotingClient,
    namesrv: &str,
    broker: &Broker<'_>,
    body: Option<&RegisterBrokerBody>,
) -> RemotingCommand {
    let resp = client
        .invoke(namesrv, register_request(broker, body), CALL_TIMEOUT)
        .await
        .expect("register call");
    assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
    resp
}

pub fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::request_with(
        request::GET_ROUTEINFO_BY_TOPIC,
        &TopicRequestHeader {
            topic: topic.into(),
        },
    )
}

/// The route of `topic`, or `None` on TOPIC_NOT_EXIST.
pub async fn route(client: &RemotingClient, namesrv: &str, topic: &str) -> Option<TopicRouteData> {
    let resp = client
        .invoke(namesrv, route_request(topic), CALL_TIMEOUT)
        .await
        .expect("route call");
    match resp.code {
        response::SUCCESS => Some(decode_json(&resp.body).expect("route JSON")),
        response::TOPIC_NOT_EXIST => None,
        code => panic!("route: code {code} {:?}", resp.remark),
    }
}

/// Broker names serving `topic`, in route order.
pub async fn route_brokers(client: &RemotingClient, namesrv: &str, topic: &str) -> Vec<String> {
    route(client, namesrv, topic)
        .await
        .map(|r| r.queue_datas.into_iter().map(|q| q.broker_name).collect())
        .unwrap_or_default()
}

pub async fn cluster_info(client: &RemotingClient, namesrv: &str) -> ClusterInfo {
    let resp = client
        .invoke(
            namesrv,
            RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO),
            CALL_TIMEOUT,
        )
        .await
        .expect("cluster info call");
    assert_eq!(resp.code, response::SUCCESS);
    decode_json(&resp.body).expect("cluster info JSON")
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
