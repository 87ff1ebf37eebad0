//! A gateway SIGKILLed under load and restarted on its port loses nothing: producers on both
//! gateways retry a failed produce through the other one with the same `Idempotency-Key`, and a
//! consumer group receiving and acking through both gets every acknowledged message exactly
//! once. Receipts the killed gateway handed out are acked through the survivor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern_tests::http::Http;
use tern_tests::process::{receipt_key, start_gateway_at};

use super::support::{
    Cluster, all_stored, body, group_path, put_group, put_topic, receipt, receive, statuses,
};

const TOPIC: &str = "restarted";
const GROUP: &str = "restarted-g";
const PRODUCERS: usize = 6;
/// Messages per producer.
const MESSAGES: usize = 60;
const ATTEMPTS: usize = 100;
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Invisible time of the consumer's receives: a delivery whose ack did not take comes back
/// after it.
const INVISIBLE_SECS: u64 = 3;

#[derive(Default)]
struct Log {
    /// Body → the 200 answer, for every acknowledged produce.
    acked: Mutex<HashMap<String, Value>>,
    gave_up: Mutex<Vec<String>>,
    /// Non-200 answers to produces: (status, body).
    refused: Mutex<Vec<(u16, String)>>,
    transport_errors: AtomicUsize,
    /// Body → deliveries the consumer saw.
    delivered: Mutex<HashMap<String, usize>>,
    /// Set once gateway A is back; then counts A's 200s to produces.
    a_restarted: AtomicBool,
    a_served_after_restart: AtomicUsize,
    replays: AtomicUsize,
}

