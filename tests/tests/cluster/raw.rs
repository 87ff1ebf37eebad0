//! Raw remoting calls used by the cross-process tests (what any RocketMQ client sends).

use std::time::Duration;

use tern_core::protocol::body::{TopicRouteData, decode_json};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::*;
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_core::store::{Entry, StoredMessage, decode_record};

pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn create_topic(client: &RemotingClient, broker: &str, topic: &str, queues: i32) {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        ..Default::default()
    };
    let cmd = RemotingCommand::request_with(request::UPDATE_AND_CREATE_TOPIC, &header);
    let resp = client
        .invoke(broker, cmd, CALL_TIMEOUT)
        .await
        .expect("create topic");
    assert!(resp.is_success(), "create topic {topic}: {resp:?}");
}

/// Creates `topic` on `broker` and waits (up to 10 s) until `namesrv` routes it.
pub async fn create_routed_topic(
    client: &RemotingClient,
    broker: &str,
    namesrv: &str,
    topic: &str,
    queues: i32,
) {
    create_topic(client, broker, topic, queues).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while route(client, namesrv, topic).await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no route for {topic} on {namesrv}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The route of `topic` from one NameServer; `None` for TOPIC_NOT_EXIST.
pub async fn route(client: &RemotingClient, namesrv: &str, topic: &str) -> Option<TopicRouteData> {
    let cmd = RemotingCommand::request_with(
        request::GET_ROUTEINFO_BY_TOPIC,
        &TopicRequestHeader {
            topic: topic.into(),
        },
    );
    let resp = client
        .invoke(namesrv, cmd, CALL_TIMEOUT)
        .await
        .expect("route call");
    match resp.code {
        response::SUCCESS => Some(decode_json(&resp.body).expect("route body")),
        response::TOPIC_NOT_EXIST => None,
        other => panic!("route {topic}: code {other} {:?}", resp.remark),
    }
}

/// Sends one message with SEND_MESSAGE_V2; returns the response.
pub async fn send(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    body: Vec<u8>,
    tag: Option<&str>,
) -> Result<RemotingCommand, tern_core::protocol::RemotingError> {
    let header = SendMessageRequestHeader {
        producer_group: "raw-producer".into(),
        topic: topic.into(),
        queue_id,
        born_timestamp: tern_core::store::now_millis(),
        properties: tag.map(|t| format!("TAGS\u{1}{t}\u{2}")),
        ..Default::default()
    };
    let mut cmd = RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body);
    header.write_v2(&mut cmd.ext_fields);
    client.invoke(broker, cmd, CALL_TIMEOUT).await
}

/// One pull; `suspend_ms` > 0 long-polls.
pub async fn pull(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    suspend_ms: i64,
    subscription: Option<&str>,
) -> (i32, PullMessageResponseHeader, Vec<StoredMessage>) {
    let mut flags = 0;
    if suspend_ms > 0 {
        flags |= pull_sys_flag::SUSPEND;
    }
    if subscription.is_some() {
        flags |= pull_sys_flag::SUBSCRIPTION;
    }
    let header = PullMessageRequestHeader {
        consumer_group: "raw-consumer".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: flags,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms,
        subscription: subscription.map(String::from),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let cmd = RemotingCommand::request_with(request::PULL_MESSAGE, &header);
    let timeout = CALL_TIMEOUT + Duration::from_millis(suspend_ms.max(0) as u64);
    let resp = client
        .invoke(broker, cmd, timeout)
        .await
        .expect("pull call");
    let header: PullMessageResponseHeader = resp.header().expect("pull response header");
    (resp.code, header, decode_all(&resp.body))
}

/// Decodes a pull body, checking every record's CRC: a torn record fails the test.
pub fn decode_all(mut body: &[u8]) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    while !body.is_empty() {
        match decode_record(body, true) {
            Ok(Entry::Record(view)) => {
                out.push(view.to_stored_message());
                body = &body[view.total_size as usize..];
            }
            other => panic!("pull body holds a bad record: {other:?}"),
        }
    }
    out
}

/// Every message of a queue from `offset` to its current end.
pub async fn drain(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
) -> Vec<StoredMessage> {
    let mut offset = 0;
    let mut all = Vec::new();
    loop {
        let (code, header, messages) = pull(client, broker, topic, queue_id, offset, 0, None).await;
        match code {
            response::SUCCESS => {
                all.extend(messages);
                offset = header.next_begin_offset;
            }
            response::PULL_NOT_FOUND => return all,
            response::PULL_RETRY_IMMEDIATELY => offset = header.next_begin_offset,
            other => panic!("drain {topic}/{queue_id} at {offset}: code {other}"),
        }
    }
}
