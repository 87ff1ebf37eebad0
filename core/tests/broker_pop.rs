//! Pop consumption, group settings and send-back against an in-process broker, with raw remoting
//! commands: invisibility, acks, stale handles, FIFO batches, the dead-letter queue and restarts.

use std::time::{Duration, Instant};

use tern_core::broker::{Broker, BrokerConfig};
use tern_core::protocol::body::{SubscriptionGroupConfig, encode_json};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::*;
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_core::store::{Entry, decode_record, find_property, parse_offset_message_id, property};

mod common;

use common::broker::*;

fn pop_config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        pop_min_invisible_ms: 100,
        ..config(dir)
    }
}

/// One popped message: body, queue id, offset, reconsume times and handle.
#[derive(Debug, Clone)]
struct Popped {
    body: String,
    queue_id: i32,
    offset: i64,
    reconsume: i32,
    handle: String,
}

fn popped(resp: &RemotingCommand) -> Vec<Popped> {
    let mut out = Vec::new();
    let mut rest = &resp.body[..];
    while !rest.is_empty() {
        let Entry::Record(view) = decode_record(rest, true).unwrap() else {
            panic!("not a record")
        };
        out.push(Popped {
            body: String::from_utf8(view.body.to_vec()).unwrap(),
            queue_id: view.queue_id,
            offset: view.queue_offset as i64,
            reconsume: view.reconsume_times,
            handle: find_property(view.properties, property::POP_CK)
                .expect("POP_CK")
                .to_string(),
        });
        rest = &rest[view.total_size as usize..];
    }
    out
}

struct Client {
    remoting: RemotingClient,
    addr: String,
    group: String,
    topic: String,
}

impl Client {
    async fn pop(&self, max: i32, invisible_ms: i64, poll_ms: i64) -> (i32, Vec<Popped>) {
        self.pop_tagged(max, invisible_ms, poll_ms, None).await
    }

    async fn pop_tagged(
        &self,
        max: i32,
        invisible_ms: i64,
        poll_ms: i64,
        tags: Option<&str>,
    ) -> (i32, Vec<Popped>) {
        let header = PopMessageRequestHeader {
            consumer_group: self.group.clone(),
            topic: self.topic.clone(),
            queue_id: -1,
            max_msg_nums: max,
            invisible_time: invisible_ms,
            poll_time: poll_ms,
            born_time: 0,
            init_mode: 0,
            exp_type: tags.map(|_| "TAG".to_string()),
            exp: tags.map(str::to_string),
            order: None,
            attempt_id: None,
        };
        let resp = call(
            &self.remoting,
            &self.addr,
            RemotingCommand::request_with(request::POP_MESSAGE, &header),
        )
        .await;
        let messages = popped(&resp);
        (resp.code, messages)
    }

    async fn ack(&self, p: &Popped) -> i32 {
        let header = AckMessageRequestHeader {
            consumer_group: self.group.clone(),
            topic: self.topic.clone(),
            queue_id: p.queue_id,
            extra_info: p.handle.clone(),
            offset: p.offset,
        };
        call(
            &self.remoting,
            &self.addr,
            RemotingCommand::request_with(request::ACK_MESSAGE, &header),
        )
        .await
        .code
    }

    /// The new handle, or the error code.
    async fn change(&self, p: &Popped, invisible_ms: i64) -> Result<String, i32> {
        let header = ChangeInvisibleTimeRequestHeader {
            consumer_group: self.group.clone(),
            topic: self.topic.clone(),
            queue_id: p.queue_id,
            extra_info: p.handle.clone(),
            offset: p.offset,
            invisible_time: invisible_ms,
        };
        let resp = call(
            &self.remoting,
            &self.addr,
            RemotingCommand::request_with(request::CHANGE_MESSAGE_INVISIBLETIME, &header),
        )
        .await;
        if resp.code != response::SUCCESS {
            return Err(resp.code);
        }
        Ok(resp
            .header::<ChangeInvisibleTimeResponseHeader>()
            .unwrap()
            .extra_info
            .unwrap())
    }

    async fn send(&self, queue_id: i32, body: &str) -> SendMessageResponseHeader {
        self.send_tagged(queue_id, "A", body).await
    }

    async fn send_tagged(&self, queue_id: i32, tag: &str, body: &str) -> SendMessageResponseHeader {
        let resp = send_v2(
            &self.remoting,
            &self.addr,
            &send_header(&self.topic, queue_id, tag, "k"),
            body,
        )
        .await;
        assert!(resp.is_success(), "{resp:?}");
        resp.header().unwrap()
    }

