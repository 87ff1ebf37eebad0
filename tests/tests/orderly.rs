//! Orderly consumer groups against real processes: a member consumes a queue only while it holds
//! the queue's broker lock (LOCK_BATCH_MQ), so two members never consume one queue at once.

#[path = "cluster/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tern_core::client::{
    ClientConfig, ClientError, ConsumeFrom, ConsumerConfig, ConsumerGroup, Message, MessageQueue,
    Producer, lock_queues,
};
use tern_core::protocol::RemotingClient;
use tern_tests::process::{BrokerSpec, start_broker_with, start_namesrv};

const TTL: Duration = Duration::from_secs(3);

fn topic_queues(group: &ConsumerGroup) -> Vec<MessageQueue> {
    group
        .assigned_queues()
        .into_iter()
        .filter(|q| q.topic == "Ordered")
        .collect()
}

async fn wait_for(what: &str, within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orderly_members_consume_only_the_queues_they_hold_locked() {
    let namesrv = start_namesrv(&[]);
    let namesrv_addrs = vec![namesrv.addr().to_string()];
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("broker-a");
    let broker = start_broker_with(
        &BrokerSpec {
            name: "broker-a",
            cluster: "OrderlyCluster",
            namesrv: &namesrv_addrs,
            store: &store,
            sync_flush: false,
            register_interval_secs: 1,
            listen: None,
        },
        |config| config.queue_lock_ttl_ms = TTL.as_millis() as u64,
    );
    let admin = RemotingClient::new();
    raw::create_routed_topic(&admin, broker.addr(), &namesrv_addrs[0], "Ordered", 4).await;
    let config = ClientConfig {
        rebalance_interval: Duration::from_millis(300),
        ..ClientConfig::new(namesrv_addrs.clone())
    };
    let producer = Producer::new(config.clone(), "orderly-producer").unwrap();
    let queue = |id| MessageQueue::new("Ordered", "broker-a", id);
    for i in 0..5 {
        producer
            .send_to_queue(&Message::new("Ordered", format!("q0-{i}")), &queue(0))
            .await
            .unwrap();
    }

    // Another client holds queue 0 and never renews: the member must wait for the lock to lapse.
    let intruder = |queues: Vec<MessageQueue>| {
        let admin = &admin;
        let addr = broker.addr().to_string();
        async move {
            lock_queues(
                admin,
                &addr,
                "orderly-g",
                "intruder",
                &queues,
                Duration::from_secs(5),
            )
            .await
            .unwrap()
        }
    };
    let locked_at = Instant::now();
    assert_eq!(intruder(vec![queue(0)]).await, [queue(0)]);
    let consumer = ConsumerConfig::new("orderly-g")
        .subscribe("Ordered", "*")
        .with_consume_from(ConsumeFrom::First)
        .orderly();
    let (a, mut stream_a) = ConsumerGroup::start(config.clone(), consumer.clone())
        .await
        .unwrap();
    wait_for("member A takes queues 1..3", Duration::from_secs(5), || {
        topic_queues(&a).len() == 3
    })
    .await;
    assert!(!topic_queues(&a).contains(&queue(0)));
    let first = tokio::time::timeout(Duration::from_secs(10), stream_a.recv())
        .await
        .expect("queue 0 after the intruder's lock lapsed")
        .unwrap();
    assert!(
        locked_at.elapsed() >= TTL,
        "consumed queue 0 while another client held its lock"
    );
    assert_eq!(&first.body[..], b"q0-0");
    a.ack(&first);
    assert!(matches!(
        a.nack(&first).await,
        Err(ClientError::InvalidArgument(_))
    ));

    // A second member: the queues split, each held by exactly one member.
    let (b, _stream_b) = ConsumerGroup::start(config.clone(), consumer)
        .await
        .unwrap();
    wait_for("A and B split the queues", Duration::from_secs(10), || {
        let (qa, qb) = (topic_queues(&a), topic_queues(&b));
        let union: HashSet<_> = qa.iter().chain(&qb).collect();
        qa.len() == 2 && qb.len() == 2 && union.len() == 4
    })
    .await;
    let all: Vec<MessageQueue> = (0..4).map(queue).collect();
    assert!(
        intruder(all.clone()).await.is_empty(),
        "every queue is locked by its member"
    );

    // A leaves cleanly and unlocks: B takes its queues well before the TTL would free them.
    let left_at = Instant::now();
    a.shutdown().await.unwrap();
    wait_for("B takes every queue", Duration::from_secs(10), || {
        topic_queues(&b).len() == 4
    })
    .await;
    assert!(
        left_at.elapsed() < TTL,
        "B waited for the TTL: A did not unlock"
    );
    b.shutdown().await.unwrap();
    // Both gone: the locks are free at once.
    assert_eq!(intruder(all.clone()).await.len(), 4);
}
