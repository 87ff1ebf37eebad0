//! The broadcast/replay stream `GET /v1/topics/{topic}/events?from=earliest|latest`: every
//! message of every queue, with `Last-Event-ID` resuming exactly where the client stopped.
//!
//! The stream pulls each queue by offset (stateless: no group, no commit). Each event's `id` is
//! a cursor holding, for every queue, the offset of the next message the client has not seen:
//! `c1.<q0>.<q1>…` in base 36. A message is sent with the cursor that includes it, so a client
//! that reconnects with the last id it received starts every queue right after what it saw:
//! nothing skipped, nothing repeated, whichever queues the events interleaved.
//!
//! Each queue has its own pull in flight at all times (a long poll at the head), so a quiet
//! queue never delays a busy one.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Deserialize;
use tern_core::client::{
    ClientError, MessageQueue, PullResult, PullStatus, Subscription, TopicRoute,
};

use super::caller::Caller;
use super::extract::{Params, PathParams};
use super::failure::{broker_failure, routed};
use super::message_json::MessageJson;
use super::produce::TopicPath;
use super::sse::{event, open_stream, ping_interval, wait_with_pings};
use crate::error::ApiError;
use crate::state::Gateway;

/// Queues a replay stream follows at most (its cursor names each).
pub const MAX_REPLAY_QUEUES: usize = 256;
/// Cursor prefix and version.
const CURSOR_PREFIX: &str = "c1";
/// Messages one pull of a replay stream asks for.
const PULL_BATCH: i32 = 32;
/// Long-poll wait of a pull at the head of its queue.
const PULL_WAIT: Duration = Duration::from_secs(20);
/// Pause after a failed pull of one queue.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Encodes next-offsets as an event id.
pub fn encode_cursor(offsets: &[i64]) -> String {
    let mut out = String::from(CURSOR_PREFIX);
    for offset in offsets {
        out.push('.');
        out.push_str(&to_base36(*offset.max(&0) as u64));
    }
    out
}

/// Decodes an event id into next-offsets, or `None` when it is not a cursor.
pub fn decode_cursor(id: &str) -> Option<Vec<i64>> {
    let mut parts = id.trim().split('.');
    if parts.next()? != CURSOR_PREFIX {
        return None;
    }
    let offsets: Option<Vec<i64>> = parts
        .map(|p| {
            (!p.is_empty() && p.len() <= 13)
                .then(|| u64::from_str_radix(p, 36).ok())
                .flatten()
                .and_then(|v| i64::try_from(v).ok())
        })
        .collect();
    offsets.filter(|o| o.len() <= MAX_REPLAY_QUEUES)
}

