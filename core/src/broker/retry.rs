//! Retry and dead-letter copies, shared by CONSUMER_SEND_MSG_BACK and the pop reviver.
//!
//! A copy keeps the original's body, flag, properties and `UNIQ_KEY` (so the consumer sees the
//! same message id on every delivery, as with RocketMQ) and records where it came from in
//! `RETRY_TOPIC` and `ORIGIN_MESSAGE_ID`. It drops the producer's idempotency key: the copy is not
//! a new send and must not be mistaken for one.

use std::sync::Arc;

use crate::protocol::body::TopicConfig;
use crate::protocol::codes::perm;
use crate::store::{
    DLQ_TOPIC_PREFIX, Message, RETRY_TOPIC_PREFIX, StoredMessage, property, sys_flag,
};

use super::state::BrokerState;

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_TOPIC_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_TOPIC_PREFIX}{group}")
}

/// A copy of `original` for `topic` (queue 0), delivered for the `reconsume_times`-th time next.
pub fn copy_for(original: &StoredMessage, topic: &str, reconsume_times: i32) -> Message {
    let mut properties = original.properties.clone();
    if properties.get(property::RETRY_TOPIC).is_none() {
        properties.insert(property::RETRY_TOPIC, original.topic.clone());
    }
    if properties.get(property::ORIGIN_MESSAGE_ID).is_none() {
        let origin = original
            .unique_key()
            .map_or_else(|| original.offset_message_id(), str::to_string);
        properties.insert(property::ORIGIN_MESSAGE_ID, origin);
    }
    for stale in [
        property::IDEMPOTENCY_KEY,
        property::DELAY,
        property::REAL_TOPIC,
        property::REAL_QID,
        property::TIMER_DELIVER_MS,
        property::TIMER_DELAY_SEC,
        property::POP_CK,
    ] {
        properties.remove(stale);
    }
    Message {
        topic: topic.to_string(),
        queue_id: 0,
        flag: original.flag,
        body: original.body.clone(),
        properties,
        sys_flag: original.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6),
        born_timestamp: original.born_timestamp,
        born_host: original.born_host,
        reconsume_times,
        prepared_transaction_offset: 0,
    }
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
