//! Message lookups: by message id (QUERY_MESSAGE on the `UNIQ_KEY`, or VIEW_MESSAGE_BY_ID for an
//! offset message id) and by key (QUERY_MESSAGE on a `KEYS` token).
//!
//! Brokers index each message's `UNIQ_KEY` and every `KEYS` token per topic in their IndexFiles.
//! The index narrows by hash; a Tern broker re-reads each candidate record and answers only exact
//! matches of the topic, key and time range, and the client checks all of it again (a RocketMQ
//! broker matches `UNIQ_KEY` and `KEYS` alike, and nothing a peer sends is taken on trust).
//! Answers are the stored records, decoded with the pull path's decoder (body CRC checked).
//!
//! A lookup asks every broker group of the topic's route at once. It never presents an answer a
//! broker that failed could have changed: a key lookup fails if any broker failed, and an id that
//! was not found is an error rather than `None` when a broker failed.

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::future::join_all;

use crate::protocol::RemotingCommand;
use crate::protocol::codes::{request, response};
use crate::protocol::headers::{QueryMessageRequestHeader, ViewMessageRequestHeader};
use crate::store::{MAX_PROPERTIES_SIZE, MAX_QUERY_RESULTS, parse_offset_message_id, property};

use super::super::error::ClientError;
use super::super::message::ReceivedMessage;
use super::super::pull::for_each_record;
use super::super::route::{MessageQueue, TopicRoute};
use super::{Admin, broker_error};

/// Candidates one broker is asked for by message id: RocketMQ brokers cap a unique-key query at
/// their `defaultQueryMaxNum` (32) anyway.
const MAX_ID_CANDIDATES: i32 = 32;
/// The extension field that marks a QUERY_MESSAGE as a lookup by `UNIQ_KEY` (RocketMQ's
/// `MixAll.UNIQUE_MSG_QUERY_FLAG`).
const UNIQUE_KEY_QUERY_FLAG: &str = "_UNIQUE_KEY_QUERY";

impl Admin {
    /// The message of `topic` whose id is `message_id`: the producer's `UNIQ_KEY` (what
    /// [`SendResult::msg_id`](crate::client::SendResult::msg_id) carries), looked up in every
    /// broker's index, or else an offset message id (store host + CommitLog offset,
    /// [`SendResult::offset_msg_id`](crate::client::SendResult::offset_msg_id)) of a broker in the
    /// topic's route, read with VIEW_MESSAGE_BY_ID. Only addresses of the route are ever
    /// contacted, whatever address an id names.
    ///
    /// `None` when no broker has it. A `UNIQ_KEY` stored more than once (a send retried after a
    /// lost answer) gives the copy stored first. The returned message names its broker
    /// (`queue.broker_name`), queue and queue offset; `msg_id` and `store_timestamp` are set.
    pub async fn message_by_id(
        &self,
        topic: &str,
        message_id: &str,
    ) -> Result<Option<ReceivedMessage>, ClientError> {
        check_key("message id", message_id)?;
        let route = self.route(topic).await?;
        let brokers = brokers_of(&route)?;
        let queries = brokers.iter().map(|(name, addr)| {
            self.query(
                topic,
                name,
                addr,
                message_id,
                MAX_ID_CANDIDATES,
                (0, i64::MAX),
                true,
            )
        });
        let mut found = Vec::new();
        let mut failed = None;
        for answer in join_all(queries).await {
            match answer {
                Ok(messages) => found.extend(messages.into_iter().filter(|m| {
                    m.queue.topic == topic && m.property(property::UNIQ_KEY) == Some(message_id)
                })),
                Err(e) => failed = Some(e),
            }
        }
        if let Some(first) = found
            .into_iter()
            .min_by(|a, b| store_order(a).cmp(&store_order(b)))
        {
            return Ok(Some(first));
        }
        match self.view_by_offset_id(&route, topic, message_id).await? {
            Some(message) => Ok(Some(message)),
            None => failed.map_or(Ok(None), Err),
        }
    }

