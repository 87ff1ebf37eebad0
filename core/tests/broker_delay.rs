//! Delay levels and timer messages through an in-process broker over real sockets: not visible
//! before they are due, visible (in their real topic and queue, delay properties gone) after,
//! limits refused with named errors, cursors and checkpoint on disk.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_core::broker::{Broker, BrokerConfig};
use tern_core::protocol::batch::{BatchEntry, encode_batch};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::*;
use tern_core::protocol::{CommandHeader, RemotingClient, RemotingCommand};
use tern_core::store::{Entry, StoredMessage, decode_record, now_millis};

mod common;

use common::broker::{call, config, create_topic};

/// Sends one message to `topic`/`queue_id` with extra properties (`k\u1v\u2…`).
async fn send(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue_id: i32,
    properties: &str,
    body: &str,
) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        queue_id,
        born_timestamp: now_millis(),
        properties: Some(format!("UNIQ_KEY\u{1}ID-{body}\u{2}{properties}")),
        ..Default::default()
    };
    let mut cmd =
        RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body.as_bytes().to_vec());
    header.write_v2(&mut cmd.ext_fields);
    call(client, addr, cmd).await
}

/// Every message of a queue (one pull from offset 0, no waiting).
async fn pull_all(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue_id: i32,
) -> Vec<StoredMessage> {
    let header = PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: 0,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: None,
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let resp = call(
        client,
        addr,
        RemotingCommand::request_with(request::PULL_MESSAGE, &header),
    )
    .await;
    let mut out = Vec::new();
    let mut rest = &resp.body[..];
    while !rest.is_empty() {
        match decode_record(rest, true).unwrap() {
            Entry::Record(view) => {
                out.push(view.to_stored_message());
                rest = &rest[view.total_size as usize..];
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// Polls the queue every 20 ms until a message shows up; returns it and when it was seen.
async fn wait_for_message(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue_id: i32,
    timeout: Duration,
) -> (StoredMessage, i64) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(m) = pull_all(client, addr, topic, queue_id).await.pop() {
            return (m, now_millis());
        }
        assert!(
            Instant::now() < deadline,
            "nothing arrived in {topic}/{queue_id}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_real_form(m: &StoredMessage, topic: &str, queue_id: i32, body: &str) {
    assert_eq!((m.topic.as_str(), m.queue_id), (topic, queue_id));
    assert_eq!(&m.body[..], body.as_bytes());
    for gone in [
        "DELAY",
        "REAL_TOPIC",
        "REAL_QID",
        "TIMER_DELIVER_MS",
        "TIMER_DELAY_SEC",
        "__TERN_IDEMPOTENCY_KEY",
    ] {
        assert_eq!(m.properties.get(gone), None, "{gone} left on {m:?}");
    }
    let id = format!("ID-{body}");
    assert_eq!(m.properties.get("UNIQ_KEY"), Some(id.as_str()));
    assert_eq!(m.properties.get("TAGS"), Some("t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_level_one_arrives_after_a_second_in_its_real_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    create_topic(&client, &addr, "late", 4).await;

    let sent = now_millis();
    let resp = send(
        &client,
        &addr,
        "late",
        2,
        "TAGS\u{1}t\u{2}DELAY\u{1}1\u{2}__TERN_IDEMPOTENCY_KEY\u{1}k1\u{2}",
        "d1",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    // Held in the delay topic's queue 0, not in the real queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pull_all(&client, &addr, "late", 2).await.is_empty());
    let (m, seen) = wait_for_message(&client, &addr, "late", 2, Duration::from_secs(5)).await;
    assert!(seen - sent >= 1_000, "visible after {} ms", seen - sent);
    assert!(seen - sent < 2_500, "late by {} ms", seen - sent);
    assert_real_form(&m, "late", 2, "d1");

    // The cursor reaches delayOffset.json within about a second.
    let path = dir.path().join("config/delayOffset.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && text.contains("\"offsetTable\"")
            && text.contains("\"1\": 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "delayOffset.json not written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_messages_arrive_when_due_and_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    create_topic(&client, &addr, "timed", 2).await;

    let sent = now_millis();
    let resp = send(
        &client,
        &addr,
        "timed",
        1,
        "TAGS\u{1}t\u{2}TIMER_DELAY_SEC\u{1}2\u{2}",
        "s2",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    // An absolute due time 3 s out, sent now, delivered only after the restart below.
    let due = now_millis() + 3_000;
    let resp = send(
        &client,
        &addr,
        "timed",
        0,
        &format!("TAGS\u{1}t\u{2}TIMER_DELIVER_MS\u{1}{due}\u{2}"),
        "abs",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(pull_all(&client, &addr, "timed", 1).await.is_empty());
    let (m, seen) = wait_for_message(&client, &addr, "timed", 1, Duration::from_secs(5)).await;
    assert!(seen - sent >= 2_000, "visible after {} ms", seen - sent);
    assert!(seen - sent < 3_500, "late by {} ms", seen - sent);
    assert_real_form(&m, "timed", 1, "s2");
    assert!(pull_all(&client, &addr, "timed", 0).await.is_empty());
    broker.shutdown().await.unwrap();

    // The checkpoint was written at shutdown; the second timer is still pending.
    let text = std::fs::read_to_string(dir.path().join("config/timerCheckpoint.json")).unwrap();
    assert!(text.contains("\"scanFrom\": 1"), "{text}");
    assert!(text.contains("\"consumedTo\": 2"), "{text}");

    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    let (m, seen) = wait_for_message(&client, &addr, "timed", 0, Duration::from_secs(5)).await;
    assert!(seen >= due, "visible {} ms early", due - seen);
    assert_real_form(&m, "timed", 0, "abs");
    // The first timer is not delivered a second time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pull_all(&client, &addr, "timed", 1).await.len(), 1);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_due_timers_are_stored_directly_and_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    create_topic(&client, &addr, "now", 1).await;

    let past = now_millis() - 60_000;
    let resp = send(
        &client,
        &addr,
        "now",
        0,
        &format!("TAGS\u{1}t\u{2}TIMER_DELIVER_MS\u{1}{past}\u{2}"),
        "past",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    let (m, _) = wait_for_message(&client, &addr, "now", 0, Duration::from_secs(1)).await;
    assert_real_form(&m, "now", 0, "past");

    // Beyond the 3-day maximum: MESSAGE_ILLEGAL with a remark naming the setting.
    let too_far = 3 * 24 * 3600 + 60;
    let resp = send(
        &client,
        &addr,
        "now",
        0,
        &format!("TIMER_DELAY_SEC\u{1}{too_far}\u{2}"),
        "far",
    )
    .await;
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{resp:?}");
    assert!(
        resp.remark
            .as_deref()
            .unwrap_or("")
            .contains("timer_max_delay_ms"),
        "{resp:?}"
    );
    // Exactly three days is accepted.
    let resp = send(
        &client,
        &addr,
        "now",
        0,
        &format!("TIMER_DELAY_SEC\u{1}{}\u{2}", 3 * 24 * 3600),
        "three-days",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    // A DELAY that is not a number.
    let resp = send(&client, &addr, "now", 0, "DELAY\u{1}soon\u{2}", "bad").await;
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{resp:?}");
    // Clients may not write the broker's own topics.
    let resp = send(&client, &addr, "SCHEDULE_TOPIC_XXXX", 0, "", "x").await;
    assert_eq!(resp.code, response::NO_PERMISSION, "{resp:?}");
    // A batch asking for a delay is refused whole.
    let batch = encode_batch(&[
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"b0"),
            properties: String::new(),
        },
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"b1"),
            properties: "DELAY\u{1}2\u{2}".into(),
        },
    ]);
    let header = SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "now".into(),
        queue_id: 0,
        born_timestamp: now_millis(),
        batch: Some(true),
        ..Default::default()
    };
    let mut cmd = RemotingCommand::request(request::SEND_BATCH_MESSAGE).with_body(batch);
    header.write_to(&mut cmd.ext_fields);
    let resp = call(&client, &addr, cmd).await;
    assert_eq!(resp.code, response::MESSAGE_ILLEGAL, "{resp:?}");
    assert!(
        resp.remark.as_deref().unwrap_or("").contains("batches"),
        "{resp:?}"
    );
    // Only the past-due message reached the topic.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pull_all(&client, &addr, "now", 0).await.len(), 1);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_backlog_limit_refuses_new_timers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(BrokerConfig {
        timer_max_pending: 3,
        ..config(dir.path())
    })
    .await
    .unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    create_topic(&client, &addr, "busy", 1).await;
    for i in 0..3 {
        let resp = send(
            &client,
            &addr,
            "busy",
            0,
            "TIMER_DELAY_SEC\u{1}600\u{2}",
            &format!("m{i}"),
        )
        .await;
        assert!(resp.is_success(), "{resp:?}");
    }
    // Dispatch is asynchronous: give the queue a moment to show all three.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = send(
        &client,
        &addr,
        "busy",
        0,
        "TIMER_DELAY_SEC\u{1}600\u{2}",
        "m3",
    )
    .await;
    assert_eq!(resp.code, response::SYSTEM_BUSY, "{resp:?}");
    assert!(
        resp.remark
            .as_deref()
            .unwrap_or("")
            .contains("timer_max_pending"),
        "{resp:?}"
    );
    // Ordinary sends are unaffected.
    assert!(
        send(&client, &addr, "busy", 0, "", "plain")
            .await
            .is_success()
    );
    broker.shutdown().await.unwrap();
}

#[test]
fn timer_settings_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let short = BrokerConfig {
        timer_max_delay_ms: 24 * 3600 * 1000,
        ..config(dir.path())
    };
    let e = short.validate().unwrap_err().to_string();
    assert!(e.contains("timer_max_delay_ms"), "{e}");
    let none = BrokerConfig {
        timer_max_pending: 0,
        ..config(dir.path())
    };
    let e = none.validate().unwrap_err().to_string();
    assert!(e.contains("timer_max_pending"), "{e}");
    assert!(config(dir.path()).validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_levels_clamp_and_a_deleted_real_topic_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    create_topic(&client, &addr, "gone", 1).await;
    create_topic(&client, &addr, "kept", 1).await;

    // Level 99 is clamped to the last level (18, 2 h): held in SCHEDULE_TOPIC_XXXX queue 17 with
    // the real destination in its properties.
    let resp = send(
        &client,
        &addr,
        "kept",
        0,
        "TAGS\u{1}t\u{2}DELAY\u{1}99\u{2}",
        "clamped",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    // Clients cannot pull the broker's own topic: read it from the store.
    let deadline = Instant::now() + Duration::from_secs(2);
    let held = loop {
        let got = broker
            .store()
            .get_messages("SCHEDULE_TOPIC_XXXX", 17, 0, 32, 1 << 20, None);
        if let Some(m) = got.messages.first() {
            let due = m.tags_code;
            let held = m.decode().unwrap();
            // The due time in the tags code is store time + 2 h.
            assert_eq!(due, held.store_timestamp + 2 * 3600 * 1000);
            break held;
        }
        assert!(Instant::now() < deadline, "not in SCHEDULE_TOPIC_XXXX/17");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(held.properties.get("REAL_TOPIC"), Some("kept"));
    assert_eq!(held.properties.get("REAL_QID"), Some("0"));
    assert_eq!(held.properties.get("DELAY"), Some("18"));

    // A level-1 message whose topic is deleted while it waits is skipped, and does not hold up
    // the one behind it.
    let resp = send(
        &client,
        &addr,
        "gone",
        0,
        "TAGS\u{1}t\u{2}DELAY\u{1}1\u{2}",
        "lost",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    let resp = send(
        &client,
        &addr,
        "kept",
        0,
        "TAGS\u{1}t\u{2}DELAY\u{1}1\u{2}",
        "next",
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    let delete = RemotingCommand::request_with(
        request::DELETE_TOPIC_IN_BROKER,
        &TopicRequestHeader {
            topic: "gone".into(),
        },
    );
    assert!(call(&client, &addr, delete).await.is_success());
    let (m, _) = wait_for_message(&client, &addr, "kept", 0, Duration::from_secs(5)).await;
    assert_real_form(&m, "kept", 0, "next");
    assert!(pull_all(&client, &addr, "gone", 0).await.is_empty());
    broker.shutdown().await.unwrap();
    let text = std::fs::read_to_string(dir.path().join("config/delayOffset.json")).unwrap();
    assert!(text.contains("\"1\": 2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_timers_due_together_is_delivered_promptly_under_sync_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.store.flush_disk_type = tern_core::store::FlushDiskType::SyncFlush;
    let broker = Broker::start(cfg).await.unwrap();
    let addr = broker.addr().to_string();
    let client = std::sync::Arc::new(RemotingClient::new());
    create_topic(&client, &addr, "burst", 1).await;

    const COUNT: u64 = 1_000;
    // Far enough out that a slow (debug, loaded CI) machine still sends all before it is due.
    let due = now_millis() + 4_000;
    let props = format!("TIMER_DELIVER_MS\u{1}{due}\u{2}");
    let mut sends = Vec::new();
    for worker in 0..32 {
        let (client, addr, props) = (client.clone(), addr.clone(), props.clone());
        sends.push(tokio::spawn(async move {
            for i in (worker..COUNT).step_by(32) {
                let resp = send(&client, &addr, "burst", 0, &props, &format!("b{i}")).await;
                assert!(resp.is_success(), "{resp:?}");
            }
        }));
    }
    for s in sends {
        s.await.unwrap();
    }
    assert!(
        now_millis() < due,
        "sending took too long for the test to mean anything"
    );
    assert_eq!(broker.store().max_offset("burst", 0), 0, "delivered early");
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.store().max_offset("burst", 0) < COUNT {
        assert!(now_millis() >= due - 50 || broker.store().max_offset("burst", 0) == 0);
        assert!(
            Instant::now() < deadline,
            "{} of {COUNT} delivered",
            broker.store().max_offset("burst", 0)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = now_millis() - due;
    eprintln!("{COUNT} timers due together delivered within {took} ms of their due time");
    assert!(took < 3_000, "delivery took {took} ms");
    broker.shutdown().await.unwrap();
}
