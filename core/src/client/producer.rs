//! [`Producer`]: sends messages to the brokers of a topic (reference §8).
//!
//! - [`Producer::send`] round-robins over the topic's write queues; when an attempt fails in a
//!   way another broker may not (no answer, SYSTEM_BUSY, SERVICE_NOT_AVAILABLE, SYSTEM_ERROR) it
//!   tries again, up to [`DEFAULT_RETRIES`] more times, on a queue of a broker that has not failed
//!   yet. A refusal of the message itself (MESSAGE_ILLEGAL, NO_PERMISSION, TOPIC_NOT_EXIST) is
//!   final. The whole send, retries and route lookup included, has `request_timeout`, like
//!   RocketMQ's `sendMsgTimeout`.
//! - [`Producer::send_ordered`] pins a key to one queue and never retries elsewhere: a message
//!   that moved to another queue would overtake or trail its predecessors.
//! - A message with an idempotency key ([`Producer::send_idempotent`]) is pinned to the queue its
//!   key hashes to and retried only there: the broker's window is per broker.
//! - FLUSH_DISK_TIMEOUT and the replica codes are statuses, not errors: the message is stored.
//!
//! Every method takes `&self`: one producer (in an `Arc`) serves any number of concurrent sends
//! over one pooled connection per broker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::protocol::batch::{BatchEntry, MAX_BATCH_MESSAGES, encode_batch};
use crate::protocol::codes::{request, response};
use crate::protocol::headers::{SendMessageRequestHeader, SendMessageResponseHeader};
use crate::protocol::{RemotingClient, RemotingCommand};
use crate::store::now_millis;

use super::client_id::random_u64;
use super::config::ClientConfig;
use super::error::ClientError;
use super::idempotent::idempotency_error;
use super::message::{MAX_MESSAGE_BODY, Message, check_topic};
use super::route::{MAX_CACHED_TOPICS, MessageQueue, RouteCache, TopicRoute};

/// Extra attempts after a failed send (RocketMQ's `retryTimesWhenSendFailed`).
pub const DEFAULT_RETRIES: u32 = 2;
/// Most extra attempts a producer can be configured with.
pub const MAX_RETRIES: u32 = 16;
/// The topic RocketMQ producers name as the template for auto-created topics.
const DEFAULT_TOPIC: &str = "TBW102";
const DEFAULT_TOPIC_QUEUES: i32 = 4;

/// How the broker stored a message it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Stored as durably as the broker group promises.
    Ok,
    /// Stored, but the SYNC_FLUSH fsync did not finish within the broker's timeout.
    FlushDiskTimeout,
    /// Stored on the master, but the replicas did not confirm in time (SYNC_MASTER).
    FlushSlaveTimeout,
    /// Stored on the master; no replica was connected (SYNC_MASTER).
    SlaveNotAvailable,
}

impl SendStatus {
    fn from_code(code: i32) -> Option<SendStatus> {
        match code {
            response::SUCCESS => Some(SendStatus::Ok),
            response::FLUSH_DISK_TIMEOUT => Some(SendStatus::FlushDiskTimeout),
            response::FLUSH_SLAVE_TIMEOUT => Some(SendStatus::FlushSlaveTimeout),
            response::SLAVE_NOT_AVAILABLE => Some(SendStatus::SlaveNotAvailable),
            _ => None,
        }
    }
}

/// The outcome of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The message's `UNIQ_KEY`.
    pub msg_id: String,
    /// Store host + CommitLog offset, as the broker reported it.
    pub offset_msg_id: String,
    pub queue: MessageQueue,
    pub queue_offset: i64,
    pub status: SendStatus,
    /// An idempotent send answered with the result of an earlier send of the same key: nothing
    /// new was stored, and `offset_msg_id`, `queue` and `queue_offset` are the earlier ones.
    /// (`msg_id` is this message's `UNIQ_KEY`; the stored one is the first send's.)
    pub replayed: bool,
}

/// The outcome of a batch send: every message went to `queue`, at consecutive offsets from
/// `queue_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSendResult {
    /// `UNIQ_KEY`s in the order of the batch.
    pub msg_ids: Vec<String>,
    pub offset_msg_ids: Vec<String>,
    pub queue: MessageQueue,
    pub queue_offset: i64,
    pub status: SendStatus,
}

