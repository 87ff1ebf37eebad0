//! Classic consumer retries against real processes: a `ConsumerGroup` nacks a message, the broker
//! stores it in `%RETRY%<group>` behind a delay level, the group receives it again with its
//! original topic, and after the group's `retryMaxTimes` it lands in `%DLQ%<group>`.

#[path = "cluster/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::time::{Duration, Instant};

use tern_core::client::{
    ClientConfig, ConsumeFrom, ConsumerConfig, ConsumerGroup, Message, PopConsumer, Producer,
};
use tern_core::protocol::RemotingClient;
use tern_core::protocol::body::SubscriptionGroupConfig;
use tern_tests::process::{BrokerSpec, start_broker_with, start_namesrv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacked_messages_come_back_from_the_retry_topic_then_go_to_the_dlq() {
    let namesrv = start_namesrv(&[]);
    let namesrv_addrs = vec![namesrv.addr().to_string()];
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("broker-a");
    let broker = start_broker_with(
        &BrokerSpec {
            name: "broker-a",
            cluster: "RetryCluster",
            namesrv: &namesrv_addrs,
            store: &store,
            sync_flush: false,
            register_interval_secs: 1,
            listen: None,
        },
        // Short delay levels, so that retries (level 3 + attempts) come back within a second.
        |config| config.store.message_delay_level = "1s 1s 1s 1s 1s".into(),
    );
    let admin = RemotingClient::new();
    raw::create_routed_topic(&admin, broker.addr(), &namesrv_addrs[0], "RetryT", 2).await;
    let config = ClientConfig {
        rebalance_interval: Duration::from_millis(500),
        ..ClientConfig::new(namesrv_addrs.clone())
    };
    // Two redeliveries at most for this group.
    let settings = PopConsumer::new(config.clone(), "retry-g").unwrap();
    let mut group_config = SubscriptionGroupConfig::new("retry-g");
    group_config.retry_max_times = 2;
    settings
        .configure_group("RetryT", &group_config)
        .await
        .unwrap();

    let producer = Producer::new(config.clone(), "retry-producer").unwrap();
    producer
        .send(&Message::new("RetryT", "flaky").with_tag("t"))
        .await
        .unwrap();
    let consumer = ConsumerConfig::new("retry-g")
        .subscribe("RetryT", "*")
        .with_consume_from(ConsumeFrom::First);
    let (group, mut stream) = ConsumerGroup::start(config, consumer).await.unwrap();
    let mut deliveries = Vec::new();
    let started = Instant::now();
    while deliveries.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(20), stream.recv())
            .await
            .expect("delivery in time")
            .expect("stream open");
        deliveries.push((
            message.topic().to_string(),
            message.queue.topic.clone(),
            message.reconsume_times,
            started.elapsed(),
        ));
        assert_eq!(&message.body[..], b"flaky");
        group.nack(&message).await.unwrap();
    }
    assert_eq!(
        deliveries
            .iter()
            .map(|(t, q, r, _)| (t.as_str(), q.as_str(), *r))
            .collect::<Vec<_>>(),
        [
            ("RetryT", "RetryT", 0),
            ("RetryT", "%RETRY%retry-g", 1),
            ("RetryT", "%RETRY%retry-g", 2),
        ],
        "the original, then two retries that show their original topic"
    );
    // Each retry waited for its delay level (1 s here).
    assert!(deliveries[1].3 - deliveries[0].3 >= Duration::from_millis(900));
    // The third failure goes to the dead-letter queue, not back to the group.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, dead) = raw::pull(&admin, broker.addr(), "%DLQ%retry-g", 0, 0, 0, None).await;
        if let Some(m) = dead.first() {
            assert_eq!(&m.body[..], b"flaky");
            assert_eq!(m.properties.get("RETRY_TOPIC"), Some("RetryT"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing in the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(2), stream.recv())
            .await
            .is_err(),
        "no fourth delivery"
    );
    group.shutdown().await.unwrap();
}
