//! Idempotent sends across a broker restart, with the real `tern-namesrv` and `tern-broker`
//! binaries and the client library: a producer that retries every send with the same keys after
//! the broker was SIGKILLed (or stopped with SIGTERM) gets every acknowledged send's original
//! result back, marked `replayed`, and the topic holds each message exactly once.

#[path = "cluster/raw.rs"]
#[allow(dead_code)] // shared with cluster.rs; this test uses a few of its calls
mod raw;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_core::client::{ClientConfig, ClientError, Message, Producer, SendResult};
use tern_core::protocol::RemotingClient;
use tern_tests::process::{BrokerSpec, ServerProcess, start_broker, start_namesrv};

const TOPIC: &str = "idem";
const QUEUES: i32 = 4;
/// Messages acknowledged before the broker goes down.
const ACKED: usize = 200;
/// Messages in flight when the broker is SIGKILLed: their outcome is unknown to the producer.
const UNKNOWN: usize = 64;

fn spec<'a>(
    namesrv: &'a [String],
    store: &'a std::path::Path,
    listen: Option<&'a str>,
    sync: bool,
) -> BrokerSpec<'a> {
    BrokerSpec {
        name: "broker-i",
        cluster: "TestCluster",
        namesrv,
        store,
        sync_flush: sync,
        register_interval_secs: 1,
        listen,
    }
}

fn message(key: &str) -> Message {
    Message::new(TOPIC, format!("body of {key}"))
}

async fn producer(namesrv: &[String]) -> Arc<Producer> {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(namesrv.to_vec())
    };
    let producer = Arc::new(Producer::new(config, "idem-producer").unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match producer.route(TOPIC).await {
            Ok(route) if route.write_queues.len() == QUEUES as usize => return producer,
            _ => {
                assert!(Instant::now() < deadline, "no route for {TOPIC}");
                producer.routes().mark_stale(TOPIC);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Sends `keys` with 8 concurrent senders; returns what each acknowledged send was answered.
async fn send_all(
    producer: &Arc<Producer>,
    keys: Vec<String>,
) -> Vec<(String, Result<SendResult, String>)> {
    let keys = Arc::new(keys);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (producer, keys) = (producer.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for key in keys.iter().skip(worker).step_by(8) {
                let result = producer.send_idempotent(&message(key), key).await;
                out.push((key.clone(), result.map_err(|e| e.to_string())));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// Every message of the topic, once the broker has dispatched at least `expected` of them.
async fn stored_bodies(broker: &str, expected: usize) -> Vec<Vec<u8>> {
    let client = RemotingClient::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut bodies = Vec::new();
        for queue in 0..QUEUES {
            for m in raw::drain(&client, broker, TOPIC, queue).await {
                bodies.push(m.body.to_vec());
            }
        }
        if bodies.len() >= expected || Instant::now() > deadline {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn retry_after_restart(sigkill: bool, sync_flush: bool) {
    let ns = start_namesrv(&[]);
    let namesrv = vec![ns.addr().to_string()];
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let first = start_broker(&spec(&namesrv, &store, None, sync_flush));
    // Restarts reuse the port: the producer's cached route stays right.
    let listen = first.addr().to_string();
    raw::create_topic(&RemotingClient::new(), first.addr(), TOPIC, QUEUES).await;
    let producer = producer(&namesrv).await;

    let keys: Vec<String> = (0..ACKED).map(|i| format!("order-{i}")).collect();
    let originals = send_all(&producer, keys.clone()).await;
    for (key, result) in &originals {
        let result = result.as_ref().unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(!result.replayed, "{key}: a first send is not a replay");
    }

    // SIGKILL with more sends in flight (their outcome is unknown), or a clean SIGTERM.
    let unknown: Vec<String> = if sigkill {
        (0..UNKNOWN).map(|i| format!("unknown-{i}")).collect()
    } else {
        Vec::new()
    };
    let mut first = first;
    let in_flight = {
        let (producer, unknown) = (producer.clone(), unknown.clone());
        tokio::spawn(async move { send_all(&producer, unknown).await })
    };
    if sigkill {
        tokio::time::sleep(Duration::from_millis(5)).await;
        first.kill();
    } else {
        in_flight_done(&in_flight).await;
        let status: std::process::ExitStatus = ServerProcess::terminate(first);
        assert!(status.success(), "SIGTERM exit: {status:?}");
    }
    let unknown_outcomes = in_flight.await.unwrap();
    let acked_unknown = unknown_outcomes.iter().filter(|(_, r)| r.is_ok()).count();

    let broker = start_broker(&spec(&namesrv, &store, Some(&listen), sync_flush));
    let retried = send_all(&producer, keys.iter().chain(&unknown).cloned().collect()).await;
    let originals: std::collections::HashMap<_, _> = originals
        .into_iter()
        .chain(unknown_outcomes.into_iter().filter(|(_, r)| r.is_ok()))
        .map(|(k, r)| (k, r.unwrap()))
        .collect();
    for (key, result) in &retried {
        let result = result
            .as_ref()
            .unwrap_or_else(|e| panic!("retry of {key}: {e}"));
        if let Some(original) = originals.get(key) {
            assert!(
                result.replayed,
                "{key}: an acknowledged send must be replayed"
            );
            assert_eq!(
                (&result.offset_msg_id, &result.queue, result.queue_offset),
                (
                    &original.offset_msg_id,
                    &original.queue,
                    original.queue_offset
                ),
                "{key}: the replay is the original result"
            );
        }
    }

    // The same key with another body: the typed error, from the index-rebuilt window.
    let err = producer
        .send_idempotent(&Message::new(TOPIC, "another body"), &keys[0])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::IdempotencyKeyReused { .. }),
        "{err}"
    );
    // Checked in the client before anything is sent.
    for bad in ["", "with space"] {
        let err = producer
            .send_idempotent(&message("x"), bad)
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::InvalidMessage(_)), "{err}");
    }

    let expected = keys.len() + unknown.len();
    let bodies = stored_bodies(broker.addr(), expected).await;
    let distinct: HashSet<_> = bodies.iter().collect();
    assert_eq!(distinct.len(), bodies.len(), "a message was stored twice");
    assert_eq!(bodies.len(), expected, "every key stored exactly once");
    eprintln!(
        "sigkill={sigkill} sync={sync_flush}: {ACKED} acked, {acked_unknown}/{} in flight acked, {expected} stored",
        unknown.len()
    );
    producer.shutdown();
    drop(broker);
    drop(ns);
}

async fn in_flight_done<T>(task: &tokio::task::JoinHandle<T>) {
    while !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_after_sigkill_under_sync_flush() {
    retry_after_restart(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_after_sigkill_under_async_flush() {
    retry_after_restart(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_after_sigterm() {
    retry_after_restart(false, false).await;
}
