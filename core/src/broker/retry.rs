//! Retry and dead-letter copies, shared by CONSUMER_SEND_MSG_BACK and the pop reviver.
//!
//! A copy keeps the original's body, flag, properties and `UNIQ_KEY` (so the consumer sees the
//! same message id on every delivery, as with RocketMQ) and records where it came from in
//! `RETRY_TOPIC` and `ORIGIN_MESSAGE_ID`. It drops the producer's idempotency key: the copy is not
//! a new send and must not be mistaken for one.

use std::sync::Arc;

use crate::protocol::body::TopicConfig;
use crate::protocol::codes::perm;
use crate::store::{DLQ_TOPIC_PREFIX, Message, RETRY_TOPIC_PREFIX, StoredMessage, property};

use super::delay::strip_delay_properties;
use super::state::BrokerState;

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_TOPIC_PREFIX}{group}")
}

/// A copy of `original` for `topic` (queue 0), delivered for the `reconsume_times`-th time next.
pub fn copy_for(original: &StoredMessage, topic: &str, reconsume_times: i32) -> Message {
    let origin_topic = original.topic.clone();
    let origin_id = original
        .unique_key()
        .map_or_else(|| original.offset_message_id(), str::to_string);
    let mut copy = original.clone().into_message(topic.to_string(), 0);
    copy.reconsume_times = reconsume_times;
    let properties = &mut copy.properties;
    if properties.get(property::RETRY_TOPIC).is_none() {
        properties.insert(property::RETRY_TOPIC, origin_topic);
    }
    if properties.get(property::ORIGIN_MESSAGE_ID).is_none() {
        properties.insert(property::ORIGIN_MESSAGE_ID, origin_id);
    }
    strip_delay_properties(properties);
    properties.remove(property::IDEMPOTENCY_KEY);
    properties.remove(property::POP_CK);
    copy
}

/// Makes sure a retry or dead-letter topic exists (one queue, readable and writable, so that an
/// operator can inspect and re-drive a dead-letter queue).
pub async fn ensure_topic(state: &Arc<BrokerState>, topic: String) -> Result<(), String> {
    if state.topics.contains(&topic) {
        return Ok(());
    }
    let wanted = TopicConfig::new(&topic, 1, perm::READ | perm::WRITE);
    match state
        .off_thread(move |s| s.topics.create_if_absent(wanted))
        .await
    {
        Ok((_, created)) => {
            if created {
                tracing::info!(%topic, "retry/dead-letter topic created");
                state.register_now.notify_one();
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}
