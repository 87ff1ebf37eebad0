//! Any gateway serves any request: a message produced through A is received through B and acked
//! through A for good; B's receipts work on A for visibility changes and nacks; a gateway with
//! another receipt key refuses them with 400 and changes nothing.

use std::time::{Duration, Instant};

use serde_json::json;
use tern_tests::process::receipt_key;

use super::support::{
    Cluster, ack, body, group_path, other_receipt_key, produce, put_group, put_topic, receipt,
    receive, statuses, text,
};

const TOPIC: &str = "stateless";
const GROUP: &str = "stateless-g";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_work_on_every_gateway_sharing_the_key() {
    let cluster = Cluster::start(&["broker-a"], false, &[]).await;
    let key = receipt_key();
    let (_a, a) = cluster.gateway(&key, &[]);
    let (_b, b) = cluster.gateway(&key, &[]);
    let (_c, c) = cluster.gateway(&other_receipt_key(), &[]);
    put_topic(&a, TOPIC, 8).await;
    put_group(&b, GROUP, false).await;

    // Produced through A, received through B, acked through A.
    let m1 = produce(&a, TOPIC, &[], "m1").await;
    let got = receive(&b, GROUP, TOPIC, 10, 1, 5).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(body(&got[0]), "m1");
    assert_eq!(got[0]["messageId"], m1["messageId"]);
    assert_eq!(got[0]["queueId"], m1["queueId"]);
    assert_eq!(got[0]["queueOffset"], m1["queueOffset"]);
    assert_eq!(got[0]["deliveryAttempt"], 1);
    assert_eq!(ack(&a, GROUP, TOPIC, &[receipt(&got[0])]).await, [200]);

    // A's receipt on C (another key): 400 for ack and visibility change, nothing done.
    produce(&b, TOPIC, &[], "m2").await;
    let got = receive(&a, GROUP, TOPIC, 10, 1, 5).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(body(&got[0]), "m2");
    let from_a = receipt(&got[0]).to_string();
    let refused = c
        .post_json(
            &group_path(GROUP, TOPIC, "ack"),
            &json!({ "receipts": [from_a] }),
        )
        .await;
    assert_eq!(
        refused.problem(400)["type"],
        "https://tern.dev/problems/invalid-receipt"
    );
    let refused = c
        .post_json(
            &group_path(GROUP, TOPIC, "changeVisibility"),
            &json!({ "receipt": from_a, "invisibleSeconds": 600 }),
        )
        .await;
    assert_eq!(
        refused.problem(400)["type"],
        "https://tern.dev/problems/invalid-receipt"
    );
    // C did not extend it: m2 comes back once its 1 s is over, as attempt 2 (read through C,
    // which can receive like any gateway).
    let again = receive_until(&c, 1, Duration::from_secs(5)).await;
    assert_eq!(body(&again[0]), "m2");
    assert_eq!(again[0]["deliveryAttempt"], 2);
    // ... and C's receipt for it is refused by A and B, then acked through C itself.
    for other in [&a, &b] {
        let refused = other
            .post_json(
                &group_path(GROUP, TOPIC, "ack"),
                &json!({ "receipts": [receipt(&again[0])] }),
            )
            .await;
        refused.problem(400);
    }
    assert_eq!(ack(&c, GROUP, TOPIC, &[receipt(&again[0])]).await, [200]);

    // B's receipt on A: a visibility change, then a nack.
    produce(&a, TOPIC, &[], "m3").await;
    let got = receive(&b, GROUP, TOPIC, 10, 1, 5).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(body(&got[0]), "m3");
    let from_b = receipt(&got[0]).to_string();
    let changed = a
        .post_json(
            &group_path(GROUP, TOPIC, "changeVisibility"),
            &json!({ "receipt": from_b, "invisibleSeconds": 6 }),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", text(&changed));
    let renewed = changed.json()["receipt"].as_str().unwrap().to_string();
    assert_ne!(renewed, from_b);

    // Past every first invisible time (1 s): m1 (acked through A) and m3 (extended through A)
    // stay away, on every gateway.
    let quiet_until = Instant::now() + Duration::from_millis(2500);
    let mut turn = 0;
    while Instant::now() < quiet_until {
        let via = [&a, &b, &c][turn % 3];
        turn += 1;
        let got = receive(via, GROUP, TOPIC, 10, 1, 1).await;
        assert!(got.is_empty(), "delivered again: {got:?}");
    }

    // The old handle is stale now; the nack through A with the new one brings m3 back at once.
    let stale = a
        .post_json(
            &group_path(GROUP, TOPIC, "ack"),
            &json!({ "receipts": [from_b] }),
        )
        .await;
    assert_eq!(stale.status, 200, "{}", text(&stale));
    assert_eq!(statuses(&stale.json()), [400]);
    let nacked = a
        .post_json(
            &group_path(GROUP, TOPIC, "nack"),
            &json!({ "receipts": [renewed], "delaySeconds": 0 }),
        )
        .await;
    assert_eq!(nacked.status, 200, "{}", text(&nacked));
    assert_eq!(statuses(&nacked.json()), [200]);
    let started = Instant::now();
    let back = receive(&b, GROUP, TOPIC, 10, 30, 5).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a nack with delay 0 redelivers at once"
    );
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(body(&back[0]), "m3");
    assert_eq!(back[0]["deliveryAttempt"], 2);
    assert_eq!(ack(&b, GROUP, TOPIC, &[receipt(&back[0])]).await, [200]);

    /// Receives through `via` until `n` messages came.
    async fn receive_until(
        via: &tern_tests::http::Http,
        n: usize,
        within: Duration,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n {
            assert!(
                Instant::now() < deadline,
                "{n} messages never came: {got:?}"
            );
            got.extend(receive(via, GROUP, TOPIC, 10, 30, 1).await);
        }
        got
    }
}
