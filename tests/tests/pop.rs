//! Pop consumption against real processes: a NameServer and brokers started from the binaries,
//! producers and `PopConsumer`s from `tern_core::client`.
//!
//! Redelivery after invisibility, acks that stop it, nacks with a delay, the dead-letter queue,
//! FIFO order under failures, sixteen consumers sharing a group, and in-flight state across a
//! broker SIGKILL.

#[path = "cluster/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_core::client::{
    ClientConfig, ClientError, Message, PopConsumer, PoppedMessage, Producer, ReceiveOptions,
};
use tern_core::protocol::RemotingClient;
use tern_core::protocol::body::SubscriptionGroupConfig;
use tern_tests::process::{BrokerSpec, ServerProcess, start_broker_with, start_namesrv};

struct Setup {
    _namesrv: ServerProcess,
    brokers: Vec<ServerProcess>,
    namesrv_addrs: Vec<String>,
    dir: tempfile::TempDir,
}

fn spec<'a>(name: &'a str, namesrv: &'a [String], store: &'a std::path::Path) -> BrokerSpec<'a> {
    BrokerSpec {
        name,
        cluster: "PopCluster",
        namesrv,
        store,
        sync_flush: true,
        register_interval_secs: 1,
        listen: None,
    }
}

fn tune(config: &mut tern_core::broker::BrokerConfig) {
    config.pop_min_invisible_ms = 100;
}

impl Setup {
    async fn start(brokers: &[&str], topic: &str, queues: i32) -> Setup {
        let namesrv = start_namesrv(&[]);
        let namesrv_addrs = vec![namesrv.addr().to_string()];
        let dir = tempfile::tempdir().unwrap();
        let mut started = Vec::new();
        for name in brokers {
            let store = dir.path().join(name);
            started.push(start_broker_with(&spec(name, &namesrv_addrs, &store), tune));
        }
        let setup = Setup {
            _namesrv: namesrv,
            brokers: started,
            namesrv_addrs,
            dir,
        };
        setup.create_topic(topic, queues).await;
        setup
    }

