//! What the gateway cluster tests share: a NameServer with brokers, stateless gateways in front of
//! them, and the HTTP calls the tests make (each checked for its status where a test relies on
//! it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern_core::broker::BrokerConfig;
use tern_core::client::{Admin, ClientConfig};
use tern_tests::http::{Answer, Http};
use tern_tests::process::{
    BrokerSpec, ServerProcess, start_broker_with, start_gateway, start_namesrv,
};

/// Brokers of the tests let a receive ask for short invisible times. Their disk guard is moved
/// out of the way: these tests are not about it, and shared test machines run with fuller disks
/// than the 90 % at which a broker refuses writes (or the 85 % at which it deletes segments).
pub fn tune(config: &mut BrokerConfig) {
    config.pop_min_invisible_ms = 100;
    config.store.disk_clean_ratio = 0.99;
    config.store.disk_clean_forcibly_ratio = 0.995;
    config.store.disk_refuse_write_ratio = 0.999;
}

/// A NameServer and named brokers (one master each) in one cluster, data in a temporary dir.
pub struct Cluster {
    _namesrv: ServerProcess,
    pub namesrv_addrs: Vec<String>,
    pub brokers: Vec<ServerProcess>,
    names: Vec<String>,
    sync_flush: bool,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the NameServer (with `namesrv_extra` arguments) and the brokers, and waits until
    /// the NameServer knows every broker.
    pub async fn start(names: &[&str], sync_flush: bool, namesrv_extra: &[&str]) -> Cluster {
        let namesrv = start_namesrv(namesrv_extra);
        let namesrv_addrs = vec![namesrv.addr().to_string()];
        let mut cluster = Cluster {
            _namesrv: namesrv,
            namesrv_addrs,
            brokers: Vec::new(),
            names: names.iter().map(|n| n.to_string()).collect(),
            sync_flush,
            dir: tempfile::tempdir().unwrap(),
        };
        for i in 0..names.len() {
            let broker = cluster.start_broker(i, None);
            cluster.brokers.push(broker);
        }
        cluster.await_brokers(names.len()).await;
        cluster
    }

