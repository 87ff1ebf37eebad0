//! Idempotent sends against an in-process broker over real sockets: a repeat of a key is answered
//! with the first result and stores nothing, a different body is refused, concurrent repeats
//! never store twice, the window expires, keys are checked, and keys evicted from memory (or
//! forgotten by a restart) are still answered from the index.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_core::broker::{Broker, BrokerConfig};
use tern_core::protocol::batch::{BatchEntry, encode_batch};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::*;
use tern_core::protocol::{CommandHeader, RemotingClient, RemotingCommand};
use tern_core::store::{FlushDiskType, property};

mod common;

use common::broker::{call, config, create_topic};

struct Setup {
    broker: Broker,
    addr: String,
    client: RemotingClient,
}

async fn start(config: BrokerConfig, topic: &str) -> Setup {
    let broker = Broker::start(config).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    create_topic(&client, &addr, topic, 2).await;
    Setup {
        broker,
        addr,
        client,
    }
}

fn keyed_request(topic: &str, queue_id: i32, key: &str, body: &str) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        queue_id,
        born_timestamp: 1,
        properties: Some(format!("{}\u{1}{key}\u{2}", property::IDEMPOTENCY_KEY)),
        ..Default::default()
    };
    let mut cmd =
        RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body.as_bytes().to_vec());
    header.write_v2(&mut cmd.ext_fields);
    cmd
}

impl Setup {
    async fn send(&self, topic: &str, key: &str, body: &str) -> RemotingCommand {
        call(&self.client, &self.addr, keyed_request(topic, 0, key, body)).await
    }

    async fn max_offset(&self, topic: &str, queue_id: i32) -> i64 {
        let q = QueueRequestHeader {
            topic: topic.into(),
            queue_id,
        };
        let resp = call(
            &self.client,
            &self.addr,
            RemotingCommand::request_with(request::GET_MAX_OFFSET, &q),
        )
        .await;
        resp.header::<OffsetResponseHeader>().unwrap().offset
    }

