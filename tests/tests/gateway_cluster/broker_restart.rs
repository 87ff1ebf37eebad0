//! A SYNC_FLUSH broker SIGKILLed and restarted on its port while HTTP producers and a consumer
//! keep going through two gateways. Producers retry a failed produce with the same
//! `Idempotency-Key`; the gateways must answer the outage only with retryable 503/504 problems,
//! every acknowledged produce must be received, and the store must hold each key once.
//! `/readyz` follows the broker: 503 while the NameServer names none, 200 once it is back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern_tests::http::{Answer, Http};
use tern_tests::process::receipt_key;

use super::support::{
    Cluster, all_stored, await_readyz, body, group_path, put_group, put_topic, receipt,
};

const TOPIC: &str = "durable";
const GROUP: &str = "durable-g";
const PRODUCERS: usize = 4;
/// Attempts of one produce at most (100 ms apart: well over any outage of this test).
const ATTEMPTS: usize = 200;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// What the clients saw.
#[derive(Default)]
struct Log {
    /// Body → the 200 answer's JSON, for every acknowledged produce.
    acked: Mutex<HashMap<String, Value>>,
    /// Produces answered 200 since `mark` was last reset.
    acked_since_mark: AtomicUsize,
    /// Produces that were never acknowledged within `ATTEMPTS`.
    gave_up: Mutex<Vec<String>>,
    /// Every failed answer: (what was asked, status, body).
    failures: Mutex<Vec<(&'static str, u16, String)>>,
    /// Exchanges that failed without an answer (the gateways stay up, so there should be none;
    /// kept apart from the statuses).
    transport_errors: Mutex<Vec<String>>,
    /// Body → times received.
    received: Mutex<HashMap<String, usize>>,
    replays: AtomicUsize,
}

impl Log {
    /// Records a non-200 answer; true when the client should retry (a retryable 503/504
    /// problem, as the contract allows for an outage).
    fn failed(&self, what: &'static str, answer: &Answer) -> bool {
        self.failures.lock().unwrap().push((
            what,
            answer.status.as_u16(),
            String::from_utf8_lossy(&answer.body).into_owned(),
        ));
        matches!(answer.status.as_u16(), 503 | 504)
    }
}

/// Produces `w-0`, `w-1`, ... until `stop`, each retried with its key until a 200 (alternating
/// between the gateways, starting with gateway `w % 2`).
async fn producer(w: usize, gateways: [Http; 2], log: Arc<Log>, stop: Arc<AtomicBool>) {
    let path = format!("/v1/topics/{TOPIC}/messages");
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("p{w}-{i}");
        let payload = format!("body of {key}");
        i += 1;
        let mut acked = false;
        for attempt in 0..ATTEMPTS {
            let via = &gateways[(w + attempt) % 2];
            match via
                .try_post(&path, &[("idempotency-key", &key)], payload.clone())
                .await
            {
                Ok(answer) if answer.status == 200 => {
                    if answer.header("tern-idempotent-replayed") == Some("true") {
                        log.replays.fetch_add(1, Ordering::Relaxed);
                    }
                    log.acked
                        .lock()
                        .unwrap()
                        .insert(payload.clone(), answer.json());
                    log.acked_since_mark.fetch_add(1, Ordering::Relaxed);
                    acked = true;
                    break;
                }
                Ok(answer) => {
                    if !log.failed("produce", &answer) {
                        break;
                    }
                }
                Err(e) => log.transport_errors.lock().unwrap().push(e),
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        if !acked {
            log.gave_up.lock().unwrap().push(key);
        }
    }
}

/// Receives through the gateways in turn and acks each batch through the other one, until
/// `stop`. Failures are logged; a batch whose ack failed is simply delivered again later.
async fn consumer(gateways: [Http; 2], log: Arc<Log>, stop: Arc<AtomicBool>) {
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let (via, ack_via) = (&gateways[turn % 2], &gateways[(turn + 1) % 2]);
        turn += 1;
        let answer = match via
            .try_post_json(
                &group_path(GROUP, TOPIC, "receive"),
                &json!({"max": 32, "invisibleSeconds": 3, "waitSeconds": 1}),
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                log.transport_errors.lock().unwrap().push(e);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        if answer.status != 200 {
            log.failed("receive", &answer);
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        }
        let messages = answer.json()["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            continue;
        }
        {
            let mut received = log.received.lock().unwrap();
            for message in &messages {
                *received.entry(body(message).to_string()).or_default() += 1;
            }
        }
        let receipts: Vec<&str> = messages.iter().map(receipt).collect();
        match ack_via
            .try_post_json(
                &group_path(GROUP, TOPIC, "ack"),
                &json!({ "receipts": receipts }),
            )
            .await
        {
            Ok(answer) if answer.status == 200 => {}
            Ok(answer) => {
                log.failed("ack", &answer);
            }
            Err(e) => log.transport_errors.lock().unwrap().push(e),
        }
    }
}

/// Waits until `n` more produces were acknowledged.
async fn await_acked(log: &Log, n: usize, within: Duration, what: &str) {
    log.acked_since_mark.store(0, Ordering::Relaxed);
    let deadline = Instant::now() + within;
    while log.acked_since_mark.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "{n} produces not acked {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_and_consumers_ride_out_a_broker_restart() {
    let mut cluster = Cluster::start(
        &["broker-a"],
        true,
        &["--broker-timeout-secs", "2", "--scan-interval-secs", "1"],
    )
    .await;
    let listen = cluster.brokers[0].addr().to_string();
    let key = receipt_key();
    let (_a, a) = cluster.gateway(&key, &[]);
    let (_b, b) = cluster.gateway(&key, &[]);
    put_topic(&a, TOPIC, 8).await;
    put_group(&b, GROUP, false).await;
    await_readyz(&a, 200, Duration::from_secs(5)).await;

    let log = Arc::new(Log::default());
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumer = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|w| {
            tokio::spawn(producer(
                w,
                [a.clone(), b.clone()],
                log.clone(),
                stop_producers.clone(),
            ))
        })
        .collect();
    let consumer = tokio::spawn(consumer(
        [a.clone(), b.clone()],
        log.clone(),
        stop_consumer.clone(),
    ));

    await_acked(&log, 40, Duration::from_secs(20), "before the crash").await;
    cluster.brokers[0].kill();
    // The NameServer drops the broker (its connection closed): neither gateway is ready.
    await_readyz(&a, 503, Duration::from_secs(10)).await;
    await_readyz(&b, 503, Duration::from_secs(10)).await;
    let failures_before = log.failures.lock().unwrap().len();
    let outage = Instant::now();
    while log.failures.lock().unwrap().len() == failures_before {
        assert!(
            outage.elapsed() < Duration::from_secs(10),
            "no failure answered while the broker was down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Down long enough for the gateways to look the route up again (at most once a second
    // after a failure) while the NameServer knows no broker for the topic.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cluster.brokers[0] = cluster.start_broker(0, Some(&listen));
    await_readyz(&a, 200, Duration::from_secs(20)).await;
    await_readyz(&b, 200, Duration::from_secs(20)).await;
    await_acked(&log, 80, Duration::from_secs(30), "after the restart").await;
    stop_producers.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.await.unwrap();
    }

    // Every acknowledged produce is received (at least once).
    let acked: HashMap<String, Value> = log.acked.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<String> = {
            let received = log.received.lock().unwrap();
            acked
                .keys()
                .filter(|b| !received.contains_key(*b))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged produces never received, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_consumer.store(true, Ordering::Relaxed);
    consumer.await.unwrap();

    // Failures were only retryable 503/504 problems.
    let failures = log.failures.lock().unwrap().clone();
    let mut statuses: HashMap<(&str, u16), usize> = HashMap::new();
    for (what, status, body) in &failures {
        *statuses.entry((*what, *status)).or_default() += 1;
        assert!(
            *status == 503 || *status == 504,
            "{what} answered {status}: {body}"
        );
        let problem: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what} {status}: not problem JSON ({e}): {body}"));
        assert_eq!(problem["retryable"], true, "{what}: {problem}");
        assert_eq!(problem["status"], *status, "{what}: {problem}");
    }
    let gave_up = log.gave_up.lock().unwrap().clone();
    assert!(
        gave_up.is_empty(),
        "produces never acknowledged: {gave_up:?}"
    );

    // The store holds every acknowledged key exactly once, where its 200 said.
    let mut stored: HashMap<String, Vec<Value>> = HashMap::new();
    for (_, message) in all_stored(&a, TOPIC, acked.len()).await {
        stored
            .entry(body(&message).to_string())
            .or_default()
            .push(message);
    }
    for (payload, answer) in &acked {
        let copies = stored.get(payload).map_or(0, Vec::len);
        assert_eq!(copies, 1, "{payload} stored {copies} times");
        let message = &stored[payload][0];
        for field in ["messageId", "queueId", "queueOffset"] {
            assert_eq!(message[field], answer[field], "{payload}: {field}");
        }
    }
    let duplicates: Vec<&String> = stored
        .iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(b, _)| b)
        .collect();
    assert!(duplicates.is_empty(), "stored twice: {duplicates:?}");
    let transport_errors = log.transport_errors.lock().unwrap().clone();
    eprintln!(
        "broker restart: {} acked ({} replayed), {} stored, failures {statuses:?}, {} transport \
         errors {:?}",
        acked.len(),
        log.replays.load(Ordering::Relaxed),
        stored.len(),
        transport_errors.len(),
        transport_errors.first()
    );
}
