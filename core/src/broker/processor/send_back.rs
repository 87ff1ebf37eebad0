//! CONSUMER_SEND_MSG_BACK (36): a classic consumer failed to consume a message and hands it back.
//!
//! The broker stores a copy in `%RETRY%<group>` with delay level `3 + reconsumeTimes` (10 s, 30 s,
//! 1 min, … as the attempts grow), which the group's consumers read like any subscribed topic.
//! After `maxReconsumeTimes` (the group's `retryMaxTimes`, 16 by default; the request may lower
//! it) or when the client asks for it with a negative delay level, the copy goes to
//! `%DLQ%<group>` instead, which nobody consumes unless told to.

use std::sync::Arc;

use crate::protocol::RemotingCommand;
use crate::protocol::codes::response;
use crate::protocol::headers::ConsumerSendMsgBackRequestHeader;
use crate::store::PutStatus;

use super::super::delay::to_scheduled;
use super::super::retry::{copy_for, dlq_topic, ensure_topic, retry_topic};
use super::super::state::BrokerState;
use super::send::store_error;
use super::{bad_group, bad_header, valid_group};

/// The first delay level of a retry (RocketMQ: 3 = 10 s with the default levels).
pub const FIRST_RETRY_DELAY_LEVEL: i32 = 3;

pub(super) async fn send_back(state: &Arc<BrokerState>, req: &RemotingCommand) -> RemotingCommand {
    let header: ConsumerSendMsgBackRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    if !valid_group(&header.group) {
        return bad_group(&header.group);
    }
    let Some(original) = u64::try_from(header.offset)
        .ok()
        .and_then(|offset| state.store.message_at(offset))
    else {
        return RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("no message at CommitLog offset {}", header.offset),
        );
    };
    let group = state.groups.get(&header.group);
    let max_reconsume = header
        .max_reconsume_times
        .filter(|&n| n >= 0)
        .map_or(group.retry_max_times, |n| n.min(group.retry_max_times));
    let reconsume_times = original.reconsume_times.saturating_add(1);
    let to_dlq = header.delay_level < 0 || original.reconsume_times >= max_reconsume;
    let topic = if to_dlq {
        dlq_topic(&header.group)
    } else {
        retry_topic(&header.group)
    };
    if let Err(e) = ensure_topic(state, topic.clone()).await {
        return RemotingCommand::error(response::SYSTEM_ERROR, e);
    }
    let mut copy = copy_for(&original, &topic, reconsume_times);
    if !to_dlq {
        let level = match header.delay_level {
            0 => FIRST_RETRY_DELAY_LEVEL.saturating_add(original.reconsume_times),
            level => level,
        };
        copy = to_scheduled(copy, level.max(1) as u32, state.delay_level_count);
    }
    match state.store.put_message(copy).await {
        Ok(put) => {
            if to_dlq {
                tracing::info!(group = %header.group, topic = %original.topic, deliveries = reconsume_times, "message sent to the dead-letter queue");
            }
            match put.status {
                PutStatus::Ok => RemotingCommand::success(),
                PutStatus::FlushDiskTimeout => {
                    RemotingCommand::error(response::FLUSH_DISK_TIMEOUT, "flush disk timeout")
                }
            }
        }
        Err(e) => store_error(e),
    }
}