/// A request ready to go to any queue of its topic.
pub(super) struct Prepared {
    pub(super) topic: String,
    code: i32,
    pub(super) header: SendMessageRequestHeader,
    body: Bytes,
}

impl Prepared {
    fn request(&self, queue: &MessageQueue) -> RemotingCommand {
        let mut header = self.header.clone();
        header.queue_id = queue.queue_id;
        header.broker_name = Some(queue.broker_name.clone());
        let mut command = RemotingCommand::request(self.code)
            .with_body(self.body.clone())
            .with_serialize_type(crate::protocol::SerializeType::RocketMq);
        header.write_v2(&mut command.ext_fields);
        command
    }
}

pub struct Producer {
    pub(super) config: ClientConfig,
    group: String,
    pub(super) retries: u32,
    remoting: Arc<RemotingClient>,
    routes: Arc<RouteCache>,
    /// Round-robin position per topic.
    counters: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// Set when this producer created its pool and cache (and so closes them).
    refresher: Option<JoinHandle<()>>,
    closed: AtomicBool,
}

impl Producer {
    /// A producer in `group` (any valid group name; brokers only check its syntax). Must be
    /// called inside a Tokio runtime: it starts the route refresher.
    pub fn new(config: ClientConfig, group: impl Into<String>) -> Result<Producer, ClientError> {
        config.validate()?;
        let (routes, refresher) = RouteCache::start(&config);
        let mut producer =
            Producer::with_parts(config, group, Arc::new(RemotingClient::new()), routes)?;
        producer.refresher = Some(refresher);
        Ok(producer)
    }

    /// A producer over an existing connection pool and route cache (whose owner refreshes and
    /// closes them), so one process's clients share connections and routes.
    pub fn with_parts(
        config: ClientConfig,
        group: impl Into<String>,
        remoting: Arc<RemotingClient>,
        routes: Arc<RouteCache>,
    ) -> Result<Producer, ClientError> {
        let group = group.into();
        check_group(&group)?;
        Ok(Producer {
            config,
            group,
            retries: DEFAULT_RETRIES,
            remoting,
            routes,
            counters: Mutex::new(HashMap::new()),
            refresher: None,
            closed: AtomicBool::new(false),
        })
    }

