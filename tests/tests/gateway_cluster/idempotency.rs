//! An `Idempotency-Key` is honoured across gateways: the broker keeps the window, and every
//! gateway pins the key to the same queue, so a retry through another gateway meets the first
//! send. Two brokers, so a gateway that pinned differently would reach the wrong one.

use std::collections::HashMap;

use tern_tests::process::receipt_key;

use super::support::{Cluster, all_stored, body, put_topic, text};

const TOPIC: &str = "idem-cluster";
const KEYS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_through_another_gateway_is_replayed() {
    let cluster = Cluster::start(&["broker-a", "broker-b"], false, &[]).await;
    let key = receipt_key();
    let (_a, a) = cluster.gateway(&key, &[]);
    let (_b, b) = cluster.gateway(&key, &[]);
    let topic = put_topic(&a, TOPIC, 4).await;
    assert_eq!(topic["queues"].as_array().unwrap().len(), 8, "{topic}");
    let path = format!("/v1/topics/{TOPIC}/messages");

    let mut first_results = HashMap::new();
    for i in 0..KEYS {
        let idem = format!("order-{i}");
        let payload = format!("payload of {idem}");
        let headers = [("idempotency-key", idem.as_str())];
        let first = a.post(&path, &headers, payload.clone()).await;
        assert_eq!(first.status, 200, "{}", text(&first));
        assert_eq!(first.header("tern-idempotent-replayed"), None);
        let retried = b.post(&path, &headers, payload.clone()).await;
        assert_eq!(retried.status, 200, "{}", text(&retried));
        assert_eq!(
            retried.header("tern-idempotent-replayed"),
            Some("true"),
            "{idem}"
        );
        let (first, retried) = (first.json(), retried.json());
        for field in ["messageId", "topic", "queueId", "queueOffset"] {
            assert_eq!(first[field], retried[field], "{idem}: {field}");
        }
        // The same key with another body, through B and through A: 422, nothing stored.
        for via in [&b, &a] {
            let reused = via
                .post(&path, &headers, format!("{payload}, changed"))
                .await;
            let problem = reused.problem(422);
            assert_eq!(problem["retryable"], false, "{problem}");
        }
        first_results.insert(payload, first);
    }
    // Both brokers took keys (so the pinning was tested on both).
    let queues: std::collections::HashSet<u64> = first_results
        .values()
        .map(|r| r["queueId"].as_u64().unwrap() / 4)
        .collect();
    assert_eq!(queues.len(), 2, "keys all on one broker: {first_results:?}");

    // Exactly one copy of each.
    let stored = all_stored(&a, TOPIC, KEYS).await;
    assert_eq!(stored.len(), KEYS, "{stored:?}");
    for (queue, message) in &stored {
        let first = &first_results[body(message)];
        assert_eq!(first["messageId"], message["messageId"]);
        assert_eq!(first["queueId"].as_u64(), Some(*queue as u64));
        assert_eq!(first["queueOffset"], message["queueOffset"]);
    }
}
