//! Topic and group administration: `PUT/GET/DELETE /v1/topics/{topic}`, `GET /v1/topics`,
//! `PUT /v1/groups/{group}`, group offsets (lag) and offset resets.
//!
//! Changing a topic or group needs the `admin` scope; reading a topic needs any scope on it.
//! Everything is in the caller's namespace: another tenant's topics are neither listed nor
//! reachable (404, as for a topic that does not exist).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tern_core::client::admin::ResetTarget;
use tern_core::protocol::body::SubscriptionGroupConfig;
use tern_core::protocol::codes::perm;
use tern_core::protocol::retry_policy::{GroupRetryPolicy, MAX_RETRY_DELAY_MS};

use super::caller::Caller;
use super::extract::{Json, PathParams, json_response};
use super::failure::{broker_failure, routed};
use super::pop::{GroupTopic, GroupTopicPath};
use super::produce::TopicPath;
use crate::error::ApiError;
use crate::state::Gateway;

/// Queues of one topic at most (per broker group; the broker's limit).
const MAX_TOPIC_QUEUES: i32 = 1024;
/// Longest `maxDeliveryAttempts` (RocketMQ allows up to 16 retries by default, more when set).
const MAX_DELIVERY_ATTEMPTS: i32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    queues: Option<i32>,
    perm: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueInfo {
    queue_id: i32,
    broker_name: String,
    min_offset: i64,
    max_offset: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TopicInfo {
    topic: String,
    perm: &'static str,
    queues: Vec<QueueInfo>,
}

fn perm_bits(text: &str) -> Result<i32, ApiError> {
    match text {
        "rw" => Ok(perm::READ | perm::WRITE),
        "r" => Ok(perm::READ),
        "w" => Ok(perm::WRITE),
        other => Err(ApiError::bad_request(
            "invalid-field",
            format!(
                "perm must be \"rw\", \"r\" or \"w\", not `{}`",
                other.chars().take(20).collect::<String>()
            ),
        )),
    }
}

fn perm_text(read: bool, write: bool) -> &'static str {
    match (read, write) {
        (true, true) => "rw",
        (true, false) => "r",
        (false, true) => "w",
        (false, false) => "none",
    }
}

/// `PUT /v1/topics/{topic}` `{queues, perm}`: creates or updates the topic on every broker
/// group, then answers like `GET`.
pub async fn put_topic(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<TopicPath>,
    Json(spec): Json<TopicSpec>,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(path.topic())?;
    caller.require_admin()?;
    let queues = spec.queues.unwrap_or(gateway.config.default_topic_queues);
    ApiError::check_range(queues, 1..=MAX_TOPIC_QUEUES, "invalid-field", "queues")?;
    let bits = perm_bits(spec.perm.as_deref().unwrap_or("rw"))?;
    gateway
        .admin
        .create_topic(&topic, queues, bits)
        .await
        .map_err(|e| broker_failure(&gateway, &e, path.topic()))?;
    topic_info(&gateway, &topic, path.topic()).await
}

/// `GET /v1/topics/{topic}`: permission, and per queue its broker and min/max offsets.
pub async fn get_topic(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<TopicPath>,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(path.topic())?;
    if let Some(principal) = &caller.principal
        && !(principal.is_admin()
            || principal.can_consume(path.topic())
            || principal.can_publish(path.topic()))
    {
        return Err(ApiError::forbidden(format!(
            "the token has no scope on topic `{}`",
            path.topic()
        )));
    }
    topic_info(&gateway, &topic, path.topic()).await
}

async fn topic_info(
    gateway: &Gateway,
    topic: &str,
    client_topic: &str,
) -> Result<Response, ApiError> {
    let route = routed(
        gateway,
        gateway.routes().refresh(topic).await,
        topic,
        client_topic,
    )
    .await?;
    let offsets = routed(
        gateway,
        gateway.admin.queue_offsets(topic).await,
        topic,
        client_topic,
    )
    .await?;
    let queues = offsets
        .into_iter()
        .enumerate()
        .map(|(i, q)| QueueInfo {
            queue_id: i as i32,
            broker_name: q.queue.broker_name,
            min_offset: q.min_offset,
            max_offset: q.max_offset,
        })
        .collect();
    Ok(json_response(&TopicInfo {
        topic: client_topic.to_string(),
        perm: perm_text(
            !route.read_queues.is_empty(),
            !route.write_queues.is_empty(),
        ),
        queues,
    }))
}