    /// Waits until the store has dispatched (queues and index) everything appended.
    async fn wait_dispatched(&self) {
        let store = self.broker.store();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.dispatched_physical_offset() < store.max_physical_offset() {
            assert!(Instant::now() < deadline, "dispatch did not catch up");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn ok_header(resp: &RemotingCommand) -> SendMessageResponseHeader {
    assert!(resp.is_success(), "{resp:?}");
    resp.header().unwrap()
}

fn first(resp: &RemotingCommand) -> SendMessageResponseHeader {
    let h = ok_header(resp);
    assert_eq!(h.idempotent_replayed, None, "a first send is not a replay");
    h
}

fn replayed(resp: &RemotingCommand, original: &SendMessageResponseHeader) {
    let h = ok_header(resp);
    assert_eq!(h.idempotent_replayed, Some(true), "{resp:?}");
    assert_eq!(
        (&h.msg_id, h.queue_id, h.queue_offset),
        (&original.msg_id, original.queue_id, original.queue_offset)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_is_replayed_and_a_different_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path()), "idem").await;
    let h = first(&s.send("idem", "order-1", "body").await);
    for _ in 0..3 {
        replayed(&s.send("idem", "order-1", "body").await, &h);
    }
    let resp = s.send("idem", "order-1", "other body").await;
    assert_eq!(resp.code, response::IDEMPOTENCY_KEY_REUSED, "{resp:?}");
    assert!(resp.remark_or_empty().contains("different body"));
    // Another key, and the same key on another topic, are new messages.
    let h2 = first(&s.send("idem", "order-2", "body").await);
    assert_ne!(h2.msg_id, h.msg_id);
    s.wait_dispatched().await;
    assert_eq!(s.max_offset("idem", 0).await, 2, "replays stored nothing");
    s.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_never_store_twice() {
    let dir = tempfile::tempdir().unwrap();
    // SYNC_FLUSH: the first send waits for the group commit, so the others meet it in flight.
    let mut cfg = config(dir.path());
    cfg.store.flush_disk_type = FlushDiskType::SyncFlush;
    let s = start(cfg, "idem").await;
    for round in 0..5 {
        let key = format!("k{round}");
        let sends = (0..16).map(|_| s.send("idem", &key, "same"));
        let answers = futures_util::future::join_all(sends).await;
        let mut stored = Vec::new();
        let mut results = Vec::new();
        for resp in &answers {
            match resp.code {
                response::IDEMPOTENCY_KEY_IN_FLIGHT => {}
                response::SUCCESS => {
                    let h: SendMessageResponseHeader = resp.header().unwrap();
                    if h.idempotent_replayed != Some(true) {
                        stored.push(h.clone());
                    }
                    results.push((h.msg_id, h.queue_offset));
                }
                other => panic!("unexpected code {other}: {resp:?}"),
            }
        }
        assert_eq!(stored.len(), 1, "exactly one send stores: {answers:?}");
        assert!(results.iter().all(|r| r == &results[0]));
        // Once stored, a repeat is a replay.
        replayed(&s.send("idem", &key, "same").await, &stored[0]);
    }
    s.wait_dispatched().await;
    assert_eq!(s.max_offset("idem", 0).await, 5);
    s.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.idempotency_window_ms = 300;
    let s = start(cfg, "idem").await;
    let h = first(&s.send("idem", "k", "v1").await);
    replayed(&s.send("idem", "k", "v1").await, &h);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // After the window the key is free again, even with another body.
    let h2 = first(&s.send("idem", "k", "v2").await);
    assert_ne!(h2.msg_id, h.msg_id);
    s.wait_dispatched().await;
    assert_eq!(s.max_offset("idem", 0).await, 2);
    s.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_and_batches_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path()), "idem").await;
    let long = "k".repeat(129);
    for (key, remark) in [
        (long.as_str(), "at most 128"),
        ("", "empty"),
        ("two words", "visible ASCII"),
        ("naïve", "visible ASCII"),
    ] {
        let resp = s.send("idem", key, "x").await;
        assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{key:?}: {resp:?}");
        assert!(resp.remark_or_empty().contains(remark), "{resp:?}");
    }
    first(&s.send("idem", &"k".repeat(128), "x").await);

    let batch = encode_batch(&[
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"b0"),
            properties: String::new(),
        },
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"b1"),
            properties: format!("{}\u{1}k\u{2}", property::IDEMPOTENCY_KEY),
        },
    ]);
    let mut cmd = RemotingCommand::request(request::SEND_BATCH_MESSAGE).with_body(batch);
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "idem".into(),
        queue_id: 1,
        ..Default::default()
    }
    .write_to(&mut cmd.ext_fields);
    let resp = call(&s.client, &s.addr, cmd).await;
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{resp:?}");
    assert!(resp.remark_or_empty().contains("message 1 of the batch"));
    s.wait_dispatched().await;
    assert_eq!(s.max_offset("idem", 1).await, 0);
    s.broker.shutdown().await.unwrap();

    // Disabled: keyed sends are refused rather than silently not deduplicated.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.idempotency_window_ms = 0;
    let s = start(cfg, "idem").await;
    let resp = s.send("idem", "k", "x").await;
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL);
    assert!(resp.remark_or_empty().contains("disabled"), "{resp:?}");
    s.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_evicted_from_memory_are_answered_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.idempotency_max_keys = 2;
    let s = start(cfg, "idem").await;
    let mut originals = Vec::new();
    for i in 0..6 {
        originals.push(first(
            &s.send("idem", &format!("k{i}"), &format!("v{i}")).await,
        ));
    }
    let (held, evicted) = s.broker.idempotency_stats();
    assert!(held <= 2 && evicted >= 4, "held {held}, evicted {evicted}");
    for (i, original) in originals.iter().enumerate() {
        replayed(
            &s.send("idem", &format!("k{i}"), &format!("v{i}")).await,
            original,
        );
        let resp = s.send("idem", &format!("k{i}"), "changed").await;
        assert_eq!(
            resp.code,
            response::IDEMPOTENCY_KEY_REUSED,
            "k{i}: {resp:?}"
        );
    }
    s.wait_dispatched().await;
    assert_eq!(s.max_offset("idem", 0).await, 6);
    s.broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path()), "idem").await;
    let mut originals = Vec::new();
    for i in 0..5 {
        originals.push(first(&s.send("idem", &format!("k{i}"), "v").await));
    }
    s.broker.shutdown().await.unwrap();

    let broker = Broker::start(config(dir.path())).await.unwrap();
    let s = Setup {
        addr: broker.addr().to_string(),
        broker,
        client: RemotingClient::new(),
    };
    for (i, original) in originals.iter().enumerate() {
        replayed(&s.send("idem", &format!("k{i}"), "v").await, original);
    }
    first(&s.send("idem", "k-new", "v").await);
    s.wait_dispatched().await;
    assert_eq!(s.max_offset("idem", 0).await, 6);
    s.broker.shutdown().await.unwrap();
}

/// A keyed message with a delay: replays answer with the first result before and after the
/// message is delivered and across a restart, and the real topic receives it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_keyed_message_is_stored_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(config(dir.path()), "later").await;
    let delayed = |body: &str| {
        let header = SendMessageRequestHeader {
            producer_group: "pg".into(),
            topic: "later".into(),
            queue_id: 1,
            born_timestamp: 1,
            properties: Some(format!(
                "{}\u{1}dk\u{2}{}\u{1}1\u{2}",
                property::IDEMPOTENCY_KEY,
                property::DELAY
            )),
            ..Default::default()
        };
        let mut cmd =
            RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body.as_bytes().to_vec());
        header.write_v2(&mut cmd.ext_fields);
        cmd
    };
    let original = first(&call(&s.client, &s.addr, delayed("once")).await);
    assert_eq!(original.queue_id, 1, "the queue the producer asked for");
    replayed(&call(&s.client, &s.addr, delayed("once")).await, &original);
    // Level 1 is 1 s: wait for the delivery into the real queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.max_offset("later", 1).await < 1 {
        assert!(Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replayed(&call(&s.client, &s.addr, delayed("once")).await, &original);
    s.broker.shutdown().await.unwrap();

    let broker = Broker::start(config(dir.path())).await.unwrap();
    let s = Setup {
        addr: broker.addr().to_string(),
        broker,
        client: RemotingClient::new(),
    };
    replayed(&call(&s.client, &s.addr, delayed("once")).await, &original);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    s.wait_dispatched().await;
    assert_eq!(s.max_offset("later", 1).await, 1, "delivered exactly once");
    s.broker.shutdown().await.unwrap();
}