    /// Sets the number of extra attempts after a failed send (0..=[`MAX_RETRIES`]).
    pub fn with_retries(mut self, retries: u32) -> Producer {
        self.retries = retries.min(MAX_RETRIES);
        self
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// The producer's route cache (e.g. to list a topic's queues).
    pub fn routes(&self) -> &Arc<RouteCache> {
        &self.routes
    }

    /// The topic's route, from the cache or the NameServers.
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>, ClientError> {
        self.routes.route(topic).await
    }

    /// Sends one message to the next write queue, retrying on another broker after a failure.
    /// A message with an idempotency key goes to the queue its key hashes to instead, and is
    /// retried there only (see [`Self::send_idempotent`]).
    pub async fn send(&self, msg: &Message) -> Result<SendResult, ClientError> {
        if let Some(key) = msg.idempotency_key() {
            return self.send_keyed(msg, key).await;
        }
        let deadline = Instant::now() + self.config.request_timeout;
        let (prepared, msg_id) = self.prepare(msg)?;
        let (queue, header, status) = self.send_with_retries(&prepared, deadline).await?;
        Ok(SendResult {
            msg_id,
            offset_msg_id: header.msg_id,
            queue,
            replayed: header.idempotent_replayed == Some(true),
            queue_offset: header.queue_offset,
            status,
        })
    }

    /// Sends to the queue `key` maps to (`abs(javaHashCode(key) % n)` over the sorted write
    /// queues). No retry on another queue: that would break the key's order. A message with an
    /// idempotency key is retried on that same queue (a repeat is answered with the first
    /// result, so the retry cannot reorder or duplicate).
    pub async fn send_ordered(&self, msg: &Message, key: &str) -> Result<SendResult, ClientError> {
        if msg.idempotency_key().is_some() {
            return self.send_keyed(msg, key).await;
        }
        let deadline = Instant::now() + self.config.request_timeout;
        let (prepared, msg_id) = self.prepare(msg)?;
        let route = self.route_until(&prepared.topic, deadline).await?;
        let queue = route
            .queue_for_key(key)
            .ok_or_else(|| ClientError::NoWritableQueue {
                topic: prepared.topic.clone(),
            })?
            .clone();
        let (header, status) = self.attempt(&route, &prepared, &queue, deadline).await?;
        Ok(SendResult {
            msg_id,
            offset_msg_id: header.msg_id,
            queue,
            replayed: header.idempotent_replayed == Some(true),
            queue_offset: header.queue_offset,
            status,
        })
    }

    /// Sends to one given queue, without retry.
    pub async fn send_to_queue(
        &self,
        msg: &Message,
        queue: &MessageQueue,
    ) -> Result<SendResult, ClientError> {
        let (prepared, msg_id) = self.prepare(msg)?;
        let (header, status) = self.send_to_given_queue(&prepared, queue).await?;
        Ok(SendResult {
            msg_id,
            offset_msg_id: header.msg_id,
            queue: queue.clone(),
            replayed: header.idempotent_replayed == Some(true),
            queue_offset: header.queue_offset,
            status,
        })
    }

    /// Sends messages of one topic as one SEND_BATCH_MESSAGE: stored together, in order, in one
    /// queue. Retried on another broker like [`Self::send`].
    pub async fn send_batch(&self, msgs: &[Message]) -> Result<BatchSendResult, ClientError> {
        let deadline = Instant::now() + self.config.request_timeout;
        let (prepared, msg_ids) = self.prepare_batch(msgs)?;
        let (queue, header, status) = self.send_with_retries(&prepared, deadline).await?;
        Ok(batch_result(msg_ids, queue, header, status))
    }

    /// [`Self::send_batch`] to one given queue, without retry.
    pub async fn send_batch_to_queue(
        &self,
        msgs: &[Message],
        queue: &MessageQueue,
    ) -> Result<BatchSendResult, ClientError> {
        let (prepared, msg_ids) = self.prepare_batch(msgs)?;
        let (header, status) = self.send_to_given_queue(&prepared, queue).await?;
        Ok(batch_result(msg_ids, queue.clone(), header, status))
    }

    /// One attempt at a queue the caller chose (no retry elsewhere: the caller cares where).
    async fn send_to_given_queue(
        &self,
        prepared: &Prepared,
        queue: &MessageQueue,
    ) -> Result<(SendMessageResponseHeader, SendStatus), ClientError> {
        let deadline = Instant::now() + self.config.request_timeout;
        if queue.topic != prepared.topic {
            return Err(ClientError::InvalidMessage(format!(
                "a message of topic `{}` sent to a queue of `{}`",
                prepared.topic, queue.topic
            )));
        }
        let route = self.route_until(&prepared.topic, deadline).await?;
        self.attempt(&route, prepared, queue, deadline).await
    }

    /// Later sends fail with [`ClientError::Shutdown`]. A producer that owns its pool and cache
    /// also stops the route refresher and closes every connection (sends in flight then fail
    /// with a closed connection).
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(refresher) = &self.refresher {
            refresher.abort();
            self.remoting.close_all();
            self.routes.close();
        }
    }