/// `DELETE /v1/topics/{topic}` → 204.
pub async fn delete_topic(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<TopicPath>,
) -> Result<Response, ApiError> {
    let topic = caller.namespace.topic(path.topic())?;
    caller.require_admin()?;
    // 404 for a topic that does not exist (or is another tenant's).
    routed(
        &gateway,
        gateway.routes().refresh(&topic).await,
        &topic,
        path.topic(),
    )
    .await?;
    gateway
        .admin
        .delete_topic(&topic)
        .await
        .map_err(|e| broker_failure(&gateway, &e, path.topic()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct TopicList {
    topics: Vec<String>,
}

/// `GET /v1/topics`: the caller's topics (system, retry and dead-letter topics left out).
pub async fn list_topics(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let all = gateway
        .admin
        .topics()
        .await
        .map_err(|e| broker_failure(&gateway, &e, "*"))?;
    let mut topics: Vec<String> = all
        .iter()
        .filter(|t| !is_system_topic(t))
        .filter_map(|t| caller.namespace.client_name(t))
        .filter(|t| match &caller.principal {
            Some(p) => p.is_admin() || p.can_consume(t) || p.can_publish(t),
            None => true,
        })
        .map(str::to_string)
        .collect();
    topics.sort();
    topics.dedup();
    Ok(json_response(&TopicList { topics }))
}

/// Topics the broker keeps for itself.
fn is_system_topic(topic: &str) -> bool {
    topic.starts_with("rmq_sys_")
        || topic == tern_core::store::SCHEDULE_TOPIC
        || topic == "TBW102"
        || topic.starts_with("%RETRY%")
        || topic.starts_with("%DLQ%")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupSpec {
    fifo: Option<bool>,
    max_delivery_attempts: Option<i32>,
    retry_backoff: Option<RetryBackoff>,
}

/// How long a nacked message waits before its next delivery when the nack names no delay:
/// exponential (`initialSeconds · multiplier^(attempt−1)`, at most `maxSeconds`) or a list
/// (`delaysSeconds[attempt−1]`, the last one repeating). Stored as the group's RocketMQ
/// `groupRetryPolicy` on every broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase", untagged)]
pub enum RetryBackoff {
    Exponential {
        #[serde(rename = "initialSeconds")]
        initial_seconds: f64,
        #[serde(rename = "maxSeconds")]
        max_seconds: f64,
        multiplier: u32,
    },
    Delays {
        #[serde(rename = "delaysSeconds")]
        delays_seconds: Vec<f64>,
    },
}

impl RetryBackoff {
    fn to_policy(&self) -> Result<GroupRetryPolicy, ApiError> {
        let ms = |secs: f64| -> Result<i64, ApiError> {
            if secs.is_finite() && (0.0..=(MAX_RETRY_DELAY_MS / 1000) as f64).contains(&secs) {
                Ok((secs * 1000.0).round() as i64)
            } else {
                Err(ApiError::bad_request(
                    "invalid-field",
                    format!(
                        "retryBackoff delays must be 0..={} seconds",
                        MAX_RETRY_DELAY_MS / 1000
                    ),
                ))
            }
        };
        let policy = match self {
            RetryBackoff::Exponential {
                initial_seconds,
                max_seconds,
                multiplier,
            } => GroupRetryPolicy::exponential(
                ms(*initial_seconds)?,
                ms(*max_seconds)?,
                i64::from(*multiplier),
            ),
            RetryBackoff::Delays { delays_seconds } => GroupRetryPolicy::customized(
                delays_seconds
                    .iter()
                    .map(|s| ms(*s))
                    .collect::<Result<_, _>>()?,
            ),
        };
        policy
            .validate()
            .map_err(|e| ApiError::bad_request("invalid-field", format!("retryBackoff: {e}")))?;
        Ok(policy)
    }
}

#[derive(Deserialize)]
pub struct GroupPath {
    group: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupInfo {
    group: String,
    fifo: bool,
    max_delivery_attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_backoff: Option<RetryBackoff>,
}

/// `PUT /v1/groups/{group}` `{fifo, maxDeliveryAttempts, retryBackoff}` on every broker group.
pub async fn put_group(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupPath>,
    Json(spec): Json<GroupSpec>,
) -> Result<Response, ApiError> {
    let group = caller.namespace.group(&path.group)?;
    caller.require_admin()?;
    let policy = spec
        .retry_backoff
        .as_ref()
        .map(RetryBackoff::to_policy)
        .transpose()?;
    let attempts = spec.max_delivery_attempts.unwrap_or(17);
    ApiError::check_range(
        attempts,
        1..=MAX_DELIVERY_ATTEMPTS,
        "invalid-field",
        "maxDeliveryAttempts",
    )?;
    let fifo = spec.fifo.unwrap_or(false);
    let mut config = SubscriptionGroupConfig::new(group);
    config.consume_message_orderly = fifo;
    config.retry_max_times = attempts - 1;
    config.group_retry_policy = policy;
    gateway
        .admin
        .configure_group(&config)
        .await
        .map_err(|e| broker_failure(&gateway, &e, &format!("group {}", path.group)))?;
    gateway.forget_group_table();
    Ok(json_response(&GroupInfo {
        group: path.group,
        fifo,
        max_delivery_attempts: attempts,
        retry_backoff: spec.retry_backoff,
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueLag {
    queue_id: i32,
    committed_offset: i64,
    max_offset: i64,
    lag: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupOffsets {
    group: String,
    topic: String,
    lag: i64,
    queues: Vec<QueueLag>,
}

fn group_offsets_json(
    target: &GroupTopic,
    offsets: Vec<tern_core::client::admin::GroupQueueOffset>,
) -> GroupOffsets {
    let queues: Vec<QueueLag> = offsets
        .into_iter()
        .enumerate()
        .map(|(i, q)| QueueLag {
            queue_id: i as i32,
            committed_offset: q.committed,
            max_offset: q.max_offset,
            lag: q.lag,
        })
        .collect();
    GroupOffsets {
        group: target.client_group.clone(),
        topic: target.client_topic.clone(),
        lag: queues.iter().map(|q| q.lag.max(0)).sum(),
        queues,
    }
}

/// `GET /v1/groups/{group}/topics/{topic}/offsets`: the group's position and lag per queue.
pub async fn offsets(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupTopicPath>,
) -> Result<Response, ApiError> {
    let target = GroupTopic::resolve(&caller, path)?;
    let offsets = routed(
        &gateway,
        gateway
            .admin
            .group_offsets(&target.group, &target.topic)
            .await,
        &target.topic,
        &target.client_topic,
    )
    .await?;
    Ok(json_response(&group_offsets_json(&target, offsets)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResetRequest {
    to: Option<String>,
    timestamp: Option<i64>,
}

/// `POST …/offsets:reset` `{to: "earliest"|"latest"}` or `{timestamp: <unix ms>}`.
pub async fn reset_offsets(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupTopicPath>,
    Json(request): Json<ResetRequest>,
) -> Result<Response, ApiError> {
    let target = GroupTopic::resolve(&caller, path)?;
    caller.require_admin()?;
    let to = match (request.to.as_deref(), request.timestamp) {
        (Some("earliest"), None) => ResetTarget::Earliest,
        (Some("latest"), None) => ResetTarget::Latest,
        (None, Some(ms)) if ms >= 0 => ResetTarget::Timestamp(ms),
        _ => {
            return Err(ApiError::bad_request(
                "invalid-field",
                "give either to: \"earliest\" | \"latest\", or timestamp: <unix ms ≥ 0>",
            ));
        }
    };
    let offsets = routed(
        &gateway,
        gateway
            .admin
            .reset_group_offsets(&target.group, &target.topic, to)
            .await,
        &target.topic,
        &target.client_topic,
    )
    .await?;
    Ok(json_response(&group_offsets_json(&target, offsets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_parses_both_shapes_and_refuses_the_rest() {
        let exp: RetryBackoff =
            serde_json::from_str(r#"{"initialSeconds":0.5,"maxSeconds":60,"multiplier":2}"#)
                .unwrap();
        assert_eq!(
            exp.to_policy().unwrap(),
            GroupRetryPolicy::exponential(500, 60_000, 2)
        );
        let list: RetryBackoff = serde_json::from_str(r#"{"delaysSeconds":[1,5,30]}"#).unwrap();
        assert_eq!(
            list.to_policy().unwrap(),
            GroupRetryPolicy::customized(vec![1_000, 5_000, 30_000])
        );
        for bad in [
            r#"{"delaysSeconds":[1],"extra":1}"#,
            r#"{"initialSeconds":1}"#,
            r#"{"delaysSeconds":"1"}"#,
            r#"[1,2]"#,
        ] {
            assert!(serde_json::from_str::<RetryBackoff>(bad).is_err(), "{bad}");
        }
        for bad in [
            r#"{"delaysSeconds":[]}"#,
            r#"{"delaysSeconds":[-1]}"#,
            r#"{"delaysSeconds":[86400]}"#,
            r#"{"initialSeconds":10,"maxSeconds":1,"multiplier":2}"#,
            r#"{"initialSeconds":1,"maxSeconds":10,"multiplier":0}"#,
        ] {
            let parsed: RetryBackoff = serde_json::from_str(bad).unwrap();
            assert!(parsed.to_policy().is_err(), "{bad}");
        }
    }
}
