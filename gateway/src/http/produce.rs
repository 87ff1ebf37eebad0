//! Produce: `POST /v1/topics/{topic}/messages` (raw body, headers) and `…/messages:batch` (JSON).
//!
//! Both build a [`Draft`] per message, then send it the way its headers ask: pinned to the
//! ordering key's queue (`abs(javaHashCode(key) % n)` over the write queues sorted by
//! (brokerName, queueId), the producer's `send_ordered`), through the broker's idempotency
//! window, or round robin with retries on another broker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tern_core::client::{ClientError, Message, PullStatus, SendResult, SendStatus, Subscription};
use tern_core::store::MAX_IDEMPOTENCY_KEY_LEN;

use super::caller::Caller;
use super::extract::{Json, PathParams, check_declared_length, json_response, read_body};
use super::failure::{broker_failure, routed};
use super::message_json::{MAX_PROPERTIES, check_property, decode_body};
use super::queues::queue_number;
use crate::error::{ApiError, Problem};
use crate::names::Namespace;
use crate::state::Gateway;

/// Longest ordering key, in bytes.
pub const MAX_ORDERING_KEY: usize = 1024;
/// Longest `Tern-Keys` / `keys` list, in bytes.
pub const MAX_KEYS_LEN: usize = 4096;
/// Header prefix of user properties.
const PROP_PREFIX: &str = "tern-prop-";

/// One message ready to send, validated.
#[derive(Debug, Default)]
struct Draft {
    body: Bytes,
    tag: Option<String>,
    keys: Vec<String>,
    ordering_key: Option<String>,
    delay: Option<Duration>,
    deliver_at: Option<i64>,
    properties: BTreeMap<String, String>,
    idempotency_key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Produced {
    message_id: String,
    topic: String,
    queue_id: i32,
    queue_offset: i64,
}

#[derive(Deserialize)]
pub struct TopicPath {
    topic: String,
}

impl TopicPath {
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

pub async fn produce(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<TopicPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(&path.topic)?;
    caller.require_publish(&path.topic)?;
    let limit = gateway.config.limits.max_message_bytes;
    check_declared_length(&headers, limit)?;
    let draft = draft_from_headers(&headers)?;
    let body = read_body(
        body,
        limit,
        Duration::from_millis(gateway.config.limits.body_read_timeout_ms),
    )
    .await?;
    let draft = Draft { body, ..draft };
    let result = send(&gateway, &topic, &path.topic, draft).await?;
    let mut response = json_response(&produced(&gateway, &result, &caller.namespace));
    if result.replayed {
        response
            .headers_mut()
            .insert("tern-idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn produced(gateway: &Gateway, result: &SendResult, namespace: &Namespace) -> Produced {
    let queue_id = gateway
        .producer
        .routes()
        .cached(&result.queue.topic)
        .map_or(result.queue.queue_id, |route| {
            queue_number(&route, &result.queue)
        });
    Produced {
        message_id: result.msg_id.clone(),
        topic: namespace
            .client_name(&result.queue.topic)
            .unwrap_or_default()
            .to_string(),
        queue_id,
        queue_offset: result.queue_offset,
    }
}

/// The message settings of a single produce, from its headers.
fn draft_from_headers(headers: &HeaderMap) -> Result<Draft, ApiError> {
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map_err(|_| {
                    ApiError::bad_request("invalid-header", format!("{name} must be visible ASCII"))
                })
            })
            .transpose()
    };
    let mut draft = Draft {
        tag: text("tern-tag")?.map(str::to_string),
        keys: match text("tern-keys")? {
            Some(keys) => split_keys(keys)?,
            None => Vec::new(),
        },
        ordering_key: text("tern-ordering-key")?.map(str::to_string),
        delay: text("tern-delay")?.map(parse_delay).transpose()?,
        deliver_at: text("tern-deliver-at")?
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|ms| *ms >= 0)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid-header",
                            "Tern-Deliver-At must be a unix time in milliseconds",
                        )
                    })
            })
            .transpose()?,
        idempotency_key: text("idempotency-key")?.map(str::to_string),
        ..Draft::default()
    };
    for (name, value) in headers {
        if let Some(property) = name.as_str().strip_prefix(PROP_PREFIX) {
            let value = value.to_str().map_err(|_| {
                ApiError::bad_request("invalid-header", format!("{name} must be visible ASCII"))
            })?;
            draft
                .properties
                .insert(property.to_string(), value.to_string());
        }
    }
    check_draft(&draft)?;
    Ok(draft)
}

