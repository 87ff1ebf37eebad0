//! Messages as JSON: what receive, pull, lookups and event streams return, and the property
//! names clients may set.
//!
//! Bodies are bytes; JSON carries them as `body` + `bodyEncoding`: `"utf8"` when the bytes are
//! valid UTF-8, else `"base64"` (standard alphabet, padded).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use tern_core::client::ReceivedMessage;

use crate::error::ApiError;
use crate::names::Namespace;

/// Longest user property name.
pub const MAX_PROPERTY_NAME: usize = 64;
/// Most user properties on one message.
pub const MAX_PROPERTIES: usize = 64;

/// Property names the broker or RocketMQ clients give a meaning to. A client setting one could
/// turn a message into a delayed, transactional or misrouted one, so they are refused on the way
/// in (compared case-insensitively) and hidden on the way out.
const RESERVED: &[&str] = &[
    "KEYS",
    "TAGS",
    "WAIT",
    "DELAY",
    "RETRY_TOPIC",
    "REAL_TOPIC",
    "REAL_QID",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
    "BUYER_ID",
    "ORIGIN_MESSAGE_ID",
    "TRANSFER_FLAG",
    "CORRECTION_FLAG",
    "MQ2_FLAG",
    "RECONSUME_TIME",
    "MSG_REGION",
    "TRACE_ON",
    "UNIQ_KEY",
    "MAX_RECONSUME_TIMES",
    "CONSUME_START_TIME",
    "POP_CK",
    "POP_CK_OFFSET",
    "1ST_POP_TIME",
    "TRAN_PREPARED_QUEUE_OFFSET",
    "DUP_INFO",
    "EXTEND_UNIQ_INFO",
    "INSTANCE_ID",
    "CORRELATION_ID",
    "REPLY_TO_CLIENT",
    "TTL",
    "ARRIVE_TIME",
    "PUSH_REPLY_TIME",
    "CLUSTER",
    "MSG_TYPE",
    "INNER_MULTI_DISPATCH",
    "INNER_MULTI_QUEUE_OFFSET",
    "TIMER_DELIVER_MS",
    "TIMER_DELAY_SEC",
    "TIMER_DELAY_MS",
    "TIMER_OUT_MS",
    "TIMER_ENQUEUE_MS",
    "TIMER_DEQUEUE_MS",
    "TIMER_ROLL_TIMES",
    "TIMER_DEL_UNIQKEY",
    "CHECK_IMMUNITY_TIME_IN_SECONDS",
    "DELIVERY_TIME",
    "DLQ_ORIGIN_TOPIC",
    "DLQ_ORIGIN_MESSAGE_ID",
    "SHARDING_KEY",
];

fn is_reserved(name: &str) -> bool {
    name.starts_with("__") || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Checks a client-given property: a name of `[A-Za-z0-9_-]` (1..=64, not reserved) and a value
/// without control characters or the separators of the wire encoding.
pub fn check_property(name: &str, value: &str) -> Result<(), ApiError> {
    let name_ok = !name.is_empty()
        && name.len() <= MAX_PROPERTY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(ApiError::bad_request(
            "invalid-property",
            format!(
                "property name `{}` must be 1..={MAX_PROPERTY_NAME} characters of [A-Za-z0-9_-]",
                name.chars().take(80).collect::<String>()
            ),
        ));
    }
    if is_reserved(name) {
        return Err(ApiError::bad_request(
            "invalid-property",
            format!("property name `{name}` is reserved for the broker"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid-property",
            format!("property `{name}` has a control character in its value"),
        ));
    }
    Ok(())
}

/// Decodes a JSON body field.
pub fn decode_body(body: &str, encoding: Option<&str>) -> Result<Vec<u8>, ApiError> {
    match encoding.unwrap_or("utf8") {
        "utf8" => Ok(body.as_bytes().to_vec()),
        "base64" => BASE64.decode(body).map_err(|e| {
            ApiError::bad_request("invalid-base64", format!("body is not valid base64: {e}"))
        }),
        other => Err(ApiError::bad_request(
            "invalid-field",
            format!(
                "bodyEncoding `{}` must be \"utf8\" or \"base64\"",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// A message as clients see it (names without the tenant prefix).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageJson {
    pub message_id: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    pub born_timestamp: i64,
    pub store_timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_attempt: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    pub body: String,
    pub body_encoding: &'static str,
}

impl MessageJson {
    /// The JSON form of a stored message; `None` when its topic is outside the namespace (it
    /// must then not be shown at all).
    pub fn new(message: &ReceivedMessage, namespace: &Namespace) -> Option<MessageJson> {
        let topic = namespace.client_name(message.topic())?.to_string();
        let (body, body_encoding) = match std::str::from_utf8(&message.body) {
            Ok(text) if !message.is_compressed() => (text.to_string(), "utf8"),
            _ => (BASE64.encode(&message.body), "base64"),
        };
        Some(MessageJson {
            message_id: message.msg_id.clone(),
            topic,
            queue_id: message.queue.queue_id,
            queue_offset: message.queue_offset,
            tag: message.tag().map(str::to_string),
            keys: message.keys().map(str::to_string).collect(),
            properties: message
                .properties
                .iter()
                .filter(|(k, _)| !is_reserved(k))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            born_timestamp: message.born_timestamp,
            store_timestamp: message.store_timestamp,
            delivery_attempt: None,
            receipt: None,
            body,
            body_encoding,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_refuse_reserved_and_bad_names() {
        check_property("color", "red").unwrap();
        check_property("x-trace_id", "1").unwrap();
        for bad in [
            "",
            "DELAY",
            "delay",
            "__TERN_IDEMPOTENCY_KEY",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_property(bad, "v").is_err(), "{bad}");
        }
        assert!(check_property("ok", "line\nbreak").is_err());
    }

    #[test]
    fn bodies_decode() {
        assert_eq!(decode_body("hi", None).unwrap(), b"hi");
        assert_eq!(decode_body("aGk=", Some("base64")).unwrap(), b"hi");
        assert!(decode_body("not base64!", Some("base64")).is_err());
        assert!(decode_body("x", Some("hex")).is_err());
    }
}
