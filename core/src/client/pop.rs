//! Pop consumption: the broker assigns messages to the group, the client acks each one by its
//! receipt (RocketMQ 5's POP_MESSAGE / ACK_MESSAGE / CHANGE_MESSAGE_INVISIBLETIME).
//!
//! Unlike [`ConsumerGroup`](super::ConsumerGroup), no client owns a queue: any number of
//! [`PopConsumer`]s (in any processes) can receive from a group, and a message that is not acked
//! before its invisible time runs out comes back to some consumer with `delivery_attempt + 1`.
//! After the group's `retryMaxTimes` redeliveries the broker moves it to `%DLQ%<group>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::protocol::body::{
    BatchAckEntry, BatchAckRequestBody, BatchAckResponseBody, MAX_BATCH_ACKS,
    SubscriptionGroupConfig, decode_json, encode_json,
};
use crate::protocol::codes::{request, response};
use crate::protocol::headers::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader,
};
use crate::protocol::{RejectRequests, RemotingClient, RemotingCommand};
use crate::store::{now_millis, property};

use super::config::ClientConfig;
use super::error::ClientError;
use super::message::ReceivedMessage;
use super::producer::check_group;
use super::pull::{MAX_SUSPEND, SUSPEND_SLACK, for_each_record};
use super::route::{MessageQueue, RouteCache};

/// Most messages one receive asks for (the broker's `max_pull_messages`, 32 by default, may be
/// lower).
pub const MAX_RECEIVE: i32 = 1024;

/// What a receive asks for.
#[derive(Debug, Clone)]
pub struct ReceiveOptions {
    /// Most messages returned.
    pub max_messages: i32,
    /// How long the messages stay invisible to other receivers unless acked.
    pub invisible: Duration,
    /// How long to wait for a message when none is there (long polling), at most 60 s.
    pub wait: Duration,
    /// A tag expression (`*`, `A`, `A || B`).
    pub tag: String,
    /// Where a group that never received from a queue starts: its end (true) or its start.
    pub start_at_end: bool,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            max_messages: 16,
            invisible: Duration::from_secs(60),
            wait: Duration::from_secs(20),
            tag: "*".into(),
            start_at_end: false,
        }
    }
}

/// Names one delivery of a message, for ack, nack and visibility changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// The broker's receipt handle (`POP_CK`).
    pub handle: String,
}

/// A received message and how to acknowledge it.
#[derive(Debug, Clone)]
pub struct PoppedMessage {
    pub message: ReceivedMessage,
    pub receipt: Receipt,
    /// 1 on the first delivery, then 2, 3, ...
    pub delivery_attempt: i32,
}

pub struct PopConsumer {
    config: ClientConfig,
    group: String,
    remoting: Arc<RemotingClient<RejectRequests>>,
    routes: Arc<RouteCache>,
    /// Set when this consumer created its pool and cache (and so closes them).
    refresher: Option<JoinHandle<()>>,
    /// Rotates the broker a receive starts with, so that brokers share the load.
    rotation: AtomicUsize,
}

impl PopConsumer {
    /// Must be called inside a Tokio runtime: it starts the route refresher.
    pub fn new(config: ClientConfig, group: impl Into<String>) -> Result<PopConsumer, ClientError> {
        config.validate()?;
        let (routes, refresher) = RouteCache::start(&config);
        let mut consumer =
            PopConsumer::with_parts(config, group, Arc::new(RemotingClient::new()), routes)?;
        consumer.refresher = Some(refresher);
        Ok(consumer)
    }