fn to_base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buf = Vec::new();
    loop {
        buf.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    buf.reverse();
    String::from_utf8(buf).unwrap_or_default()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayQuery {
    from: Option<String>,
    tag: Option<String>,
    #[allow(dead_code)] // read by the `Caller` extractor
    #[serde(rename = "access_token")] // the OAuth name (RFC 6750 §2.3), not camelCase
    access_token: Option<String>,
}

type PullFuture =
    Pin<Box<dyn std::future::Future<Output = (usize, Result<PullResult, ClientError>)> + Send>>;

/// `GET /v1/topics/{topic}/events`.
pub async fn replay(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<TopicPath>,
    Params(query): Params<ReplayQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(path.topic())?;
    caller.require_consume(path.topic())?;
    let client_topic = path.topic().to_string();
    let subscription = match &query.tag {
        Some(tag) => Subscription::parse(tag)
            .map_err(|e| ApiError::bad_request("invalid-query", format!("tag: {e}")))?,
        None => Subscription::all(),
    };
    let route = routed(
        &gateway,
        gateway.routes().route(&topic).await,
        &topic,
        &client_topic,
    )
    .await?;
    if route.read_queues.len() > MAX_REPLAY_QUEUES {
        return Err(ApiError::bad_request(
            "too-many-queues",
            format!("a replay stream follows at most {MAX_REPLAY_QUEUES} queues"),
        ));
    }
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str().ok().and_then(decode_cursor).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid-last-event-id",
                    "Last-Event-ID is not an event id of this stream",
                )
            })
        })
        .transpose()?;
    let offsets = match last_event_id {
        Some(mut offsets) => {
            // Queues added since start at their beginning; removed ones are dropped.
            offsets.resize(route.read_queues.len(), 0);
            offsets
        }
        None => start_offsets(&gateway, &route, query.from.as_deref(), &client_topic).await?,
    };
    let (response, sink) = open_stream(&gateway)?;
    let queues = route.read_queues.clone();
    tokio::spawn(async move {
        let gateway = sink.gateway().clone();
        let mut offsets = offsets;
        let mut pings = ping_interval(&gateway);
        let pull = |i: usize, offset: i64, pause: bool| -> PullFuture {
            let gateway = gateway.clone();
            let queue: MessageQueue = queues[i].clone();
            let subscription = subscription.clone();
            Box::pin(async move {
                if pause {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                let result = gateway
                    .puller
                    .pull(&queue, offset, PULL_BATCH, Some(PULL_WAIT), &subscription)
                    .await;
                (i, result)
            })
        };
        let mut pulls: FuturesUnordered<PullFuture> = (0..queues.len())
            .map(|i| pull(i, offsets[i], false))
            .collect();
        loop {
            let next = match wait_with_pings(&sink, &mut pings, pulls.next()).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => break,
            };
            let (i, result) = next;
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    let error = broker_failure(&gateway, &e, &client_topic);
                    if !error.retryable {
                        sink.error(&error).await;
                        break;
                    }
                    pulls.push(pull(i, offsets[i], true));
                    continue;
                }
            };
            let mut client_gone = false;
            if result.status == PullStatus::Found {
                for message in &result.messages {
                    offsets[i] = message.queue_offset + 1;
                    let Some(mut json) = MessageJson::new(message, &caller.namespace) else {
                        continue;
                    };
                    json.queue_id = i as i32;
                    let data = serde_json::to_string(&json).unwrap_or_default();
                    gateway.metrics.consumed(1, message.body.len() as u64);
                    let id = encode_cursor(&offsets);
                    if !sink.send(event(Some(&id), "message", &data)).await {
                        client_gone = true;
                        break;
                    }
                }
            }
            if client_gone {
                break;
            }
            // Filtered-out entries and moved offsets advance the cursor without an event.
            offsets[i] = offsets[i].max(result.next_begin_offset);
            pulls.push(pull(i, offsets[i], false));
        }
    });
    Ok(response)
}

/// Where a new stream starts: the `earliest` or the `latest` (default) offset of every queue.
async fn start_offsets(
    gateway: &Gateway,
    route: &TopicRoute,
    from: Option<&str>,
    client_topic: &str,
) -> Result<Vec<i64>, ApiError> {
    match from.unwrap_or("latest") {
        "earliest" => Ok(vec![0; route.read_queues.len()]),
        "latest" => {
            let mut offsets = Vec::with_capacity(route.read_queues.len());
            for queue in &route.read_queues {
                offsets.push(
                    gateway
                        .puller
                        .max_offset(queue)
                        .await
                        .map_err(|e| broker_failure(gateway, &e, client_topic))?,
                );
            }
            Ok(offsets)
        }
        other => Err(ApiError::bad_request(
            "invalid-query",
            format!(
                "from must be `earliest` or `latest`, not `{}`",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let offsets = vec![0, 1, 35, 36, 1_000_000_007, i64::MAX];
        assert_eq!(decode_cursor(&encode_cursor(&offsets)).unwrap(), offsets);
        assert_eq!(encode_cursor(&[0, 36]), "c1.0.10");
        for bad in [
            "",
            "c1..1",
            "c2.1",
            "x",
            "c1.-1",
            "c1.zzzzzzzzzzzzzz",
            "c1.!",
        ] {
            assert!(decode_cursor(bad).is_none(), "{bad}");
        }
        assert_eq!(decode_cursor("c1").unwrap(), Vec::<i64>::new());
    }
}