/// Sends its messages one after the other, each through its home gateway first and, after a
/// failure, through the other one and so on, always with the same key and body.
async fn producer(w: usize, gateways: [Http; 2], log: Arc<Log>) {
    let path = format!("/v1/topics/{TOPIC}/messages");
    for i in 0..MESSAGES {
        let key = format!("g{w}-{i}");
        let payload = format!("body of {key}");
        let mut acked = false;
        for attempt in 0..ATTEMPTS {
            let gateway = (w + attempt) % 2;
            match gateways[gateway]
                .try_post(&path, &[("idempotency-key", &key)], payload.clone())
                .await
            {
                Ok(answer) if answer.status == 200 => {
                    if answer.header("tern-idempotent-replayed") == Some("true") {
                        log.replays.fetch_add(1, Ordering::Relaxed);
                    }
                    if gateway == 0 && log.a_restarted.load(Ordering::Relaxed) {
                        log.a_served_after_restart.fetch_add(1, Ordering::Relaxed);
                    }
                    log.acked
                        .lock()
                        .unwrap()
                        .insert(payload.clone(), answer.json());
                    acked = true;
                    break;
                }
                Ok(answer) => {
                    let status = answer.status.as_u16();
                    log.refused
                        .lock()
                        .unwrap()
                        .push((status, String::from_utf8_lossy(&answer.body).into_owned()));
                    // In flight (the dead gateway's send still being stored) or an outage.
                    if !matches!(status, 409 | 503 | 504) {
                        break;
                    }
                }
                Err(_) => {
                    log.transport_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        if !acked {
            log.gave_up.lock().unwrap().push(key);
        }
    }
}

/// Acks `receipts` through `gateways[first]`, and after a failed exchange through the other one:
/// true once an answer came (each receipt then acked, or stale because an earlier attempt that
/// lost its answer acked it).
async fn ack_anywhere(gateways: &[Http; 2], first: usize, receipts: &[&str]) -> bool {
    for attempt in 0..20 {
        let via = &gateways[(first + attempt) % 2];
        if let Ok(answer) = via
            .try_post_json(
                &group_path(GROUP, TOPIC, "ack"),
                &json!({ "receipts": receipts }),
            )
            .await
            && answer.status == 200
        {
            let verdicts = statuses(&answer.json());
            assert!(
                verdicts
                    .iter()
                    .all(|s| *s == 200 || (attempt > 0 && *s == 400)),
                "{verdicts:?}"
            );
            return true;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    false
}

/// Receives through the gateways in turn and acks through the other one, until `stop`.
async fn consumer(gateways: [Http; 2], log: Arc<Log>, stop: Arc<AtomicBool>) {
    let mut turn = 0;
    while !stop.load(Ordering::Relaxed) {
        let via = turn % 2;
        turn += 1;
        let answer = match gateways[via]
            .try_post_json(
                &group_path(GROUP, TOPIC, "receive"),
                &json!({"max": 32, "invisibleSeconds": INVISIBLE_SECS, "waitSeconds": 1}),
            )
            .await
        {
            Ok(answer) if answer.status == 200 => answer,
            // Gateway A is down (a receive it answered no more is delivered again later).
            _ => {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let messages = answer.json()["messages"].as_array().unwrap().clone();
        if messages.is_empty() {
            continue;
        }
        record(&log, &messages);
        let receipts: Vec<&str> = messages.iter().map(receipt).collect();
        assert!(
            ack_anywhere(&gateways, via + 1, &receipts).await,
            "no gateway took the ack"
        );
    }
}

fn record(log: &Log, messages: &[Value]) {
    let mut delivered = log.delivered.lock().unwrap();
    for message in messages {
        *delivered.entry(body(message).to_string()).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_under_load_loses_nothing() {
    let cluster = Cluster::start(&["broker-a"], false, &[]).await;
    let key = receipt_key();
    let (mut a_process, a) = cluster.gateway(&key, &[]);
    let (_b_process, b) = cluster.gateway(&key, &[]);
    let a_listen = a_process.addr().to_string();
    put_topic(&a, TOPIC, 8).await;
    put_group(&b, GROUP, false).await;

    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|w| tokio::spawn(producer(w, [a.clone(), b.clone()], log.clone())))
        .collect();
    let consumer = tokio::spawn(consumer([a.clone(), b.clone()], log.clone(), stop.clone()));

    let deadline = Instant::now() + Duration::from_secs(20);
    while log.acked.lock().unwrap().len() < PRODUCERS * MESSAGES / 5 {
        assert!(Instant::now() < deadline, "traffic never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Receipts from A, then A dies with requests in flight.
    let held = loop {
        let got = receive(&a, GROUP, TOPIC, 16, INVISIBLE_SECS, 1).await;
        if !got.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "A handed out no receipts");
    };
    record(&log, &held);
    a_process.kill();
    let receipts: Vec<&str> = held.iter().map(receipt).collect();
    let answer = b
        .post_json(
            &group_path(GROUP, TOPIC, "ack"),
            &json!({ "receipts": receipts }),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert!(
        statuses(&answer.json()).iter().all(|s| *s == 200),
        "A's receipts through B: {}",
        String::from_utf8_lossy(&answer.body)
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let _a_again = start_gateway_at(&a_listen, &cluster.namesrv_addrs, &key, &[]);
    log.a_restarted.store(true, Ordering::Relaxed);
    for producer in producers {
        producer.await.unwrap();
    }
    let gave_up = log.gave_up.lock().unwrap().clone();
    assert!(gave_up.is_empty(), "never acknowledged: {gave_up:?}");
    assert!(
        log.a_served_after_restart.load(Ordering::Relaxed) > 0,
        "the restarted A served no produce"
    );
    let refused = log.refused.lock().unwrap().clone();
    assert!(
        refused
            .iter()
            .all(|(status, _)| matches!(status, 409 | 503 | 504)),
        "{refused:?}"
    );

    // Everything acknowledged is delivered; then wait out one more invisible time, in which a
    // delivery whose ack did not take (A's receipts included) would come back.
    let acked: HashMap<String, Value> = log.acked.lock().unwrap().clone();
    assert_eq!(acked.len(), PRODUCERS * MESSAGES);
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked
        .keys()
        .any(|b| !log.delivered.lock().unwrap().contains_key(b))
    {
        assert!(
            Instant::now() < deadline,
            "acknowledged messages never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(INVISIBLE_SECS * 1000 + 700)).await;
    stop.store(true, Ordering::Relaxed);
    consumer.await.unwrap();

    let delivered = log.delivered.lock().unwrap().clone();
    let twice: Vec<(&String, &usize)> = delivered.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let unknown: Vec<&String> = delivered
        .keys()
        .filter(|b| !acked.contains_key(*b))
        .collect();
    assert!(unknown.is_empty(), "never produced: {unknown:?}");

    // Stored exactly once each, as the 200 said.
    let stored = all_stored(&b, TOPIC, acked.len()).await;
    assert_eq!(
        stored.len(),
        acked.len(),
        "a retried produce was stored twice"
    );
    for (_, message) in &stored {
        let answer = &acked[body(message)];
        for field in ["messageId", "queueId", "queueOffset"] {
            assert_eq!(message[field], answer[field], "{message}: {field}");
        }
    }
    eprintln!(
        "gateway restart: {} acked ({} replayed), {} transport errors, refusals {:?}",
        acked.len(),
        log.replays.load(Ordering::Relaxed),
        log.transport_errors.load(Ordering::Relaxed),
        refused.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
}
