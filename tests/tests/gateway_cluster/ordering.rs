//! Ordering keys over two gateways and two brokers: every gateway pins a key to queue
//! `abs(javaHashCode(K) % 8)` of the queues sorted by (brokerName, queueId), and a FIFO group
//! receiving and acking through both gateways sees each key's messages in the order their
//! produces were acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_tests::http::Http;
use tern_tests::process::receipt_key;

use super::support::{
    Cluster, ack, all_stored, body, put_group, put_topic, queue_for_key, receipt, receive,
};

const TOPIC: &str = "ordered";
const GROUP: &str = "ordered-fifo";
const KEYS: usize = 8;
/// Messages per key.
const N: usize = 50;
/// Queues of the topic in all (4 on each broker).
const QUEUES: i32 = 8;

fn key(i: usize) -> String {
    format!("customer-{i}")
}

/// `key|seq` → (key, seq).
fn parse(body: &str) -> (String, usize) {
    let (key, seq) = body.split_once('|').expect("key|seq");
    (key.to_string(), seq.parse().expect("seq"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_keeps_its_queue_and_its_order_across_gateways() {
    let cluster = Cluster::start(&["broker-a", "broker-b"], false, &[]).await;
    let receipt_key = receipt_key();
    let (_a, a) = cluster.gateway(&receipt_key, &[]);
    let (_b, b) = cluster.gateway(&receipt_key, &[]);
    let topic = put_topic(&b, TOPIC, QUEUES / 2).await;
    let queues = topic["queues"].as_array().unwrap();
    let layout: Vec<(String, u64)> = queues
        .iter()
        .map(|q| {
            (
                q["brokerName"].as_str().unwrap().to_string(),
                q["queueId"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected_layout: Vec<(String, u64)> = (0..QUEUES as u64)
        .map(|i| {
            let broker = if i < 4 { "broker-a" } else { "broker-b" };
            (broker.to_string(), i)
        })
        .collect();
    assert_eq!(layout, expected_layout, "{topic}");
    put_group(&a, GROUP, true).await;

    // The keys cover both brokers (so a gateway numbering the queues differently would show).
    let expected: BTreeMap<String, usize> = (0..KEYS)
        .map(|i| (key(i), queue_for_key(&key(i), QUEUES)))
        .collect();
    assert!(expected.values().any(|&q| q < 4) && expected.values().any(|&q| q >= 4));

    let gateways = [a.clone(), b.clone()];
    let mut producers = Vec::new();
    for i in 0..KEYS {
        let http = gateways[i % 2].clone();
        let (k, queue) = (key(i), expected[&key(i)]);
        producers.push(tokio::spawn(async move {
            for seq in 0..N {
                let answer = http
                    .post(
                        &format!("/v1/topics/{TOPIC}/messages"),
                        &[("tern-ordering-key", k.as_str())],
                        format!("{k}|{seq}"),
                    )
                    .await;
                assert_eq!(answer.status, 200, "{k} {seq}: {answer:?}");
                assert_eq!(
                    answer.json()["queueId"].as_u64(),
                    Some(queue as u64),
                    "{k} {seq}"
                );
            }
        }));
    }

    let consumer = tokio::spawn(consume(Arc::new(gateways), expected.clone()));
    for producer in producers {
        producer.await.unwrap();
    }
    let seen = consumer.await.unwrap();
    for (k, seqs) in &seen {
        assert_eq!(
            seqs,
            &(0..N).collect::<Vec<_>>(),
            "{k}: delivered out of order, twice, or with gaps"
        );
    }
    assert_eq!(seen.len(), KEYS);

    // Where they were stored, read by stateless pull of each queue.
    let mut stored: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (queue, message) in all_stored(&a, TOPIC, KEYS * N).await {
        let (k, seq) = parse(body(&message));
        stored.entry(k).or_default().push((queue, seq));
    }
    for (k, placed) in &stored {
        let queue = expected[k];
        assert!(
            placed.iter().all(|(q, _)| *q == queue),
            "{k} belongs to queue {queue}: {placed:?}"
        );
        let seqs: Vec<usize> = placed.iter().map(|(_, s)| *s).collect();
        assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "{k}: stored order");
    }
    assert_eq!(stored.len(), KEYS);
}

/// What the receivers share: each key's deliveries in delivery order, and which HTTP queues
/// have a batch out (received, its ack not yet sent).
#[derive(Default)]
struct Seen {
    by_key: BTreeMap<String, Vec<usize>>,
    held: BTreeSet<usize>,
}

/// Two receivers at once, each receiving through the gateways in turn and acking each batch
/// through the other one, until every key's `N` messages came: what each key delivered, in
/// delivery order. A FIFO group hands out one batch per queue until it is acked, so a receiver
/// must never get messages of a queue whose batch the other one holds (and since deliveries are
/// recorded before their ack is sent, the recorded order is the delivery order).
async fn consume(
    gateways: Arc<[Http; 2]>,
    expected: BTreeMap<String, usize>,
) -> BTreeMap<String, Vec<usize>> {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut workers = Vec::new();
    for worker in 0..2 {
        let (gateways, expected, seen) = (gateways.clone(), expected.clone(), seen.clone());
        workers.push(tokio::spawn(async move {
            let mut turn = worker;
            loop {
                let done: usize = seen.lock().unwrap().by_key.values().map(Vec::len).sum();
                if done == KEYS * N {
                    return;
                }
                assert!(Instant::now() < deadline, "not everything delivered in time");
                let (via, ack_via) = (&gateways[turn % 2], &gateways[(turn + 1) % 2]);
                turn += 1;
                let messages = receive(via, GROUP, TOPIC, 16, 20, 1).await;
                if messages.is_empty() {
                    continue;
                }
                let mut receipts = Vec::new();
                let mut queues = BTreeSet::new();
                {
                    let mut seen = seen.lock().unwrap();
                    for message in &messages {
                        let (k, seq) = parse(body(message));
                        let queue = expected[&k];
                        assert_eq!(message["queueId"].as_u64(), Some(queue as u64), "{message}");
                        assert_eq!(message["deliveryAttempt"], 1, "{message}");
                        assert!(
                            !seen.held.contains(&queue),
                            "queue {queue} delivered {message} while another batch of it was unacked"
                        );
                        queues.insert(queue);
                        seen.by_key.entry(k).or_default().push(seq);
                        receipts.push(receipt(message));
                    }
                    seen.held.extend(&queues);
                }
                // Hold the batch a moment, so the other receiver asks while it is unacked.
                tokio::time::sleep(Duration::from_millis(20)).await;
                {
                    let mut seen = seen.lock().unwrap();
                    for queue in &queues {
                        seen.held.remove(queue);
                    }
                }
                let verdicts = ack(ack_via, GROUP, TOPIC, &receipts).await;
                assert!(verdicts.iter().all(|&s| s == 200), "{verdicts:?}");
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    seen.by_key
}