    fn store(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.names[i])
    }

    /// Starts broker `i` (again) on `listen` or an ephemeral port.
    pub fn start_broker(&self, i: usize, listen: Option<&str>) -> ServerProcess {
        let store = self.store(i);
        start_broker_with(
            &BrokerSpec {
                name: &self.names[i],
                cluster: "GatewayCluster",
                namesrv: &self.namesrv_addrs,
                store: &store,
                sync_flush: self.sync_flush,
                register_interval_secs: 1,
                listen,
            },
            tune,
        )
    }

    /// Waits until the NameServer names `n` broker masters.
    pub async fn await_brokers(&self, n: usize) {
        let admin = Admin::new(ClientConfig::new(self.namesrv_addrs.clone())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(brokers) = admin.brokers().await
                && brokers.values().filter(|m| m.contains_key(&0)).count() == n
            {
                break;
            }
            assert!(Instant::now() < deadline, "{n} brokers never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admin.shutdown();
    }

    /// A stateless gateway in front of this cluster.
    pub fn gateway(&self, key: &str, extra: &[&str]) -> (ServerProcess, Http) {
        let process = start_gateway(&self.namesrv_addrs, key, extra);
        let http = Http::new(process.addr());
        (process, http)
    }
}

/// Another receipt key than [`tern_tests::process::receipt_key`] (a gateway that must not open
/// the others' receipts).
pub fn other_receipt_key() -> String {
    (0..32u8)
        .map(|i| format!("{:02x}", i.wrapping_mul(91).wrapping_add(7)))
        .collect()
}

/// `PUT /v1/topics/{topic}` with `queues` per broker group; returns the topic's JSON.
pub async fn put_topic(http: &Http, topic: &str, queues: i32) -> Value {
    let answer = http
        .json(
            hyper::Method::PUT,
            &format!("/v1/topics/{topic}"),
            &json!({ "queues": queues }),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", text(&answer));
    answer.json()
}

/// `PUT /v1/groups/{group}`.
pub async fn put_group(http: &Http, group: &str, fifo: bool) {
    let answer = http
        .json(
            hyper::Method::PUT,
            &format!("/v1/groups/{group}"),
            &json!({ "fifo": fifo }),
        )
        .await;
    assert!(answer.status.is_success(), "{}", text(&answer));
}

pub fn text(answer: &Answer) -> String {
    format!(
        "{} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    )
}

/// A produce that must succeed: its `{messageId, topic, queueId, queueOffset}`.
pub async fn produce(http: &Http, topic: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let answer = http
        .post(
            &format!("/v1/topics/{topic}/messages"),
            headers,
            body.to_string(),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", text(&answer));
    answer.json()
}

pub fn group_path(group: &str, topic: &str, action: &str) -> String {
    format!("/v1/groups/{group}/topics/{topic}/messages:{action}")
}

/// One receive that must succeed: the messages it returned.
pub async fn receive(
    http: &Http,
    group: &str,
    topic: &str,
    max: u32,
    invisible_secs: u64,
    wait_secs: u64,
) -> Vec<Value> {
    let answer = http
        .post_json(
            &group_path(group, topic, "receive"),
            &json!({"max": max, "invisibleSeconds": invisible_secs, "waitSeconds": wait_secs}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", text(&answer));
    answer.json()["messages"].as_array().unwrap().clone()
}

/// Acks `receipts`; the per-receipt statuses, in order.
pub async fn ack(http: &Http, group: &str, topic: &str, receipts: &[&str]) -> Vec<u64> {
    let answer = http
        .post_json(
            &group_path(group, topic, "ack"),
            &json!({ "receipts": receipts }),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", text(&answer));
    statuses(&answer.json())
}

/// The per-receipt statuses of an ack or nack answer.
pub fn statuses(json: &Value) -> Vec<u64> {
    json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64().expect("status"))
        .collect()
}

pub fn receipt(message: &Value) -> &str {
    message["receipt"].as_str().expect("a receipt")
}

pub fn body(message: &Value) -> &str {
    assert_eq!(message["bodyEncoding"], "utf8", "{message}");
    message["body"].as_str().expect("body")
}

/// Every message of every HTTP queue of `topic` (`(queueId, message)`), once there are at least
/// `expected` (the broker makes a stored message visible to consumers a moment after it
/// acknowledged it), then read once more so that anything stored beyond them shows too.
pub async fn all_stored(http: &Http, topic: &str, expected: usize) -> Vec<(usize, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_all(http, topic).await.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    read_all(http, topic).await
}

/// Every message of every HTTP queue of `topic`, by stateless pull from each queue's minimum
/// offset.
async fn read_all(http: &Http, topic: &str) -> Vec<(usize, Value)> {
    let info = http.get(&format!("/v1/topics/{topic}")).await;
    assert_eq!(info.status, 200, "{}", text(&info));
    let queues = info.json()["queues"].as_array().unwrap().clone();
    let mut out = Vec::new();
    for (n, queue) in queues.iter().enumerate() {
        assert_eq!(queue["queueId"].as_u64(), Some(n as u64), "{queue}");
        let mut offset = queue["minOffset"].as_i64().unwrap();
        let max = queue["maxOffset"].as_i64().unwrap();
        while offset < max {
            let answer = http
                .get(&format!(
                    "/v1/topics/{topic}/queues/{n}/messages?offset={offset}&max=32"
                ))
                .await;
            assert_eq!(answer.status, 200, "{}", text(&answer));
            let json = answer.json();
            for message in json["messages"].as_array().unwrap() {
                assert_eq!(message["queueId"].as_u64(), Some(n as u64), "{message}");
                out.push((n, message.clone()));
            }
            let next = json["nextOffset"].as_i64().unwrap();
            assert!(
                next > offset,
                "pull of queue {n} at {offset} made no progress"
            );
            offset = next;
        }
    }
    out
}

/// Java's `String.hashCode()` (UTF-16 code units, wrapping), written out here rather than taken
/// from the crates under test.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The queue RocketMQ's `SelectMessageQueueByHash` picks: `abs(hashCode(key) % n)`.
pub fn queue_for_key(key: &str, n: i32) -> usize {
    (java_hash(key) % n).unsigned_abs() as usize
}

/// Polls `GET /readyz` until it answers `status`.
pub async fn await_readyz(http: &Http, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(answer) = http.try_send(hyper::Method::GET, "/readyz", &[], "").await
            && answer.status == status
        {
            if status != 200 {
                let problem = answer.problem(status);
                assert_eq!(problem["retryable"], true, "{problem}");
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {status} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