    async fn configure(&self, fifo: bool, retries: i32) {
        let mut group = SubscriptionGroupConfig::new(&self.group);
        group.consume_message_orderly = fifo;
        group.retry_max_times = retries;
        let resp = call(
            &self.remoting,
            &self.addr,
            RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(encode_json(&group)),
        )
        .await;
        assert!(resp.is_success(), "{resp:?}");
    }
}

async fn setup(broker: &Broker, topic: &str, queues: i32) -> Client {
    let remoting = RemotingClient::new();
    let addr = broker.addr().to_string();
    create_topic(&remoting, &addr, topic, queues).await;
    Client {
        remoting,
        addr,
        group: "pop-group".into(),
        topic: topic.into(),
    }
}

fn sorted_bodies(list: &[Popped]) -> Vec<String> {
    let mut bodies: Vec<String> = list.iter().map(|p| p.body.clone()).collect();
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop_ack_visibility_and_stale_handles() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "P", 2).await;
    for i in 0..6 {
        c.send(i % 2, &format!("m{i}")).await;
    }
    wait_dispatched(&c.remoting, &c.addr, "P", 1, 3).await;

    let (code, first) = c.pop(4, 5_000, 0).await;
    assert_eq!((code, first.len()), (response::SUCCESS, 4));
    assert!(first.iter().all(|p| p.reconsume == 0));
    let (_, second) = c.pop(4, 5_000, 0).await;
    assert_eq!(second.len(), 2);
    let all: Vec<Popped> = first.iter().chain(&second).cloned().collect();
    assert_eq!(sorted_bodies(&all), ["m0", "m1", "m2", "m3", "m4", "m5"]);
    let (code, none) = c.pop(4, 5_000, 0).await;
    assert_eq!((code, none.len()), (response::PULL_NOT_FOUND, 0));

    for p in &all[..5] {
        assert_eq!(c.ack(p).await, response::SUCCESS);
    }
    // Acked once: the handle is stale now.
    assert_eq!(c.ack(&all[0]).await, response::RECEIPT_HANDLE_STALE);
    // A handle that names another offset than the request is refused as well.
    let mut wrong = all[5].clone();
    wrong.offset += 1;
    assert_eq!(c.ack(&wrong).await, response::RECEIPT_HANDLE_STALE);
    let mut garbage = all[5].clone();
    garbage.handle = "not a handle".into();
    assert_eq!(c.ack(&garbage).await, response::RECEIPT_HANDLE_STALE);

    // A nack (visible now) renews the handle; the old one is stale, the message comes back as
    // the second delivery.
    let last = &all[5];
    let renewed = c.change(last, 0).await.unwrap();
    assert_ne!(renewed, last.handle);
    assert_eq!(c.change(last, 0).await, Err(response::RECEIPT_HANDLE_STALE));
    let (_, again) = c.pop(4, 5_000, 1_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].body.as_str(), again[0].reconsume), ("m5", 1));
    assert_eq!(c.ack(last).await, response::RECEIPT_HANDLE_STALE);
    assert_eq!(c.ack(&again[0]).await, response::SUCCESS);
    let (code, _) = c.pop(4, 5_000, 0).await;
    assert_eq!(code, response::PULL_NOT_FOUND);

    // Out-of-range requests get clear errors.
    let (code, _) = c.pop(0, 5_000, 0).await;
    assert_eq!(code, response::SYSTEM_ERROR);
    let (code, _) = c.pop(4, 50, 0).await;
    assert_eq!(code, response::SYSTEM_ERROR);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_redelivers_and_a_held_pop_wakes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "E", 1).await;
    c.send(0, "x").await;
    wait_dispatched(&c.remoting, &c.addr, "E", 0, 1).await;
    let (_, first) = c.pop(1, 300, 0).await;
    assert_eq!(first.len(), 1);
    // Held until the invisibility ends (about 300 ms), not until the 5 s poll time.
    let started = Instant::now();
    let (_, again) = c.pop(1, 10_000, 5_000).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((again.len(), again[0].reconsume), (1, 1));
    // A held pop is also woken by a new arrival.
    let waiter = tokio::spawn({
        let remoting = RemotingClient::new();
        let c2 = Client {
            remoting,
            addr: c.addr.clone(),
            group: c.group.clone(),
            topic: c.topic.clone(),
        };
        async move { c2.pop(1, 10_000, 5_000).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    c.send(0, "y").await;
    let (_, woke) = waiter.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(woke[0].body, "y");
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "R", 1).await;
    for i in 0..4 {
        c.send(0, &format!("r{i}")).await;
    }
    wait_dispatched(&c.remoting, &c.addr, "R", 0, 4).await;
    let (_, got) = c.pop(3, 2_000, 0).await;
    assert_eq!(got.len(), 3);
    assert_eq!(c.ack(&got[0]).await, response::SUCCESS);
    broker.shutdown().await.unwrap();

    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = Client {
        addr: broker.addr().to_string(),
        ..c
    };
    // Not redelivered early, the position kept: only the never-popped message is there.
    let (_, fresh) = c.pop(4, 10_000, 0).await;
    assert_eq!(sorted_bodies(&fresh), ["r3"]);
    assert_eq!(c.ack(&got[0]).await, response::RECEIPT_HANDLE_STALE);
    assert_eq!(c.ack(&got[1]).await, response::SUCCESS);
    // The other one comes back once its deadline (set before the restart) has passed.
    let (_, again) = c.pop(4, 2_000, 5_000).await;
    assert_eq!(
        again
            .iter()
            .map(|p| (p.body.as_str(), p.reconsume))
            .collect::<Vec<_>>(),
        [("r2", 1)]
    );
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_groups_serve_one_batch_per_queue_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "F", 1).await;
    c.configure(true, 16).await;
    for i in 0..5 {
        c.send(0, &format!("f{i}")).await;
    }
    wait_dispatched(&c.remoting, &c.addr, "F", 0, 5).await;
    let (_, batch) = c.pop(2, 5_000, 0).await;
    assert_eq!(sorted_bodies(&batch), ["f0", "f1"]);
    let (code, _) = c.pop(2, 5_000, 0).await;
    assert_eq!(code, response::PULL_NOT_FOUND, "the queue is blocked");
    assert_eq!(c.ack(&batch[0]).await, response::SUCCESS);
    let (code, _) = c.pop(2, 5_000, 0).await;
    assert_eq!(code, response::PULL_NOT_FOUND, "f1 is still in flight");
    c.change(&batch[1], 0).await.unwrap();
    let (_, again) = c.pop(2, 5_000, 0).await;
    assert_eq!(
        again
            .iter()
            .map(|p| (p.body.as_str(), p.reconsume))
            .collect::<Vec<_>>(),
        [("f1", 1)],
        "only the redelivery, nothing after it"
    );
    assert_eq!(c.ack(&again[0]).await, response::SUCCESS);
    let (_, next) = c.pop(2, 5_000, 0).await;
    assert_eq!(sorted_bodies(&next), ["f2", "f3"]);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_messages_go_to_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "D", 1).await;
    c.configure(false, 1).await;
    c.send(0, "doomed").await;
    wait_dispatched(&c.remoting, &c.addr, "D", 0, 1).await;
    let (_, first) = c.pop(1, 5_000, 0).await;
    c.change(&first[0], 0).await.unwrap();
    let (_, second) = c.pop(1, 5_000, 1_000).await;
    assert_eq!(second[0].reconsume, 1);
    c.change(&second[0], 0).await.unwrap();
    // The reviver moves it within about 100 ms; nothing is delivered a third time.
    let dlq = "%DLQ%pop-group";
    let deadline = Instant::now() + T;
    loop {
        let q = QueueRequestHeader {
            topic: dlq.into(),
            queue_id: 0,
        };
        let resp = call(
            &c.remoting,
            &c.addr,
            RemotingCommand::request_with(request::GET_MAX_OFFSET, &q),
        )
        .await;
        if resp.is_success() && resp.header::<OffsetResponseHeader>().unwrap().offset == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _) = c.pop(1, 5_000, 300).await;
    assert_eq!(code, response::POLLING_TIMEOUT);
    let resp = call(
        &c.remoting,
        &c.addr,
        RemotingCommand::request_with(request::PULL_MESSAGE, &pull_header(dlq, 0, 0, 0, Some("*"))),
    )
    .await;
    let Entry::Record(view) = decode_record(&resp.body, true).unwrap() else {
        panic!("no record")
    };
    assert_eq!(view.body, b"doomed");
    assert_eq!(
        find_property(view.properties, property::RETRY_TOPIC),
        Some("D")
    );
    assert_eq!(view.reconsume_times, 2);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_back_schedules_a_retry_and_dead_letters_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "S", 1).await;
    let sent = c.send(0, "again").await;
    let (_, offset) = parse_offset_message_id(&sent.msg_id).unwrap();
    let back = |delay_level| ConsumerSendMsgBackRequestHeader {
        offset: offset as i64,
        group: "cg".into(),
        delay_level,
        origin_msg_id: None,
        origin_topic: Some("S".into()),
        unit_mode: None,
        max_reconsume_times: None,
    };
    let resp = call(
        &c.remoting,
        &c.addr,
        RemotingCommand::request_with(request::CONSUMER_SEND_MSG_BACK, &back(0)),
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    // Level 3 + 0 → queue 2 of the schedule topic, aimed at the group's retry topic.
    wait_dispatched(&c.remoting, &c.addr, "SCHEDULE_TOPIC_XXXX", 2, 1).await;
    let resp = call(
        &c.remoting,
        &c.addr,
        RemotingCommand::request_with(request::CONSUMER_SEND_MSG_BACK, &back(-1)),
    )
    .await;
    assert!(resp.is_success(), "{resp:?}");
    wait_dispatched(&c.remoting, &c.addr, "%DLQ%cg", 0, 1).await;
    let mut bad = back(0);
    bad.offset = 1 << 40;
    let resp = call(
        &c.remoting,
        &c.addr,
        RemotingCommand::request_with(request::CONSUMER_SEND_MSG_BACK, &bad),
    )
    .await;
    assert_eq!(resp.code, response::SYSTEM_ERROR);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_acks_give_a_verdict_per_receipt_and_survive_a_restart() {
    use tern_core::protocol::body::{
        BatchAckEntry, BatchAckRequestBody, BatchAckResponseBody, decode_json,
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "B", 2).await;
    for i in 0..6 {
        c.send(i % 2, &format!("b{i}")).await;
    }
    wait_dispatched(&c.remoting, &c.addr, "B", 1, 3).await;
    let (_, got) = c.pop(6, 1_000, 0).await;
    assert_eq!(got.len(), 6);
    let entry = |p: &Popped| BatchAckEntry {
        queue_id: p.queue_id,
        offset: p.offset,
        extra_info: p.handle.clone(),
    };
    let mut garbage = entry(&got[3]);
    garbage.extra_info = "garbage".into();
    let body = BatchAckRequestBody {
        consumer_group: c.group.clone(),
        topic: c.topic.clone(),
        acks: vec![
            entry(&got[0]),
            entry(&got[1]),
            entry(&got[0]),
            garbage,
            entry(&got[2]),
        ],
    };
    let batch = |body: &BatchAckRequestBody| {
        RemotingCommand::request(request::TERN_BATCH_ACK).with_body(encode_json(body))
    };
    let resp = call(&c.remoting, &c.addr, batch(&body)).await;
    assert!(resp.is_success(), "{resp:?}");
    let answer: BatchAckResponseBody = decode_json(&resp.body).unwrap();
    let stale = response::RECEIPT_HANDLE_STALE;
    assert_eq!(answer.codes, [0, 0, stale, stale, 0]);
    let empty = BatchAckRequestBody {
        acks: Vec::new(),
        ..body.clone()
    };
    assert_eq!(
        call(&c.remoting, &c.addr, batch(&empty)).await.code,
        response::SYSTEM_ERROR
    );
    broker.shutdown().await.unwrap();

    // After a restart the acked three stay acked; the other three come back once expired.
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = Client {
        addr: broker.addr().to_string(),
        ..c
    };
    let mut back = Vec::new();
    let deadline = Instant::now() + T;
    while back.len() < 3 && Instant::now() < deadline {
        let (_, more) = c.pop(6, 10_000, 1_000).await;
        back.extend(more);
    }
    assert_eq!(sorted_bodies(&back), sorted_bodies(&got[3..]));
    assert!(back.iter().all(|p| p.reconsume == 1));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_expression_pops_only_matching_messages_and_moves_past_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(pop_config(dir.path())).await.unwrap();
    let c = setup(&broker, "T", 1).await;
    for (i, tag) in ["A", "B", "C", "B", "A"].iter().enumerate() {
        c.send_tagged(0, tag, &format!("{tag}{i}")).await;
    }
    wait_dispatched(&c.remoting, &c.addr, "T", 0, 5).await;
    let (_, got) = c.pop_tagged(32, 5_000, 0, Some("A || C")).await;
    assert_eq!(sorted_bodies(&got), ["A0", "A4", "C2"]);
    // The group's position moved past the B messages too: nothing more for it.
    let (code, rest) = c.pop_tagged(32, 5_000, 0, Some("A || C")).await;
    assert_eq!((code, rest.len()), (response::PULL_NOT_FOUND, 0));
    let (code, _) = c.pop_tagged(32, 5_000, 0, Some("A ||")).await;
    assert_eq!(code, response::SUBSCRIPTION_PARSE_FAILED);
    broker.shutdown().await.unwrap();
}
