//! Queue numbering over HTTP, and the stateless pull by offset.
//!
//! A topic spread over several broker groups has several queues numbered 0 on the brokers. HTTP
//! clients see one list instead: the topic's queues sorted by (brokerName, queueId), numbered from
//! 0 — the list ordering keys index (`abs(javaHashCode(key) % n)`), so a key's `queueId` is the
//! number a client computes. With one broker the numbers are the broker's queue ids.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tern_core::client::{MessageQueue, PullStatus, Subscription, TopicRoute};

use super::caller::Caller;
use super::extract::{Params, PathParams, json_response};
use super::failure::routed;
use super::message_json::MessageJson;
use crate::error::ApiError;
use crate::state::Gateway;

/// The HTTP number of a queue: its position in the sorted read queues (write queues when the
/// topic is write-only).
pub fn queue_number(route: &TopicRoute, queue: &MessageQueue) -> i32 {
    route
        .read_queues
        .iter()
        .position(|q| q == queue)
        .or_else(|| route.write_queues.iter().position(|q| q == queue))
        .map_or(queue.queue_id, |i| i as i32)
}

/// The queue an HTTP number names, or 404.
pub fn queue_at<'a>(
    route: &'a TopicRoute,
    number: i64,
    client_topic: &str,
) -> Result<&'a MessageQueue, ApiError> {
    usize::try_from(number)
        .ok()
        .and_then(|i| route.read_queues.get(i))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "queue {number} of topic `{client_topic}` not found (it has {} queues)",
                route.read_queues.len()
            ))
        })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PullPath {
    topic: String,
    queue_id: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullQuery {
    offset: u64,
    max: Option<u32>,
    wait: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    messages: Vec<MessageJson>,
    next_offset: i64,
    min_offset: i64,
    max_offset: i64,
}

/// `GET /v1/topics/{topic}/queues/{queueId}/messages?offset=&max=&wait=`: up to `max` messages
/// from `offset`; at the head of the queue the request waits up to `wait` seconds for one.
pub async fn pull(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<PullPath>,
    Params(query): Params<PullQuery>,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(&path.topic)?;
    caller.require_consume(&path.topic)?;
    let limits = &gateway.config.limits;
    let max = query.max.unwrap_or(16);
    ApiError::check_range(max, 1..=limits.max_receive, "invalid-max", "max")?;
    let wait = check_wait(query.wait.unwrap_or(0), limits.max_wait_secs)?;
    let offset = i64::try_from(query.offset)
        .map_err(|_| ApiError::bad_request("invalid-offset", "offset is too large"))?;
    let route = routed(
        &gateway,
        gateway.routes().route(&topic).await,
        &topic,
        &path.topic,
    )
    .await?;
    let queue = queue_at(&route, path.queue_id, &path.topic)?.clone();
    let subscription = Subscription::all();
    let pull = gateway
        .puller
        .pull(&queue, offset, max as i32, wait, &subscription);
    // A long poll cut short by shutdown answers like a pull without a wait.
    let result = match gateway.unless_shutdown(pull).await {
        Some(result) => result,
        None => {
            gateway
                .puller
                .pull(&queue, offset, max as i32, None, &subscription)
                .await
        }
    };
    let result = routed(&gateway, result, &topic, &path.topic).await?;
    let messages: Vec<MessageJson> = match result.status {
        PullStatus::Found => result
            .messages
            .iter()
            .filter_map(|m| MessageJson::new(m, &caller.namespace))
            .map(|mut m| {
                m.queue_id = path.queue_id as i32;
                m
            })
            .collect(),
        _ => Vec::new(),
    };
    gateway.metrics.consumed(
        messages.len() as u64,
        result.messages.iter().map(|m| m.body.len() as u64).sum(),
    );
    Ok(json_response(&PullResponse {
        messages,
        next_offset: result.next_begin_offset,
        min_offset: result.min_offset,
        max_offset: result.max_offset,
    }))
}

/// A long-poll wait in seconds, at most `max_secs`; `None` for no wait.
pub fn check_wait(secs: u64, max_secs: u64) -> Result<Option<std::time::Duration>, ApiError> {
    if secs > max_secs {
        return Err(ApiError::bad_request(
            "invalid-wait",
            format!("wait must be 0..={max_secs} seconds"),
        ));
    }
    Ok((secs > 0).then(|| std::time::Duration::from_secs(secs)))
}
