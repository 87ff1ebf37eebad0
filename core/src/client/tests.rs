//! The client against real in-process brokers, over loopback sockets. The NameServer is a stub
//! that serves fixed routes (the real one lives in `tern-namesrv`, which `core` cannot depend on).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::broker::{Broker, BrokerConfig};
use crate::protocol::body::{BrokerData, QueueData, TopicRouteData, encode_json};
use crate::protocol::codes::{request, response};
use crate::protocol::headers::{CreateTopicRequestHeader, TopicRequestHeader};
use crate::protocol::{Connection, RemotingClient, RemotingCommand, RequestHandler, ServerHandle};
use crate::store::StoreConfig;

use super::*;

/// Serves GET_ROUTEINFO_BY_TOPIC from a table.
#[derive(Default)]
struct StubNameServer {
    routes: Mutex<HashMap<String, TopicRouteData>>,
}

impl RequestHandler for StubNameServer {
    async fn handle(&self, _conn: Connection, req: RemotingCommand) -> Option<RemotingCommand> {
        if req.code != request::GET_ROUTEINFO_BY_TOPIC {
            return Some(RemotingCommand::error(
                response::REQUEST_CODE_NOT_SUPPORTED,
                "stub",
            ));
        }
        let topic = req.header::<TopicRequestHeader>().ok()?.topic;
        Some(match self.routes.lock().unwrap().get(&topic) {
            Some(route) => RemotingCommand::success().with_body(encode_json(route)),
            None => RemotingCommand::error(response::TOPIC_NOT_EXIST, "no route"),
        })
    }
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    brokers: Vec<Broker>,
    namesrv: Arc<StubNameServer>,
    namesrv_server: ServerHandle,
    admin: RemotingClient,
}

impl Cluster {
    async fn start(brokers: usize) -> Cluster {
        let mut dirs = Vec::new();
        let mut started = Vec::new();
        for i in 0..brokers {
            let dir = tempfile::tempdir().unwrap();
            let config = BrokerConfig {
                broker_name: format!("broker-{}", (b'a' + i as u8) as char),
                listen: "127.0.0.1:0".into(),
                namesrv_addrs: Vec::new(),
                long_poll_recheck_ms: 200,
                store: StoreConfig::for_tests(dir.path()),
                ..BrokerConfig::default()
            };
            started.push(Broker::start(config).await.unwrap());
            dirs.push(dir);
        }
        let namesrv = Arc::new(StubNameServer::default());
        let namesrv_server = crate::protocol::serve("127.0.0.1:0", namesrv.clone())
            .await
            .unwrap();
        Cluster {
            _dirs: dirs,
            brokers: started,
            namesrv,
            namesrv_server,
            admin: RemotingClient::new(),
        }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            rebalance_interval: Duration::from_millis(500),
            offset_commit_interval: Duration::from_millis(200),
            ..ClientConfig::new([self.namesrv_server.local_addr().to_string()])
        }
    }

    /// Creates `topic` with `queues` queues on every broker and publishes its route; extra
    /// `(name, addr)` brokers are listed in the route without existing.
    async fn topic(&self, topic: &str, queues: i32, phantom: &[(&str, &str)]) {
        let mut route = TopicRouteData::default();
        for broker in &self.brokers {
            let header = CreateTopicRequestHeader {
                topic: topic.into(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                ..Default::default()
            };
            let resp = self
                .admin
                .invoke(
                    broker.addr(),
                    RemotingCommand::request_with(request::UPDATE_AND_CREATE_TOPIC, &header),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            assert!(resp.is_success(), "{resp:?}");
        }
        let mut members: Vec<(String, String)> = self
            .brokers
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    format!("broker-{}", (b'a' + i as u8) as char),
                    b.addr().to_string(),
                )
            })
            .collect();
        members.extend(phantom.iter().map(|(n, a)| (n.to_string(), a.to_string())));
        for (name, addr) in members {
            route.queue_datas.push(QueueData {
                broker_name: name.clone(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm: 6,
                topic_sys_flag: 0,
            });
            route.broker_datas.push(BrokerData {
                cluster: "DefaultCluster".into(),
                broker_name: name,
                broker_addrs: BTreeMap::from([(0, addr)]),
                ..BrokerData::default()
            });
        }
        self.namesrv
            .routes
            .lock()
            .unwrap()
            .insert(topic.to_string(), route);
    }

    async fn stop(self) {
        self.namesrv_server.shutdown().await;
        for broker in self.brokers {
            broker.shutdown().await.unwrap();
        }
    }
}

