//! A broker in-process and raw remoting calls to it, for the broker's integration tests.

use std::time::{Duration, Instant};

use tern_core::broker::BrokerConfig;
use tern_core::protocol::codes::request;
use tern_core::protocol::headers::*;
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_core::store::{Entry, StoreConfig, decode_record};

pub const T: Duration = Duration::from_secs(5);

pub fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        listen: "127.0.0.1:0".into(),
        namesrv_addrs: Vec::new(),
        store: StoreConfig::for_tests(dir),
        ..BrokerConfig::default()
    }
}

pub async fn call(client: &RemotingClient, addr: &str, cmd: RemotingCommand) -> RemotingCommand {
    client
        .invoke(addr, cmd, Duration::from_secs(30))
        .await
        .unwrap()
}

pub async fn create_topic(client: &RemotingClient, addr: &str, topic: &str, queues: i32) {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        ..Default::default()
    };
    let resp = call(
        client,
        addr,
        RemotingCommand::request_with(request::UPDATE_AND_CREATE_TOPIC, &header),
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
}

pub fn send_header(topic: &str, queue_id: i32, tag: &str, key: &str) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: topic.into(),
        queue_id,
        born_timestamp: 1,
        properties: Some(format!("TAGS\u{1}{tag}\u{2}KEYS\u{1}{key}\u{2}")),
        ..Default::default()
    }
}

pub async fn send_v2(
    client: &RemotingClient,
    addr: &str,
    h: &SendMessageRequestHeader,
    body: &str,
) -> RemotingCommand {
    let mut cmd =
        RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body.as_bytes().to_vec());
    h.write_v2(&mut cmd.ext_fields);
    call(client, addr, cmd).await
}

pub fn pull_header(
    topic: &str,
    queue_id: i32,
    offset: i64,
    suspend_ms: i64,
    sub: Option<&str>,
) -> PullMessageRequestHeader {
    let mut flags = 0;
    if suspend_ms > 0 {
        flags |= pull_sys_flag::SUSPEND;
    }
    if sub.is_some() {
        flags |= pull_sys_flag::SUBSCRIPTION;
    }
    PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: flags,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms,
        subscription: sub.map(String::from),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    }
}

/// Waits until a queue's max offset reaches `expected` (GET_MAX_OFFSET).
pub async fn wait_dispatched(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue_id: i32,
    expected: i64,
) {
    let deadline = Instant::now() + T;
    loop {
        let q = QueueRequestHeader {
            topic: topic.into(),
            queue_id,
        };
        let resp = call(
            client,
            addr,
            RemotingCommand::request_with(request::GET_MAX_OFFSET, &q),
        )
        .await;
        if resp.header::<OffsetResponseHeader>().unwrap().offset >= expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic}/{queue_id} never reached {expected}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn bodies(resp: &RemotingCommand) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = &resp.body[..];
    while !rest.is_empty() {
        match decode_record(rest, true).unwrap() {
            Entry::Record(view) => {
                out.push(String::from_utf8(view.body.to_vec()).unwrap());
                rest = &rest[view.total_size as usize..];
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}
