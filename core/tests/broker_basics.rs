//! The broker in-process, driven over real loopback sockets with raw remoting commands: what a
//! RocketMQ client sends, the broker must answer the way RocketMQ does.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_core::broker::Broker;
use tern_core::protocol::batch::{BatchEntry, encode_batch};
use tern_core::protocol::body::{
    ConsumerData, ConsumerListBody, HeartbeatData, SubscriptionData, TopicConfigSerializeWrapper,
    decode_json, encode_json,
};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::*;
use tern_core::protocol::{CommandHeader, RemotingClient, RemotingCommand};

mod common;

use common::broker::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_pull_filter_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();

    // Unknown topic: TOPIC_NOT_EXIST, nothing stored.
    let resp = send_v2(&client, &addr, &send_header("nope", 0, "a", "k"), "x").await;
    assert_eq!(resp.code, response::TOPIC_NOT_EXIST);

    create_topic(&client, &addr, "orders", 2).await;
    let mut offset_ids = Vec::new();
    for i in 0..6 {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        let resp = send_v2(
            &client,
            &addr,
            &send_header("orders", 0, tag, &format!("key{i}")),
            &format!("m{i}"),
        )
        .await;
        assert!(resp.is_success(), "{resp:?}");
        let h: SendMessageResponseHeader = resp.header().unwrap();
        assert_eq!((h.queue_id, h.queue_offset), (0, i));
        offset_ids.push(h.msg_id);
    }
    // V1 header and a batch.
    let mut v1 = RemotingCommand::request(request::SEND_MESSAGE).with_body(b"v1".to_vec());
    send_header("orders", 1, "odd", "kv1").write_to(&mut v1.ext_fields);
    assert!(call(&client, &addr, v1).await.is_success());
    let batch = encode_batch(&[
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"b0"),
            properties: "TAGS\u{1}even\u{2}".into(),
        },
        BatchEntry {
            flag: 0,
            body: Bytes::from_static(b"b1"),
            properties: String::new(),
        },
    ]);
    let mut cmd = RemotingCommand::request(request::SEND_BATCH_MESSAGE).with_body(batch);
    send_header("orders", 1, "", "").write_to(&mut cmd.ext_fields);
    let resp = call(&client, &addr, cmd).await;
    assert!(resp.is_success(), "{resp:?}");
    let h: SendMessageResponseHeader = resp.header().unwrap();
    assert_eq!(h.msg_id.split(',').count(), 2);
    assert_eq!(h.queue_offset, 1);

    // Sends are acknowledged once appended; the dispatcher makes them pullable a moment later.
    wait_dispatched(&client, &addr, "orders", 0, 6).await;
    wait_dispatched(&client, &addr, "orders", 1, 3).await;

    // Queue 0 from 0: everything; with a tag filter only the even ones.
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::PULL_MESSAGE, &pull_header("orders", 0, 0, 0, None)),
    )
    .await;
    assert_eq!(resp.code, response::SUCCESS);
    assert_eq!(bodies(&resp), ["m0", "m1", "m2", "m3", "m4", "m5"]);
    let h: PullMessageResponseHeader = resp.header().unwrap();
    assert_eq!((h.next_begin_offset, h.min_offset, h.max_offset), (6, 0, 6));
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(
            request::PULL_MESSAGE,
            &pull_header("orders", 0, 0, 0, Some("even")),
        ),
    )
    .await;
    assert_eq!(bodies(&resp), ["m0", "m2", "m4"]);

    // At the head without suspend: PULL_NOT_FOUND; far beyond: OFFSET_MOVED with the fix.
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::PULL_MESSAGE, &pull_header("orders", 0, 6, 0, None)),
    )
    .await;
    assert_eq!(resp.code, response::PULL_NOT_FOUND);
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(
            request::PULL_MESSAGE,
            &pull_header("orders", 0, 100, 0, None),
        ),
    )
    .await;
    assert_eq!(resp.code, response::PULL_OFFSET_MOVED);
    // RocketMQ's correction: back to the minimum while it is still 0, else to the maximum.
    assert_eq!(
        resp.header::<PullMessageResponseHeader>()
            .unwrap()
            .next_begin_offset,
        0
    );
    // A queue the topic does not have.
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::PULL_MESSAGE, &pull_header("orders", 7, 0, 0, None)),
    )
    .await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);

    // Offsets: min/max, commit/query, by time.
    let q = QueueRequestHeader {
        topic: "orders".into(),
        queue_id: 0,
    };
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::GET_MAX_OFFSET, &q),
    )
    .await;
    assert_eq!(resp.header::<OffsetResponseHeader>().unwrap().offset, 6);
    let upd = UpdateConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: "orders".into(),
        queue_id: 0,
        commit_offset: 4,
    };
    assert!(
        call(
            &client,
            &addr,
            RemotingCommand::request_with(request::UPDATE_CONSUMER_OFFSET, &upd)
        )
        .await
        .is_success()
    );
    let query = QueryConsumerOffsetRequestHeader {
        consumer_group: "cg".into(),
        topic: "orders".into(),
        queue_id: 0,
        set_zero_if_not_found: None,
    };
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::QUERY_CONSUMER_OFFSET, &query),
    )
    .await;
    assert_eq!(resp.header::<OffsetResponseHeader>().unwrap().offset, 4);
    let search = SearchOffsetRequestHeader {
        topic: "orders".into(),
        queue_id: 0,
        timestamp: 0,
    };
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::SEARCH_OFFSET_BY_TIMESTAMP, &search),
    )
    .await;
    assert_eq!(resp.header::<OffsetResponseHeader>().unwrap().offset, 0);

    // By offset id and by key.
    let (_, phy) = tern_core::store::parse_offset_message_id(&offset_ids[3]).unwrap();
    let view = ViewMessageRequestHeader {
        offset: phy as i64,
        topic: None,
    };
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::VIEW_MESSAGE_BY_ID, &view),
    )
    .await;
    assert_eq!(bodies(&resp), ["m3"]);
    let view = ViewMessageRequestHeader {
        offset: phy as i64 + 1,
        topic: None,
    };
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::VIEW_MESSAGE_BY_ID, &view),
    )
    .await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    let qm = QueryMessageRequestHeader {
        topic: "orders".into(),
        key: "key2".into(),
        max_num: 10,
        begin_timestamp: 0,
        end_timestamp: i64::MAX,
    };
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::QUERY_MESSAGE, &qm),
    )
    .await;
    assert_eq!(bodies(&resp), ["m2"]);

    broker.shutdown().await.unwrap();

    // Topics and committed offsets survive a restart.
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = RemotingClient::new();
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::QUERY_CONSUMER_OFFSET, &query),
    )
    .await;
    assert_eq!(resp.header::<OffsetResponseHeader>().unwrap().offset, 4);
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG),
    )
    .await;
    let topics: TopicConfigSerializeWrapper = decode_json(&resp.body).unwrap();
    assert_eq!(topics.topic_config_table["orders"].write_queue_nums, 2);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_arrival_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let client = std::sync::Arc::new(RemotingClient::new());
    create_topic(&client, &addr, "lp", 1).await;

    // Nothing arrives: answered PULL_NOT_FOUND after about the suspend time.
    let started = Instant::now();
    let resp = call(
        &client,
        &addr,
        RemotingCommand::request_with(request::PULL_MESSAGE, &pull_header("lp", 0, 0, 500, None)),
    )
    .await;
    assert_eq!(resp.code, response::PULL_NOT_FOUND);
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );

    // A held pull filtered on tag "b" ignores an "a" message and wakes for the "b" one.
    let held = {
        let client = client.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let h = pull_header("lp", 0, 0, 20_000, Some("b"));
            let resp = call(
                &client,
                &addr,
                RemotingCommand::request_with(request::PULL_MESSAGE, &h),
            )
            .await;
            (resp, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        send_v2(&client, &addr, &send_header("lp", 0, "a", "k"), "first")
            .await
            .is_success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "a non-matching arrival must not answer the pull with nothing"
    );
    // The woken pull re-reads from offset 0 and skips "first" by its tags code.
    assert!(
        send_v2(&client, &addr, &send_header("lp", 0, "b", "k"), "second")
            .await
            .is_success()
    );
    let (resp, waited) = tokio::time::timeout(T, held).await.unwrap().unwrap();
    assert!(
        waited < Duration::from_secs(5),
        "woken by the arrival, not the timeout: {waited:?}"
    );
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    assert_eq!(bodies(&resp), ["second"]);
    assert_eq!(
        resp.header::<PullMessageResponseHeader>()
            .unwrap()
            .next_begin_offset,
        2
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_groups_and_retry_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(config(dir.path())).await.unwrap();
    let addr = broker.addr().to_string();
    let a = RemotingClient::new();
    let b = RemotingClient::new();
    let heartbeat = |id: &str| HeartbeatData {
        client_id: id.into(),
        producer_data_set: vec![],
        consumer_data_set: vec![ConsumerData {
            group_name: "cg".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "t".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let hb = |id: &str| {
        RemotingCommand::request(request::HEART_BEAT).with_body(encode_json(&heartbeat(id)))
    };
    assert!(call(&a, &addr, hb("client-a")).await.is_success());
    assert!(call(&b, &addr, hb("client-b")).await.is_success());
    let list = ConsumerGroupRequestHeader {
        consumer_group: "cg".into(),
    };
    let resp = call(
        &a,
        &addr,
        RemotingCommand::request_with(request::GET_CONSUMER_LIST_BY_GROUP, &list),
    )
    .await;
    let members: ConsumerListBody = decode_json(&resp.body).unwrap();
    assert_eq!(members.consumer_id_list, ["client-a", "client-b"]);

    // The retry topic exists now.
    let resp = call(
        &a,
        &addr,
        RemotingCommand::request(request::GET_ALL_TOPIC_CONFIG),
    )
    .await;
    let topics: TopicConfigSerializeWrapper = decode_json(&resp.body).unwrap();
    assert!(topics.topic_config_table.contains_key("%RETRY%cg"));

    // Closing b's connection removes it at once.
    b.close_all();
    let deadline = Instant::now() + T;
    loop {
        let resp = call(
            &a,
            &addr,
            RemotingCommand::request_with(request::GET_CONSUMER_LIST_BY_GROUP, &list),
        )
        .await;
        let members: ConsumerListBody = decode_json(&resp.body).unwrap();
        if members.consumer_id_list == ["client-a"] {
            break;
        }
        assert!(Instant::now() < deadline, "b still listed: {members:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Garbage heartbeat body: a clear error.
    let resp = call(
        &a,
        &addr,
        RemotingCommand::request(request::HEART_BEAT).with_body(b"{oops".to_vec()),
    )
    .await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    broker.shutdown().await.unwrap();
}
