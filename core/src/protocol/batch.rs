//! The body of SEND_BATCH_MESSAGE: messages encoded back to back, as RocketMQ's
//! `MessageDecoder.encodeMessages` writes them:
//! `[totalSize i32][magic i32 = 0][bodyCRC i32 = 0][flag i32][bodyLen i32][body][propsLen i16][props]`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Most messages in one batch (the store's limit).
pub const MAX_BATCH_MESSAGES: usize = crate::store::MAX_BATCH_MESSAGES;

/// One message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    pub flag: i32,
    pub body: Bytes,
    /// Encoded properties (`key\u{1}value\u{2}`…).
    pub properties: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch entry {index} is truncated or its lengths are inconsistent")]
    Malformed { index: usize },
    #[error("batch entry {index} has properties that are not UTF-8")]
    NotUtf8 { index: usize },
    #[error("batch holds more than {MAX_BATCH_MESSAGES} messages")]
    TooMany,
    #[error("batch is empty")]
    Empty,
}

const FIXED: usize = 4 + 4 + 4 + 4 + 4 + 2;

/// Encodes entries into one batch body.
pub fn encode_batch(entries: &[BatchEntry]) -> Bytes {
    let size: usize = entries
        .iter()
        .map(|e| FIXED + e.body.len() + e.properties.len())
        .sum();
    let mut out = BytesMut::with_capacity(size);
    for entry in entries {
        let total = FIXED + entry.body.len() + entry.properties.len();
        out.put_i32(total as i32);
        out.put_i32(0);
        out.put_i32(0);
        out.put_i32(entry.flag);
        out.put_i32(entry.body.len() as i32);
        out.put_slice(&entry.body);
        out.put_i16(entry.properties.len() as i16);
        out.put_slice(entry.properties.as_bytes());
    }
    out.freeze()
}

/// Decodes a batch body, checking every length against what is actually there.
pub fn decode_batch(mut body: Bytes) -> Result<Vec<BatchEntry>, BatchError> {
    let mut entries = Vec::new();
    while body.has_remaining() {
        let index = entries.len();
        if index >= MAX_BATCH_MESSAGES {
            return Err(BatchError::TooMany);
        }
        let malformed = BatchError::Malformed { index };
        if body.remaining() < FIXED {
            return Err(malformed);
        }
        let total = body.get_i32();
        if total < FIXED as i32 || total as usize - 4 > body.remaining() {
            return Err(malformed);
        }
        let mut entry = body.split_to(total as usize - 4);
        let _magic = entry.get_i32();
        let _crc = entry.get_i32();
        let flag = entry.get_i32();
        let body_len = entry.get_i32();
        if body_len < 0 || body_len as usize + 2 > entry.remaining() {
            return Err(malformed);
        }
        let message_body = entry.split_to(body_len as usize);
        let props_len = entry.get_i16();
        if props_len < 0 || props_len as usize != entry.remaining() {
            return Err(malformed);
        }
        let properties =
            String::from_utf8(entry.to_vec()).map_err(|_| BatchError::NotUtf8 { index })?;
        entries.push(BatchEntry {
            flag,
            body: message_body,
            properties,
        });
    }
    if entries.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let entries = vec![
            BatchEntry {
                flag: 1,
                body: Bytes::from_static(b"hello"),
                properties: "TAGS\u{1}a\u{2}".into(),
            },
            BatchEntry {
                flag: 0,
                body: Bytes::new(),
                properties: String::new(),
            },
        ];
        let encoded = encode_batch(&entries);
        assert_eq!(decode_batch(encoded.clone()).unwrap(), entries);
        // Cutting anywhere but between two entries leaves a truncated entry.
        let boundary = 4 + 4 + 4 + 4 + 4 + 5 + 2 + "TAGS\u{1}a\u{2}".len();
        for cut in (1..encoded.len()).filter(|&c| c != boundary) {
            assert!(decode_batch(encoded.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert_eq!(
            decode_batch(encoded.slice(..boundary)).unwrap(),
            entries[..1]
        );
        assert_eq!(decode_batch(Bytes::new()), Err(BatchError::Empty));
    }
}
