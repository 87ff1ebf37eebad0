//! Problem details (RFC 9457): every error the gateway answers is an [`ApiError`], rendered as
//! `application/problem+json` with `type`, `title`, `status`, `detail` and `retryable`.
//!
//! Handlers never build responses for failures themselves: they return an `ApiError`, so the
//! status codes of the contract live in one place (the constructors below and
//! [`ApiError::from_client`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tern_core::client::ClientError;
use tern_core::protocol::codes::response;

/// Base of every problem `type` URI; the slug after it names the error.
const TYPE_BASE: &str = "https://tern.dev/problems/";

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable name of the error (the last segment of `type`).
    pub slug: &'static str,
    pub detail: String,
    pub retryable: bool,
    /// Seconds for `Retry-After` (429, some 503s).
    pub retry_after: Option<u64>,
}

/// The problem document of an [`ApiError`]: the body of an error response, and the `error` of a
/// batch entry or an SSE `error` event.
#[derive(Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    retryable: bool,
}

impl ApiError {
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("{TYPE_BASE}{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            retryable: self.retryable,
        }
    }

    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            slug,
            detail: detail.into(),
            retryable: false,
            retry_after: None,
        }
    }

    pub fn retryable(mut self) -> ApiError {
        self.retryable = true;
        self
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, slug, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404 for an unknown resource or one of another tenant: the answer never says which.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn too_large(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail)
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            detail,
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "the tenant's request rate limit is exhausted",
        )
        .retryable();
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    /// `value` when it lies in `range`, else a 400 `slug` naming `field` and the range.
    pub fn check_range<T: PartialOrd + std::fmt::Display>(
        value: T,
        range: std::ops::RangeInclusive<T>,
        slug: &'static str,
        field: &str,
    ) -> Result<T, ApiError> {
        if range.contains(&value) {
            return Ok(value);
        }
        Err(ApiError::bad_request(
            slug,
            format!("{field} must be {}..={}", range.start(), range.end()),
        ))
    }

    pub fn unavailable(slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, slug, detail).retryable()
    }

    /// Maps a broker-side failure onto the contract's statuses. `what` names the resource for
    /// 404s ("topic `orders`"), in the client's own (unprefixed) terms.
    pub fn from_client(error: &ClientError, what: &str) -> ApiError {
        match error {
            ClientError::NoRoute { .. } => ApiError::not_found(format!("{what} not found")),
            ClientError::NoWritableQueue { .. } | ClientError::NoBrokerAddress { .. } => {
                ApiError::unavailable("no-writable-broker", format!("{what}: no writable broker"))
            }
            ClientError::InvalidMessage(m) | ClientError::InvalidArgument(m) => {
                ApiError::bad_request("invalid-request", m.clone())
            }
            ClientError::IdempotencyKeyInFlight { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "idempotency-key-in-flight",
                "a request with this Idempotency-Key is still being stored; retry later",
            )
            .retryable(),
            ClientError::IdempotencyKeyReused { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this Idempotency-Key was used with a different body",
            ),
            ClientError::StaleReceipt(_) => ApiError::bad_request(
                "stale-receipt",
                "the receipt is no longer current (acked, redelivered or renewed)",
            ),
            ClientError::Timeout { .. } => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "broker-timeout",
                format!("{what}: the broker did not answer in time"),
            )
            .retryable(),
            ClientError::Remoting(e) if error.is_timeout() => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "broker-timeout",
                format!("{what}: {e}"),
            )
            .retryable(),
            ClientError::Broker { code, remark, .. } => from_broker_code(*code, remark, what),
            ClientError::Shutdown => {
                ApiError::unavailable("shutting-down", "the gateway is shutting down")
            }
            other => ApiError::unavailable("broker-unavailable", format!("{what}: {other}")),
        }
    }
}

fn from_broker_code(code: i32, remark: &str, what: &str) -> ApiError {
    match code {
        response::TOPIC_NOT_EXIST | response::SUBSCRIPTION_GROUP_NOT_EXIST => {
            ApiError::not_found(format!("{what} not found"))
        }
        response::MESSAGE_ILLEGAL | response::SUBSCRIPTION_PARSE_FAILED => {
            ApiError::bad_request("invalid-request", remark.to_string())
        }
        response::NO_PERMISSION => ApiError::forbidden(format!("{what}: {remark}")),
        response::FLUSH_DISK_TIMEOUT
        | response::FLUSH_SLAVE_TIMEOUT
        | response::SLAVE_NOT_AVAILABLE => {
            ApiError::unavailable("durability-timeout", format!("{what}: {remark}"))
        }
        response::RECEIPT_HANDLE_STALE => ApiError::bad_request(
            "stale-receipt",
            "the receipt is no longer current (acked, redelivered or renewed)",
        ),
        _ => ApiError::unavailable(
            "broker-unavailable",
            format!("{what}: broker code {code}: {remark}"),
        ),
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.slug, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(ErrorSlug(self.slug));
        response
    }
}

/// The error's slug, left on the response for logging and metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorSlug(pub &'static str);
