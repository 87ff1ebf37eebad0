//! Extractors with problem+json rejections: bodies within limits, JSON, query and path
//! parameters; and JSON responses.
//!
//! axum's own extractors answer bad input with plain-text errors; the contract wants problem
//! details, and the limits are ours (`limits.*`), so bodies and queries are read here.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::Gateway;

/// Reads a whole body of at most `limit` bytes within `timeout`.
pub async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::too_large(
            format!("the request body exceeds {limit} bytes"),
        )),
        Ok(Err(e)) => Err(ApiError::bad_request(
            "bad-body",
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// Refuses a declared `Content-Length` above `limit` before reading anything.
pub fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::too_large(format!(
            "the request body ({n} bytes) exceeds {limit} bytes"
        ))),
        _ => Ok(()),
    }
}

/// A JSON request body: `Content-Type: application/json` (415 otherwise), at most
/// `limits.max_json_bytes` (413), well-formed with the expected fields and types (400; unknown
/// fields are refused by the `deny_unknown_fields` of every request type).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Gateway>> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, gateway: &Arc<Gateway>) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        if !is_json {
            return Err(ApiError::unsupported_media_type(
                "this endpoint takes Content-Type: application/json",
            ));
        }
        let limits = &gateway.config.limits;
        check_declared_length(req.headers(), limits.max_json_bytes)?;
        let bytes = read_body(
            req.into_body(),
            limits.max_json_bytes,
            Duration::from_millis(limits.body_read_timeout_ms),
        )
        .await?;
        parse_json(&bytes).map(Json)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let slug = if e.is_syntax() || e.is_eof() {
            "invalid-json"
        } else {
            "invalid-field"
        };
        ApiError::bad_request(slug, format!("request body: {e}"))
    })
}

/// Query parameters, with a problem+json 400 for unknown parameters or bad values.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::bad_request("invalid-query", e.body_text()))
    }
}

/// Path parameters, with a problem+json 400 when one cannot be decoded.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| PathParams(p))
            .map_err(|e| ApiError::bad_request("invalid-path", e.body_text()))
    }
}

/// A JSON response with `200 OK`.
pub fn json_response<T: serde::Serialize>(value: &T) -> axum::response::Response {
    json_with_status(StatusCode::OK, value)
}

pub fn json_with_status<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
) -> axum::response::Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(CONTENT_TYPE, "application/json")],
            Body::from(body),
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("response encoding: {e}"),
        )
        .into_response(),
    }
}

use axum::response::IntoResponse;
