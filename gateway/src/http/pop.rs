//! Consumer-group consumption: receive, ack, nack and visibility changes.
//!
//! The broker does the work (it assigns messages, keeps them in flight, redelivers and
//! dead-letters); the gateway translates, and seals each broker receipt handle together with
//! tenant, group and topic ([`crate::receipt`]), so any gateway instance accepts it and no other
//! tenant, group or topic can use it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tern_core::client::{PopConsumer, PoppedMessage, Receipt, ReceiveOptions};

use super::caller::Caller;
use super::extract::{Json, PathParams, json_response};
use super::failure::{broker_failure, routed};
use super::message_json::MessageJson;
use super::queues::{check_wait, queue_number};
use crate::error::ApiError;
use crate::receipt::ReceiptBody;
use crate::state::Gateway;

/// Longest invisible time or nack delay, in seconds (the broker's 12 h).
pub const MAX_INVISIBLE_SECS: u64 = 12 * 3600;
/// Invisible time of a receive that names none.
const DEFAULT_INVISIBLE_SECS: u64 = 30;

#[derive(Deserialize)]
pub struct GroupTopicPath {
    pub group: String,
    pub topic: String,
}

/// A resolved `/v1/groups/{group}/topics/{topic}` request: broker-side names and the consumer.
pub struct GroupTopic {
    pub group: String,
    pub topic: String,
    pub client_group: String,
    pub client_topic: String,
    pub tenant: String,
}

impl GroupTopic {
    /// Resolves the names in the caller's namespace and checks the `consume:` scope.
    pub fn resolve(caller: &Caller, path: GroupTopicPath) -> Result<GroupTopic, ApiError> {
        let topic = caller.namespace.topic(&path.topic)?;
        let group = caller.namespace.group(&path.group)?;
        caller.require_consume(&path.topic)?;
        Ok(GroupTopic {
            group,
            topic,
            client_group: path.group,
            client_topic: path.topic,
            tenant: caller.namespace.tenant_name().unwrap_or("").to_string(),
        })
    }

    /// A broker call's result on this topic, its failure mapped by [`routed`].
    pub async fn routed<T>(
        &self,
        gateway: &Gateway,
        result: Result<T, tern_core::client::ClientError>,
    ) -> Result<T, ApiError> {
        routed(gateway, result, &self.topic, &self.client_topic).await
    }

    pub fn consumer(&self, gateway: &Gateway) -> Result<Arc<PopConsumer>, ApiError> {
        gateway
            .pop_consumer(&self.group)
            .map_err(|e| ApiError::from_client(&e, &format!("group `{}`", self.client_group)))
    }

    /// Seals a broker receipt for the client; `delivery_attempt` rides along for the group's
    /// retry policy.
    pub fn seal(&self, gateway: &Gateway, receipt: &Receipt, delivery_attempt: u32) -> String {
        gateway.sealer.seal(&ReceiptBody {
            tenant: self.tenant.clone(),
            group: self.client_group.clone(),
            topic: self.client_topic.clone(),
            broker_name: receipt.broker_name.clone(),
            queue_id: receipt.queue_id,
            queue_offset: receipt.queue_offset,
            handle: receipt.handle.clone(),
            delivery_attempt,
        })
    }

    /// Opens a client's receipt: 400 when it is forged, altered, or sealed for another tenant,
    /// group or topic.
    pub fn open(&self, gateway: &Gateway, sealed: &str) -> Result<(Receipt, u32), ApiError> {
        let body = gateway
            .sealer
            .open(sealed, &self.tenant, &self.client_group, &self.client_topic)
            .map_err(|e| {
                ApiError::bad_request("invalid-receipt", format!("the receipt is invalid: {e}"))
            })?;
        let receipt = Receipt {
            topic: self.topic.clone(),
            broker_name: body.broker_name,
            queue_id: body.queue_id,
            queue_offset: body.queue_offset,
            handle: body.handle,
        };
        Ok((receipt, body.delivery_attempt))
    }