    /// A pop consumer over an existing connection pool and route cache (whose owner refreshes
    /// and closes them). Cheap: a gateway makes one per group it serves.
    pub fn with_parts(
        config: ClientConfig,
        group: impl Into<String>,
        remoting: Arc<RemotingClient<RejectRequests>>,
        routes: Arc<RouteCache>,
    ) -> Result<PopConsumer, ClientError> {
        let group = group.into();
        check_group(&group)?;
        Ok(PopConsumer {
            config,
            group,
            remoting,
            routes,
            refresher: None,
            rotation: AtomicUsize::new(0),
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Receives up to `options.max_messages` messages of `topic`. Every broker of the topic is
    /// asked at once, in turn; when none has a message, the next one in turn is long-polled for
    /// `options.wait` (so a message arriving on another broker meanwhile waits for the next
    /// receive). An empty list means nothing arrived in time.
    pub async fn receive(
        &self,
        topic: &str,
        options: &ReceiveOptions,
    ) -> Result<Vec<PoppedMessage>, ClientError> {
        if !(1..=MAX_RECEIVE).contains(&options.max_messages) {
            return Err(ClientError::InvalidArgument(format!(
                "max_messages must be 1..={MAX_RECEIVE}"
            )));
        }
        let route = self.routes.route(topic).await?;
        let mut brokers: Vec<String> = route
            .read_queues
            .iter()
            .map(|q| q.broker_name.clone())
            .collect();
        brokers.dedup();
        if brokers.is_empty() {
            return Err(ClientError::NoRoute {
                topic: topic.to_string(),
            });
        }
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..brokers.len() {
            let broker = &brokers[(start + i) % brokers.len()];
            match self.pop_from(topic, broker, options, Duration::ZERO).await {
                Ok(found) if !found.is_empty() => return Ok(found),
                Ok(_) => {}
                Err(e) => last_error = Some(e),
            }
        }
        if options.wait.is_zero() {
            return last_error.map_or(Ok(Vec::new()), Err);
        }
        let broker = &brokers[start % brokers.len()];
        self.pop_from(topic, broker, options, options.wait.min(MAX_SUSPEND))
            .await
    }

    async fn pop_from(
        &self,
        topic: &str,
        broker_name: &str,
        options: &ReceiveOptions,
        wait: Duration,
    ) -> Result<Vec<PoppedMessage>, ClientError> {
        let header = PopMessageRequestHeader {
            consumer_group: self.group.clone(),
            topic: topic.to_string(),
            queue_id: -1,
            max_msg_nums: options.max_messages,
            invisible_time: options.invisible.as_millis() as i64,
            poll_time: wait.as_millis() as i64,
            born_time: now_millis(),
            init_mode: i32::from(options.start_at_end),
            exp_type: Some("TAG".into()),
            exp: Some(options.tag.clone()),
            order: None,
            attempt_id: None,
        };
        let timeout = self.config.request_timeout + wait + SUSPEND_SLACK;
        let req = RemotingCommand::request_with(request::POP_MESSAGE, &header);
        let (addr, resp) = self.call(topic, broker_name, req, timeout).await?;
        match resp.code {
            response::SUCCESS => {
                decode_popped(broker_name, &resp.body).map_err(|reason| ClientError::Decode {
                    what: "pop response body",
                    addr,
                    reason,
                })
            }
            response::PULL_NOT_FOUND | response::POLLING_TIMEOUT => Ok(Vec::new()),
            code => Err(broker_error(&addr, code, &resp)),
        }
    }

    /// Acknowledges a delivery: the message is done. A receipt whose delivery is no longer current
    /// (redelivered, already acked, or renewed by a visibility change) is refused with
    /// [`ClientError::StaleReceipt`].
    pub async fn ack(&self, receipt: &Receipt) -> Result<(), ClientError> {
        let header = AckMessageRequestHeader {
            consumer_group: self.group.clone(),
            topic: receipt.topic.clone(),
            queue_id: receipt.queue_id,
            extra_info: receipt.handle.clone(),
            offset: receipt.queue_offset,
        };
        let req = RemotingCommand::request_with(request::ACK_MESSAGE, &header);
        let (addr, resp) = self.call_for(receipt, req).await?;
        match resp.code {
            response::SUCCESS => Ok(()),
            code => Err(broker_error(&addr, code, &resp)),
        }
    }

    /// Acknowledges many deliveries at once: one request (and one broker journal record) per
    /// broker, topic and 1,024 receipts instead of one per receipt. The answer has a verdict per
    /// receipt, in order ([`ClientError::StaleReceipt`] for one that is no longer current); the
    /// outer error is for a request that failed as a whole (its receipts' fate is unknown, and
    /// acking them again is safe).
    pub async fn ack_many(
        &self,
        receipts: &[Receipt],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let mut verdicts: Vec<Option<Result<(), ClientError>>> =
            receipts.iter().map(|_| None).collect();
        // (broker, topic) → indexes into `receipts`.
        let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
        for (i, r) in receipts.iter().enumerate() {
            let target = (r.broker_name.as_str(), r.topic.as_str());
            match groups.iter_mut().find(|(t, _)| *t == target) {
                Some((_, list)) => list.push(i),
                None => groups.push((target, vec![i])),
            }
        }
        for ((broker_name, topic), indexes) in groups {
            for chunk in indexes.chunks(MAX_BATCH_ACKS) {
                let body = BatchAckRequestBody {
                    consumer_group: self.group.clone(),
                    topic: topic.to_string(),
                    acks: chunk
                        .iter()
                        .map(|&i| BatchAckEntry {
                            queue_id: receipts[i].queue_id,
                            offset: receipts[i].queue_offset,
                            extra_info: receipts[i].handle.clone(),
                        })
                        .collect(),
                };
                let req =
                    RemotingCommand::request(request::TERN_BATCH_ACK).with_body(encode_json(&body));
                let timeout = self.config.request_timeout;
                let (addr, resp) = self.call(topic, broker_name, req, timeout).await?;
                if resp.code != response::SUCCESS {
                    return Err(broker_error(&addr, resp.code, &resp));
                }
                let answer: BatchAckResponseBody =
                    decode_json(&resp.body).map_err(|reason| ClientError::Decode {
                        what: "batch ack response body",
                        addr: addr.clone(),
                        reason,
                    })?;
                if answer.codes.len() != chunk.len() {
                    return Err(ClientError::Decode {
                        what: "batch ack response body",
                        addr,
                        reason: format!("{} verdicts for {} acks", answer.codes.len(), chunk.len()),
                    });
                }
                for (&i, code) in chunk.iter().zip(answer.codes) {
                    verdicts[i] = Some(match code {
                        response::SUCCESS => Ok(()),
                        code => Err(broker_error(
                            &addr,
                            code,
                            &RemotingCommand::error(code, "stale receipt"),
                        )),
                    });
                }
            }
        }
        Ok(verdicts
            .into_iter()
            .map(|v| v.expect("every receipt belongs to one chunk"))
            .collect())
    }

    /// Keeps a delivery invisible for `invisible` from now (zero: visible at once) and returns the
    /// new receipt; the old one is stale from then on.
    pub async fn change_invisibility(
        &self,
        receipt: &Receipt,
        invisible: Duration,
    ) -> Result<Receipt, ClientError> {
        let header = ChangeInvisibleTimeRequestHeader {
            consumer_group: self.group.clone(),
            topic: receipt.topic.clone(),
            queue_id: receipt.queue_id,
            extra_info: receipt.handle.clone(),
            offset: receipt.queue_offset,
            invisible_time: invisible.as_millis() as i64,
        };
        let req = RemotingCommand::request_with(request::CHANGE_MESSAGE_INVISIBLETIME, &header);
        let (addr, resp) = self.call_for(receipt, req).await?;
        if resp.code != response::SUCCESS {
            return Err(broker_error(&addr, resp.code, &resp));
        }
        let answer: ChangeInvisibleTimeResponseHeader =
            resp.header().map_err(|e| ClientError::Decode {
                what: "change invisible time response header",
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let handle = answer.extra_info.ok_or_else(|| ClientError::Decode {
            what: "change invisible time response header",
            addr,
            reason: "no extraInfo (the new receipt handle)".into(),
        })?;
        Ok(Receipt {
            handle,
            ..receipt.clone()
        })
    }

    /// Gives a delivery back: it is delivered again after `delay` (zero: now), as the next
    /// attempt, or goes to the dead-letter queue once the group's attempts are used up.
    pub async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<(), ClientError> {
        self.change_invisibility(receipt, delay).await.map(|_| ())
    }

    /// Creates or updates the group's settings (FIFO, redeliveries before the dead-letter queue)
    /// on every master broker of `topic`'s route.
    pub async fn configure_group(
        &self,
        topic: &str,
        config: &SubscriptionGroupConfig,
    ) -> Result<(), ClientError> {
        let route = self.routes.route(topic).await?;
        for addr in route.master_addrs() {
            let req = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(encode_json(config));
            let resp = self
                .remoting
                .invoke(&addr, req, self.config.request_timeout)
                .await?;
            if resp.code != response::SUCCESS {
                return Err(broker_error(&addr, resp.code, &resp));
            }
        }
        Ok(())
    }

    /// A call to the broker that delivered `receipt`.
    async fn call_for(
        &self,
        receipt: &Receipt,
        req: RemotingCommand,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let timeout = self.config.request_timeout;
        self.call(&receipt.topic, &receipt.broker_name, req, timeout)
            .await
    }

    async fn call(
        &self,
        topic: &str,
        broker_name: &str,
        req: RemotingCommand,
        timeout: Duration,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let route = self.routes.route(topic).await?;
        // In-flight state lives on the master: pops and acks go there.
        let Some(addr) = route.master_addr(broker_name) else {
            self.routes.mark_stale(topic);
            return Err(ClientError::NoBrokerAddress {
                broker_name: broker_name.to_string(),
            });
        };
        match self.remoting.invoke(addr, req, timeout).await {
            Ok(resp) => Ok((addr.to_string(), resp)),
            Err(e) => {
                self.routes.mark_stale(topic);
                Err(e.into())
            }
        }
    }

    /// Closes every connection and stops the route refresher, if this consumer owns them.
    pub fn shutdown(&self) {
        if let Some(refresher) = &self.refresher {
            refresher.abort();
            self.routes.close();
            self.remoting.close_all();
        }
    }
}

impl Drop for PopConsumer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn broker_error(addr: &str, code: i32, resp: &RemotingCommand) -> ClientError {
    if code == response::RECEIPT_HANDLE_STALE {
        return ClientError::StaleReceipt(resp.remark_or_empty().to_string());
    }
    ClientError::Broker {
        addr: addr.to_string(),
        code,
        remark: resp.remark_or_empty().to_string(),
    }
}

/// Records back to back, each with its receipt handle in `POP_CK`.
fn decode_popped(broker_name: &str, body: &Bytes) -> Result<Vec<PoppedMessage>, String> {
    let mut popped = Vec::new();
    for_each_record(body, |record| {
        let queue = MessageQueue::new(record.topic, broker_name, record.queue_id);
        let message = ReceivedMessage::from_record(&queue, record, body);
        let handle = message
            .properties
            .get(property::POP_CK)
            .ok_or_else(|| format!("message at offset {} has no POP_CK", record.queue_offset))?
            .to_string();
        popped.push(PoppedMessage {
            receipt: Receipt {
                topic: record.topic.to_string(),
                broker_name: broker_name.to_string(),
                queue_id: record.queue_id,
                queue_offset: record.queue_offset as i64,
                handle,
            },
            delivery_attempt: record.reconsume_times.saturating_add(1),
            message,
        });
        Ok(())
    })?;
    Ok(popped)
}
