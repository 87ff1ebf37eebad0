//! PULL_MESSAGE (11) with long polling.
//!
//! A pull at the head of its queue with the SUSPEND flag is held until a message arrives on that
//! queue (the dispatcher wakes it, see `long_poll`), the client's suspend time runs out, or the
//! connection closes. Status mapping follows RocketMQ's PullMessageProcessor so that its clients
//! move their offsets the same way against us.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::protocol::codes::response;
use crate::protocol::headers::{
    PullMessageRequestHeader, PullMessageResponseHeader, pull_sys_flag,
};
use crate::protocol::subscription::TagFilter;
use crate::protocol::{Connection, RemotingCommand};
use crate::store::{GetResult, GetStatus};

use super::super::config::MAX_PULL_SUSPEND;
use super::super::state::BrokerState;
use super::{bad_group, bad_header, readable_topic, valid_group};

/// `None` when the connection closed while the pull was held (nobody to answer).
pub(super) async fn pull(
    state: &BrokerState,
    conn: &Connection,
    req: &RemotingCommand,
) -> Option<RemotingCommand> {
    let header: PullMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return Some(bad_header(e)),
    };
    if !valid_group(&header.consumer_group) {
        return Some(bad_group(&header.consumer_group));
    }
    let topic = match readable_topic(state, &header.topic, "pulling") {
        Ok(topic) => topic,
        Err(response) => return Some(response),
    };
    if header.queue_id < 0 || header.queue_id >= topic.read_queue_nums {
        return Some(RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!(
                "queueId[{}] is illegal, topic:[{}] readQueueNums:[{}]",
                header.queue_id, topic.topic_name, topic.read_queue_nums
            ),
        ));
    }
    if header.queue_offset < 0 {
        return Some(RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("queueOffset {} is negative", header.queue_offset),
        ));
    }
    let codes = match tag_codes(state, &header) {
        Ok(codes) => codes,
        Err(response) => return Some(response),
    };

    let flags = header.sys_flag;
    if flags & pull_sys_flag::COMMIT_OFFSET != 0
        && header.commit_offset >= 0
        && !state.consumers.is_broadcasting(&header.consumer_group)
    {
        state.offsets.commit(
            &header.consumer_group,
            &header.topic,
            header.queue_id,
            header.commit_offset,
        );
    }

    let max_count = header.max_msg_nums.clamp(1, state.config.max_pull_messages) as usize;
    let max_bytes = header
        .max_msg_bytes
        .filter(|&b| b > 0)
        .map_or(state.config.max_pull_bytes, |b| {
            b.min(state.config.max_pull_bytes)
        }) as usize;
    let suspend = if flags & pull_sys_flag::SUSPEND != 0 {
        Duration::from_millis(header.suspend_timeout_millis.max(0) as u64).min(MAX_PULL_SUSPEND)
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + suspend;
    let recheck = Duration::from_millis(state.config.long_poll_recheck_ms);
    let mut offset = header.queue_offset as u64;

    loop {
        let signal = state.long_poll.signal(&header.topic, header.queue_id);
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let result = read(state, &header, offset, max_count, max_bytes, codes.as_ref());
        let now = Instant::now();
        if now < deadline && caught_up_without_match(&result) {
            // Everything up to the head was filtered out: move past it and keep waiting, so a
            // stream of other tags does not turn a long poll into a busy loop. The response's
            // nextBeginOffset carries the skip to the client.
            offset = result.next_begin_offset;
        } else if !waits_for_arrival(&result, offset) || now >= deadline {
            return Some(respond(result, offset));
        }
        let wait = recheck.min(deadline - now);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = conn.closed() => return None,
        }
    }
}

fn read(
    state: &BrokerState,
    header: &PullMessageRequestHeader,
    offset: u64,
    max_count: usize,
    max_bytes: usize,
    codes: Option<&BTreeSet<i64>>,
) -> GetResult {
    let filter = codes.map(|codes| move |code: i64| codes.contains(&code));
    state.store.get_messages(
        &header.topic,
        header.queue_id,
        offset,
        max_count,
        max_bytes,
        filter.as_ref().map(|f| f as &dyn Fn(i64) -> bool),
    )
}

/// The broker-side filter: `None` keeps everything.
fn tag_codes(
    state: &BrokerState,
    header: &PullMessageRequestHeader,
) -> Result<Option<BTreeSet<i64>>, RemotingCommand> {
    let expression_type = header.expression_type.as_deref().unwrap_or("TAG");
    if !expression_type.eq_ignore_ascii_case("TAG") {
        return Err(RemotingCommand::error(
            response::SUBSCRIPTION_PARSE_FAILED,
            format!("expression type {expression_type} is not supported (only TAG)"),
        ));
    }
    let from_request = header.sys_flag & pull_sys_flag::SUBSCRIPTION != 0;
    let expression = if from_request {
        header.subscription.clone().unwrap_or_default()
    } else {
        // The group's subscription from its heartbeat; a pull from a client that never sent one
        // (a plain offset reader) sees every message.
        state
            .consumers
            .subscription(&header.consumer_group, &header.topic)
            .map_or_else(|| "*".to_string(), |s| s.sub_string)
    };
    let filter = TagFilter::parse(&expression).ok_or_else(|| {
        RemotingCommand::error(
            response::SUBSCRIPTION_PARSE_FAILED,
            format!(
                "subscription expression `{}` does not parse",
                expression.chars().take(200).collect::<String>()
            ),
        )
    })?;
    Ok(filter.codes())
}

/// Whether the filter rejected every entry from the offset up to the head of the queue.
fn caught_up_without_match(result: &GetResult) -> bool {
    result.status == GetStatus::NoMatchedMessage && result.next_begin_offset >= result.max_offset
}

/// Whether a result means "nothing yet at the head", which a suspended pull waits out.
fn waits_for_arrival(result: &GetResult, offset: u64) -> bool {
    match result.status {
        GetStatus::OffsetOverflowOne => true,
        GetStatus::NoMessageInQueue | GetStatus::NoMatchedLogicQueue => offset == 0,
        _ => false,
    }
}

fn respond(result: GetResult, offset: u64) -> RemotingCommand {
    let code = match result.status {
        GetStatus::Found => response::SUCCESS,
        GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
            response::PULL_RETRY_IMMEDIATELY
        }
        GetStatus::NoMessageInQueue | GetStatus::NoMatchedLogicQueue => {
            if offset != 0 {
                response::PULL_OFFSET_MOVED
            } else {
                response::PULL_NOT_FOUND
            }
        }
        GetStatus::OffsetFoundNull | GetStatus::OffsetOverflowOne => response::PULL_NOT_FOUND,
        GetStatus::OffsetOverflowBadly | GetStatus::OffsetTooSmall => response::PULL_OFFSET_MOVED,
    };
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: result.next_begin_offset as i64,
        min_offset: result.min_offset as i64,
        max_offset: result.max_offset as i64,
    };
    let mut command = RemotingCommand::response(code, None).with_header(&header);
    if !result.messages.is_empty() {
        let size = result.messages.iter().map(|m| m.bytes.len()).sum();
        let mut body = BytesMut::with_capacity(size);
        for message in &result.messages {
            body.extend_from_slice(&message.bytes);
        }
        command.body = body.freeze();
    }
    command
}
