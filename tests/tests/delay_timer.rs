//! Delay-level and timer messages across a restart of the real `tern-broker` binary: SIGKILL
//! (cursors and checkpoint may be a second behind: nothing may be lost, duplicates are allowed)
//! and SIGTERM (clean: nothing lost, nothing twice). Every delivered copy must have been stored
//! in its real topic at or after its due time.

#[path = "cluster/raw.rs"]
#[allow(dead_code)]
mod raw;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tern_core::protocol::codes::request;
use tern_core::protocol::headers::SendMessageRequestHeader;
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_core::store::now_millis;
use tern_tests::process::{BrokerSpec, start_broker};

const TOPIC: &str = "later";
const QUEUES: i32 = 2;

fn spec(store: &std::path::Path, sync_flush: bool) -> BrokerSpec<'_> {
    BrokerSpec {
        name: "broker-d",
        cluster: "TestCluster",
        namesrv: &[],
        store,
        sync_flush,
        register_interval_secs: 30,
        listen: None,
    }
}

async fn send(client: &RemotingClient, broker: &str, queue_id: i32, props: &str, body: &str) {
    let header = SendMessageRequestHeader {
        producer_group: "delay-producer".into(),
        topic: TOPIC.into(),
        queue_id,
        born_timestamp: now_millis(),
        properties: Some(props.to_string()),
        ..Default::default()
    };
    let mut cmd =
        RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body.as_bytes().to_vec());
    header.write_v2(&mut cmd.ext_fields);
    let resp = client
        .invoke(broker, cmd, raw::CALL_TIMEOUT)
        .await
        .expect("send");
    assert!(resp.is_success(), "send {body}: {resp:?}");
}

/// Sends delay-level 1 (1 s) and 2 (5 s) messages and timers due 2–6 s out; returns each body's
/// earliest allowed store time.
async fn send_delayed(client: &RemotingClient, broker: &str) -> HashMap<String, i64> {
    let mut due = HashMap::new();
    for i in 0..10 {
        let (level, delay_ms) = if i % 2 == 0 { (1, 1_000) } else { (2, 5_000) };
        let body = format!("level{level}-{i}");
        // The due time counts from the store time, which is at or after this.
        let earliest = now_millis() + delay_ms;
        send(
            client,
            broker,
            i % QUEUES,
            &format!("DELAY\u{1}{level}\u{2}UNIQ_KEY\u{1}{body}\u{2}"),
            &body,
        )
        .await;
        due.insert(body, earliest);
    }
    for i in 0..20 {
        let at = now_millis() + 2_000 + 200 * i as i64;
        let body = format!("timer-{i}");
        send(
            client,
            broker,
            i % QUEUES,
            &format!("TIMER_DELIVER_MS\u{1}{at}\u{2}UNIQ_KEY\u{1}{body}\u{2}"),
            &body,
        )
        .await;
        due.insert(body, at);
    }
    due
}

/// Every message in the real topic: body → (store time, count).
async fn collect(client: &RemotingClient, broker: &str) -> HashMap<String, (i64, usize)> {
    let mut seen: HashMap<String, (i64, usize)> = HashMap::new();
    for queue in 0..QUEUES {
        for m in raw::drain(client, broker, TOPIC, queue).await {
            for gone in ["DELAY", "REAL_TOPIC", "REAL_QID", "TIMER_DELIVER_MS"] {
                assert_eq!(m.properties.get(gone), None, "{gone} left on {m:?}");
            }
            let body = String::from_utf8(m.body.to_vec()).unwrap();
            assert_eq!(m.properties.get("UNIQ_KEY"), Some(body.as_str()));
            let entry = seen.entry(body).or_insert((m.store_timestamp, 0));
            entry.0 = entry.0.min(m.store_timestamp);
            entry.1 += 1;
        }
    }
    seen
}

async fn restart_keeps_every_delayed_message(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut broker = start_broker(&spec(&store, !kill));
    let client = RemotingClient::new();
    raw::create_topic(&client, broker.addr(), TOPIC, QUEUES).await;
    let started = Instant::now();
    let due = send_delayed(&client, broker.addr()).await;

    // Stop the broker while some are delivered (level 1, early timers) and most still wait, and
    // after at least one cursor / checkpoint write.
    tokio::time::sleep(Duration::from_millis(2_600).saturating_sub(started.elapsed())).await;
    let before = collect(&client, broker.addr()).await;
    assert!(
        before.len() < due.len(),
        "everything was delivered before the restart"
    );
    if kill {
        broker.kill();
    } else {
        assert!(broker.terminate().success());
    }
    let broker = start_broker(&spec(&store, !kill));
    let client = RemotingClient::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let seen = loop {
        let seen = collect(&client, broker.addr()).await;
        if seen.len() >= due.len() || Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost: Vec<&String> = due.keys().filter(|b| !seen.contains_key(*b)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} lost: {lost:?}",
        lost.len(),
        due.len()
    );
    for (body, (stored, count)) in &seen {
        let earliest = due.get(body).unwrap_or_else(|| panic!("unexpected {body}"));
        assert!(
            stored >= earliest,
            "{body} delivered {} ms early",
            earliest - stored
        );
        if !kill {
            assert_eq!(*count, 1, "{body} delivered {count} times after SIGTERM");
        }
    }
    let duplicates: usize = seen.values().map(|(_, c)| c - 1).sum();
    eprintln!(
        "{} delayed messages, {} delivered before the restart, {duplicates} duplicates",
        due.len(),
        before.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_survive_broker_sigkill() {
    restart_keeps_every_delayed_message(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_survive_broker_sigterm() {
    restart_keeps_every_delayed_message(false).await;
}
