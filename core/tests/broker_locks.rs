//! Queue locks (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ) against an in-process broker: one holder per
//! (group, queue), renewal by the holder, takeover after the TTL, unlock only by the holder, and
//! the request limits. Uses the client's raw lock calls and, for the wire format, raw JSON.

use std::time::Duration;

use tern_core::broker::{Broker, BrokerConfig, MAX_LOCK_BATCH};
use tern_core::client::{MessageQueue, lock_queues, unlock_queues};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_core::store::StoreConfig;

const T: Duration = Duration::from_secs(5);

async fn start(dir: &std::path::Path, ttl_ms: u64) -> Broker {
    Broker::start(BrokerConfig {
        listen: "127.0.0.1:0".into(),
        namesrv_addrs: Vec::new(),
        queue_lock_ttl_ms: ttl_ms,
        store: StoreConfig::for_tests(dir),
        ..BrokerConfig::default()
    })
    .await
    .unwrap()
}

fn q(id: i32) -> MessageQueue {
    MessageQueue::new("orders", "broker-a", id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_renew_takeover_after_ttl_and_unlock() {
    let dir = tempfile::tempdir().unwrap();
    // 600 ms TTL: long enough for the calls below, short enough to wait out.
    let broker = start(dir.path(), 600).await;
    let addr = broker.addr().to_string();
    let rc = RemotingClient::new();
    let lock = |client: &'static str, queues: Vec<MessageQueue>| {
        let (rc, addr) = (&rc, addr.clone());
        async move {
            lock_queues(rc, &addr, "cg", client, &queues, T)
                .await
                .unwrap()
        }
    };

    assert_eq!(lock("c1", vec![q(0), q(1)]).await, [q(0), q(1)]);
    // Held by c1: c2 gets only the free queue.
    assert_eq!(lock("c2", vec![q(0), q(1), q(2)]).await, [q(2)]);
    // Another group locks independently.
    let other = lock_queues(&rc, &addr, "cg2", "c2", &[q(0)], T)
        .await
        .unwrap();
    assert_eq!(other, [q(0)]);

    // c1 keeps renewing q0 past the TTL and keeps it; q1, not renewed, lapses and c2 takes it.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(lock("c1", vec![q(0)]).await, [q(0)]);
    }
    assert_eq!(lock("c2", vec![q(0), q(1)]).await, [q(1)]);
    assert!(lock("c1", vec![q(1)]).await.is_empty(), "c2 holds q1 now");

    // An unlock by a non-holder does nothing; the holder's unlock frees the queue at once.
    unlock_queues(&rc, &addr, "cg", "c2", &[q(0)], T)
        .await
        .unwrap();
    assert!(lock("c3", vec![q(0)]).await.is_empty());
    unlock_queues(&rc, &addr, "cg", "c1", &[q(0)], T)
        .await
        .unwrap();
    assert_eq!(lock("c3", vec![q(0)]).await, [q(0)]);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_format_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), 60_000).await;
    let addr = broker.addr().to_string();
    let rc = RemotingClient::new();
    // RocketMQ's JSON, as a Java client writes it.
    let body = r#"{"consumerGroup":"cg","clientId":"10.0.0.1@123","onlyThisBroker":false,
        "mqSet":[{"topic":"orders","brokerName":"broker-a","queueId":3}]}"#;
    let resp = rc
        .invoke(
            &addr,
            RemotingCommand::request(request::LOCK_BATCH_MQ).with_body(body.as_bytes().to_vec()),
            T,
        )
        .await
        .unwrap();
    assert!(resp.is_success(), "{resp:?}");
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"lockOKMQSet":[{"topic":"orders","brokerName":"broker-a","queueId":3}]})
    );
    let unlock = body.replace("\"onlyThisBroker\":false", "\"onlyThisBroker\":true");
    let resp = rc
        .invoke(
            &addr,
            RemotingCommand::request(request::UNLOCK_BATCH_MQ).with_body(unlock.into_bytes()),
            T,
        )
        .await
        .unwrap();
    assert!(resp.is_success(), "{resp:?}");

    // Limits and garbage are refused with a remark, never a panic.
    let too_many: Vec<MessageQueue> = (0..=MAX_LOCK_BATCH as i32).map(q).collect();
    let err = lock_queues(&rc, &addr, "cg", "c1", &too_many, T)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
    for bad in [
        lock_queues(&rc, &addr, "bad group", "c1", &[q(0)], T).await,
        lock_queues(&rc, &addr, "cg", "", &[q(0)], T).await,
        lock_queues(
            &rc,
            &addr,
            "cg",
            "c1",
            &[MessageQueue::new("bad topic", "b", 0)],
            T,
        )
        .await,
    ] {
        assert_eq!(bad.unwrap_err().broker_code(), Some(response::SYSTEM_ERROR));
    }
    let resp = rc
        .invoke(
            &addr,
            RemotingCommand::request(request::LOCK_BATCH_MQ).with_body(b"{not json".to_vec()),
            T,
        )
        .await
        .unwrap();
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    broker.shutdown().await.unwrap();
}
