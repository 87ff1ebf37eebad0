//! The HTTP API (v1): routing, and one module per family of endpoints.
//!
//! - [`caller`]: authentication, tenant namespace, rate limit, scope checks.
//! - [`extract`]: bodies, JSON, query and path parameters with problem+json rejections.
//! - [`failure`]: broker failures as HTTP answers (404 only when no broker outage explains it).
//! - [`message_json`]: messages as JSON; property rules.
//! - [`produce`]: single and batch produce.
//! - [`queues`]: HTTP queue numbering and the stateless pull by offset.
//! - [`pop`]: receive, ack, nack, visibility changes for consumer groups.
//! - [`sse`]: event-stream framing and the group subscription; [`in_flight`]: its
//!   `maxInFlight` window.
//! - [`replay`]: the broadcast/replay stream with exact `Last-Event-ID` resume.
//! - [`admin`]: topics, groups, offsets; [`lookup`]: by message id or key.
//! - [`health`]: liveness, readiness, metrics.

pub mod admin;
pub mod caller;
pub mod extract;
pub mod failure;
pub mod health;
pub mod in_flight;
pub mod lookup;
pub mod message_json;
pub mod pop;
pub mod produce;
pub mod queues;
pub mod replay;
pub mod sse;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tracing::Instrument;

use crate::error::{ApiError, ErrorSlug};
use crate::state::Gateway;

/// The route of the group subscription stream.
pub(crate) const GROUP_EVENTS_ROUTE: &str = "/v1/groups/{group}/topics/{topic}/events";
/// The route of the broadcast/replay stream.
pub(crate) const TOPIC_EVENTS_ROUTE: &str = "/v1/topics/{topic}/events";

/// The whole API with its request middleware.
pub fn router(gateway: Arc<Gateway>) -> Router {
    let group_topic = "/v1/groups/{group}/topics/{topic}";
    Router::new()
        .route(
            "/v1/topics/{topic}/messages",
            post(produce::produce).get(lookup::by_key),
        )
        .route(
            "/v1/topics/{topic}/messages/{messageId}",
            get(lookup::by_id),
        )
        .route("/v1/topics", get(admin::list_topics))
        .route(
            "/v1/topics/{topic}",
            put(admin::put_topic)
                .get(admin::get_topic)
                .delete(admin::delete_topic),
        )
        .route("/v1/groups/{group}", put(admin::put_group))
        .route(&format!("{group_topic}/offsets"), get(admin::offsets))
        .route(
            &format!("{group_topic}/offsets:reset"),
            post(admin::reset_offsets),
        )
        .route(
            "/v1/topics/{topic}/messages:batch",
            post(produce::produce_batch),
        )
        .route(
            "/v1/topics/{topic}/queues/{queueId}/messages",
            get(queues::pull),
        )
        .route(
            &format!("{group_topic}/messages:receive"),
            post(pop::receive),
        )
        .route(&format!("{group_topic}/messages:ack"), post(pop::ack))
        .route(&format!("{group_topic}/messages:nack"), post(pop::nack))
        .route(
            &format!("{group_topic}/messages:changeVisibility"),
            post(pop::change_visibility),
        )
        .route(GROUP_EVENTS_ROUTE, get(sse::subscribe))
        .route(TOPIC_EVENTS_ROUTE, get(replay::replay))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            limit_headers,
        ))
        .layer(middleware::from_fn_with_state(gateway.clone(), observe))
        .with_state(gateway)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not take that method",
    )
}

/// `limits.max_headers` for HTTP/2, which bounds only the header list's size: HTTP/1 heads with
/// more headers never get here (hyper answers 431 itself).
async fn limit_headers(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
    next: Next,
) -> Response {
    let max = gateway.config.limits.max_headers;
    if request.headers().len() > max {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too-many-headers",
            format!("a request may have at most {max} headers"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Per request: a tracing span (method, route, status, latency), a log line, and the metrics.
async fn observe(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "request",
        method,
        route = %route,
        status = tracing::field::Empty,
        micros = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let latency = started.elapsed();
    span.record("status", status.as_u16());
    span.record("micros", latency.as_micros() as u64);
    let slug = response.extensions().get::<ErrorSlug>().map(|s| s.0);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(error = slug, "request failed");
        } else if status.is_client_error() {
            tracing::debug!(error = slug, "request refused");
        } else {
            tracing::trace!("request served");
        }
    });
    gateway
        .metrics
        .observe(&route, method, status.as_u16(), latency);
    response.into_response()
}

fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    }
}
