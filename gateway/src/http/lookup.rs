//! Lookups through the brokers' IndexFiles: `GET /v1/topics/{topic}/messages/{messageId}` and
//! `GET /v1/topics/{topic}/messages?key=&from=&to=&max=`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::extract::{Params, PathParams, json_response};
use super::failure::routed;
use super::message_json::MessageJson;
use super::produce::TopicPath;
use super::queues::queue_number;
use crate::error::ApiError;
use crate::state::Gateway;

/// Most messages one key lookup returns.
pub const MAX_LOOKUP: u32 = 64;
/// Longest message id or key looked up.
const MAX_ID_LEN: usize = 256;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePath {
    topic: String,
    message_id: String,
}

/// `GET /v1/topics/{topic}/messages/{messageId}`.
pub async fn by_id(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<MessagePath>,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(&path.topic)?;
    caller.require_consume(&path.topic)?;
    if path.message_id.is_empty() || path.message_id.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(
            "invalid-message-id",
            "message id is 1..=256 characters",
        ));
    }
    let found = routed(
        &gateway,
        gateway.admin.message_by_id(&topic, &path.message_id).await,
        &topic,
        &path.topic,
    )
    .await?;
    let json = found
        .and_then(|m| to_json(&gateway, &caller, &topic, &m))
        .ok_or_else(|| ApiError::not_found(format!("message `{}` not found", path.message_id)))?;
    Ok(json_response(&json))
}

fn to_json(
    gateway: &Gateway,
    caller: &Caller,
    topic: &str,
    message: &tern_core::client::ReceivedMessage,
) -> Option<MessageJson> {
    if message.topic() != topic {
        return None;
    }
    let mut json = MessageJson::new(message, &caller.namespace)?;
    if let Some(route) = gateway.routes().cached(topic) {
        json.queue_id = queue_number(&route, &message.queue);
    }
    Some(json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    key: String,
    from: Option<i64>,
    to: Option<i64>,
    max: Option<u32>,
}

#[derive(Serialize)]
struct Messages {
    messages: Vec<MessageJson>,
}

/// `GET /v1/topics/{topic}/messages?key=K&from=<unix ms>&to=<unix ms>&max=N`: messages whose
/// `Tern-Keys` hold `K`, stored within the range, oldest first.
pub async fn by_key(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<TopicPath>,
    Params(query): Params<KeyQuery>,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(path.topic())?;
    caller.require_consume(path.topic())?;
    if query.key.is_empty() || query.key.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(
            "invalid-key",
            "key is 1..=256 characters",
        ));
    }
    let from = query.from.unwrap_or(0);
    let to = query.to.unwrap_or(i64::MAX);
    if from < 0 || to < from {
        return Err(ApiError::bad_request(
            "invalid-range",
            "from and to are unix ms with 0 ≤ from ≤ to",
        ));
    }
    let max = query.max.unwrap_or(32);
    ApiError::check_range(max, 1..=MAX_LOOKUP, "invalid-max", "max")?;
    let found = routed(
        &gateway,
        gateway
            .admin
            .messages_by_key(&topic, &query.key, from, to, max as usize)
            .await,
        &topic,
        path.topic(),
    )
    .await?;
    let messages = found
        .iter()
        .filter_map(|m| to_json(&gateway, &caller, &topic, m))
        .collect();
    Ok(json_response(&Messages { messages }))
}