/// An address nobody listens on.
async fn dead_addr() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    addr
}

async fn recv_n(stream: &mut MessageStream, n: usize, within: Duration) -> Vec<ReceivedMessage> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.recv()).await {
            Ok(Some(m)) => got.push(m),
            _ => panic!("received {} of {n} messages", got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn produce_and_pull() {
    let cluster = Cluster::start(1).await;
    cluster.topic("Orders", 4, &[]).await;
    let producer = Producer::new(cluster.config(), "pg").unwrap();

    // Round robin: 8 sends cover the 4 queues twice.
    let mut per_queue: BTreeMap<i32, Vec<SendResult>> = BTreeMap::new();
    for i in 0..8 {
        let msg = Message::new("Orders", format!("m{i}"))
            .with_tag(if i % 2 == 0 { "even" } else { "odd" })
            .with_key(format!("k{i}"));
        let r = producer.send(&msg).await.unwrap();
        assert_eq!(r.status, SendStatus::Ok);
        assert!(message_id::is_unique_id(&r.msg_id));
        per_queue.entry(r.queue.queue_id).or_default().push(r);
    }
    assert_eq!(per_queue.len(), 4);
    assert!(per_queue.values().all(|v| v.len() == 2));

    // Ordered sends: one queue per key, the one the route computes.
    let route = producer.route("Orders").await.unwrap();
    let expected = route.queue_for_key("customer-7").unwrap().clone();
    for i in 0..3 {
        let r = producer
            .send_ordered(&Message::new("Orders", format!("o{i}")), "customer-7")
            .await
            .unwrap();
        assert_eq!(r.queue, expected);
    }

    // A batch lands in one queue at consecutive offsets.
    let batch: Vec<Message> = (0..3)
        .map(|i| Message::new("Orders", format!("b{i}")).with_tag("batch"))
        .collect();
    let b = producer.send_batch(&batch).await.unwrap();
    assert_eq!(b.msg_ids.len(), 3);
    assert_eq!(b.offset_msg_ids.len(), 3);

    let pull = PullConsumer::new(cluster.config(), "reader").unwrap();
    let queue = b.queue.clone();
    // An acknowledged send is readable once the broker's dispatcher has indexed it (a moment).
    let deadline = Instant::now() + Duration::from_secs(5);
    let all = loop {
        let r = pull
            .pull(&queue, b.queue_offset, 32, None, &Subscription::all())
            .await
            .unwrap();
        if r.status == PullStatus::Found || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(all.status, PullStatus::Found);
    let ids: Vec<&str> = all.messages.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(
        ids,
        b.msg_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(all.messages[0].offset_msg_id, b.offset_msg_ids[0]);
    assert_eq!(all.next_begin_offset, b.queue_offset + 3);

    // Tag filter: only "even" from a queue holding both.
    let (qid, sent) = per_queue.iter().next().unwrap();
    let q = MessageQueue::new("Orders", "broker-a", *qid);
    let even = pull
        .pull(&q, 0, 32, None, &Subscription::parse("even").unwrap())
        .await
        .unwrap();
    let want: Vec<&str> = sent.iter().map(|r| r.msg_id.as_str()).collect();
    for m in &even.messages {
        assert_eq!(m.tag(), Some("even"));
        assert!(want.contains(&m.msg_id.as_str()));
    }

    // Head of the queue: NoNewMsg at once without suspend, after the suspend with it.
    let max = pull.max_offset(&q).await.unwrap();
    let none = pull
        .pull(&q, max, 32, None, &Subscription::all())
        .await
        .unwrap();
    assert_eq!(none.status, PullStatus::NoNewMsg);
    let started = Instant::now();
    let none = pull
        .pull(
            &q,
            max,
            32,
            Some(Duration::from_millis(300)),
            &Subscription::all(),
        )
        .await
        .unwrap();
    assert_eq!(none.status, PullStatus::NoNewMsg);
    assert!(started.elapsed() >= Duration::from_millis(250));
    let moved = pull
        .pull(&q, max + 100, 32, None, &Subscription::all())
        .await
        .unwrap();
    assert_eq!(moved.status, PullStatus::OffsetIllegal);

    // Offsets.
    assert_eq!(pull.fetch_offset("g1", &q).await.unwrap(), None);
    pull.commit_offset("g1", &q, 1).await.unwrap();
    assert_eq!(pull.fetch_offset("g1", &q).await.unwrap(), Some(1));
    assert_eq!(pull.min_offset(&q).await.unwrap(), 0);
    assert_eq!(pull.search_offset(&q, 0).await.unwrap(), 0);

    // Errors.
    assert!(matches!(
        producer.send(&Message::new("Nowhere", "x")).await,
        Err(ClientError::NoRoute { .. })
    ));
    assert!(matches!(
        producer.send(&Message::new("bad topic", "x")).await,
        Err(ClientError::InvalidMessage(_))
    ));
    producer.shutdown();
    assert!(matches!(
        producer.send(&Message::new("Orders", "x")).await,
        Err(ClientError::Shutdown)
    ));
    pull.shutdown();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_sends_move_to_another_broker() {
    let cluster = Cluster::start(1).await;
    // broker-0 sorts before broker-a and is down: every send that tries it first must retry on
    // broker-a.
    let dead = dead_addr().await;
    cluster.topic("Retry", 2, &[("broker-0", &dead)]).await;
    let producer = Producer::new(cluster.config(), "pg").unwrap();
    for i in 0..8 {
        let r = producer
            .send(&Message::new("Retry", format!("{i}")))
            .await
            .unwrap();
        assert_eq!(r.queue.broker_name, "broker-a");
    }
    // No retry for an ordered send: a key on the dead broker fails.
    let route = producer.route("Retry").await.unwrap();
    let key = (0..100)
        .map(|i| format!("key-{i}"))
        .find(|k| route.queue_for_key(k).unwrap().broker_name == "broker-0")
        .unwrap();
    let err = producer
        .send_ordered(&Message::new("Retry", "x"), &key)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Remoting(_)), "{err}");
    // Without retries, about half the sends fail.
    let no_retry = Producer::new(cluster.config(), "pg")
        .unwrap()
        .with_retries(0);
    let mut failures = 0;
    for i in 0..8 {
        failures += no_retry
            .send(&Message::new("Retry", format!("{i}")))
            .await
            .is_err() as usize;
    }
    assert!(failures >= 2, "{failures}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_refusals_are_typed() {
    let cluster = Cluster::start(1).await;
    cluster.topic("Known", 1, &[]).await;
    // A route the broker does not back: TOPIC_NOT_EXIST is final, not retried.
    let mut route = cluster.namesrv.routes.lock().unwrap()["Known"].clone();
    route.queue_datas[0].write_queue_nums = 1;
    cluster
        .namesrv
        .routes
        .lock()
        .unwrap()
        .insert("Ghost".into(), route);
    let producer = Producer::new(cluster.config(), "pg").unwrap();
    let err = producer
        .send(&Message::new("Ghost", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.broker_code(), Some(response::TOPIC_NOT_EXIST), "{err}");
    assert!(!err.is_retryable());
    cluster.stop().await;
}

fn consumer(group: &str, topic: &str) -> ConsumerConfig {
    ConsumerConfig {
        long_poll: Duration::from_millis(500),
        ..ConsumerConfig::new(group)
            .subscribe(topic, "*")
            .with_consume_from(ConsumeFrom::First)
    }
}

async fn wait_until(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clustering_group_splits_queues_and_commits() {
    let cluster = Cluster::start(1).await;
    cluster.topic("Work", 4, &[]).await;
    let producer = Producer::new(cluster.config(), "pg").unwrap();
    let mut sent = HashSet::new();
    for i in 0..40 {
        sent.insert(
            producer
                .send(&Message::new("Work", format!("{i}")))
                .await
                .unwrap()
                .msg_id,
        );
    }

    // No periodic rebalance during the test: every change must come from the broker's
    // NOTIFY_CONSUMER_IDS_CHANGED.
    let config = ClientConfig {
        rebalance_interval: Duration::from_secs(600),
        ..cluster.config()
    };
    let (a, mut stream_a) = ConsumerGroup::start(config.clone(), consumer("workers", "Work"))
        .await
        .unwrap();
    assert_eq!(a.assigned_queues().len(), 4);
    let (b, mut stream_b) = ConsumerGroup::start(config, consumer("workers", "Work"))
        .await
        .unwrap();
    // B joined; the broker tells A, which gives two queues away.
    wait_until("the split", Duration::from_secs(10), async || {
        a.assigned_queues().len() == 2 && b.assigned_queues().len() == 2
    })
    .await;
    let qa: HashSet<_> = a.assigned_queues().into_iter().collect();
    let qb: HashSet<_> = b.assigned_queues().into_iter().collect();
    assert!(qa.is_disjoint(&qb));

    // Every message arrives (a queue moved mid-way may deliver some twice: at-least-once).
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {}",
            seen.len(),
            sent.len()
        );
        tokio::select! {
            Some(m) = stream_a.recv() => { a.ack(&m); seen.insert(m.msg_id); }
            Some(m) = stream_b.recv() => { b.ack(&m); seen.insert(m.msg_id); }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    assert_eq!(seen, sent);

    a.shutdown().await.unwrap();
    drop(stream_a);
    // A left: B takes every queue, and (acking what it gets, duplicates included) reaches the
    // end of each.
    let deadline = Instant::now() + Duration::from_secs(15);
    while b.assigned_queues().len() < 4 || b.offsets().iter().map(|(_, o)| o).sum::<i64>() < 40 {
        assert!(Instant::now() < deadline, "{:?}", b.offsets());
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), stream_b.recv()).await
        {
            b.ack(&m);
        }
    }
    b.shutdown().await.unwrap();
    while stream_b.recv().await.is_some() {}
    // Everything acknowledged: the broker holds each queue's end as the group's offset.
    let pull = PullConsumer::new(cluster.config(), "check").unwrap();
    for q in pull.queues("Work").await.unwrap() {
        assert_eq!(
            pull.fetch_offset("workers", &q).await.unwrap(),
            Some(pull.max_offset(&q).await.unwrap()),
            "{q}"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unacked_messages_hold_the_offset_back() {
    let cluster = Cluster::start(1).await;
    cluster.topic("One", 1, &[]).await;
    let producer = Producer::new(cluster.config(), "pg").unwrap();
    for i in 0..5 {
        producer
            .send(&Message::new("One", format!("{i}")).with_tag("t"))
            .await
            .unwrap();
    }
    let (c, mut stream) = ConsumerGroup::start(cluster.config(), consumer("g", "One"))
        .await
        .unwrap();
    let got = recv_n(&mut stream, 5, Duration::from_secs(10)).await;
    assert_eq!(
        got.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    // Acks of 0, 1 and 3: offset 2 is still being processed.
    for i in [0, 1, 3] {
        assert!(c.ack(&got[i]));
    }
    assert!(!c.ack(&got[0]));
    assert_eq!(c.offsets()[0].1, 2);
    c.shutdown().await.unwrap();
    let pull = PullConsumer::new(cluster.config(), "check").unwrap();
    let q = MessageQueue::new("One", "broker-a", 0);
    assert_eq!(pull.fetch_offset("g", &q).await.unwrap(), Some(2));

    // The next member starts at 2: 2, 3 and 4 again.
    let (c, mut stream) = ConsumerGroup::start(cluster.config(), consumer("g", "One"))
        .await
        .unwrap();
    let again = recv_n(&mut stream, 3, Duration::from_secs(10)).await;
    assert_eq!(
        again.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    c.shutdown().await.unwrap();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcasting_and_ack_on_receive() {
    let cluster = Cluster::start(1).await;
    cluster.topic("News", 2, &[]).await;
    let config = |from| ConsumerConfig {
        model: MessageModel::Broadcasting,
        ack_mode: AckMode::OnReceive,
        ..consumer("readers", "News").with_consume_from(from)
    };
    let (late, _late_stream) = ConsumerGroup::start(cluster.config(), config(ConsumeFrom::Last))
        .await
        .unwrap();
    let producer = Producer::new(cluster.config(), "pg").unwrap();
    producer.send(&Message::new("News", "old")).await.unwrap();
    let (x, mut sx) = ConsumerGroup::start(cluster.config(), config(ConsumeFrom::First))
        .await
        .unwrap();
    let (y, mut sy) = ConsumerGroup::start(cluster.config(), config(ConsumeFrom::First))
        .await
        .unwrap();
    for i in 0..6 {
        producer
            .send(&Message::new("News", format!("n{i}")))
            .await
            .unwrap();
    }
    // Each member reads every queue and gets everything.
    assert_eq!(x.assigned_queues().len(), 2);
    assert_eq!(y.assigned_queues().len(), 2);
    assert_eq!(recv_n(&mut sx, 7, Duration::from_secs(10)).await.len(), 7);
    assert_eq!(recv_n(&mut sy, 7, Duration::from_secs(10)).await.len(), 7);
    // Received = done: offsets reach the end without any ack.
    wait_until("offsets at the end", Duration::from_secs(5), async || {
        x.offsets().iter().map(|(_, o)| o).sum::<i64>() == 7
    })
    .await;
    // Broadcasting commits nothing to the broker.
    let pull = PullConsumer::new(cluster.config(), "check").unwrap();
    for q in pull.queues("News").await.unwrap() {
        assert_eq!(pull.fetch_offset("readers", &q).await.unwrap(), None);
    }
    for c in [late, x, y] {
        c.shutdown().await.unwrap();
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_producer_many_concurrent_sends() {
    let cluster = Cluster::start(1).await;
    cluster.topic("Load", 4, &[]).await;
    let producer = Arc::new(Producer::new(cluster.config(), "pg").unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let producer = producer.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0..20 {
                    let msg = Message::new("Load", format!("{task}-{i}"));
                    results.push(producer.send(&msg).await.unwrap());
                }
                results
            })
        })
        .collect();
    let mut positions = HashSet::new();
    let mut ids = HashSet::new();
    for task in tasks {
        for r in task.await.unwrap() {
            assert!(positions.insert((r.queue.queue_id, r.queue_offset)));
            assert!(ids.insert(r.msg_id));
        }
    }
    assert_eq!(positions.len(), 64 * 20);
    cluster.stop().await;
}

/// The benchmark and the gateway spawn these futures: they must be `Send`, the clients
/// `Send + Sync`.
#[allow(dead_code)]
fn clients_are_send_and_sync(producer: Producer, pull: PullConsumer, group: ConsumerGroup) {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    send_sync(&producer);
    send_sync(&pull);
    send_sync(&group);
    let msg = Message::new("T", "x");
    let queue = MessageQueue::new("T", "b", 0);
    send(async move {
        let _ = producer.send(&msg).await;
        let _ = producer.send_batch(std::slice::from_ref(&msg)).await;
        let _ = pull.pull(&queue, 0, 1, None, &Subscription::all()).await;
        let _ = group.commit_offsets().await;
        let _ = group.shutdown().await;
    });
}