    /// The JSON of a popped message, with its sealed receipt and HTTP queue number.
    pub fn message_json(
        &self,
        gateway: &Gateway,
        caller: &Caller,
        popped: &PoppedMessage,
    ) -> Option<MessageJson> {
        let mut json = MessageJson::new(&popped.message, &caller.namespace)?;
        if let Some(route) = gateway.routes().cached(&self.topic) {
            json.queue_id = queue_number(&route, &popped.message.queue);
        }
        json.delivery_attempt = Some(popped.delivery_attempt);
        json.receipt = Some(self.seal(
            gateway,
            &popped.receipt,
            popped.delivery_attempt.max(1) as u32,
        ));
        Some(json)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReceiveRequest {
    max: Option<u32>,
    invisible_seconds: Option<u64>,
    wait_seconds: Option<u64>,
    tag: Option<String>,
}

#[derive(Serialize)]
struct Messages {
    messages: Vec<MessageJson>,
}

/// `POST …/messages:receive`.
pub async fn receive(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupTopicPath>,
    Json(request): Json<ReceiveRequest>,
) -> Result<Response, ApiError> {
    let target = GroupTopic::resolve(&caller, path)?;
    let limits = &gateway.config.limits;
    let max = request.max.unwrap_or(1);
    ApiError::check_range(max, 1..=limits.max_receive, "invalid-max", "max")?;
    let invisible = check_invisible(
        request.invisible_seconds.unwrap_or(DEFAULT_INVISIBLE_SECS),
        "invisibleSeconds",
        1,
    )?;
    let wait = check_wait(request.wait_seconds.unwrap_or(0), limits.max_wait_secs)?;
    let options = ReceiveOptions {
        max_messages: max as i32,
        invisible,
        wait: wait.unwrap_or(Duration::ZERO),
        tag: request.tag.unwrap_or_else(|| "*".to_string()),
        start_at_end: false,
    };
    let consumer = target.consumer(&gateway)?;
    let popped = gateway
        .unless_shutdown(consumer.receive(&target.topic, &options))
        .await
        .unwrap_or(Ok(Vec::new()));
    let popped = target.routed(&gateway, popped).await?;
    let bytes = popped.iter().map(|p| p.message.body.len() as u64).sum();
    let messages: Vec<MessageJson> = popped
        .iter()
        .filter_map(|p| target.message_json(&gateway, &caller, p))
        .collect();
    gateway.metrics.consumed(messages.len() as u64, bytes);
    Ok(json_response(&Messages { messages }))
}

/// An invisible time or delay in seconds, `min..=12 h`.
pub fn check_invisible(secs: u64, field: &str, min: u64) -> Result<Duration, ApiError> {
    ApiError::check_range(secs, min..=MAX_INVISIBLE_SECS, "invalid-field", field)
        .map(Duration::from_secs)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AckRequest {
    receipts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NackRequest {
    receipts: Vec<String>,
    delay_seconds: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptResult {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct ReceiptResults {
    results: Vec<ReceiptResult>,
}

/// Opens every receipt of an ack or nack; one bad receipt refuses the whole request (400), so
/// nothing is acted on.
fn open_all(
    gateway: &Gateway,
    target: &GroupTopic,
    sealed: &[String],
) -> Result<Vec<(Receipt, u32)>, ApiError> {
    let max = gateway.config.limits.max_receipts;
    if sealed.is_empty() || sealed.len() > max {
        return Err(ApiError::bad_request(
            "invalid-receipts",
            format!("receipts must hold 1..={max} receipts"),
        ));
    }
    sealed
        .iter()
        .enumerate()
        .map(|(i, s)| {
            target.open(gateway, s).map_err(|mut e| {
                e.detail = format!("receipts[{i}]: {}", e.detail);
                e
            })
        })
        .collect()
}

/// The handles of the receipts whose call succeeded.
fn succeeded<'a>(
    receipts: &'a [Receipt],
    verdicts: &[Result<(), tern_core::client::ClientError>],
) -> Vec<&'a str> {
    receipts
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| v.is_ok())
        .map(|(r, _)| r.handle.as_str())
        .collect()
}

fn verdict(
    gateway: &Gateway,
    target: &GroupTopic,
    result: Result<(), tern_core::client::ClientError>,
) -> ReceiptResult {
    match result {
        Ok(()) => ReceiptResult {
            status: StatusCode::OK.as_u16(),
            error: None,
        },
        Err(e) => {
            let api = broker_failure(gateway, &e, &target.client_topic);
            ReceiptResult {
                status: api.status.as_u16(),
                error: Some(api.detail),
            }
        }
    }
}

/// `POST …/messages:ack` → a result per receipt, in request order.
pub async fn ack(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupTopicPath>,
    Json(request): Json<AckRequest>,
) -> Result<Response, ApiError> {
    let target = GroupTopic::resolve(&caller, path)?;
    let receipts: Vec<Receipt> = open_all(&gateway, &target, &request.receipts)?
        .into_iter()
        .map(|(receipt, _)| receipt)
        .collect();
    let consumer = target.consumer(&gateway)?;
    let verdicts = target
        .routed(&gateway, consumer.ack_many(&receipts).await)
        .await?;
    let acked = succeeded(&receipts, &verdicts);
    gateway
        .metrics
        .acked_messages
        .fetch_add(acked.len() as u64, Ordering::Relaxed);
    gateway
        .windows
        .released(&target.group, &target.topic, &acked);
    let results = verdicts
        .into_iter()
        .map(|v| verdict(&gateway, &target, v))
        .collect();
    Ok(json_response(&ReceiptResults { results }))
}

/// `POST …/messages:nack`: each message becomes visible again after `delaySeconds`, or, without
/// it, after the group's `retryBackoff` for that delivery (0 when the group has none).
pub async fn nack(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupTopicPath>,
    Json(request): Json<NackRequest>,
) -> Result<Response, ApiError> {
    let target = GroupTopic::resolve(&caller, path)?;
    let fixed = request
        .delay_seconds
        .map(|secs| check_invisible(secs, "delaySeconds", 0))
        .transpose()?;
    let opened = open_all(&gateway, &target, &request.receipts)?;
    let policy = match fixed {
        Some(_) => None,
        None => gateway
            .retry_policy(&target.group)
            .await
            .map_err(|e| broker_failure(&gateway, &e, &target.client_topic))?,
    };
    let consumer = target.consumer(&gateway)?;
    let nacks = opened.iter().map(|(receipt, attempt)| {
        let delay = fixed
            .or_else(|| policy.as_ref().map(|p| p.delay(*attempt)))
            .unwrap_or(Duration::ZERO);
        consumer.nack(receipt, delay)
    });
    let verdicts = futures_util::future::join_all(nacks).await;
    let receipts: Vec<Receipt> = opened.into_iter().map(|(receipt, _)| receipt).collect();
    gateway.windows.released(
        &target.group,
        &target.topic,
        &succeeded(&receipts, &verdicts),
    );
    let results = verdicts
        .into_iter()
        .map(|v| verdict(&gateway, &target, v))
        .collect();
    Ok(json_response(&ReceiptResults { results }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeVisibilityRequest {
    receipt: String,
    invisible_seconds: u64,
}

#[derive(Serialize)]
struct NewReceipt {
    receipt: String,
}

/// `POST …/messages:changeVisibility` → `{receipt}`, the new handle (the old one is stale).
pub async fn change_visibility(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    PathParams(path): PathParams<GroupTopicPath>,
    Json(request): Json<ChangeVisibilityRequest>,
) -> Result<Response, ApiError> {
    let target = GroupTopic::resolve(&caller, path)?;
    let invisible = check_invisible(request.invisible_seconds, "invisibleSeconds", 0)?;
    let (receipt, attempt) = target.open(&gateway, &request.receipt)?;
    let consumer = target.consumer(&gateway)?;
    let renewed = target
        .routed(
            &gateway,
            consumer.change_invisibility(&receipt, invisible).await,
        )
        .await?;
    gateway.windows.renewed(
        &target.group,
        &target.topic,
        &receipt.handle,
        &renewed.handle,
        std::time::Instant::now() + invisible,
    );
    Ok(json_response(&NewReceipt {
        receipt: target.seal(&gateway, &renewed, attempt),
    }))
}
