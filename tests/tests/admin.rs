//! `tern_core::client::Admin` against real processes: two NameServers and two brokers started
//! from the binaries. The brokers register only every 30 s on their own, so routes that follow
//! a topic change within the admin's 5 s bound show the change-triggered re-registration.

#[path = "cluster/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tern_core::client::{
    Admin, ClientConfig, ClientError, Message, MessageQueue, PopConsumer, Producer, PullConsumer,
    ReceiveOptions, ReceivedMessage, ResetTarget, SendResult, Subscription, new_unique_id,
};
use tern_core::protocol::RemotingClient;
use tern_core::store::now_millis;
use tern_tests::process::{BrokerSpec, ServerProcess, start_broker, start_namesrv};

struct Cluster {
    _namesrvs: Vec<ServerProcess>,
    _brokers: Vec<ServerProcess>,
    namesrv_addrs: Vec<String>,
    broker_addrs: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let namesrvs = vec![start_namesrv(&[]), start_namesrv(&[])];
        let namesrv_addrs: Vec<String> = namesrvs.iter().map(|n| n.addr().to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut brokers = Vec::new();
        for name in ["broker-a", "broker-b"] {
            let store = dir.path().join(name);
            brokers.push(start_broker(&BrokerSpec {
                name,
                cluster: "AdminCluster",
                namesrv: &namesrv_addrs,
                store: &store,
                sync_flush: false,
                register_interval_secs: 30,
                listen: None,
            }));
        }
        let broker_addrs = brokers.iter().map(|b| b.addr().to_string()).collect();
        Cluster {
            _namesrvs: namesrvs,
            _brokers: brokers,
            namesrv_addrs,
            broker_addrs,
            _dir: dir,
        }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig::new(self.namesrv_addrs.clone())
    }