    /// Messages of `topic` with `key` among their `KEYS`, stored within `[begin_ms, end_ms]`,
    /// from every broker of the route: the newest `max` of them (at most
    /// [`MAX_QUERY_RESULTS`]), returned oldest first (by store time, then broker and CommitLog
    /// offset). Each broker is asked for `max`, and the index also counts messages whose
    /// `UNIQ_KEY` is `key`, so fewer than `max` may come back while more exist. `max = 0` asks
    /// nothing.
    pub async fn messages_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        check_key("key", key)?;
        if begin_ms > end_ms {
            return Err(ClientError::InvalidArgument(format!(
                "begin {begin_ms} is after end {end_ms}"
            )));
        }
        super::check_topic_arg(topic)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(MAX_QUERY_RESULTS);
        let route = self.route(topic).await?;
        let brokers = brokers_of(&route)?;
        let queries = brokers.iter().map(|(name, addr)| {
            self.query(
                topic,
                name,
                addr,
                key,
                max as i32,
                (begin_ms, end_ms),
                false,
            )
        });
        let mut found = Vec::new();
        for answer in join_all(queries).await {
            found.extend(answer?.into_iter().filter(|m| {
                m.queue.topic == topic
                    && (begin_ms..=end_ms).contains(&m.store_timestamp)
                    && m.keys().any(|k| k == key)
            }));
        }
        found.sort_by(|a, b| store_order(a).cmp(&store_order(b)));
        found.dedup_by(|a, b| {
            a.queue.broker_name == b.queue.broker_name && a.commit_log_offset == b.commit_log_offset
        });
        let excess = found.len().saturating_sub(max);
        found.drain(..excess);
        Ok(found)
    }

    /// One QUERY_MESSAGE to one broker; QUERY_NOT_FOUND is an empty answer.
    #[allow(clippy::too_many_arguments)]
    async fn query(
        &self,
        topic: &str,
        broker_name: &str,
        addr: &str,
        key: &str,
        max: i32,
        (begin_ms, end_ms): (i64, i64),
        unique_key: bool,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let header = QueryMessageRequestHeader {
            topic: topic.to_string(),
            key: key.to_string(),
            max_num: max,
            begin_timestamp: begin_ms,
            end_timestamp: end_ms,
        };
        let mut req = RemotingCommand::request_with(request::QUERY_MESSAGE, &header);
        if unique_key {
            req.ext_fields
                .insert(UNIQUE_KEY_QUERY_FLAG.into(), "true".into());
        }
        let resp = self.invoke_for(topic, addr, req).await?;
        match resp.code {
            response::SUCCESS => {
                decode_records(broker_name, &resp.body).map_err(|reason| ClientError::Decode {
                    what: "query message response body",
                    addr: addr.to_string(),
                    reason,
                })
            }
            response::QUERY_NOT_FOUND => Ok(Vec::new()),
            _ => Err(broker_error(addr, &resp)),
        }
    }

    /// VIEW_MESSAGE_BY_ID when `id` is an offset message id naming a broker of the route.
    async fn view_by_offset_id(
        &self,
        route: &TopicRoute,
        topic: &str,
        id: &str,
    ) -> Result<Option<ReceivedMessage>, ClientError> {
        let Some((host, offset)) = parse_offset_message_id(id) else {
            return Ok(None);
        };
        let Ok(offset_i64) = i64::try_from(offset) else {
            return Ok(None);
        };
        let Some((broker_name, addr)) = route.brokers.iter().find_map(|(name, members)| {
            members
                .values()
                .find(|a| a.parse::<SocketAddr>().ok() == Some(host))
                .map(|a| (name, a))
        }) else {
            return Ok(None);
        };
        let header = ViewMessageRequestHeader {
            offset: offset_i64,
            topic: Some(topic.to_string()),
        };
        let req = RemotingCommand::request_with(request::VIEW_MESSAGE_BY_ID, &header);
        let resp = self.invoke_for(topic, addr, req).await?;
        match resp.code {
            response::SUCCESS => {}
            // RocketMQ's answer for "no message starts at that offset".
            response::SYSTEM_ERROR => return Ok(None),
            _ => return Err(broker_error(addr, &resp)),
        }
        let messages =
            decode_records(broker_name, &resp.body).map_err(|reason| ClientError::Decode {
                what: "view message response body",
                addr: addr.to_string(),
                reason,
            })?;
        Ok(messages.into_iter().find(|m| {
            m.queue.topic == topic && m.commit_log_offset == offset && m.store_host == host
        }))
    }

    /// A call to a broker of `topic`'s route; a transport failure marks the route stale.
    async fn invoke_for(
        &self,
        topic: &str,
        addr: &str,
        req: RemotingCommand,
    ) -> Result<RemotingCommand, ClientError> {
        self.remoting
            .invoke(addr, req, self.config.request_timeout)
            .await
            .map_err(|e| {
                self.routes.mark_stale(topic);
                e.into()
            })
    }
}

