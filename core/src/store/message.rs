//! What a message is to the store: the fields a producer gives, its properties, system flags and the
//! offset message id that locates a stored record.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;

use super::error::StoreError;

/// Well-known property keys (reference §2).
pub mod property {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const DELAY: &str = "DELAY";
    pub const WAIT: &str = "WAIT";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
    pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
    pub const SHARDING_KEY: &str = "__SHARDINGKEY";
    /// On retry and dead-letter copies: the topic the message was first sent to.
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    /// On retry and dead-letter copies: the message id of the original.
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    /// On popped messages: the receipt handle that acks it.
    pub const POP_CK: &str = "POP_CK";
    /// Tern: the producer's idempotency key (see the broker's idempotency window).
    pub const IDEMPOTENCY_KEY: &str = "__TERN_IDEMPOTENCY_KEY";
    /// Separator between the tokens of `KEYS`.
    pub const KEY_SEPARATOR: char = ' ';
}

/// SYSFLAG bits (reference §2).
pub mod sys_flag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
    pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
    pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
    pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
    pub const BORN_HOST_V6: i32 = 0x10;
    pub const STORE_HOST_V6: i32 = 0x20;
    pub const INNER_BATCH: i32 = 0x80;

    /// The transaction type bits of `flag`.
    pub fn transaction_type(flag: i32) -> i32 {
        flag & TRANSACTION_TYPE_MASK
    }
}

/// The topic that holds delay-level messages until they are due.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// The topic that holds timer messages (arbitrary delivery time) until they are due.
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Retry topics are `%RETRY%<group>` and may be longer than ordinary topics.
pub const RETRY_TOPIC_PREFIX: &str = "%RETRY%";
/// Dead-letter topics are `%DLQ%<group>`.
pub const DLQ_TOPIC_PREFIX: &str = "%DLQ%";
/// The pseudo-topic under which the IndexFile keeps idempotency keys, as
/// `<producer topic>#<idempotency key>`. The `:` cannot appear in a real topic name, so neither a
/// user's KEYS query nor a message of any topic can ever produce or match these entries.
pub const IDEMPOTENCY_INDEX_TOPIC: &str = "__tern:idempotency";

/// Longest idempotency key, in bytes (the HTTP gateway's `Idempotency-Key` maps onto it).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// Where an idempotency key breaks the rule (1..=[`MAX_IDEMPOTENCY_KEY_LEN`] bytes of visible
/// ASCII, `!` to `~`): `Err(None)` for a wrong length, `Err(Some(i))` for the first bad byte.
/// Visible ASCII survives every hop unchanged (HTTP headers, the property encoding, logs).
pub fn idempotency_key_rule(key: &str) -> Result<(), Option<usize>> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(None);
    }
    match key.bytes().position(|b| !(b'!'..=b'~').contains(&b)) {
        Some(at) => Err(Some(at)),
        None => Ok(()),
    }
}

/// Separates a property's key from its value.
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Ends each property.
pub const PROPERTY_SEPARATOR: char = '\u{2}';
/// PROPERTIESLENGTH is a signed 16-bit field.
pub const MAX_PROPERTIES_SIZE: usize = i16::MAX as usize;

/// Message properties in insertion order. Order does not matter to RocketMQ (it uses a hash map),
/// but keeping it makes the encoding deterministic: the same message always gives the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    entries: Vec<(String, String)>,
}

