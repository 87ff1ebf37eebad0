//! The messages a client sends ([`Message`]) and receives ([`ReceivedMessage`]).
//!
//! Tags, keys and the message id travel as properties (reference §2): `TAGS`, `KEYS` (space
//! separated) and `UNIQ_KEY`. [`Message::encode_properties`] is the one place that builds the
//! property string, checks it, and gives a message its `UNIQ_KEY` when it has none.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::store::{
    MAX_IDEMPOTENCY_KEY_LEN, MAX_PROPERTIES_SIZE, Properties, RETRY_TOPIC_PREFIX, RecordView,
    idempotency_key_rule, property, sys_flag,
};

use super::error::ClientError;
use super::message_id::new_unique_id;
use super::route::MessageQueue;

/// Largest body a producer sends: RocketMQ's client default (`maxMessageSize`, 4 MiB).
pub const MAX_MESSAGE_BODY: usize = 4 * 1024 * 1024;
/// Longest topic name (reference §2).
pub const MAX_TOPIC_LEN: usize = 127;

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub body: Bytes,
    /// Sent as the `TAGS` property; consumers filter on it.
    pub tag: Option<String>,
    /// Sent as the `KEYS` property (space separated); the broker indexes each for lookups.
    pub keys: Vec<String>,
    /// Any other properties (`UNIQ_KEY` may be preset to choose the id; `DELAY` etc. are passed
    /// through). `TAGS` and `KEYS` here are overridden by `tag` and `keys` when those are set.
    pub properties: Properties,
    /// The user int stored as FLAG.
    pub flag: i32,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            body: body.into(),
            ..Message::default()
        }
    }

    pub fn with_tag(mut self, tag: impl Into<String>) -> Message {
        self.tag = Some(tag.into());
        self
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Message {
        self.keys.push(key.into());
        self
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Message {
        self.properties.insert(key, value);
        self
    }

    /// Delivers the message after delay level `level` (1..=18: 1s 5s 10s 30s 1m 2m 3m … 2h by
    /// default; higher levels are clamped by the broker, 0 means no delay). Sets `DELAY`.
    pub fn with_delay_level(self, level: u32) -> Message {
        self.with_property(property::DELAY, level.to_string())
    }

    /// Delivers the message at `unix_ms` (milliseconds since the epoch, 1 s precision; a time
    /// in the past delivers at once). Sets `TIMER_DELIVER_MS`. The broker refuses times further
    /// out than its `timer_max_delay_ms` (3 days by default).
    pub fn with_deliver_at(self, unix_ms: i64) -> Message {
        self.with_property(property::TIMER_DELIVER_MS, unix_ms.to_string())
    }

    /// Delivers the message `delay` from now (by this machine's clock), as
    /// [`with_deliver_at`](Self::with_deliver_at).
    pub fn with_delay(self, delay: std::time::Duration) -> Message {
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        self.with_deliver_at(crate::store::now_millis().saturating_add(delay_ms))
    }

    pub fn with_flag(mut self, flag: i32) -> Message {
        self.flag = flag;
        self
    }

    /// Makes the send idempotent: within the broker's window (default 10 min) a repeat of this
    /// key on this topic is answered with the first result (`SendResult::replayed`) and stores
    /// nothing. 1..=128 bytes of visible ASCII. [`Producer::send`](super::Producer::send) pins
    /// a keyed message to the queue the key hashes to, so every retry reaches the same broker.
    pub fn with_idempotency_key(self, key: impl Into<String>) -> Message {
        self.with_property(property::IDEMPOTENCY_KEY, key)
    }

    /// The idempotency key, if the message has one.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.properties.get(property::IDEMPOTENCY_KEY)
    }

    /// Checks the message and returns its encoded properties and its `UNIQ_KEY` (the preset one,
    /// or a new one). Everything the broker would refuse as MESSAGE_ILLEGAL is refused here first,
    /// with a message that says what is wrong.
    pub fn encode_properties(&self) -> Result<(String, String), ClientError> {
        check_topic(&self.topic)?;
        let invalid = |msg: String| Err(ClientError::InvalidMessage(msg));
        if self.body.len() > MAX_MESSAGE_BODY {
            return invalid(format!(
                "body is {} bytes, at most {MAX_MESSAGE_BODY} are allowed",
                self.body.len()
            ));
        }
        let mut properties = self.properties.clone();
        if let Some(tag) = &self.tag {
            if tag.trim().is_empty() {
                return invalid("the tag is empty".into());
            }
            properties.insert(property::TAGS, tag.clone());
        }
        if !self.keys.is_empty() {
            for key in &self.keys {
                if key.is_empty() || key.contains(property::KEY_SEPARATOR) {
                    return invalid(format!(
                        "key `{}` is empty or contains a space (KEYS is space separated)",
                        key.chars().take(100).collect::<String>()
                    ));
                }
            }
            properties.insert(property::KEYS, self.keys.join(" "));
        }
        if let Some(key) = properties.get(property::IDEMPOTENCY_KEY)
            && let Err(at) = idempotency_key_rule(key)
        {
            return invalid(match at {
                Some(at) => format!(
                    "idempotency key has a byte outside visible ASCII (`!` to `~`) at position {at}"
                ),
                None => format!(
                    "idempotency key is {} bytes, it must be 1..={MAX_IDEMPOTENCY_KEY_LEN}",
                    key.len()
                ),
            });
        }
        let unique_id = match properties.get(property::UNIQ_KEY) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => {
                let id = new_unique_id();
                properties.insert(property::UNIQ_KEY, id.clone());
                id
            }
        };
        let encoded = properties
            .encode()
            .map_err(|e| ClientError::InvalidMessage(e.to_string()))?;
        if encoded.len() > MAX_PROPERTIES_SIZE {
            return invalid(format!(
                "properties encode to {} bytes, at most {MAX_PROPERTIES_SIZE} are allowed",
                encoded.len()
            ));
        }
        Ok((encoded, unique_id))
    }
}

