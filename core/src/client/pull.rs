//! [`PullConsumer`]: reading a queue by offset, and the consumer-offset calls.
//!
//! The low-level building block: the gateway's stateless pull and the consumer group's queue
//! tasks both go through [`PullConsumer::pull`]. A pull response's body is the queue's records
//! exactly as the CommitLog holds them (reference §2); they are decoded with the store's own
//! decoder, body CRC checked, so a damaged record is an error rather than a wrong message. The
//! broker filters tags by hash code; the exact tag is checked here again (reference §8).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::protocol::codes::{request, response};
use crate::protocol::headers::{
    ConsumerSendMsgBackRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, QueueRequestHeader,
    SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader, pull_sys_flag,
};
use crate::protocol::{RejectRequests, RemotingClient, RemotingCommand, RequestHandler};
use crate::store::{Entry, RecordView, decode_record, find_property, now_millis, property};

use super::config::ClientConfig;
use super::error::ClientError;
use super::message::ReceivedMessage;
use super::producer::check_group;
use super::route::{MessageQueue, RouteCache};
use super::subscription::Subscription;

/// Extra time a suspended pull waits for its response beyond the suspend time: the broker
/// answers at the end of the suspension, and the answer needs time to arrive.
pub const SUSPEND_SLACK: Duration = Duration::from_secs(5);
/// Longest suspension asked of a broker (the broker's own cap).
pub const MAX_SUSPEND: Duration = Duration::from_secs(60);
/// Most messages one pull asks for (brokers cap it lower: 32 by default).
pub const MAX_PULL_MESSAGES: i32 = 1024;

/// What a pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages were read (after the exact tag check the list may be empty).
    Found,
    /// Nothing at or after the offset yet (PULL_NOT_FOUND).
    NoNewMsg,
    /// Entries were there but none matched the tags (PULL_RETRY_IMMEDIATELY).
    NoMatchedMsg,
    /// The offset is outside `[min_offset, max_offset]` (PULL_OFFSET_MOVED): restart from
    /// `next_begin_offset`.
    OffsetIllegal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullResult {
    pub status: PullStatus,
    /// Where the next pull of this queue starts.
    pub next_begin_offset: i64,
    pub min_offset: i64,
    pub max_offset: i64,
    pub messages: Vec<ReceivedMessage>,
}

/// Pulls and offset calls against the brokers of any topic.
pub struct PullConsumer<H: RequestHandler = RejectRequests> {
    config: ClientConfig,
    group: String,
    remoting: Arc<RemotingClient<H>>,
    routes: Arc<RouteCache>,
    /// Set when this consumer created its pool and cache (and so closes them).
    refresher: Option<JoinHandle<()>>,
}

impl PullConsumer<RejectRequests> {
    /// A pull consumer for `group` (sent with every pull; brokers check only its syntax). Must be
    /// called inside a Tokio runtime: it starts the route refresher.
    pub fn new(config: ClientConfig, group: impl Into<String>) -> Result<Self, ClientError> {
        config.validate()?;
        let (routes, refresher) = RouteCache::start(&config);
        let mut consumer =
            PullConsumer::with_parts(config, group, Arc::new(RemotingClient::new()), routes)?;
        consumer.refresher = Some(refresher);
        Ok(consumer)
    }
}

