//! [`Caller`]: who sent a request, in which namespace, and what they may do.
//!
//! Extracting a `Caller` authenticates the request (when auth is on) and charges the tenant's
//! rate limit, so a handler that takes one cannot forget either. Scope checks happen in the
//! handler, once it knows the topic (`publish:`/`consume:` patterns name topics).

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Query};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{GROUP_EVENTS_ROUTE, TOPIC_EVENTS_ROUTE};
use crate::auth::{Principal, bearer_token};
use crate::error::ApiError;
use crate::names::Namespace;
use crate::state::Gateway;

/// The rate-limit bucket of requests without a tenant (auth off).
const ANONYMOUS: &str = "";
/// Longest query string searched for `access_token`.
const MAX_QUERY_TOKEN: usize = 8 * 1024;

pub struct Caller {
    pub namespace: Namespace,
    /// `None` when auth is off: everything is allowed.
    pub principal: Option<Principal>,
}

impl Caller {
    pub fn require_publish(&self, topic: &str) -> Result<(), ApiError> {
        self.require(|p| p.can_publish(topic), || format!("publish:{topic}"))
    }

    pub fn require_consume(&self, topic: &str) -> Result<(), ApiError> {
        self.require(|p| p.can_consume(topic), || format!("consume:{topic}"))
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(Principal::is_admin, || "admin".to_string())
    }

    fn require(
        &self,
        allowed: impl FnOnce(&Principal) -> bool,
        scope: impl FnOnce() -> String,
    ) -> Result<(), ApiError> {
        match &self.principal {
            Some(p) if !allowed(p) => Err(ApiError::forbidden(format!(
                "the token lacks the scope `{}`",
                scope()
            ))),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Caller, ApiError> {
        let caller = match &gateway.verifier {
            None => Caller {
                namespace: Namespace::open(),
                principal: None,
            },
            Some(verifier) => {
                let token = token(parts)?;
                let principal = verifier
                    .verify(&token)
                    .map_err(|e| ApiError::unauthorized(e.detail()))?;
                Caller {
                    namespace: Namespace::tenant(principal.tenant.clone()),
                    principal: Some(principal),
                }
            }
        };
        let bucket = caller.namespace.tenant_name().unwrap_or(ANONYMOUS);
        if let Err(retry_after) = gateway.limiter.check(bucket, 1.0) {
            return Err(ApiError::rate_limited(
                retry_after.as_secs_f64().ceil() as u64
            ));
        }
        Ok(caller)
    }
}

/// The bearer token: the `Authorization` header, or (event streams only, since browsers'
/// EventSource cannot set headers) the `access_token` query parameter.
fn token(parts: &Parts) -> Result<String, ApiError> {
    if let Some(value) = parts.headers.get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
        return bearer_token(value)
            .map(str::to_string)
            .map_err(|e| ApiError::unauthorized(e.detail()));
    }
    if is_event_stream(parts)
        && parts
            .uri
            .query()
            .is_some_and(|q| q.len() <= MAX_QUERY_TOKEN)
        && let Ok(Query(query)) = Query::<TokenQuery>::try_from_uri(&parts.uri)
        && let Some(token) = query.access_token
    {
        return Ok(token);
    }
    Err(ApiError::unauthorized("a bearer token is required"))
}

/// Whether the request is for an event stream: matched by route and method, not by the path's
/// shape (`/v1/topics/events` is the topic named `events`).
fn is_event_stream(parts: &Parts) -> bool {
    parts.method == Method::GET
        && parts
            .extensions
            .get::<MatchedPath>()
            .is_some_and(|route| [GROUP_EVENTS_ROUTE, TOPIC_EVENTS_ROUTE].contains(&route.as_str()))
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}