/// Checks what the broker would refuse, and what it would misread, before anything is sent.
fn check_draft(draft: &Draft) -> Result<(), ApiError> {
    let bad = |slug, m: String| Err(ApiError::bad_request(slug, m));
    if let Some(tag) = &draft.tag
        && (tag.is_empty() || tag.len() > 255 || tag.chars().any(|c| c.is_whitespace() || c == '|'))
    {
        return bad(
            "invalid-tag",
            "a tag must be 1..=255 characters without whitespace or `|`".into(),
        );
    }
    if let Some(key) = &draft.ordering_key
        && (key.is_empty() || key.len() > MAX_ORDERING_KEY)
    {
        return bad(
            "invalid-ordering-key",
            format!("an ordering key must be 1..={MAX_ORDERING_KEY} bytes"),
        );
    }
    if draft.delay.is_some() && draft.deliver_at.is_some() {
        return bad(
            "invalid-delay",
            "give Tern-Delay or Tern-Deliver-At, not both".into(),
        );
    }
    if let Some(key) = &draft.idempotency_key
        && tern_core::store::idempotency_key_rule(key).is_err()
    {
        return bad(
            "invalid-idempotency-key",
            format!(
                "an Idempotency-Key must be 1..={MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        );
    }
    if draft.properties.len() > MAX_PROPERTIES {
        return bad(
            "invalid-property",
            format!("at most {MAX_PROPERTIES} properties"),
        );
    }
    for (name, value) in &draft.properties {
        check_property(name, value)?;
    }
    Ok(())
}

fn split_keys(keys: &str) -> Result<Vec<String>, ApiError> {
    if keys.len() > MAX_KEYS_LEN {
        return Err(ApiError::bad_request(
            "invalid-keys",
            format!("keys are at most {MAX_KEYS_LEN} bytes in all"),
        ));
    }
    let keys: Vec<String> = keys
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    if keys.iter().any(|k| k.chars().any(char::is_whitespace)) {
        return Err(ApiError::bad_request(
            "invalid-keys",
            "a key may not contain whitespace",
        ));
    }
    Ok(keys)
}

/// `500ms`, `10s`, `5m`, `2h`, `1d` → a duration.
fn parse_delay(text: &str) -> Result<Duration, ApiError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| invalid_delay(text))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(|| invalid_delay(text))?;
    Ok(Duration::from_millis(ms))
}

fn invalid_delay(text: &str) -> ApiError {
    ApiError::bad_request(
        "invalid-delay",
        format!(
            "delay `{}` must be a whole number with a unit: ms, s, m, h or d (e.g. 10s, 5m, 2h)",
            text.chars().take(40).collect::<String>()
        ),
    )
}

/// Sends one draft to broker topic `topic` (`client_topic` is its name for messages). An
/// unknown topic is created first when `auto_create_topics` is on.
async fn send(
    gateway: &Gateway,
    topic: &str,
    client_topic: &str,
    draft: Draft,
) -> Result<SendResult, ApiError> {
    let bytes = draft.body.len() as u64;
    let ordering_key = draft.ordering_key.clone();
    let message = build_message(topic, draft);
    let attempt = || async {
        match &ordering_key {
            Some(key) => gateway.producer.send_ordered(&message, key).await,
            None => gateway.producer.send(&message).await,
        }
    };
    let mut result = attempt().await;
    if gateway.config.auto_create_topics && matches!(result, Err(ClientError::NoRoute { .. })) {
        gateway
            .admin
            .create_topic(topic, gateway.config.default_topic_queues, 6)
            .await
            .map_err(|e| broker_failure(gateway, &e, client_topic))?;
        result = attempt().await;
    }
    let mut result = routed(gateway, result, topic, client_topic).await?;
    if result.status != SendStatus::Ok {
        let error = ApiError::unavailable(
            "durability-timeout",
            format!(
                "the message was stored but not made durable in time ({:?}); retry with an \
                 Idempotency-Key to avoid a duplicate",
                result.status
            ),
        );
        gateway.metrics.broker_error(error.slug);
        return Err(error);
    }
    if result.replayed {
        result.msg_id = first_message_id(gateway, topic, client_topic, &result).await?;
    } else {
        gateway.metrics.produced(1, bytes);
    }
    Ok(result)
}