impl<H: RequestHandler> PullConsumer<H> {
    /// A pull consumer over an existing connection pool and route cache (whose owner refreshes
    /// it).
    pub fn with_parts(
        config: ClientConfig,
        group: impl Into<String>,
        remoting: Arc<RemotingClient<H>>,
        routes: Arc<RouteCache>,
    ) -> Result<Self, ClientError> {
        let group = group.into();
        check_group(&group)?;
        Ok(PullConsumer {
            config,
            group,
            remoting,
            routes,
            refresher: None,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn routes(&self) -> &Arc<RouteCache> {
        &self.routes
    }

    pub fn remoting(&self) -> &Arc<RemotingClient<H>> {
        &self.remoting
    }

    /// The topic's readable queues, sorted.
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self.routes.route(topic).await?.read_queues.clone())
    }

    /// Reads up to `max_msgs` messages of `queue` from `offset`. With `suspend`, a pull at the
    /// head of the queue waits up to that long for a message (long polling).
    pub async fn pull(
        &self,
        queue: &MessageQueue,
        offset: i64,
        max_msgs: i32,
        suspend: Option<Duration>,
        subscription: &Subscription,
    ) -> Result<PullResult, ClientError> {
        if offset < 0 {
            return Err(ClientError::InvalidArgument(format!(
                "pull offset {offset} is negative"
            )));
        }
        let suspend = suspend.map(|s| s.min(MAX_SUSPEND));
        let mut sys_flag = pull_sys_flag::SUBSCRIPTION;
        if suspend.is_some() {
            sys_flag |= pull_sys_flag::SUSPEND;
        }
        let header = PullMessageRequestHeader {
            consumer_group: self.group.clone(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            queue_offset: offset,
            max_msg_nums: max_msgs.clamp(1, MAX_PULL_MESSAGES),
            sys_flag,
            commit_offset: 0,
            suspend_timeout_millis: suspend.map_or(0, |s| s.as_millis() as i64),
            subscription: Some(subscription.expression().to_string()),
            sub_version: now_millis(),
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
        };
        let timeout = suspend.map_or(self.config.request_timeout, |s| s + SUSPEND_SLACK);
        let (addr, resp) = self
            .call(
                queue,
                RemotingCommand::request_with(request::PULL_MESSAGE, &header),
                timeout,
            )
            .await?;
        let status = match resp.code {
            response::SUCCESS => PullStatus::Found,
            response::PULL_NOT_FOUND => PullStatus::NoNewMsg,
            response::PULL_RETRY_IMMEDIATELY => PullStatus::NoMatchedMsg,
            response::PULL_OFFSET_MOVED => PullStatus::OffsetIllegal,
            code => return Err(broker_error(&addr, code, &resp)),
        };
        let header: PullMessageResponseHeader = resp.header().map_err(|e| ClientError::Decode {
            what: "pull response header",
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
        let messages = if status == PullStatus::Found {
            decode_pull_body(queue, &resp.body, subscription).map_err(|reason| {
                ClientError::Decode {
                    what: "pull response body",
                    addr: addr.clone(),
                    reason,
                }
            })?
        } else {
            Vec::new()
        };
        Ok(PullResult {
            status,
            next_begin_offset: header.next_begin_offset,
            min_offset: header.min_offset,
            max_offset: header.max_offset,
            messages,
        })
    }

    /// CONSUMER_SEND_MSG_BACK: hands `msg` back to its broker for redelivery to `group` through
    /// `%RETRY%<group>` (`delay_level` 0: the broker's growing delay; < 0: the dead-letter queue).
    pub async fn send_back(
        &self,
        group: &str,
        msg: &ReceivedMessage,
        delay_level: i32,
    ) -> Result<(), ClientError> {
        let header = ConsumerSendMsgBackRequestHeader {
            offset: msg.commit_log_offset as i64,
            group: group.to_string(),
            delay_level,
            origin_msg_id: Some(msg.msg_id.clone()),
            origin_topic: Some(msg.topic().to_string()),
            unit_mode: Some(false),
            max_reconsume_times: None,
        };
        let (addr, resp) = self
            .call(
                &msg.queue,
                RemotingCommand::request_with(request::CONSUMER_SEND_MSG_BACK, &header),
                self.config.request_timeout,
            )
            .await?;
        match resp.code {
            response::SUCCESS => Ok(()),
            code => Err(broker_error(&addr, code, &resp)),
        }
    }

    /// The group's committed offset of `queue`; `None` when the group never committed one.
    pub async fn fetch_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
    ) -> Result<Option<i64>, ClientError> {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            // "Never committed" must stay distinguishable from "committed 0", so that
            // consume-from-last can start at the end of a queue that still has its first message.
            set_zero_if_not_found: Some(false),
        };
        let (addr, resp) = self
            .call(
                queue,
                RemotingCommand::request_with(request::QUERY_CONSUMER_OFFSET, &header),
                self.config.request_timeout,
            )
            .await?;
        match resp.code {
            response::SUCCESS => Ok(Some(offset_header(&addr, &resp)?)),
            response::QUERY_NOT_FOUND => Ok(None),
            code => Err(broker_error(&addr, code, &resp)),
        }
    }

    /// Stores the group's offset of `queue` on the broker.
    pub async fn commit_offset(
        &self,
        group: &str,
        queue: &MessageQueue,
        offset: i64,
    ) -> Result<(), ClientError> {
        if offset < 0 {
            return Err(ClientError::InvalidArgument(format!(
                "commit offset {offset} is negative"
            )));
        }
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.to_string(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            commit_offset: offset,
        };
        let (addr, resp) = self
            .call(
                queue,
                RemotingCommand::request_with(request::UPDATE_CONSUMER_OFFSET, &header),
                self.config.request_timeout,
            )
            .await?;
        match resp.code {
            response::SUCCESS => Ok(()),
            code => Err(broker_error(&addr, code, &resp)),
        }
    }

    /// The queue's first offset still stored.
    pub async fn min_offset(&self, queue: &MessageQueue) -> Result<i64, ClientError> {
        self.queue_offset(request::GET_MIN_OFFSET, queue).await
    }

    /// The queue's next offset (one past the last message).
    pub async fn max_offset(&self, queue: &MessageQueue) -> Result<i64, ClientError> {
        self.queue_offset(request::GET_MAX_OFFSET, queue).await
    }

    /// The offset of the first message stored at or after `timestamp_ms`.
    pub async fn search_offset(
        &self,
        queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> Result<i64, ClientError> {
        let header = SearchOffsetRequestHeader {
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            timestamp: timestamp_ms,
        };
        let (addr, resp) = self
            .call(
                queue,
                RemotingCommand::request_with(request::SEARCH_OFFSET_BY_TIMESTAMP, &header),
                self.config.request_timeout,
            )
            .await?;
        match resp.code {
            response::SUCCESS => offset_header(&addr, &resp),
            code => Err(broker_error(&addr, code, &resp)),
        }
    }

    /// Closes every connection and stops the route refresher if this consumer owns it.
    pub fn shutdown(&self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
        self.remoting.close_all();
        self.routes.close();
    }

    async fn queue_offset(&self, code: i32, queue: &MessageQueue) -> Result<i64, ClientError> {
        let header = QueueRequestHeader {
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
        };
        let (addr, resp) = self
            .call(
                queue,
                RemotingCommand::request_with(code, &header),
                self.config.request_timeout,
            )
            .await?;
        match resp.code {
            response::SUCCESS => offset_header(&addr, &resp),
            code => Err(broker_error(&addr, code, &resp)),
        }
    }

    /// Sends `req` to the broker serving `queue`; a transport failure marks the route stale.
    async fn call(
        &self,
        queue: &MessageQueue,
        req: RemotingCommand,
        timeout: Duration,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let route = self.routes.route(&queue.topic).await?;
        let Some(addr) = route.read_addr(&queue.broker_name) else {
            self.routes.mark_stale(&queue.topic);
            return Err(ClientError::NoBrokerAddress {
                broker_name: queue.broker_name.clone(),
            });
        };
        match self.remoting.invoke(addr, req, timeout).await {
            Ok(resp) => Ok((addr.to_string(), resp)),
            Err(e) => {
                self.routes.mark_stale(&queue.topic);
                Err(e.into())
            }
        }
    }
}

impl<H: RequestHandler> Drop for PullConsumer<H> {
    fn drop(&mut self) {
        // Connection tasks outlive the pool that made them: close the ones this consumer made.
        // A pool shared through `with_parts` belongs to its owner.
        if let Some(refresher) = &self.refresher {
            refresher.abort();
            self.remoting.close_all();
        }
    }
}

fn broker_error(addr: &str, code: i32, resp: &RemotingCommand) -> ClientError {
    ClientError::Broker {
        addr: addr.to_string(),
        code,
        remark: resp.remark_or_empty().to_string(),
    }
}

fn offset_header(addr: &str, resp: &RemotingCommand) -> Result<i64, ClientError> {
    resp.header::<OffsetResponseHeader>()
        .map(|h| h.offset)
        .map_err(|e| ClientError::Decode {
            what: "offset response header",
            addr: addr.to_string(),
            reason: e.to_string(),
        })
}

/// Decodes a pull body (records back to back), checking each body's CRC, and keeps the messages
/// whose tag passes the exact check. Anything but whole records is an error.
pub fn decode_pull_body(
    queue: &MessageQueue,
    body: &Bytes,
    subscription: &Subscription,
) -> Result<Vec<ReceivedMessage>, String> {
    let mut messages = Vec::new();
    for_each_record(body, |record| {
        if subscription.matches(find_property(record.properties, property::TAGS)) {
            messages.push(ReceivedMessage::from_record(queue, record, body));
        }
        Ok(())
    })?;
    Ok(messages)
}

/// Calls `f` with every record of a body of records back to back (pull and pop answers),
/// checking each body's CRC. Anything but whole records is an error.
pub(crate) fn for_each_record(
    body: &Bytes,
    mut f: impl FnMut(&RecordView<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut pos = 0usize;
    while pos < body.len() {
        let record = match decode_record(&body[pos..], true) {
            Ok(Entry::Record(record)) => record,
            Ok(Entry::Blank | Entry::Unwritten) => {
                return Err(format!("no record at byte {pos} of {}", body.len()));
            }
            Err(e) => return Err(format!("record at byte {pos}: {e}")),
        };
        pos += record.total_size as usize;
        f(&record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::store::{Message as StoreMessage, StoreConfig};

    /// Records as a broker's pull body holds them: appended by a real store, read back raw.
    fn records(tags: &[&str]) -> (tempfile::TempDir, Bytes) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::for_tests(dir.path().join("s"));
        config.store_host = "127.0.0.1:10911".parse::<SocketAddr>().unwrap();
        let store = crate::store::MessageStore::open(config).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (i, tag) in tags.iter().enumerate() {
            let m = StoreMessage::new("T", 0, format!("body-{i}"))
                .with_property("TAGS", *tag)
                .with_property("UNIQ_KEY", format!("ID{i}"))
                .with_property("KEYS", "k1 k2");
            rt.block_on(store.put_message(m)).unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.dispatched_physical_offset() < store.max_physical_offset() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = store.get_messages("T", 0, 0, 100, 1 << 20, None);
        let mut body = Vec::new();
        for m in &got.messages {
            body.extend_from_slice(&m.bytes);
        }
        store.close().unwrap();
        (dir, Bytes::from(body))
    }

    #[test]
    fn decodes_records_and_rechecks_tags() {
        // "Aa" and "BB" have the same Java hash: a broker filtering on "Aa" returns both.
        let (_dir, body) = records(&["Aa", "BB", "Aa", "C"]);
        let queue = MessageQueue::new("T", "broker-a", 0);
        let all = decode_pull_body(&queue, &body, &Subscription::all()).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].queue_offset, 1);
        assert_eq!(&all[1].body[..], b"body-1");
        assert_eq!(all[1].msg_id, "ID1");
        assert_eq!(all[1].tag(), Some("BB"));
        assert_eq!(all[1].keys().collect::<Vec<_>>(), ["k1", "k2"]);
        assert_eq!(all[1].queue, queue);
        assert_eq!(all[1].store_host, "127.0.0.1:10911".parse().unwrap());
        assert_eq!(
            crate::store::parse_offset_message_id(&all[1].offset_msg_id),
            Some((all[1].store_host, all[1].commit_log_offset))
        );

        let aa = Subscription::parse("Aa").unwrap();
        let only = decode_pull_body(&queue, &body, &aa).unwrap();
        assert_eq!(
            only.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
            [0, 2]
        );
    }

    #[test]
    fn damaged_bodies_are_errors_not_panics() {
        let (_dir, body) = records(&["a", "b"]);
        let queue = MessageQueue::new("T", "b", 0);
        let all = Subscription::all();
        let first_len = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
        assert_eq!(
            decode_pull_body(&queue, &body.slice(..first_len), &all)
                .unwrap()
                .len(),
            1
        );
        for cut in (1..body.len()).filter(|&c| c != first_len) {
            assert!(
                decode_pull_body(&queue, &body.slice(..cut), &all).is_err(),
                "{cut}"
            );
        }
        // A flipped body byte fails the CRC.
        let mut damaged = body.to_vec();
        let at = damaged.windows(6).position(|w| w == b"body-0").unwrap();
        damaged[at] ^= 1;
        assert!(decode_pull_body(&queue, &Bytes::from(damaged), &all).is_err());
        assert!(decode_pull_body(&queue, &Bytes::from(vec![0u8; 64]), &all).is_err());
        assert!(
            decode_pull_body(&queue, &Bytes::new(), &all)
                .unwrap()
                .is_empty()
        );
    }
}
