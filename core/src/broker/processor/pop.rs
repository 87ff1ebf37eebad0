//! POP_MESSAGE (200050), ACK_MESSAGE (200051), CHANGE_MESSAGE_INVISIBLETIME (200053).
//!
//! The decisions live in [`PopLedger`](super::super::pop::PopLedger); this module checks the
//! request, holds a pop that found nothing (woken by arrivals on the topic and by messages whose
//! invisibility ended), and answers only once the change is journaled durably.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::protocol::body::{
    BatchAckRequestBody, BatchAckResponseBody, MAX_BATCH_ACKS, decode_json, encode_json,
};
use crate::protocol::codes::response;
use crate::protocol::headers::{
    AckMessageRequestHeader, ChangeInvisibleTimeRequestHeader, ChangeInvisibleTimeResponseHeader,
    PopMessageRequestHeader, PopMessageResponseHeader,
};
use crate::protocol::subscription::TagFilter;
use crate::protocol::{Connection, RemotingCommand};
use crate::store::{Appended, now_millis};

use super::super::config::MAX_PULL_SUSPEND;
use super::super::pop::{PopError, PopOutcome, PopRequest, ReceiptHandle};
use super::super::state::BrokerState;
use super::send::store_error;
use super::{bad_group, bad_header, readable_topic, valid_group};

/// `None` when the connection closed while the pop was held.
pub(super) async fn pop(
    state: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
) -> Option<RemotingCommand> {
    let header: PopMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return Some(bad_header(e)),
    };
    let checked = match check_pop(state, &header) {
        Ok(checked) => checked,
        Err(response) => return Some(response),
    };
    let group = state.groups.get(&header.consumer_group);
    if !group.consume_enable {
        return Some(RemotingCommand::error(
            response::NO_PERMISSION,
            format!("consumer group {} is disabled", header.consumer_group),
        ));
    }
    let request = PopRequest {
        group: &header.consumer_group,
        topic: &header.topic,
        queue_ids: checked.queue_ids,
        max_messages: header.max_msg_nums as usize,
        max_bytes: state.config.max_pull_bytes as usize,
        invisible_ms: header.invisible_time,
        start_at_end: header.init_mode == 1,
        fifo: group.consume_message_orderly || header.order == Some(true),
        filter: checked.filter.as_ref(),
        retry_max_times: group.retry_max_times,
        broker_name: &state.config.broker_name,
    };
    let poll = Duration::from_millis(header.poll_time.max(0) as u64).min(MAX_PULL_SUSPEND);
    let deadline = Instant::now() + poll;
    let recheck = Duration::from_millis(state.config.long_poll_recheck_ms);
    let mut held = None;
    loop {
        let signal = state.long_poll.topic_signal(&header.topic);
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let outcome = state
            .pops
            .pop(&state.store, &state.offsets, &request, now_millis());
        let now = Instant::now();
        match outcome {
            Ok(outcome) if !outcome.deliveries.is_empty() || now >= deadline => {
                drop(held);
                return Some(answer_pop(outcome, header.invisible_time, poll.is_zero()).await);
            }
            Ok(outcome) => {
                // Nothing to hand out; the pop may still have moved past filtered messages.
                if let Some(journaled) = outcome.journaled
                    && let Err(e) = journaled.durable().await
                {
                    return Some(store_error(e));
                }
            }
            Err(e) => return Some(pop_error(e)),
        }
        if held.is_none() {
            held = match HeldPop::enter(state) {
                Some(h) => Some(h),
                None => {
                    return Some(RemotingCommand::error(
                        response::POLLING_FULL,
                        format!(
                            "{} pops are already waiting, the broker's limit",
                            state.config.pop_max_held
                        ),
                    ));
                }
            };
        }
        let wait = recheck.min(deadline - now);
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = conn.closed() => return None,
        }
    }
}

/// Counts a held pop for `pop_max_held`; the count drops with it.
struct HeldPop(Arc<BrokerState>);