    /// An admin, once both brokers are registered with the NameServer it asks.
    async fn admin(&self) -> Admin {
        let admin = Admin::new(self.config()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(brokers) = admin.brokers().await
                && brokers.values().filter(|m| m.contains_key(&0)).count() == 2
            {
                break;
            }
            assert!(Instant::now() < deadline, "brokers never registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        admin
    }
}

/// Polls `f` until it returns `Some`, for at most 10 s.
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn queue_ids(queues: &[MessageQueue]) -> Vec<String> {
    queues
        .iter()
        .map(|q| format!("{}:{}", q.broker_name, q.queue_id))
        .collect()
}

fn body(m: &ReceivedMessage) -> String {
    String::from_utf8(m.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_updated_listed_and_deleted() {
    let cluster = Cluster::start().await;
    let admin = cluster.admin().await;
    let brokers = admin.brokers().await.unwrap();
    assert_eq!(
        brokers.keys().collect::<Vec<_>>(),
        ["broker-a", "broker-b"],
        "{brokers:?}"
    );
    let masters: BTreeSet<&String> = brokers.values().map(|m| &m[&0]).collect();
    assert_eq!(masters, cluster.broker_addrs.iter().collect());

    let started = Instant::now();
    admin.create_topic("AdminTopic", 3, 6).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "route lag");
    assert!(
        admin
            .topics()
            .await
            .unwrap()
            .contains(&"AdminTopic".to_string())
    );
    let route = admin.routes().route("AdminTopic").await.unwrap();
    assert_eq!(
        queue_ids(&route.read_queues),
        [
            "broker-a:0",
            "broker-a:1",
            "broker-a:2",
            "broker-b:0",
            "broker-b:1",
            "broker-b:2"
        ]
    );
    assert_eq!(route.write_queues.len(), 6);
    let raw_client = RemotingClient::new();
    for ns in &cluster.namesrv_addrs {
        let route = raw::route(&raw_client, ns, "AdminTopic").await.unwrap();
        assert_eq!(route.queue_datas.len(), 2, "{ns}");
        assert!(
            route
                .queue_datas
                .iter()
                .all(|q| q.read_queue_nums == 3 && q.perm == 6)
        );
    }

    // An update: more queues, then read-only.
    admin.create_topic("AdminTopic", 5, 6).await.unwrap();
    let route = admin.routes().route("AdminTopic").await.unwrap();
    assert_eq!(route.read_queues.len(), 10);
    admin.create_topic("AdminTopic", 5, 4).await.unwrap();
    let route = admin.routes().route("AdminTopic").await.unwrap();
    assert_eq!(route.read_queues.len(), 10);
    assert!(route.write_queues.is_empty());

    admin.create_topic("AdminKept", 1, 6).await.unwrap();
    admin.delete_topic("AdminTopic").await.unwrap();
    let topics = admin.topics().await.unwrap();
    assert!(!topics.contains(&"AdminTopic".to_string()), "{topics:?}");
    assert!(topics.contains(&"AdminKept".to_string()), "{topics:?}");
    for ns in &cluster.namesrv_addrs {
        assert!(raw::route(&raw_client, ns, "AdminTopic").await.is_none());
    }
    // The admin's own cache forgot the route.
    assert!(admin.routes().cached("AdminTopic").is_none());
    assert!(matches!(
        admin.queue_offsets("AdminTopic").await,
        Err(ClientError::NoRoute { .. })
    ));
    // Deleting what does not exist succeeds; bad arguments never reach a peer.
    admin.delete_topic("NeverCreated").await.unwrap();
    assert!(matches!(
        admin.create_topic("Admin Topic", 1, 6).await,
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(matches!(
        admin.create_topic("AdminTopic", 1, 16).await,
        Err(ClientError::InvalidArgument(_))
    ));
    // Re-created after deletion, the topic is routed again.
    admin.create_topic("AdminTopic", 2, 6).await.unwrap();
    let route = admin.routes().route("AdminTopic").await.unwrap();
    assert_eq!(route.read_queues.len(), 4);
    admin.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_lag_and_resets() {
    const TOPIC: &str = "AdminOffsets";
    let cluster = Cluster::start().await;
    let admin = cluster.admin().await;
    admin.create_topic(TOPIC, 2, 6).await.unwrap();
    let producer = Producer::new(cluster.config(), "admin-pg").unwrap();
    let queues = admin
        .routes()
        .route(TOPIC)
        .await
        .unwrap()
        .read_queues
        .clone();
    assert_eq!(queues.len(), 4);

    // Phase 1: three messages per queue.
    for queue in &queues {
        for i in 0..3 {
            let m = Message::new(TOPIC, format!("old-{queue}-{i}"));
            producer.send_to_queue(&m, queue).await.unwrap();
        }
    }
    let offsets = eventually("phase 1 dispatched", || async {
        let offsets = admin.queue_offsets(TOPIC).await.unwrap();
        offsets.iter().all(|o| o.max_offset == 3).then_some(offsets)
    })
    .await;
    assert_eq!(
        offsets.iter().map(|o| o.queue.clone()).collect::<Vec<_>>(),
        queues
    );
    assert!(offsets.iter().all(|o| o.min_offset == 0));

    // No committed offset: -1, lag = everything stored.
    let group = admin.group_offsets("admin-cg", TOPIC).await.unwrap();
    assert!(
        group
            .iter()
            .all(|g| g.committed == -1 && g.lag == 3 && g.max_offset == 3),
        "{group:?}"
    );
    let puller = PullConsumer::new(cluster.config(), "admin-cg").unwrap();
    puller
        .commit_offset("admin-cg", &queues[1], 2)
        .await
        .unwrap();
    let group = admin.group_offsets("admin-cg", TOPIC).await.unwrap();
    assert_eq!(group[1].queue, queues[1]);
    assert_eq!((group[1].committed, group[1].lag), (2, 1));
    assert!(
        [0, 2, 3]
            .iter()
            .all(|&i| group[i].committed == -1 && group[i].lag == 3)
    );

    // Phase 2, after a boundary time: two more per queue.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let boundary = now_millis();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for queue in &queues {
        for i in 0..2 {
            let m = Message::new(TOPIC, format!("new-{queue}-{i}"));
            producer.send_to_queue(&m, queue).await.unwrap();
        }
    }
    eventually("phase 2 dispatched", || async {
        let offsets = admin.queue_offsets(TOPIC).await.unwrap();
        offsets.iter().all(|o| o.max_offset == 5).then_some(())
    })
    .await;

    let reset = admin
        .reset_group_offsets("admin-cg", TOPIC, ResetTarget::Latest)
        .await
        .unwrap();
    assert!(reset.iter().all(|g| g.committed == 5 && g.lag == 0));
    let reset = admin
        .reset_group_offsets("admin-cg", TOPIC, ResetTarget::Earliest)
        .await
        .unwrap();
    assert!(reset.iter().all(|g| g.committed == 0 && g.lag == 5));
    assert_eq!(
        admin.group_offsets("admin-cg", TOPIC).await.unwrap(),
        reset,
        "what the reset returned is what the brokers hold"
    );
    let reset = admin
        .reset_group_offsets("admin-cg", TOPIC, ResetTarget::Timestamp(boundary))
        .await
        .unwrap();
    assert!(
        reset
            .iter()
            .all(|g| g.committed == 3 && g.lag == 2 && g.max_offset == 5),
        "{reset:?}"
    );
    // A pull from the committed offset starts at the first message after the boundary.
    for queue in &queues {
        let from = puller.fetch_offset("admin-cg", queue).await.unwrap();
        assert_eq!(from, Some(3));
        let pulled = puller
            .pull(queue, 3, 32, None, &Subscription::all())
            .await
            .unwrap();
        let bodies: Vec<String> = pulled.messages.iter().map(body).collect();
        assert_eq!(bodies, [format!("new-{queue}-0"), format!("new-{queue}-1")]);
    }
    let future = admin
        .reset_group_offsets("admin-cg", TOPIC, ResetTarget::Timestamp(i64::MAX))
        .await
        .unwrap();
    assert!(future.iter().all(|g| g.committed == 5));

    // Pops: a group that never popped starts at its reset offset ...
    let pop = PopConsumer::new(cluster.config(), "admin-pop").unwrap();
    admin
        .reset_group_offsets("admin-pop", TOPIC, ResetTarget::Timestamp(boundary))
        .await
        .unwrap();
    let popped = pop_all(&pop, TOPIC, 8).await;
    assert!(popped.iter().all(|b| b.starts_with("new-")), "{popped:?}");
    // ... and a reset moves the position of a group that pops already.
    admin
        .reset_group_offsets("admin-pop", TOPIC, ResetTarget::Earliest)
        .await
        .unwrap();
    let popped = pop_all(&pop, TOPIC, 20).await;
    assert_eq!(popped.iter().filter(|b| b.starts_with("old-")).count(), 12);

    assert!(matches!(
        admin.group_offsets("bad group", TOPIC).await,
        Err(ClientError::InvalidArgument(_))
    ));
    pop.shutdown();
    puller.shutdown();
    producer.shutdown();
    admin.shutdown();
}

/// Pops (and acks) until `count` distinct messages arrived; returns their bodies, sorted.
async fn pop_all(pop: &PopConsumer, topic: &str, count: usize) -> Vec<String> {
    let options = ReceiveOptions {
        max_messages: 32,
        wait: Duration::from_millis(500),
        ..ReceiveOptions::default()
    };
    let mut bodies = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while bodies.len() < count {
        assert!(
            Instant::now() < deadline,
            "popped only {}: {bodies:?}",
            bodies.len()
        );
        for m in pop.receive(topic, &options).await.unwrap() {
            pop.ack(&m.receipt).await.unwrap();
            assert!(bodies.insert(body(&m.message)), "popped twice");
        }
    }
    // Nothing beyond.
    let more = pop
        .receive(
            topic,
            &ReceiveOptions {
                wait: Duration::ZERO,
                ..options
            },
        )
        .await
        .unwrap();
    assert!(more.is_empty(), "{} more", more.len());
    bodies.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_id_and_by_key() {
    const TOPIC: &str = "AdminLookup";
    let cluster = Cluster::start().await;
    let admin = cluster.admin().await;
    admin.create_topic(TOPIC, 2, 6).await.unwrap();
    admin.create_topic("AdminElsewhere", 1, 6).await.unwrap();
    let producer = Producer::new(cluster.config(), "admin-pg").unwrap();
    let queues = admin
        .routes()
        .route(TOPIC)
        .await
        .unwrap()
        .read_queues
        .clone();

    // Three messages with key order-7 spread over both brokers, then two more later; noise
    // with other keys, a key that contains order-7, and order-7 on another topic.
    let mut sent: Vec<SendResult> = Vec::new();
    for (i, queue) in queues.iter().take(3).enumerate() {
        let m = Message::new(TOPIC, format!("early-{i}"))
            .with_key("order-7")
            .with_key(format!("n-{i}"));
        sent.push(producer.send_to_queue(&m, queue).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (i, queue) in queues.iter().rev().take(2).enumerate() {
        let m = Message::new(TOPIC, format!("late-{i}")).with_key("order-7");
        sent.push(producer.send_to_queue(&m, queue).await.unwrap());
    }
    for m in [
        Message::new(TOPIC, "noise-a").with_key("order-8"),
        Message::new(TOPIC, "noise-b").with_key("order-77"),
        Message::new("AdminElsewhere", "elsewhere").with_key("order-7"),
    ] {
        producer.send(&m).await.unwrap();
    }

    let all = eventually("the index has the five messages", || async {
        let found = admin
            .messages_by_key(TOPIC, "order-7", 0, i64::MAX, 100)
            .await
            .unwrap();
        (found.len() == 5).then_some(found)
    })
    .await;
    let bodies: Vec<String> = all.iter().map(body).collect();
    let mut early: Vec<&String> = bodies[..3].iter().collect();
    early.sort();
    assert_eq!(early, ["early-0", "early-1", "early-2"]);
    let mut late: Vec<&String> = bodies[3..].iter().collect();
    late.sort();
    assert_eq!(late, ["late-0", "late-1"]);
    assert!(
        all.windows(2)
            .all(|w| w[0].store_timestamp <= w[1].store_timestamp)
    );
    let brokers: BTreeSet<&str> = all.iter().map(|m| m.queue.broker_name.as_str()).collect();
    assert_eq!(brokers.len(), 2, "found on both brokers");

    // The time range: only the late ones; `max` keeps the newest.
    let (late_begin, late_end) = (all[3].store_timestamp, all[4].store_timestamp);
    let found = admin
        .messages_by_key(TOPIC, "order-7", late_begin, late_end, 100)
        .await
        .unwrap();
    assert_eq!(found, all[3..]);
    let found = admin
        .messages_by_key(TOPIC, "order-7", 0, all[2].store_timestamp, 100)
        .await
        .unwrap();
    assert_eq!(found, all[..3]);
    let found = admin
        .messages_by_key(TOPIC, "order-7", 0, i64::MAX, 2)
        .await
        .unwrap();
    assert_eq!(found, all[3..]);
    // Exact keys only.
    let found = admin
        .messages_by_key(TOPIC, "order", 0, i64::MAX, 100)
        .await
        .unwrap();
    assert!(found.is_empty());
    let found = admin
        .messages_by_key("AdminElsewhere", "order-7", 0, i64::MAX, 100)
        .await
        .unwrap();
    assert_eq!(found.iter().map(body).collect::<Vec<_>>(), ["elsewhere"]);

    // By the producer's id (UNIQ_KEY).
    for result in &sent {
        let found = admin
            .message_by_id(TOPIC, &result.msg_id)
            .await
            .unwrap()
            .expect("found by msg_id");
        assert_eq!(found.msg_id, result.msg_id);
        assert_eq!(found.queue, result.queue);
        assert_eq!(found.queue_offset, result.queue_offset);
        assert_eq!(found.offset_msg_id, result.offset_msg_id);
        assert!(found.store_timestamp > 0);
    }
    // By the offset message id.
    let by_offset = admin
        .message_by_id(TOPIC, &sent[4].offset_msg_id)
        .await
        .unwrap()
        .expect("found by offset_msg_id");
    assert_eq!(body(&by_offset), "late-1");
    assert_eq!(by_offset.queue, sent[4].queue);
    // Unknown ids, and ids of another topic.
    assert_eq!(admin.message_by_id(TOPIC, &new_unique_id()).await, Ok(None));
    assert_eq!(
        admin.message_by_id("AdminElsewhere", &sent[0].msg_id).await,
        Ok(None)
    );
    assert_eq!(
        admin
            .message_by_id("AdminElsewhere", &sent[0].offset_msg_id)
            .await,
        Ok(None)
    );
    // An offset id naming a host outside the route is never contacted.
    let foreign = tern_core::store::offset_message_id("10.255.255.1:10911".parse().unwrap(), 0);
    assert_eq!(admin.message_by_id(TOPIC, &foreign).await, Ok(None));
    producer.shutdown();
    admin.shutdown();
}