    fn header(
        &self,
        topic: &str,
        properties: Option<String>,
        flag: i32,
    ) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: self.group.clone(),
            topic: topic.to_string(),
            default_topic: Some(DEFAULT_TOPIC.into()),
            default_topic_queue_nums: Some(DEFAULT_TOPIC_QUEUES),
            queue_id: 0,
            sys_flag: 0,
            born_timestamp: now_millis(),
            flag,
            properties,
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: None,
            broker_name: None,
        }
    }

    pub(super) fn prepare(&self, msg: &Message) -> Result<(Prepared, String), ClientError> {
        self.check_open()?;
        let (properties, msg_id) = msg.encode_properties()?;
        let prepared = Prepared {
            topic: msg.topic.clone(),
            code: request::SEND_MESSAGE_V2,
            header: self.header(&msg.topic, Some(properties), msg.flag),
            body: msg.body.clone(),
        };
        Ok((prepared, msg_id))
    }

    fn prepare_batch(&self, msgs: &[Message]) -> Result<(Prepared, Vec<String>), ClientError> {
        self.check_open()?;
        let (entries, msg_ids) = encode_batch_entries(msgs)?;
        let topic = msgs[0].topic.clone();
        let mut header = self.header(&topic, Some("WAIT\u{1}true\u{2}".into()), 0);
        header.batch = Some(true);
        let prepared = Prepared {
            topic,
            code: request::SEND_BATCH_MESSAGE,
            header,
            body: encode_batch(&entries),
        };
        Ok((prepared, msg_ids))
    }

    fn check_open(&self) -> Result<(), ClientError> {
        if self.closed.load(Ordering::Acquire) {
            Err(ClientError::Shutdown)
        } else {
            Ok(())
        }
    }

    pub(super) async fn route_until(
        &self,
        topic: &str,
        deadline: Instant,
    ) -> Result<Arc<TopicRoute>, ClientError> {
        tokio::time::timeout_at(deadline.into(), self.routes.route(topic))
            .await
            .map_err(|_| ClientError::Timeout {
                operation: "route lookup",
                after: self.config.request_timeout,
            })?
    }

    async fn send_with_retries(
        &self,
        prepared: &Prepared,
        deadline: Instant,
    ) -> Result<(MessageQueue, SendMessageResponseHeader, SendStatus), ClientError> {
        let counter = self.counter(&prepared.topic);
        let mut failed_brokers: Vec<String> = Vec::new();
        let mut last_error = None;
        for _ in 0..=self.retries {
            if Instant::now() >= deadline {
                break;
            }
            let route = self.route_until(&prepared.topic, deadline).await?;
            let queue = select_queue(&route.write_queues, &counter, &failed_brokers)
                .ok_or_else(|| ClientError::NoWritableQueue {
                    topic: prepared.topic.clone(),
                })?
                .clone();
            match self.attempt(&route, prepared, &queue, deadline).await {
                Ok((header, status)) => return Ok((queue, header, status)),
                Err(e) if e.is_retryable() => {
                    tracing::debug!(%queue, error = %e, "send failed; retrying on another broker");
                    failed_brokers.push(queue.broker_name.clone());
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(ClientError::Timeout {
            operation: "send",
            after: self.config.request_timeout,
        }))
    }

    /// One request to the master of `queue`'s broker, within what is left of the budget.
    pub(super) async fn attempt(
        &self,
        route: &TopicRoute,
        prepared: &Prepared,
        queue: &MessageQueue,
        deadline: Instant,
    ) -> Result<(SendMessageResponseHeader, SendStatus), ClientError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout {
                operation: "send",
                after: self.config.request_timeout,
            });
        }
        let Some(addr) = route.master_addr(&queue.broker_name) else {
            self.routes.mark_stale(&prepared.topic);
            return Err(ClientError::NoBrokerAddress {
                broker_name: queue.broker_name.clone(),
            });
        };
        let response = match self
            .remoting
            .invoke(addr, prepared.request(queue), left)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                self.routes.mark_stale(&prepared.topic);
                return Err(e.into());
            }
        };
        let Some(status) = SendStatus::from_code(response.code) else {
            if let Some(e) = idempotency_error(addr, prepared, &response) {
                return Err(e);
            }
            if matches!(
                response.code,
                response::SYSTEM_ERROR | response::TOPIC_NOT_EXIST | response::NO_PERMISSION
            ) {
                // A queue id the broker does not have, a topic it no longer has or no longer
                // takes writes for: the route may be out of date.
                self.routes.mark_stale(&prepared.topic);
            }
            return Err(ClientError::Broker {
                addr: addr.to_string(),
                code: response.code,
                remark: response.remark_or_empty().to_string(),
            });
        };
        let header = response
            .header::<SendMessageResponseHeader>()
            .map_err(|e| ClientError::Decode {
                what: "send response header",
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        Ok((header, status))
    }

    fn counter(&self, topic: &str) -> Arc<AtomicUsize> {
        let mut counters = self.counters.lock().expect("counters lock");
        if let Some(counter) = counters.get(topic) {
            return counter.clone();
        }
        if counters.len() >= MAX_CACHED_TOPICS {
            counters.clear();
        }
        // A random start, so that many producers started together do not all hit queue 0 first.
        let counter = Arc::new(AtomicUsize::new(random_u64() as usize));
        counters.insert(topic.to_string(), counter.clone());
        counter
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Connection tasks outlive the pool that made them: close the ones this producer made.
        // A pool shared through `with_parts` belongs to its owner.
        if let Some(refresher) = &self.refresher {
            refresher.abort();
            self.remoting.close_all();
        }
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("group", &self.group)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

/// The next queue round-robin, skipping brokers in `avoid` while another broker has a queue
/// (RocketMQ's `selectOneMessageQueue(lastBrokerName)`, extended to every failed broker).
pub(crate) fn select_queue<'a>(
    queues: &'a [MessageQueue],
    counter: &AtomicUsize,
    avoid: &[String],
) -> Option<&'a MessageQueue> {
    let n = queues.len();
    if n == 0 {
        return None;
    }
    let start = counter.fetch_add(1, Ordering::Relaxed);
    if !avoid.is_empty() {
        for i in 0..n {
            let queue = &queues[start.wrapping_add(i) % n];
            if !avoid.contains(&queue.broker_name) {
                return Some(queue);
            }
        }
    }
    Some(&queues[start % n])
}

