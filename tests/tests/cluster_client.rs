//! The Rust client against real processes: two NameServers and two brokers started from the
//! binaries, producers and a two-member clustering group from `tern_core::client`.

#[path = "cluster/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_core::client::{
    ClientConfig, ConsumeFrom, ConsumerConfig, ConsumerGroup, Message, MessageStream, Producer,
    ReceivedMessage,
};
use tern_core::protocol::RemotingClient;
use tern_tests::process::{BrokerSpec, ServerProcess, start_broker, start_namesrv};

/// Two NameServers and two brokers (ASYNC_FLUSH), with `topic` on both brokers.
struct Cluster {
    _namesrvs: Vec<ServerProcess>,
    brokers: Vec<ServerProcess>,
    namesrv_addrs: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(topics: &[(&str, i32)]) -> Cluster {
        let namesrvs = vec![start_namesrv(&[]), start_namesrv(&[])];
        let namesrv_addrs: Vec<String> = namesrvs.iter().map(|n| n.addr().to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut brokers = Vec::new();
        for name in ["broker-a", "broker-b"] {
            let store = dir.path().join(name);
            brokers.push(start_broker(&BrokerSpec {
                name,
                cluster: "TestCluster",
                namesrv: &namesrv_addrs,
                store: &store,
                sync_flush: false,
                register_interval_secs: 1,
                listen: None,
            }));
        }
        let admin = RemotingClient::new();
        for (topic, queues) in topics {
            for broker in &brokers {
                raw::create_topic(&admin, broker.addr(), topic, *queues).await;
            }
            for ns in &namesrv_addrs {
                let deadline = Instant::now() + Duration::from_secs(10);
                while raw::route(&admin, ns, topic)
                    .await
                    .is_none_or(|r| r.queue_datas.len() != 2)
                {
                    assert!(
                        Instant::now() < deadline,
                        "route of {topic} incomplete on {ns}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Cluster {
            _namesrvs: namesrvs,
            brokers,
            namesrv_addrs,
            _dir: dir,
        }
    }

    fn client_config(&self) -> ClientConfig {
        ClientConfig {
            rebalance_interval: Duration::from_secs(1),
            offset_commit_interval: Duration::from_millis(500),
            ..ClientConfig::new(self.namesrv_addrs.clone())
        }
    }
}

/// Collects what one member receives, acknowledging each message.
fn collect(
    group: Arc<ConsumerGroup>,
    mut stream: MessageStream,
    sink: Arc<Mutex<Vec<ReceivedMessage>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = stream.recv().await {
            group.ack(&message);
            sink.lock().unwrap().push(message);
        }
    })
}

async fn wait_for<F: Fn() -> bool>(what: &str, timeout: Duration, done: F) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_messages_across_two_brokers_consumed_exactly_once_by_a_two_member_group() {
    const COUNT: usize = 10_000;
    let cluster = Cluster::start(&[("orders", 4)]).await;
    let config = cluster.client_config();

    // Two members join first and settle on disjoint halves of the 8 queues, so no rebalance
    // happens while messages flow (a rebalance may legitimately redeliver: at-least-once).
    let consumer = ConsumerConfig::new("billing").subscribe("orders", "*");
    let (a, stream_a) = ConsumerGroup::start(config.clone(), consumer.clone())
        .await
        .unwrap();
    let (b, stream_b) = ConsumerGroup::start(config.clone(), consumer)
        .await
        .unwrap();
    let (a, b) = (Arc::new(a), Arc::new(b));
    wait_for(
        "the two members split the 8 queues",
        Duration::from_secs(20),
        || {
            // Each member also reads its share of the group's retry queues.
            let orders = |queues: Vec<tern_core::client::MessageQueue>| -> Vec<_> {
                queues.into_iter().filter(|q| q.topic == "orders").collect()
            };
            let (qa, qb) = (orders(a.assigned_queues()), orders(b.assigned_queues()));
            let union: BTreeSet<_> = qa.iter().chain(qb.iter()).collect();
            qa.len() == 4 && qb.len() == 4 && union.len() == 8
        },
    )
    .await;
    let got_a = Arc::new(Mutex::new(Vec::new()));
    let got_b = Arc::new(Mutex::new(Vec::new()));
    let collectors = [
        collect(a.clone(), stream_a, got_a.clone()),
        collect(b.clone(), stream_b, got_b.clone()),
    ];

    let producer = Arc::new(Producer::new(config.clone(), "orders-producer").unwrap());
    let per_broker = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut senders = Vec::new();
    for worker in 0..32 {
        let producer = producer.clone();
        let per_broker = per_broker.clone();
        senders.push(tokio::spawn(async move {
            for i in (worker..COUNT).step_by(32) {
                let message = Message::new("orders", format!("m{i}")).with_tag("t");
                let result = producer.send(&message).await.unwrap();
                *per_broker
                    .lock()
                    .unwrap()
                    .entry(result.queue.broker_name)
                    .or_default() += 1;
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let per_broker = per_broker.lock().unwrap().clone();
    assert_eq!(
        per_broker.len(),
        2,
        "round robin reaches both brokers: {per_broker:?}"
    );
    assert!(
        per_broker.values().all(|&n| n >= COUNT / 4),
        "{per_broker:?}"
    );

    wait_for("every message consumed", Duration::from_secs(60), || {
        got_a.lock().unwrap().len() + got_b.lock().unwrap().len() >= COUNT
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // anything extra would show up now
    let mut seen = HashMap::<String, usize>::new();
    for m in got_a
        .lock()
        .unwrap()
        .iter()
        .chain(got_b.lock().unwrap().iter())
    {
        *seen
            .entry(String::from_utf8(m.body.to_vec()).unwrap())
            .or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    assert_eq!(seen.len(), COUNT);
    assert!(
        !got_a.lock().unwrap().is_empty() && !got_b.lock().unwrap().is_empty(),
        "both members consumed"
    );

    for c in collectors {
        c.abort();
        let _ = c.await;
    }
    for g in [a, b] {
        Arc::try_unwrap(g)
            .ok()
            .expect("collectors are gone")
            .shutdown()
            .await
            .unwrap();
    }
    producer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_key_keeps_per_key_order_and_tag_filters_select() {
    const KEYS: usize = 10;
    const PER_KEY: usize = 200;
    let cluster = Cluster::start(&[("ordered", 4), ("tagged", 2)]).await;
    let config = cluster.client_config();
    let producer = Arc::new(Producer::new(config.clone(), "ordered-producer").unwrap());

    // Keys are sent concurrently; each key's messages one after another (acked in order).
    let mut senders = Vec::new();
    for k in 0..KEYS {
        let producer = producer.clone();
        senders.push(tokio::spawn(async move {
            let key = format!("customer-{k}");
            let mut queues = BTreeSet::new();
            for seq in 0..PER_KEY {
                let message = Message::new("ordered", format!("{key}:{seq}"));
                let result = producer.send_ordered(&message, &key).await.unwrap();
                queues.insert(result.queue);
            }
            assert_eq!(queues.len(), 1, "one key, one queue: {queues:?}");
            let route = producer.route("ordered").await.unwrap();
            assert_eq!(Some(queues.first().unwrap()), route.queue_for_key(&key));
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    // Tagged messages: A, B, C in turn.
    for i in 0..300 {
        let tag = ["A", "B", "C"][i % 3];
        producer
            .send(&Message::new("tagged", format!("{tag}{i}")).with_tag(tag))
            .await
            .unwrap();
    }

    // The group is new and the messages are already there: start from the first offset.
    let consumer = ConsumerConfig::new("auditor")
        .subscribe("ordered", "*")
        .subscribe("tagged", "A || C")
        .with_consume_from(ConsumeFrom::First);
    let (group, stream) = ConsumerGroup::start(config, consumer).await.unwrap();
    let group = Arc::new(group);
    let got = Arc::new(Mutex::new(Vec::new()));
    let collector = collect(group.clone(), stream, got.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().len() < KEYS * PER_KEY + 200 {
        if Instant::now() > deadline {
            let got = got.lock().unwrap();
            let mut per_topic = HashMap::<String, usize>::new();
            for m in got.iter() {
                *per_topic.entry(m.queue.topic.clone()).or_default() += 1;
            }
            panic!(
                "timed out: got {per_topic:?}, assigned {:?}, offsets {:?}",
                group.assigned_queues(),
                group.offsets()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let got: Vec<ReceivedMessage> = std::mem::take(&mut *got.lock().unwrap());
    let mut next_seq = HashMap::<String, usize>::new();
    let mut tagged = Vec::new();
    for m in got.iter() {
        let body = String::from_utf8(m.body.to_vec()).unwrap();
        if m.queue.topic == "tagged" {
            tagged.push((m.tag().unwrap_or("").to_string(), body));
            continue;
        }
        let (key, seq) = body.split_once(':').unwrap();
        let expected = next_seq.entry(key.to_string()).or_default();
        assert_eq!(
            seq.parse::<usize>().unwrap(),
            *expected,
            "key {key} out of order"
        );
        *expected += 1;
    }
    assert!(next_seq.values().all(|&n| n == PER_KEY), "{next_seq:?}");
    assert_eq!(tagged.len(), 200, "only A and C, each once");
    assert!(
        tagged
            .iter()
            .all(|(tag, body)| (tag == "A" || tag == "C") && body.starts_with(tag.as_str()))
    );
    collector.abort();
    let _ = collector.await;
    Arc::try_unwrap(group)
        .ok()
        .expect("collector is gone")
        .shutdown()
        .await
        .unwrap();
    producer.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_retries_on_the_other_broker_when_one_dies() {
    const COUNT: usize = 2_000;
    let mut cluster = Cluster::start(&[("failover", 2)]).await;
    let producer = Arc::new(Producer::new(cluster.client_config(), "failover-producer").unwrap());
    // Every worker sends a quarter of its share, waits at a gate while broker-b is killed, then
    // sends the rest: the kill always falls in the middle of the stream, however fast it runs.
    let at_gate = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let per_broker = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (producer, at_gate, per_broker) =
            (producer.clone(), at_gate.clone(), per_broker.clone());
        let mut gate = gate.clone();
        senders.push(tokio::spawn(async move {
            for (n, i) in (worker..COUNT).step_by(8).enumerate() {
                if n == COUNT / 8 / 4 {
                    at_gate.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    gate.wait_for(|open| *open).await.unwrap();
                }
                let message = Message::new("failover", format!("f{i}"));
                // Every send must succeed: a failure on the dead broker is retried on the other.
                let result = producer
                    .send(&message)
                    .await
                    .unwrap_or_else(|e| panic!("send {i}: {e}"));
                *per_broker
                    .lock()
                    .unwrap()
                    .entry(result.queue.broker_name)
                    .or_default() += 1;
            }
        }));
    }
    wait_for("every sender at the gate", Duration::from_secs(30), || {
        at_gate.load(std::sync::atomic::Ordering::Acquire) == 8
    })
    .await;
    let before = per_broker.lock().unwrap().clone();
    cluster.brokers[1].kill(); // broker-b
    open_gate.send(true).unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let after = per_broker.lock().unwrap().clone();
    assert!(
        before.get("broker-b").copied().unwrap_or(0) > 0,
        "both brokers served before: {before:?}"
    );
    let a_gain = after["broker-a"] - before.get("broker-a").copied().unwrap_or(0);
    assert!(
        a_gain >= COUNT / 2,
        "broker-a took over: before {before:?}, after {after:?}"
    );
    producer.shutdown();
}