impl Properties {
    pub fn new() -> Self {
        Properties::default()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`, replacing an earlier value in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(index).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `key\u0001value\u0002…`. Fails when a key or value contains a separator (it could not be
    /// decoded back) or a key is empty.
    pub fn encode(&self) -> Result<String, StoreError> {
        let mut out = Vec::with_capacity(self.checked_encoded_len()?);
        self.write_encoded(&mut out);
        Ok(String::from_utf8(out).expect("keys and values are strings"))
    }

    /// Checks every key and value and returns the encoded length.
    pub(crate) fn checked_encoded_len(&self) -> Result<usize, StoreError> {
        let mut len = 0;
        for (key, value) in &self.entries {
            check_property(key, value)?;
            len += key.len() + value.len() + 2;
        }
        Ok(len)
    }

    /// Appends the encoded form; call [`Properties::checked_encoded_len`] first.
    pub(crate) fn write_encoded(&self, out: &mut Vec<u8>) {
        for (key, value) in &self.entries {
            out.extend_from_slice(key.as_bytes());
            out.push(NAME_VALUE_SEPARATOR as u8);
            out.extend_from_slice(value.as_bytes());
            out.push(PROPERTY_SEPARATOR as u8);
        }
    }

    /// Parses the encoded form. Lenient in the way RocketMQ is: a trailing item without its
    /// separator is accepted, an item without a name/value separator is skipped.
    pub fn decode(encoded: &str) -> Properties {
        let mut properties = Properties::new();
        for item in encoded.split(PROPERTY_SEPARATOR) {
            if let Some((key, value)) = item.split_once(NAME_VALUE_SEPARATOR) {
                properties.entries.push((key.to_owned(), value.to_owned()));
            }
        }
        properties
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut properties = Properties::new();
        for (k, v) in iter {
            properties.insert(k, v);
        }
        properties
    }
}

fn check_property(key: &str, value: &str) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidProperty {
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("the name is empty"));
    }
    let has_separator = |s: &str| s.contains([NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR]);
    if has_separator(key) {
        return Err(invalid(
            "the name contains a separator character (U+0001 or U+0002)",
        ));
    }
    if has_separator(value) {
        return Err(invalid(
            "the value contains a separator character (U+0001 or U+0002)",
        ));
    }
    Ok(())
}

/// Finds one property in the encoded form without building a map (the dispatcher's hot path).
pub fn find_property<'a>(encoded: &'a str, key: &str) -> Option<&'a str> {
    encoded.split(PROPERTY_SEPARATOR).find_map(|item| {
        let (k, v) = item.split_once(NAME_VALUE_SEPARATOR)?;
        (k == key).then_some(v)
    })
}

/// A message as handed to the store for appending.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub queue_id: i32,
    /// FLAG: an int the producer may set freely.
    pub flag: i32,
    pub body: Bytes,
    pub properties: Properties,
    /// SYSFLAG bits other than the host-address bits, which the encoder sets from the addresses.
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
}

impl Message {
    /// A message with defaults for everything but topic, queue and body.
    pub fn new(topic: impl Into<String>, queue_id: i32, body: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            queue_id,
            flag: 0,
            body: body.into(),
            properties: Properties::new(),
            sys_flag: 0,
            born_timestamp: now_millis(),
            born_host: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Message {
        self.properties.insert(key, value);
        self
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn now_millis() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    // A clock before 1970 is a broken machine; 0 keeps the store working and timestamps monotone.
    now.map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The offset message id: store host address and port, then the CommitLog offset, as upper-case hex
/// (32 characters for IPv4, 56 for IPv6). It locates the record without any index.
pub fn offset_message_id(store_host: SocketAddr, physical_offset: u64) -> String {
    let mut bytes = Vec::with_capacity(28);
    match store_host.ip() {
        IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
    }
    bytes.extend_from_slice(&u32::from(store_host.port()).to_be_bytes());
    bytes.extend_from_slice(&physical_offset.to_be_bytes());
    upper_hex(&bytes)
}

/// Upper-case hex, as RocketMQ's `UtilAll.bytes2string` writes ids.
pub(crate) fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    out
}

/// Splits an offset message id back into store host and CommitLog offset.
pub fn parse_offset_message_id(id: &str) -> Option<(SocketAddr, u64)> {
    if !id.is_ascii() || !(id.len() == 32 || id.len() == 56) {
        return None;
    }
    let bytes: Vec<u8> = (0..id.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&id[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip_len = bytes.len() - 12;
    let ip: IpAddr = if ip_len == 4 {
        IpAddr::from(<[u8; 4]>::try_from(&bytes[..4]).ok()?)
    } else {
        IpAddr::from(<[u8; 16]>::try_from(&bytes[..16]).ok()?)
    };
    let port = u32::from_be_bytes(bytes[ip_len..ip_len + 4].try_into().ok()?);
    let offset = u64::from_be_bytes(bytes[ip_len + 4..].try_into().ok()?);
    Some((SocketAddr::new(ip, u16::try_from(port).ok()?), offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_and_keep_order() {
        let props: Properties = [("KEYS", "a b"), ("TAGS", "TagA"), ("UNIQ_KEY", "X")]
            .into_iter()
            .collect();
        let encoded = props.encode().unwrap();
        assert_eq!(
            encoded,
            "KEYS\u{1}a b\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}X\u{2}"
        );
        assert_eq!(Properties::decode(&encoded), props);
        assert_eq!(find_property(&encoded, "TAGS"), Some("TagA"));
        assert_eq!(find_property(&encoded, "TAG"), None);
    }

    #[test]
    fn separators_in_properties_are_refused() {
        let props: Properties = [("a\u{1}", "b")].into_iter().collect();
        assert!(matches!(
            props.encode(),
            Err(StoreError::InvalidProperty { .. })
        ));
        let props: Properties = [("a", "b\u{2}c")].into_iter().collect();
        assert!(matches!(
            props.encode(),
            Err(StoreError::InvalidProperty { .. })
        ));
        let props: Properties = [("", "b")].into_iter().collect();
        assert!(props.encode().is_err());
    }

    #[test]
    fn offset_message_id_round_trips() {
        let host: SocketAddr = "10.1.2.3:10911".parse().unwrap();
        let id = offset_message_id(host, 0x1234_5678_9ABC);
        assert_eq!(id, "0A01020300002A9F0000123456789ABC");
        assert_eq!(parse_offset_message_id(&id), Some((host, 0x1234_5678_9ABC)));
        let host6: SocketAddr = "[::1]:10911".parse().unwrap();
        let id6 = offset_message_id(host6, 7);
        assert_eq!(id6.len(), 56);
        assert_eq!(parse_offset_message_id(&id6), Some((host6, 7)));
        assert_eq!(parse_offset_message_id("zz"), None);
        assert_eq!(parse_offset_message_id(&"G".repeat(32)), None);
    }
}
