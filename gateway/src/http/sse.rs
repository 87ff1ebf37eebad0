//! Server-sent events: the framing, the stream plumbing, and the group subscription
//! `GET /v1/groups/{group}/topics/{topic}/events`.
//!
//! A stream is a task feeding a small bounded channel that is the response body. When the client
//! reads slowly the channel fills, the task blocks on it and stops popping: back-pressure reaches
//! the broker instead of piling up in memory. The task ends when the client goes away (the
//! channel closes), on an unrecoverable broker error (an `event: error` first), or when the
//! gateway shuts down (the body then ends cleanly).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tern_core::client::ReceiveOptions;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::caller::Caller;
use super::extract::{Params, PathParams};
use super::failure::{broker_failure, routed_failure};
use super::in_flight::InFlightWindow;
use super::pop::{GroupTopic, GroupTopicPath};
use crate::error::ApiError;
use crate::state::Gateway;

/// Events buffered between a stream's task and its socket.
const CHANNEL_EVENTS: usize = 64;
/// Long-poll wait of a stream's pops (below the pull limit, so a ping interval always fits).
const STREAM_WAIT: Duration = Duration::from_secs(20);
/// Pause after a retryable broker error before the stream tries again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// Messages one pop of a stream asks for at most.
const STREAM_BATCH: usize = 32;