/// Topic names RocketMQ's client validator accepts: 1..=127 of `[A-Za-z0-9%|_-]`.
pub fn check_topic(topic: &str) -> Result<(), ClientError> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidMessage(format!(
            "topic `{}` must be 1..={MAX_TOPIC_LEN} characters of [A-Za-z0-9%|_-]",
            topic.chars().take(200).collect::<String>()
        )))
    }
}

/// A message read from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub queue: MessageQueue,
    /// Position in its queue; a consumer's offset is the position after the last message done.
    pub queue_offset: i64,
    /// The producer's `UNIQ_KEY`, or the offset message id when the producer set none.
    pub msg_id: String,
    /// Store host and CommitLog offset: locates the record directly.
    pub offset_msg_id: String,
    /// The body as stored (compressed when `sys_flag` says so; Tern producers never compress).
    pub body: Bytes,
    pub properties: Properties,
    pub flag: i32,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub commit_log_offset: u64,
    pub store_size: u32,
}

impl ReceivedMessage {
    /// Builds a message from a record of a pull body; `body` is the buffer `record` borrows from,
    /// so the message body is a slice of it rather than a copy.
    pub(crate) fn from_record(queue: &MessageQueue, record: &RecordView<'_>, body: &Bytes) -> Self {
        let properties = Properties::decode(record.properties);
        let offset_msg_id =
            crate::store::offset_message_id(record.store_host, record.physical_offset);
        let msg_id = properties
            .get(property::UNIQ_KEY)
            .filter(|id| !id.is_empty())
            .map_or_else(|| offset_msg_id.clone(), str::to_string);
        ReceivedMessage {
            queue: MessageQueue {
                topic: record.topic.to_string(),
                broker_name: queue.broker_name.clone(),
                queue_id: record.queue_id,
            },
            queue_offset: record.queue_offset as i64,
            msg_id,
            offset_msg_id,
            body: body.slice_ref(record.body),
            properties,
            flag: record.flag,
            sys_flag: record.sys_flag,
            born_timestamp: record.born_timestamp,
            born_host: record.born_host,
            store_timestamp: record.store_timestamp,
            store_host: record.store_host,
            reconsume_times: record.reconsume_times,
            commit_log_offset: record.physical_offset,
            store_size: record.total_size,
        }
    }

    /// The topic the message was sent to: for a retry copy (read from `%RETRY%<group>`), the
    /// original topic from `RETRY_TOPIC`. `queue` still names where it was read from.
    pub fn topic(&self) -> &str {
        match self.properties.get(property::RETRY_TOPIC) {
            Some(original) if self.queue.topic.starts_with(RETRY_TOPIC_PREFIX) => original,
            _ => &self.queue.topic,
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.properties.get(property::TAGS)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(property::KEYS)
            .unwrap_or("")
            .split(property::KEY_SEPARATOR)
            .filter(|k| !k.is_empty())
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key)
    }

    /// Whether the producer compressed the body (a Java producer does above 4 KiB).
    pub fn is_compressed(&self) -> bool {
        self.sys_flag & sys_flag::COMPRESSED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_tag_keys_and_unique_id() {
        let m = Message::new("T", "hi")
            .with_tag("TagA")
            .with_key("k1")
            .with_key("k2")
            .with_property("color", "red");
        let delayed = Message::new("T", "x")
            .with_delay_level(3)
            .with_deliver_at(42);
        assert_eq!(delayed.properties.get("DELAY"), Some("3"));
        assert_eq!(delayed.properties.get("TIMER_DELIVER_MS"), Some("42"));
        let later = Message::new("T", "x").with_delay(std::time::Duration::from_secs(10));
        let at: i64 = later
            .properties
            .get("TIMER_DELIVER_MS")
            .unwrap()
            .parse()
            .unwrap();
        assert!((at - crate::store::now_millis() - 10_000).abs() < 1_000);
        let (encoded, id) = m.encode_properties().unwrap();
        let p = Properties::decode(&encoded);
        assert_eq!(p.get("TAGS"), Some("TagA"));
        assert_eq!(p.get("KEYS"), Some("k1 k2"));
        assert_eq!(p.get("color"), Some("red"));
        assert_eq!(p.get("UNIQ_KEY"), Some(id.as_str()));
        assert!(super::super::message_id::is_unique_id(&id));
        // A fresh id per encoding, unless one is preset.
        assert_ne!(m.encode_properties().unwrap().1, id);
        let preset = m.clone().with_property("UNIQ_KEY", "MYID");
        assert_eq!(preset.encode_properties().unwrap().1, "MYID");
    }

    #[test]
    fn refuses_what_the_broker_would() {
        let bad = [
            Message::new("", "x"),
            Message::new("a b", "x"),
            Message::new("t".repeat(128), "x"),
            Message::new("T", vec![0u8; MAX_MESSAGE_BODY + 1]),
            Message::new("T", "x").with_tag(" "),
            Message::new("T", "x").with_key("a b"),
            Message::new("T", "x").with_key(""),
            Message::new("T", "x").with_property("k", "v\u{1}"),
            Message::new("T", "x").with_property("k", "v".repeat(MAX_PROPERTIES_SIZE)),
        ];
        for m in bad {
            assert!(
                matches!(m.encode_properties(), Err(ClientError::InvalidMessage(_))),
                "{:?}",
                m.topic
            );
        }
        Message::new("%RETRY%g|x_-1", "")
            .encode_properties()
            .unwrap();
    }
}