impl HeldPop {
    fn enter(state: &Arc<BrokerState>) -> Option<HeldPop> {
        let held = state.pop_held.fetch_add(1, Ordering::AcqRel);
        if held >= state.config.pop_max_held {
            state.pop_held.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(HeldPop(state.clone()))
    }
}

impl Drop for HeldPop {
    fn drop(&mut self) {
        self.0.pop_held.fetch_sub(1, Ordering::AcqRel);
    }
}

struct CheckedPop {
    queue_ids: Vec<i32>,
    filter: Option<TagFilter>,
}

fn check_pop(
    state: &BrokerState,
    header: &PopMessageRequestHeader,
) -> Result<CheckedPop, RemotingCommand> {
    let illegal = |m: String| Err(RemotingCommand::error(response::SYSTEM_ERROR, m));
    if !valid_group(&header.consumer_group) {
        return Err(bad_group(&header.consumer_group));
    }
    let topic = readable_topic(state, &header.topic, "popping")?;
    let queue_ids = match header.queue_id {
        -1 => (0..topic.read_queue_nums).collect(),
        q if (0..topic.read_queue_nums).contains(&q) => vec![q],
        q => {
            return illegal(format!(
                "queueId[{q}] is illegal, topic:[{}] readQueueNums:[{}]",
                header.topic, topic.read_queue_nums
            ));
        }
    };
    if !(1..=state.config.max_pull_messages).contains(&header.max_msg_nums) {
        return illegal(format!(
            "maxMsgNums must be 1..={}, got {}",
            state.config.max_pull_messages, header.max_msg_nums
        ));
    }
    let (min, max) = (
        state.config.pop_min_invisible_ms,
        state.config.pop_max_invisible_ms,
    );
    if !(min as i64..=max as i64).contains(&header.invisible_time) {
        return illegal(format!(
            "invisibleTime must be {min}..={max} ms, got {}",
            header.invisible_time
        ));
    }
    if header.poll_time < 0 {
        return illegal(format!("pollTime {} is negative", header.poll_time));
    }
    let expression_type = header.exp_type.as_deref().unwrap_or("TAG");
    if !expression_type.eq_ignore_ascii_case("TAG") {
        return Err(RemotingCommand::error(
            response::SUBSCRIPTION_PARSE_FAILED,
            format!("expression type {expression_type} is not supported (only TAG)"),
        ));
    }
    let expression = header.exp.as_deref().unwrap_or("*");
    let filter = TagFilter::parse(expression).ok_or_else(|| {
        RemotingCommand::error(
            response::SUBSCRIPTION_PARSE_FAILED,
            format!(
                "tag expression `{}` does not parse",
                expression.chars().take(200).collect::<String>()
            ),
        )
    })?;
    let filter = filter.codes().is_some().then_some(filter);
    Ok(CheckedPop { queue_ids, filter })
}

async fn answer_pop(outcome: PopOutcome<'_>, invisible_ms: i64, at_once: bool) -> RemotingCommand {
    if let Some(journaled) = outcome.journaled
        && let Err(e) = journaled.durable().await
    {
        // The messages stay in flight and come back after their invisible time.
        return store_error(e);
    }
    let header = PopMessageResponseHeader {
        pop_time: outcome.version,
        invisible_time: invisible_ms,
        revive_qid: 0,
        rest_num: outcome.rest as i64,
        start_offset_info: None,
        msg_offset_info: None,
        order_count_info: None,
    };
    if outcome.deliveries.is_empty() {
        let code = if at_once {
            response::PULL_NOT_FOUND
        } else {
            response::POLLING_TIMEOUT
        };
        return RemotingCommand::response(code, Some("no new message".into())).with_header(&header);
    }
    let size = outcome.deliveries.iter().map(|d| d.record.len()).sum();
    let mut body = BytesMut::with_capacity(size);
    for delivery in &outcome.deliveries {
        body.extend_from_slice(&delivery.record);
    }
    RemotingCommand::success()
        .with_header(&header)
        .with_body(body.freeze())
}

pub(super) async fn ack(state: &Arc<BrokerState>, req: &RemotingCommand) -> RemotingCommand {
    let header: AckMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    let handle = match receipt(&header.extra_info, header.queue_id, header.offset) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    let result = state
        .pops
        .ack(&state.store, &header.consumer_group, &header.topic, &handle);
    match result {
        Ok(journaled) => match durable(journaled).await {
            Ok(()) => {
                // A FIFO queue may be free now.
                state.long_poll.wake_topic(&header.topic);
                RemotingCommand::success()
            }
            Err(response) => response,
        },
        Err(e) => pop_error(e),
    }
}

/// TERN_BATCH_ACK: many acks of one group and topic, one journal record, a verdict per ack.
pub(super) async fn batch_ack(state: &Arc<BrokerState>, req: &RemotingCommand) -> RemotingCommand {
    let body: BatchAckRequestBody = match decode_json(&req.body) {
        Ok(body) => body,
        Err(e) => {
            return RemotingCommand::error(response::SYSTEM_ERROR, format!("batch ack body: {e}"));
        }
    };
    if body.acks.is_empty() || body.acks.len() > MAX_BATCH_ACKS {
        return RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!(
                "a batch ack carries 1..={MAX_BATCH_ACKS} acks, got {}",
                body.acks.len()
            ),
        );
    }
    // Malformed handles are stale verdicts, not a failure of the whole batch.
    let parsed: Vec<Option<ReceiptHandle>> = body
        .acks
        .iter()
        .map(|a| receipt(&a.extra_info, a.queue_id, a.offset).ok())
        .collect();
    let handles: Vec<ReceiptHandle> = parsed.iter().flatten().cloned().collect();
    let result = state
        .pops
        .ack_many(&state.store, &body.consumer_group, &body.topic, &handles);
    let (verdicts, journaled) = match result {
        Ok(outcome) => outcome,
        Err(e) => return pop_error(e),
    };
    if let Some(journaled) = journaled {
        if let Err(response) = durable(journaled).await {
            return response;
        }
        state.long_poll.wake_topic(&body.topic);
    }
    let mut verdicts = verdicts.into_iter();
    let codes = parsed
        .iter()
        .map(|handle| match handle {
            Some(_) if verdicts.next() == Some(true) => response::SUCCESS,
            _ => response::RECEIPT_HANDLE_STALE,
        })
        .collect();
    RemotingCommand::success().with_body(encode_json(&BatchAckResponseBody { codes }))
}