/// Each broker group of the route with the address to read from (the master, or a slave while
/// the master is not registered).
fn brokers_of(route: &TopicRoute) -> Result<Vec<(String, String)>, ClientError> {
    let brokers: Vec<(String, String)> = route
        .brokers
        .keys()
        .filter_map(|name| Some((name.clone(), route.read_addr(name)?.to_string())))
        .collect();
    if brokers.is_empty() {
        return Err(ClientError::NoRoute {
            topic: route.topic.clone(),
        });
    }
    Ok(brokers)
}

/// A message id or key argument: what a property value (and, for keys, a `KEYS` token) can hold.
fn check_key(what: &str, key: &str) -> Result<(), ClientError> {
    if key.is_empty() || key.len() > MAX_PROPERTIES_SIZE {
        return Err(ClientError::InvalidArgument(format!(
            "{what} must be 1..={MAX_PROPERTIES_SIZE} bytes, got {}",
            key.len()
        )));
    }
    if key.contains([property::KEY_SEPARATOR, '\u{1}', '\u{2}']) {
        return Err(ClientError::InvalidArgument(format!(
            "{what} `{}` contains a space or a property separator",
            key.chars().take(100).collect::<String>().escape_debug()
        )));
    }
    Ok(())
}

/// The order lookups report messages in.
fn store_order(m: &ReceivedMessage) -> (i64, &str, u64) {
    (m.store_timestamp, &m.queue.broker_name, m.commit_log_offset)
}

/// The records of a lookup answer, each with its queue on `broker_name`; more than
/// [`MAX_QUERY_RESULTS`] records is an error.
fn decode_records(broker_name: &str, body: &Bytes) -> Result<Vec<ReceivedMessage>, String> {
    let mut messages = Vec::new();
    for_each_record(body, |record| {
        if messages.len() >= MAX_QUERY_RESULTS {
            return Err(format!("more than {MAX_QUERY_RESULTS} records"));
        }
        let queue = MessageQueue::new(record.topic, broker_name, record.queue_id);
        messages.push(ReceivedMessage::from_record(&queue, record, body));
        Ok(())
    })?;
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        check_key("key", "order-1").unwrap();
        check_key("key", &"k".repeat(MAX_PROPERTIES_SIZE)).unwrap();
        for bad in [
            String::new(),
            "a b".into(),
            "a\u{2}".into(),
            "k".repeat(MAX_PROPERTIES_SIZE + 1),
        ] {
            assert!(matches!(
                check_key("key", &bad),
                Err(ClientError::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn damaged_answers_are_errors() {
        assert!(decode_records("b", &Bytes::new()).unwrap().is_empty());
        assert!(decode_records("b", &Bytes::from_static(&[0, 0, 0, 9, 1, 2])).is_err());
        assert!(decode_records("b", &Bytes::from(vec![0u8; 64])).is_err());
    }
}