/// The message id of the first send that a replay answers for. The broker's replay names the
/// stored record (its offset message id, queue and offset), but the id clients know is that
/// message's `UNIQ_KEY`, which this send's freshly generated one is not: read it from the record.
async fn first_message_id(
    gateway: &Gateway,
    topic: &str,
    client_topic: &str,
    result: &SendResult,
) -> Result<String, ApiError> {
    // In its queue (by queue offset, so a broker that moved since still finds it)...
    let pulled = gateway
        .puller
        .pull(
            &result.queue,
            result.queue_offset,
            1,
            None,
            &Subscription::all(),
        )
        .await;
    if let Ok(pulled) = pulled
        && pulled.status == PullStatus::Found
        && let Some(stored) = pulled
            .messages
            .iter()
            .find(|m| m.offset_msg_id == result.offset_msg_id)
    {
        return Ok(stored.msg_id.clone());
    }
    // ...or by CommitLog offset (a delayed message's record is in the timer's queue).
    let stored = gateway
        .admin
        .message_by_id(topic, &result.offset_msg_id)
        .await
        .map_err(|e| broker_failure(gateway, &e, client_topic))?;
    stored.map(|m| m.msg_id).ok_or_else(|| {
        let error = ApiError::unavailable(
            "broker-unavailable",
            format!(
                "topic `{client_topic}`: the message this Idempotency-Key stored could not be \
                 read back; retry"
            ),
        );
        gateway.metrics.broker_error(error.slug);
        error
    })
}