pub(super) async fn change_invisible(
    state: &Arc<BrokerState>,
    req: &RemotingCommand,
) -> RemotingCommand {
    let header: ChangeInvisibleTimeRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    let handle = match receipt(&header.extra_info, header.queue_id, header.offset) {
        Ok(handle) => handle,
        Err(response) => return response,
    };
    let max = state.config.pop_max_invisible_ms as i64;
    if !(0..=max).contains(&header.invisible_time) {
        return RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!(
                "invisibleTime must be 0..={max} ms, got {}",
                header.invisible_time
            ),
        );
    }
    let result = state.pops.change_invisible(
        &state.store,
        &header.consumer_group,
        &header.topic,
        &handle,
        header.invisible_time,
        now_millis(),
    );
    match result {
        Ok((journaled, renewed)) => match durable(journaled).await {
            Ok(()) => {
                if header.invisible_time == 0 {
                    state.long_poll.wake_topic(&header.topic);
                }
                let response = ChangeInvisibleTimeResponseHeader {
                    pop_time: renewed.version,
                    invisible_time: renewed.invisible_ms,
                    revive_qid: 0,
                    extra_info: Some(renewed.to_string()),
                };
                RemotingCommand::success().with_header(&response)
            }
            Err(response) => response,
        },
        Err(e) => pop_error(e),
    }
}

/// The handle, checked against the queue and offset the request names beside it.
fn receipt(text: &str, queue_id: i32, offset: i64) -> Result<ReceiptHandle, RemotingCommand> {
    let handle = ReceiptHandle::parse(text)
        .map_err(|e| RemotingCommand::error(response::RECEIPT_HANDLE_STALE, e.to_string()))?;
    if handle.queue_id != queue_id || handle.queue_offset as i64 != offset {
        return Err(RemotingCommand::error(
            response::RECEIPT_HANDLE_STALE,
            format!(
                "receipt handle names queue {} offset {}, the request {queue_id} / {offset}",
                handle.queue_id, handle.queue_offset
            ),
        ));
    }
    Ok(handle)
}

async fn durable(journaled: Appended<'_>) -> Result<(), RemotingCommand> {
    journaled.durable().await.map(|_| ()).map_err(store_error)
}

fn pop_error(e: PopError) -> RemotingCommand {
    match e {
        PopError::Stale => RemotingCommand::error(response::RECEIPT_HANDLE_STALE, e.to_string()),
        PopError::TooManyInFlight(_) => {
            RemotingCommand::error(response::SYSTEM_BUSY, e.to_string())
        }
        PopError::Store(e) => store_error(e),
    }
}