    async fn create_topic(&self, topic: &str, queues: i32) {
        let admin = RemotingClient::new();
        for broker in &self.brokers {
            raw::create_topic(&admin, broker.addr(), topic, queues).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while raw::route(&admin, &self.namesrv_addrs[0], topic)
            .await
            .is_none_or(|r| r.queue_datas.len() != self.brokers.len())
        {
            assert!(Instant::now() < deadline, "route of {topic} incomplete");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn config(&self) -> ClientConfig {
        ClientConfig::new(self.namesrv_addrs.clone())
    }

    fn producer(&self) -> Producer {
        Producer::new(self.config(), "pop-producer").unwrap()
    }

    fn consumer(&self, group: &str) -> PopConsumer {
        PopConsumer::new(self.config(), group).unwrap()
    }
}

fn options(max: i32, invisible_ms: u64, wait_ms: u64) -> ReceiveOptions {
    ReceiveOptions {
        max_messages: max,
        invisible: Duration::from_millis(invisible_ms),
        wait: Duration::from_millis(wait_ms),
        ..ReceiveOptions::default()
    }
}

fn body(m: &PoppedMessage) -> String {
    String::from_utf8(m.message.body.to_vec()).unwrap()
}

async fn configure(consumer: &PopConsumer, topic: &str, fifo: bool, retries: i32) {
    let mut group = SubscriptionGroupConfig::new(consumer.group());
    group.consume_message_orderly = fifo;
    group.retry_max_times = retries;
    consumer.configure_group(topic, &group).await.unwrap();
}

/// Receives until `want` messages arrived or `within` passed.
async fn receive_n(
    consumer: &PopConsumer,
    topic: &str,
    opts: &ReceiveOptions,
    want: usize,
    within: Duration,
) -> Vec<PoppedMessage> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        got.extend(consumer.receive(topic, opts).await.unwrap());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_acks_nacks_and_the_dead_letter_queue() {
    let setup = Setup::start(&["broker-a"], "PopT", 4).await;
    let producer = setup.producer();
    let consumer = setup.consumer("pop-g");
    configure(&consumer, "PopT", false, 2).await;
    for i in 0..20 {
        producer
            .send(&Message::new("PopT", format!("m{i}")))
            .await
            .unwrap();
    }
    let got = receive_n(
        &consumer,
        "PopT",
        &options(32, 1_500, 500),
        20,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|m| m.delivery_attempt == 1));
    let by_body: HashMap<String, PoppedMessage> = got.into_iter().map(|m| (body(&m), m)).collect();
    assert_eq!(by_body.len(), 20, "no message twice");
    // m0: never acked, comes back after its invisible time. m1: nacked with a 3 s delay. The rest
    // acked: never seen again.
    let nacked_at = Instant::now();
    consumer
        .nack(&by_body["m1"].receipt, Duration::from_secs(3))
        .await
        .unwrap();
    for (name, m) in &by_body {
        if name != "m0" && name != "m1" {
            consumer.ack(&m.receipt).await.unwrap();
        }
    }
    assert!(matches!(
        consumer.ack(&by_body["m2"].receipt).await,
        Err(ClientError::StaleReceipt(_))
    ));
    let again = receive_n(
        &consumer,
        "PopT",
        &options(32, 20_000, 1_000),
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        again
            .iter()
            .map(|m| (body(m), m.delivery_attempt))
            .collect::<Vec<_>>(),
        [("m0".to_string(), 2)]
    );
    let later = receive_n(
        &consumer,
        "PopT",
        &options(32, 10_000, 1_000),
        1,
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(body(&later[0]), "m1");
    assert!(
        nacked_at.elapsed() >= Duration::from_secs(3),
        "nack delay not honoured"
    );
    assert_eq!(later[0].delivery_attempt, 2);
    consumer.ack(&later[0].receipt).await.unwrap();

    // m0 with a limit of 2 redeliveries: attempts 2 (above) and 3, then the dead-letter queue.
    consumer
        .nack(&again[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let third = receive_n(
        &consumer,
        "PopT",
        &options(32, 10_000, 1_000),
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        (body(&third[0]), third[0].delivery_attempt),
        ("m0".into(), 3)
    );
    consumer
        .nack(&third[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let none = consumer
        .receive("PopT", &options(32, 10_000, 1_500))
        .await
        .unwrap();
    assert!(
        none.is_empty(),
        "{:?}",
        none.iter().map(body).collect::<Vec<_>>()
    );
    let admin = RemotingClient::new();
    let broker = setup.brokers[0].addr();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, dead) = raw::pull(&admin, broker, "%DLQ%pop-g", 0, 0, 0, None).await;
        if let Some(m) = dead.first() {
            assert_eq!(&m.body[..], b"m0");
            assert_eq!(m.properties.get("RETRY_TOPIC"), Some("PopT"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing in the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_consumers_share_a_group_without_loss_or_duplicates() {
    const N: usize = 3_000;
    let setup = Setup::start(&["broker-a", "broker-b"], "PopMany", 4).await;
    let producer = Arc::new(setup.producer());
    let send = tokio::spawn({
        let producer = producer.clone();
        async move {
            for i in 0..N {
                producer
                    .send(&Message::new("PopMany", format!("{i}")))
                    .await
                    .unwrap();
            }
        }
    });
    let seen = Arc::new(Mutex::new(Vec::<usize>::new()));
    let mut consumers = Vec::new();
    for c in 0..16 {
        let consumer = setup.consumer("pop-16");
        let seen = seen.clone();
        consumers.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.lock().unwrap().len() < N && Instant::now() < deadline {
                let got = consumer
                    .receive("PopMany", &options(16, 30_000, 300))
                    .await
                    .unwrap();
                // Half the consumers ack one by one, half in batches.
                if c % 2 == 0 {
                    for m in &got {
                        consumer.ack(&m.receipt).await.unwrap();
                    }
                } else if !got.is_empty() {
                    let receipts: Vec<_> = got.iter().map(|m| m.receipt.clone()).collect();
                    for verdict in consumer.ack_many(&receipts).await.unwrap() {
                        verdict.unwrap();
                    }
                }
                for m in got {
                    seen.lock().unwrap().push(body(&m).parse().unwrap());
                }
            }
        }));
    }
    send.await.unwrap();
    for c in consumers {
        c.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<usize> = seen.iter().copied().collect();
    assert_eq!(unique.len(), N, "lost messages");
    assert_eq!(seen.len(), N, "duplicated deliveries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_keeps_per_key_order_under_concurrent_producers_and_failures() {
    const KEYS: usize = 8;
    const PER_KEY: usize = 60;
    let setup = Setup::start(&["broker-a"], "PopFifo", 4).await;
    let producer = Arc::new(setup.producer());
    let admin = setup.consumer("pop-fifo");
    configure(&admin, "PopFifo", true, 1_000).await;
    let mut producers = Vec::new();
    for key in 0..KEYS {
        let producer = producer.clone();
        producers.push(tokio::spawn(async move {
            for seq in 0..PER_KEY {
                let msg = Message::new("PopFifo", format!("{key}:{seq}"));
                producer
                    .send_ordered(&msg, &format!("key-{key}"))
                    .await
                    .unwrap();
            }
        }));
    }
    // Per key, the sequence numbers in the order their acks succeeded.
    let acked = Arc::new(Mutex::new(BTreeMap::<usize, Vec<usize>>::new()));
    let mut consumers = Vec::new();
    for c in 0..4u64 {
        let consumer = setup.consumer("pop-fifo");
        let acked = acked.clone();
        consumers.push(tokio::spawn(async move {
            let mut rng = c.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let done = |acked: &BTreeMap<usize, Vec<usize>>| {
                acked.values().map(Vec::len).sum::<usize>() == KEYS * PER_KEY
            };
            let deadline = Instant::now() + Duration::from_secs(90);
            while !done(&acked.lock().unwrap()) && Instant::now() < deadline {
                let got = consumer
                    .receive("PopFifo", &options(8, 400, 300))
                    .await
                    .unwrap();
                for m in got {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if rng % 10 == 0 {
                        // The consumer "crashes": this message and the rest of the batch are
                        // never acked and come back after the invisible time, in order.
                        break;
                    }
                    let text = body(&m);
                    let (key, seq) = text.split_once(':').unwrap();
                    if consumer.ack(&m.receipt).await.is_ok() {
                        acked
                            .lock()
                            .unwrap()
                            .entry(key.parse().unwrap())
                            .or_default()
                            .push(seq.parse().unwrap());
                    }
                }
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    for c in consumers {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap();
    assert_eq!(acked.len(), KEYS);
    for (key, seqs) in acked.iter() {
        assert_eq!(
            seqs,
            &(0..PER_KEY).collect::<Vec<_>>(),
            "key {key} out of order or incomplete"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_messages_survive_a_broker_sigkill() {
    let setup = Setup::start(&["broker-a"], "PopKill", 2).await;
    let producer = setup.producer();
    for i in 0..10 {
        producer
            .send(&Message::new("PopKill", format!("k{i}")))
            .await
            .unwrap();
    }
    producer.shutdown();
    let consumer = setup.consumer("pop-kill");
    let got = receive_n(
        &consumer,
        "PopKill",
        &options(6, 8_000, 500),
        6,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(got.len(), 6);
    for m in &got[..3] {
        consumer.ack(&m.receipt).await.unwrap();
    }
    let popped_at = Instant::now();
    let mut setup = setup;
    let addr = setup.brokers[0].addr().to_string();
    setup.brokers[0].kill();
    let store = setup.dir.path().join("broker-a");
    let names = setup.namesrv_addrs.clone();
    let mut restarted = spec("broker-a", &names, &store);
    restarted.listen = Some(&addr);
    setup.brokers[0] = start_broker_with(&restarted, tune);

    // Within the invisible time only the 4 never-popped messages are delivered.
    let fresh = receive_n(
        &consumer,
        "PopKill",
        &options(32, 30_000, 300),
        4,
        Duration::from_secs(10),
    )
    .await;
    let mut names: Vec<String> = fresh.iter().map(body).collect();
    names.sort();
    let popped: HashSet<String> = got.iter().map(body).collect();
    assert_eq!(fresh.len(), 4, "{names:?}");
    assert!(names.iter().all(|n| !popped.contains(n)), "{names:?}");
    assert!(
        popped_at.elapsed() < Duration::from_secs(8),
        "the restart took too long for this check"
    );
    assert!(matches!(
        consumer.ack(&got[0].receipt).await,
        Err(ClientError::StaleReceipt(_))
    ));
    // One of the unacked ones is still ackable with its old receipt...
    consumer.ack(&got[3].receipt).await.unwrap();
    // ... and the other two come back after their deadline, as second deliveries.
    let back = receive_n(
        &consumer,
        "PopKill",
        &options(32, 30_000, 2_000),
        2,
        Duration::from_secs(15),
    )
    .await;
    let mut back_names: Vec<(String, i32)> =
        back.iter().map(|m| (body(m), m.delivery_attempt)).collect();
    back_names.sort();
    let mut expected: Vec<(String, i32)> = got[4..].iter().map(|m| (body(m), 2)).collect();
    expected.sort();
    assert_eq!(back_names, expected);
    assert!(popped_at.elapsed() >= Duration::from_secs(7));
}
