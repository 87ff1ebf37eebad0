//! A manual-ack SSE subscription on gateway A, acked through gateway B. The ack takes (the
//! broker never delivers the message again), but A only sees acks that pass through A, so its
//! `maxInFlight` window refills at the messages' invisible deadline rather than at once
//! (gateway/src/http/in_flight.rs); acks through A refill it at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tern_tests::http::{Event, EventStream};
use tern_tests::process::receipt_key;

use super::support::{Cluster, ack, body, produce, put_group, put_topic, receipt};

const TOPIC: &str = "pushed";
const GROUP: &str = "pushed-g";
/// The gateways' `[sse] invisible_secs`.
const INVISIBLE: Duration = Duration::from_secs(3);

async fn next(stream: &mut EventStream, within: Duration) -> serde_json::Value {
    let event: Event = stream
        .next_message(within)
        .await
        .unwrap_or_else(|| panic!("no message event within {within:?}"));
    event.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_through_another_gateway_take_and_refill_at_the_deadline() {
    let cluster = Cluster::start(&["broker-a"], false, &[]).await;
    let config = cluster.dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[sse]\ninvisible_secs = {}\n", INVISIBLE.as_secs()),
    )
    .unwrap();
    let config = config.display().to_string();
    let key = receipt_key();
    let (_a, a) = cluster.gateway(&key, &["--config", &config]);
    let (_b, b) = cluster.gateway(&key, &["--config", &config]);
    put_topic(&a, TOPIC, 2).await;
    put_group(&a, GROUP, false).await;
    for i in 1..=4 {
        produce(&b, TOPIC, &[], &format!("m{i}")).await;
    }

    let mut stream = a
        .events(
            &format!("/v1/groups/{GROUP}/topics/{TOPIC}/events?ack=manual&maxInFlight=2"),
            &[],
        )
        .await;
    let first = [
        next(&mut stream, Duration::from_secs(5)).await,
        next(&mut stream, Duration::from_secs(5)).await,
    ];
    let delivered_at = Instant::now();
    let acked = ack(&b, GROUP, TOPIC, &[receipt(&first[0]), receipt(&first[1])]).await;
    assert_eq!(acked, [200, 200]);
    // The window is full as far as A knows: nothing more until the deadline...
    let early = stream
        .next_message(INVISIBLE.saturating_sub(delivered_at.elapsed() + Duration::from_millis(800)))
        .await;
    assert!(early.is_none(), "A refilled before the deadline: {early:?}");
    // ... then the other two, not the acked ones again.
    let second = [
        next(&mut stream, Duration::from_secs(5)).await,
        next(&mut stream, Duration::from_secs(5)).await,
    ];
    assert!(
        delivered_at.elapsed() >= INVISIBLE - Duration::from_secs(1),
        "refilled after {:?}",
        delivered_at.elapsed()
    );
    let mut bodies: HashSet<String> = first.iter().map(|m| body(m).to_string()).collect();
    for m in &second {
        assert_eq!(m["deliveryAttempt"], 1, "{m}");
        assert!(bodies.insert(body(m).to_string()), "delivered again: {m}");
    }
    assert_eq!(bodies.len(), 4);

    // Acks through A free A's window at once.
    let acked = ack(
        &a,
        GROUP,
        TOPIC,
        &[receipt(&second[0]), receipt(&second[1])],
    )
    .await;
    assert_eq!(acked, [200, 200]);
    let refill = Instant::now();
    produce(&b, TOPIC, &[], "m5").await;
    let fifth = next(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(body(&fifth), "m5");
    assert!(refill.elapsed() < INVISIBLE, "{:?}", refill.elapsed());
    assert_eq!(ack(&b, GROUP, TOPIC, &[receipt(&fifth)]).await, [200]);

    // Past every invisible deadline, nothing acked comes back (on the stream or to a receive).
    let quiet = stream
        .next_message(INVISIBLE + Duration::from_secs(1))
        .await;
    assert!(quiet.is_none(), "delivered again: {quiet:?}");
    let got = super::support::receive(&b, GROUP, TOPIC, 10, 1, 0).await;
    assert!(got.is_empty(), "{got:?}");
}