/// Checks a batch and encodes its entries (RocketMQ's `MessageDecoder.encodeMessages` layout),
/// giving each message its `UNIQ_KEY`.
pub(crate) fn encode_batch_entries(
    msgs: &[Message],
) -> Result<(Vec<BatchEntry>, Vec<String>), ClientError> {
    let invalid = |msg: String| Err(ClientError::InvalidMessage(msg));
    let Some(first) = msgs.first() else {
        return invalid("the batch is empty".into());
    };
    if msgs.len() > MAX_BATCH_MESSAGES {
        return invalid(format!(
            "the batch has {} messages, at most {MAX_BATCH_MESSAGES} are allowed",
            msgs.len()
        ));
    }
    check_topic(&first.topic)?;
    let mut entries = Vec::with_capacity(msgs.len());
    let mut ids = Vec::with_capacity(msgs.len());
    let mut size = 0usize;
    for msg in msgs {
        if msg.topic != first.topic {
            return invalid(format!(
                "a batch goes to one topic; `{}` and `{}` differ",
                first.topic, msg.topic
            ));
        }
        if msg.properties.get(crate::store::property::DELAY).is_some() {
            return invalid("delayed messages cannot be sent in a batch".into());
        }
        if msg.idempotency_key().is_some() {
            return invalid(
                "messages with an idempotency key cannot be sent in a batch; send them one by one"
                    .into(),
            );
        }
        let (properties, id) = msg.encode_properties()?;
        size += 22 + msg.body.len() + properties.len();
        if size > MAX_MESSAGE_BODY {
            return invalid(format!(
                "the batch encodes to more than {MAX_MESSAGE_BODY} bytes"
            ));
        }
        entries.push(BatchEntry {
            flag: msg.flag,
            body: msg.body.clone(),
            properties,
        });
        ids.push(id);
    }
    Ok((entries, ids))
}

fn batch_result(
    msg_ids: Vec<String>,
    queue: MessageQueue,
    header: SendMessageResponseHeader,
    status: SendStatus,
) -> BatchSendResult {
    BatchSendResult {
        msg_ids,
        offset_msg_ids: header
            .msg_id
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect(),
        queue,
        queue_offset: header.queue_offset,
        status,
    }
}