fn build_message(topic: &str, draft: Draft) -> Message {
    let mut message = Message::new(topic, draft.body);
    if let Some(tag) = draft.tag {
        message = message.with_tag(tag);
    }
    for key in draft.keys {
        message = message.with_key(key);
    }
    for (name, value) in draft.properties {
        message = message.with_property(name, value);
    }
    if let Some(delay) = draft.delay {
        message = message.with_delay(delay);
    }
    if let Some(at) = draft.deliver_at {
        message = message.with_deliver_at(at);
    }
    if let Some(key) = draft.idempotency_key {
        message = message.with_idempotency_key(key);
    }
    message
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    messages: Vec<BatchEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BatchEntry {
    body: String,
    body_encoding: Option<String>,
    tag: Option<String>,
    keys: Option<Vec<String>>,
    ordering_key: Option<String>,
    delay: Option<String>,
    deliver_at: Option<i64>,
    #[serde(default)]
    properties: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryResult {
    status: u16,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    produced: Option<Produced>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotent_replayed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Problem>,
}

/// `POST /v1/topics/{topic}/messages:batch`: every entry is validated and sent on its own and
/// gets its own result, in request order. Entries with the same ordering key are sent one after
/// the other in request order (so they are stored in it); the rest concurrently. With an
/// `Idempotency-Key` header, entry `i` is sent with the key `<key>#<i>`, so retrying the whole
/// batch stores each entry once.
pub async fn produce_batch(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<TopicPath>,
    headers: HeaderMap,
    Json(request): Json<BatchRequest>,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(&path.topic)?;
    caller.require_publish(&path.topic)?;
    let limits = &gateway.config.limits;
    if request.messages.is_empty() || request.messages.len() > limits.max_batch_messages {
        return Err(ApiError::bad_request(
            "invalid-batch",
            format!("a batch holds 1..={} messages", limits.max_batch_messages),
        ));
    }
    let batch_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| {
                    k.len() + 6 <= MAX_IDEMPOTENCY_KEY_LEN
                        && tern_core::store::idempotency_key_rule(k).is_ok()
                })
                .map(str::to_string)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid-idempotency-key",
                        format!(
                            "a batch's Idempotency-Key must be visible ASCII of at most {} characters",
                            MAX_IDEMPOTENCY_KEY_LEN - 6
                        ),
                    )
                })
        })
        .transpose()?;
    let drafts: Vec<Result<Draft, ApiError>> = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            draft_from_entry(entry, limits.max_message_bytes).map(|mut draft| {
                draft.idempotency_key = batch_key.as_ref().map(|k| format!("{k}#{i}"));
                draft
            })
        })
        .collect();
    // Lanes: one per ordering key (sequential inside), one per unkeyed entry.
    let mut lanes: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    let mut unkeyed = Vec::new();
    for (i, draft) in drafts.iter().enumerate() {
        match draft {
            Ok(d) if d.ordering_key.is_some() => {
                lanes.entry(d.ordering_key.clone()).or_default().push(i)
            }
            _ => unkeyed.push(i),
        }
    }
    let mut slots: Vec<Option<Result<Draft, ApiError>>> = drafts.into_iter().map(Some).collect();
    let mut lane_jobs = Vec::new();
    for indexes in lanes
        .into_values()
        .chain(unkeyed.into_iter().map(|i| vec![i]))
    {
        let jobs: Vec<(usize, Result<Draft, ApiError>)> = indexes
            .into_iter()
            .filter_map(|i| slots[i].take().map(|d| (i, d)))
            .collect();
        lane_jobs.push(jobs);
    }
    let gateway_ref = &gateway;
    let topic_ref = &topic;
    let client_topic = &path.topic;
    let lanes = lane_jobs.into_iter().map(|jobs| async move {
        let mut out = Vec::with_capacity(jobs.len());
        for (i, draft) in jobs {
            let result = match draft {
                Ok(draft) => send(gateway_ref, topic_ref, client_topic, draft).await,
                Err(e) => Err(e),
            };
            out.push((i, result));
        }
        out
    });
    let mut results: Vec<Option<EntryResult>> = (0..slots.len()).map(|_| None).collect();
    for (i, result) in join_all(lanes).await.into_iter().flatten() {
        results[i] = Some(match result {
            Ok(sent) => EntryResult {
                status: StatusCode::OK.as_u16(),
                idempotent_replayed: sent.replayed.then_some(true),
                produced: Some(produced(&gateway, &sent, &caller.namespace)),
                error: None,
            },
            Err(e) => EntryResult {
                status: e.status.as_u16(),
                produced: None,
                idempotent_replayed: None,
                error: Some(e.problem()),
            },
        });
    }
    #[derive(Serialize)]
    struct BatchResponse {
        results: Vec<EntryResult>,
    }
    Ok(json_response(&BatchResponse {
        results: results.into_iter().flatten().collect(),
    })
    .into_response())
}

fn draft_from_entry(entry: BatchEntry, max_bytes: usize) -> Result<Draft, ApiError> {
    let body = Bytes::from(decode_body(&entry.body, entry.body_encoding.as_deref())?);
    if body.len() > max_bytes {
        return Err(ApiError::too_large(format!(
            "the message body exceeds {max_bytes} bytes"
        )));
    }
    let keys = match entry.keys {
        Some(keys) => split_keys(&keys.join(","))?,
        None => Vec::new(),
    };
    let draft = Draft {
        body,
        tag: entry.tag,
        keys,
        ordering_key: entry.ordering_key,
        delay: entry.delay.as_deref().map(parse_delay).transpose()?,
        deliver_at: entry
            .deliver_at
            .map(|ms| {
                (ms >= 0).then_some(ms).ok_or_else(|| {
                    ApiError::bad_request("invalid-delay", "deliverAt must be a unix time in ms")
                })
            })
            .transpose()?,
        properties: entry.properties,
        idempotency_key: None,
    };
    check_draft(&draft)?;
    Ok(draft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse() {
        assert_eq!(parse_delay("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_delay("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_delay("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_delay("250ms").unwrap(), Duration::from_millis(250));
        for bad in [
            "",
            "s",
            "10",
            "-1s",
            "1.5s",
            "10 s",
            "99999999999999999999d",
            "1w",
        ] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_split() {
        assert_eq!(split_keys("a, b,,c").unwrap(), ["a", "b", "c"]);
        assert!(split_keys("a b").is_err());
    }
}