/// One SSE event: `id`, `event` and a one-line `data` (compact JSON never holds a newline).
pub fn event(id: Option<&str>, kind: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 64);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event: ");
    out.push_str(kind);
    out.push_str("\ndata: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// The heartbeat comment.
pub fn ping() -> Bytes {
    Bytes::from_static(b": ping\n\n")
}

/// An open stream: the sender side of the response body, and its bookkeeping.
pub struct EventSink {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    gateway: Arc<Gateway>,
    _permit: OwnedSemaphorePermit,
}

impl EventSink {
    /// Sends an event; false when the client has gone.
    pub async fn send(&self, bytes: Bytes) -> bool {
        self.tx.send(Ok(bytes)).await.is_ok()
    }

    /// Resolves when the client has gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Sends a problem as `event: error`.
    pub async fn error(&self, error: &ApiError) -> bool {
        let data = serde_json::to_string(&error.problem()).unwrap_or_default();
        self.send(event(None, "error", &data)).await
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.gateway
            .metrics
            .sse_streams
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Opens a stream: takes a stream permit (503 when the gateway serves `sse.max_streams`
/// already) and returns the response plus the sink a task writes to.
pub fn open_stream(gateway: &Arc<Gateway>) -> Result<(Response, EventSink), ApiError> {
    let permit = gateway.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(
            "too-many-streams",
            "the gateway serves its maximum of streams",
        )
    })?;
    gateway.metrics.sse_streams.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(CHANNEL_EVENTS);
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let response = (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
            (
                axum::http::HeaderName::from_static("x-accel-buffering"),
                "no",
            ),
        ],
        body,
    )
        .into_response();
    let sink = EventSink {
        tx,
        gateway: gateway.clone(),
        _permit: permit,
    };
    Ok((response, sink))
}

/// What may interrupt a wait inside a stream.
pub enum Interrupt {
    Ping,
    Stop,
}

/// Waits for `work`, sending pings meanwhile; `Err(Stop)` when the client goes or the gateway
/// shuts down first.
pub async fn wait_with_pings<T>(
    sink: &EventSink,
    ping_every: &mut tokio::time::Interval,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Interrupt> {
    let mut shutdown = sink.gateway.shutdown.clone();
    tokio::pin!(work);
    loop {
        if *shutdown.borrow() {
            return Err(Interrupt::Stop);
        }
        tokio::select! {
            result = &mut work => return Ok(result),
            _ = ping_every.tick() => {
                if !sink.send(ping()).await {
                    return Err(Interrupt::Stop);
                }
            }
            _ = shutdown.changed() => return Err(Interrupt::Stop),
            _ = sink.closed() => return Err(Interrupt::Stop),
        }
    }
}

/// The heartbeat interval of a stream (the first tick is one interval away).
pub fn ping_interval(gateway: &Gateway) -> tokio::time::Interval {
    let every = Duration::from_secs(gateway.config.sse.ping_interval_secs);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscribeQuery {
    ack: Option<String>,
    max_in_flight: Option<u32>,
    tag: Option<String>,
    #[allow(dead_code)] // read by the `Caller` extractor
    #[serde(rename = "access_token")] // the OAuth name (RFC 6750 §2.3), not camelCase
    access_token: Option<String>,
}

/// `GET /v1/groups/{group}/topics/{topic}/events?ack=manual|auto&maxInFlight=N&tag=`.
pub async fn subscribe(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupTopicPath>,
    Params(query): Params<SubscribeQuery>,
) -> Result<Response, ApiError> {
    let target = GroupTopic::resolve(&caller, path)?;
    let auto_ack = match query.ack.as_deref() {
        None | Some("manual") => false,
        Some("auto") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid-query",
                format!(
                    "ack must be `manual` or `auto`, not `{}`",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    let max_in_flight = query
        .max_in_flight
        .unwrap_or(gateway.config.sse.default_max_in_flight);
    ApiError::check_range(
        max_in_flight,
        1..=gateway.config.limits.max_in_flight,
        "invalid-query",
        "maxInFlight",
    )?;
    // Fail fast on an unknown topic instead of opening a stream that can only error.
    target
        .routed(&gateway, gateway.routes().route(&target.topic).await)
        .await?;
    let consumer = target.consumer(&gateway)?;
    let (response, sink) = open_stream(&gateway)?;
    let window = Arc::new(InFlightWindow::new(max_in_flight as usize));
    if !auto_ack {
        gateway
            .windows
            .register(&target.group, &target.topic, &window);
    }
    let tag = query.tag.unwrap_or_else(|| "*".to_string());
    tokio::spawn(async move {
        let gateway = sink.gateway().clone();
        let invisible = Duration::from_secs(gateway.config.sse.invisible_secs);
        let mut pings = ping_interval(&gateway);
        loop {
            let (free, next_deadline) = window.free(Instant::now());
            if free == 0 {
                // Wait for an ack through this gateway or the first deadline.
                let until = next_deadline.unwrap_or_else(|| Instant::now() + invisible);
                let wait = async {
                    tokio::select! {
                        _ = window.changed() => {}
                        _ = tokio::time::sleep_until(until.into()) => {}
                    }
                };
                match wait_with_pings(&sink, &mut pings, wait).await {
                    Ok(()) => continue,
                    Err(_) => break,
                }
            }
            let options = ReceiveOptions {
                max_messages: free.min(STREAM_BATCH) as i32,
                invisible,
                wait: STREAM_WAIT,
                tag: tag.clone(),
                start_at_end: false,
            };
            let popped_at = Instant::now();
            let popped =
                match wait_with_pings(&sink, &mut pings, consumer.receive(&target.topic, &options))
                    .await
                {
                    Err(_) => break,
                    Ok(Ok(popped)) => popped,
                    Ok(Err(e)) => {
                        let error =
                            routed_failure(&gateway, &e, &target.topic, &target.client_topic).await;
                        if !sink.error(&error).await || !error.retryable {
                            break;
                        }
                        tokio::time::sleep(ERROR_BACKOFF).await;
                        continue;
                    }
                };
            let mut delivered = Vec::with_capacity(popped.len());
            let mut client_gone = false;
            for message in &popped {
                let Some(json) = target.message_json(&gateway, &caller, message) else {
                    continue;
                };
                if !auto_ack {
                    window.add(message.receipt.handle.clone(), popped_at + invisible);
                }
                let data = serde_json::to_string(&json).unwrap_or_default();
                gateway
                    .metrics
                    .consumed(1, message.message.body.len() as u64);
                if !sink
                    .send(event(Some(&json.message_id), "message", &data))
                    .await
                {
                    client_gone = true;
                    break;
                }
                delivered.push(message.receipt.clone());
            }
            if auto_ack && !delivered.is_empty() {
                // Acked once handed to the connection: at-most-once past this point.
                match consumer.ack_many(&delivered).await {
                    Ok(verdicts) => {
                        let acked = verdicts.iter().filter(|v| v.is_ok()).count();
                        gateway
                            .metrics
                            .acked_messages
                            .fetch_add(acked as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let error = broker_failure(&gateway, &e, &target.client_topic);
                        tracing::warn!(error = %error, "auto-ack failed; the messages will be delivered again");
                    }
                }
            }
            if client_gone {
                break;
            }
        }
        drop(window);
        gateway.windows.prune(&target.group, &target.topic);
    });
    Ok(response)
}