/// Group names the broker accepts: 1..=120 of `[A-Za-z0-9%|_-]` (`%RETRY%<group>` must still be a
/// valid topic).
pub(crate) fn check_group(group: &str) -> Result<(), ClientError> {
    let ok = !group.is_empty()
        && group.len() <= 120
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidConfig(format!(
            "group `{}` must be 1..=120 characters of [A-Za-z0-9%|_-]",
            group.chars().take(200).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::decode_batch;

    fn queues() -> Vec<MessageQueue> {
        let mut v = Vec::new();
        for b in ["a", "b"] {
            for q in 0..2 {
                v.push(MessageQueue::new("T", b, q));
            }
        }
        v
    }

    #[test]
    fn round_robin_and_avoiding_failed_brokers() {
        let qs = queues();
        let counter = AtomicUsize::new(0);
        let picked: Vec<_> = (0..5)
            .map(|_| select_queue(&qs, &counter, &[]).unwrap().clone())
            .collect();
        assert_eq!(picked[..4], qs[..]);
        assert_eq!(picked[4], qs[0]);
        // After broker a failed, every pick is on b.
        for _ in 0..8 {
            let q = select_queue(&qs, &counter, &["a".into()]).unwrap();
            assert_eq!(q.broker_name, "b");
        }
        // Every broker failed: fall back to plain round robin.
        assert!(select_queue(&qs, &counter, &["a".into(), "b".into()]).is_some());
        assert!(select_queue(&[], &counter, &[]).is_none());
    }

    #[test]
    fn batch_body_has_rocketmq_layout() {
        let msgs = [
            Message::new("T", "ab")
                .with_flag(7)
                .with_property("UNIQ_KEY", "ID1"),
            Message::new("T", "")
                .with_tag("x")
                .with_property("UNIQ_KEY", "ID2"),
        ];
        let (entries, ids) = encode_batch_entries(&msgs).unwrap();
        assert_eq!(ids, ["ID1", "ID2"]);
        let body = encode_batch(&entries);
        let props1 = b"UNIQ_KEY\x01ID1\x02";
        let props2 = b"UNIQ_KEY\x01ID2\x02TAGS\x01x\x02";
        let mut expected = Vec::new();
        // [totalSize][magic 0][bodyCRC 0][flag][bodyLen][body][propsLen i16][props]
        expected.extend_from_slice(&(20 + 2 + 2 + props1.len() as i32).to_be_bytes());
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&(props1.len() as i16).to_be_bytes());
        expected.extend_from_slice(props1);
        expected.extend_from_slice(&(20 + 2 + props2.len() as i32).to_be_bytes());
        expected.extend_from_slice(&[0; 12]);
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&(props2.len() as i16).to_be_bytes());
        expected.extend_from_slice(props2);
        assert_eq!(&body[..], &expected[..]);
        assert_eq!(decode_batch(body).unwrap(), entries);
    }

    #[test]
    fn batch_checks() {
        let bad: [Vec<Message>; 4] = [
            vec![],
            vec![Message::new("A", "x"), Message::new("B", "x")],
            vec![Message::new("A", "x").with_property("DELAY", "3")],
            vec![Message::new("A", "x"); MAX_BATCH_MESSAGES + 1],
        ];
        for msgs in bad {
            assert!(matches!(
                encode_batch_entries(&msgs),
                Err(ClientError::InvalidMessage(_))
            ));
        }
        let (_, ids) =
            encode_batch_entries(&[Message::new("A", "x"), Message::new("A", "y")]).unwrap();
        assert_ne!(ids[0], ids[1]);
    }

    #[test]
    fn v2_request_carries_queue_and_broker() {
        let prepared = Prepared {
            topic: "T".into(),
            code: request::SEND_MESSAGE_V2,
            header: SendMessageRequestHeader {
                producer_group: "g".into(),
                topic: "T".into(),
                ..Default::default()
            },
            body: Bytes::from_static(b"x"),
        };
        let cmd = prepared.request(&MessageQueue::new("T", "broker-b", 3));
        assert_eq!(cmd.code, request::SEND_MESSAGE_V2);
        let header = SendMessageRequestHeader::read_v2(&cmd.ext_fields).unwrap();
        assert_eq!(header.queue_id, 3);
        assert_eq!(header.broker_name.as_deref(), Some("broker-b"));
        assert_eq!(cmd.ext("b"), Some("T"));
    }

    #[test]
    fn statuses() {
        assert_eq!(SendStatus::from_code(0), Some(SendStatus::Ok));
        assert_eq!(
            SendStatus::from_code(response::FLUSH_DISK_TIMEOUT),
            Some(SendStatus::FlushDiskTimeout)
        );
        assert_eq!(SendStatus::from_code(response::SYSTEM_BUSY), None);
        check_group("pg_1").unwrap();
        assert!(check_group("").is_err() && check_group("a b").is_err());
    }
}
