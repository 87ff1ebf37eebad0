//! The CommitLog record: encoding and decoding, bit-exact with RocketMQ V1/V2 (reference §2).
//!
//! A record is encoded *outside* the append lock with placeholders for the three fields only the
//! appender knows (queue offset, physical offset, store timestamp); under the lock those are patched
//! in and the bytes copied into the segment. That keeps the serialised part of an append to a few
//! stores and one `memcpy`.
//!
//! Decoding never trusts the bytes: every length is bounds-checked and must add up to TOTALSIZE, so
//! a torn or overwritten tail is reported as an error, never as a panic or a half-read message.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::error::StoreError;
use super::message::{
    DLQ_TOPIC_PREFIX, MAX_PROPERTIES_SIZE, Message, Properties, RETRY_TOPIC_PREFIX, sys_flag,
};

/// Magic code of records whose topic length takes one byte.
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// Magic code of records whose topic length takes two bytes (topics longer than 127 bytes).
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// Magic code of the filler that ends a segment.
pub const BLANK_MAGIC: u32 = 0xCBD4_3194;
/// A record is only placed if at least this much room is left after it for the end-of-segment
/// marker `[TOTALSIZE][BLANK_MAGIC]`.
pub const END_OF_SEGMENT_MIN_BLANK: usize = 8;
/// Ordinary topics: at most 127 bytes (the V1 topic length is a signed byte).
pub const MAX_TOPIC_LEN: usize = 127;
/// Retry and dead-letter topics (`%RETRY%group`, `%DLQ%group`) may reach 255 bytes (V2).
pub const MAX_SYSTEM_TOPIC_LEN: usize = 255;

/// Byte positions of the fixed fields, which never move.
pub mod pos {
    pub const TOTAL_SIZE: usize = 0;
    pub const MAGIC: usize = 4;
    pub const BODY_CRC: usize = 8;
    pub const QUEUE_ID: usize = 12;
    pub const FLAG: usize = 16;
    pub const QUEUE_OFFSET: usize = 20;
    pub const PHYSICAL_OFFSET: usize = 28;
    pub const SYS_FLAG: usize = 36;
    pub const BORN_TIMESTAMP: usize = 40;
    pub const BORN_HOST: usize = 48;
}

/// Size of everything but body, topic and properties, with IPv4 hosts and a V1 topic length.
pub const FIXED_OVERHEAD_V1_IPV4: usize = 91;

fn host_len(v6: bool) -> usize {
    if v6 { 20 } else { 8 }
}

/// Where STORETIMESTAMP sits: right after BORNHOST, whose size depends on its address family.
pub fn store_timestamp_pos(sys_flag: i32) -> usize {
    pos::BORN_HOST + host_len(sys_flag & sys_flag::BORN_HOST_V6 != 0)
}

/// `crc32(body) & 0x7FFFFFFF`, as RocketMQ stores it (a Java int kept non-negative).
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

/// Largest record a body of `max_body` bytes can produce (IPv6 hosts, V2 topic of the longest system
/// topic, properties at their limit). The config check uses it to make sure any record fits a segment.
pub fn max_record_size(max_body: u32) -> usize {
    record_size(
        true,
        true,
        true,
        max_body as usize,
        MAX_SYSTEM_TOPIC_LEN,
        MAX_PROPERTIES_SIZE,
    )
}

fn record_size(
    born_v6: bool,
    store_v6: bool,
    v2: bool,
    body: usize,
    topic: usize,
    properties: usize,
) -> usize {
    FIXED_OVERHEAD_V1_IPV4 - 16
        + host_len(born_v6)
        + host_len(store_v6)
        + usize::from(v2)
        + body
        + topic
        + properties
}

fn max_topic_len(topic: &str) -> usize {
    if topic.starts_with(RETRY_TOPIC_PREFIX) || topic.starts_with(DLQ_TOPIC_PREFIX) {
        MAX_SYSTEM_TOPIC_LEN
    } else {
        MAX_TOPIC_LEN
    }
}

/// A record encoded up to the three fields the appender fills in.
#[derive(Debug)]
pub(crate) struct EncodedRecord {
    pub(crate) bytes: Vec<u8>,
    store_timestamp_pos: usize,
    pub(crate) topic: String,
    pub(crate) queue_id: i32,
    pub(crate) sys_flag: i32,
}

impl EncodedRecord {
    /// Fills in the fields decided under the append lock.
    pub(crate) fn patch(&mut self, queue_offset: u64, physical_offset: u64, store_timestamp: i64) {
        let b = &mut self.bytes;
        b[pos::QUEUE_OFFSET..pos::QUEUE_OFFSET + 8].copy_from_slice(&queue_offset.to_be_bytes());
        b[pos::PHYSICAL_OFFSET..pos::PHYSICAL_OFFSET + 8]
            .copy_from_slice(&physical_offset.to_be_bytes());
        let ts = self.store_timestamp_pos;
        b[ts..ts + 8].copy_from_slice(&store_timestamp.to_be_bytes());
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Prepared and rolled-back transaction halves take no queue offset and no ConsumeQueue entry.
    pub(crate) fn takes_queue_offset(&self) -> bool {
        takes_queue_offset(self.sys_flag)
    }
}

/// Whether a record with these flags is a consumable message (gets a queue offset and a
/// ConsumeQueue entry): non-transactional or committed.
pub(crate) fn takes_queue_offset(flag: i32) -> bool {
    matches!(
        sys_flag::transaction_type(flag),
        sys_flag::TRANSACTION_NOT_TYPE | sys_flag::TRANSACTION_COMMIT_TYPE
    )
}

/// Checks every limit of reference §2 and encodes the record. Queue offset, physical offset and
/// store timestamp are left zero for [`EncodedRecord::patch`].
pub(crate) fn encode(
    msg: &Message,
    store_host: SocketAddr,
    max_body: u32,
) -> Result<EncodedRecord, StoreError> {
    if msg.body.len() > max_body as usize {
        return Err(StoreError::BodyTooLarge {
            size: msg.body.len(),
            max: max_body,
        });
    }
    let topic = msg.topic.as_bytes();
    if topic.is_empty() {
        return Err(StoreError::TopicEmpty);
    }
    // Topics name directories (`consumequeue/<topic>/`): RocketMQ's character set keeps them safe.
    if !topic
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"%|_-".contains(&b))
    {
        return Err(StoreError::TopicInvalidChars {
            topic: msg.topic.clone(),
        });
    }
    let topic_limit = max_topic_len(&msg.topic);
    if topic.len() > topic_limit {
        return Err(StoreError::TopicTooLong {
            len: topic.len(),
            max: topic_limit,
        });
    }
    if !(0..=i32::from(u16::MAX)).contains(&msg.queue_id) {
        return Err(StoreError::InvalidQueueId(msg.queue_id));
    }
    // Checked and measured first, then written straight into the record: no temporary string.
    let properties_len = msg.properties.checked_encoded_len()?;
    if properties_len > MAX_PROPERTIES_SIZE {
        return Err(StoreError::PropertiesTooLarge {
            size: properties_len,
            max: MAX_PROPERTIES_SIZE,
        });
    }

    let born_v6 = msg.born_host.is_ipv6();
    let store_v6 = store_host.is_ipv6();
    let v2 = topic.len() > MAX_TOPIC_LEN;
    let mut flag = msg.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
    if born_v6 {
        flag |= sys_flag::BORN_HOST_V6;
    }
    if store_v6 {
        flag |= sys_flag::STORE_HOST_V6;
    }
    let size = record_size(
        born_v6,
        store_v6,
        v2,
        msg.body.len(),
        topic.len(),
        properties_len,
    );

    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&(size as u32).to_be_bytes());
    b.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    b.extend_from_slice(&body_crc(&msg.body).to_be_bytes());
    b.extend_from_slice(&msg.queue_id.to_be_bytes());
    b.extend_from_slice(&msg.flag.to_be_bytes());
    b.extend_from_slice(&0u64.to_be_bytes()); // QUEUEOFFSET, patched
    b.extend_from_slice(&0u64.to_be_bytes()); // PHYSICALOFFSET, patched
    b.extend_from_slice(&flag.to_be_bytes());
    b.extend_from_slice(&msg.born_timestamp.to_be_bytes());
    put_host(&mut b, msg.born_host);
    let store_timestamp_pos = b.len();
    b.extend_from_slice(&0i64.to_be_bytes()); // STORETIMESTAMP, patched
    put_host(&mut b, store_host);
    b.extend_from_slice(&msg.reconsume_times.to_be_bytes());
    b.extend_from_slice(&msg.prepared_transaction_offset.to_be_bytes());
    b.extend_from_slice(&(msg.body.len() as u32).to_be_bytes());
    b.extend_from_slice(&msg.body);
    if v2 {
        b.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    } else {
        b.push(topic.len() as u8);
    }
    b.extend_from_slice(topic);
    b.extend_from_slice(&(properties_len as u16).to_be_bytes());
    msg.properties.write_encoded(&mut b);
    debug_assert_eq!(b.len(), size, "record size formula and encoder disagree");

    Ok(EncodedRecord {
        bytes: b,
        store_timestamp_pos,
        topic: msg.topic.clone(),
        queue_id: msg.queue_id,
        sys_flag: flag,
    })
}

fn put_host(b: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => b.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => b.extend_from_slice(&ip.octets()),
    }
    b.extend_from_slice(&u32::from(addr.port()).to_be_bytes());
}

/// The bytes `[TOTALSIZE=remaining][BLANK_MAGIC]` that fill the rest of a segment.
pub(crate) fn blank_marker(remaining: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&remaining.to_be_bytes());
    b[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    b
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("fewer bytes than TOTALSIZE announces")]
    Truncated,
    #[error("unknown magic code {0:#010x}")]
    BadMagic(u32),
    #[error("TOTALSIZE {0} is impossible here")]
    BadTotalSize(u32),
    #[error("field lengths do not add up to TOTALSIZE")]
    LengthMismatch,
    #[error("body CRC {stored:#x} does not match the body ({computed:#x})")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("topic or properties are not UTF-8")]
    NotUtf8,
    #[error("END marker size {size} does not reach the end of the segment ({remaining} left)")]
    BadBlank { size: u32, remaining: usize },
    #[error("properties would grow to {0} bytes, over the {MAX_PROPERTIES_SIZE}-byte limit")]
    PropertiesTooLarge(usize),
}

/// What sits at a position of a segment.
#[derive(Debug)]
pub enum Entry<'a> {
    /// A complete record.
    Record(RecordView<'a>),
    /// The end-of-segment filler: the next record is at the start of the next segment.
    Blank,
    /// Zero bytes: nothing was ever written here (the end of the log).
    Unwritten,
}

/// A record borrowed from a segment; fields decoded, body/topic/properties still in place.
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    pub total_size: u32,
    pub magic: u32,
    pub body_crc: u32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    pub topic: &'a str,
    pub properties: &'a str,
}

/// Reads fields one after another, failing instead of panicking past the end.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).ok_or(RecordError::LengthMismatch)?;
        let slice = self
            .buf
            .get(self.at..end)
            .ok_or(RecordError::LengthMismatch)?;
        self.at = end;
        Ok(slice)
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(self.u64()? as i64)
    }
    fn host(&mut self, v6: bool) -> Result<SocketAddr, RecordError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(self.take(16)?).expect("16 bytes"),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(self.take(4)?).expect("4 bytes"),
            ))
        };
        // The port is an int on disk; anything above u16 is not a port we wrote.
        let port = u16::try_from(self.u32()?).map_err(|_| RecordError::LengthMismatch)?;
        Ok(SocketAddr::new(ip, port))
    }
}

/// Decodes what starts at `buf[0]`, where `buf` runs to the end of the segment.
///
/// `check_crc` recomputes the body CRC (recovery does; the dispatcher reading records this process
/// wrote does not need to).
pub fn decode(buf: &[u8], check_crc: bool) -> Result<Entry<'_>, RecordError> {
    if buf.len() < END_OF_SEGMENT_MIN_BLANK {
        // Too small to hold even a marker: only zeros can be here.
        return if buf.iter().all(|&b| b == 0) {
            Ok(Entry::Unwritten)
        } else {
            Err(RecordError::Truncated)
        };
    }
    let total = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
    let magic = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    if total == 0 {
        return Ok(Entry::Unwritten);
    }
    if magic == BLANK_MAGIC {
        return if total as usize == buf.len() {
            Ok(Entry::Blank)
        } else {
            Err(RecordError::BadBlank {
                size: total,
                remaining: buf.len(),
            })
        };
    }
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(RecordError::BadMagic(magic));
    }
    let min = record_size(false, false, magic == MAGIC_V2, 0, 0, 0);
    if (total as usize) < min {
        return Err(RecordError::BadTotalSize(total));
    }
    if total as usize > buf.len() {
        return Err(RecordError::Truncated);
    }
    let record = &buf[..total as usize];
    let mut r = Reader { buf: record, at: 8 };
    let body_crc_stored = r.u32()?;
    let queue_id = r.i32()?;
    let flag = r.i32()?;
    let queue_offset = r.u64()?;
    let physical_offset = r.u64()?;
    let sys = r.i32()?;
    let born_timestamp = r.i64()?;
    let born_host = r.host(sys & sys_flag::BORN_HOST_V6 != 0)?;
    let store_timestamp = r.i64()?;
    let store_host = r.host(sys & sys_flag::STORE_HOST_V6 != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_transaction_offset = r.i64()?;
    let body_len = r.u32()? as usize;
    let body = r.take(body_len)?;
    let topic_len = if magic == MAGIC_V2 {
        r.u16()? as usize
    } else {
        r.take(1)?[0] as usize
    };
    let topic = r.take(topic_len)?;
    let properties_len = r.u16()? as usize;
    let properties = r.take(properties_len)?;
    if r.at != record.len() {
        return Err(RecordError::LengthMismatch);
    }
    if check_crc {
        let computed = body_crc(body);
        if computed != body_crc_stored {
            return Err(RecordError::CrcMismatch {
                stored: body_crc_stored,
                computed,
            });
        }
    }
    Ok(Entry::Record(RecordView {
        total_size: total,
        magic,
        body_crc: body_crc_stored,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag: sys,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic: std::str::from_utf8(topic).map_err(|_| RecordError::NotUtf8)?,
        properties: std::str::from_utf8(properties).map_err(|_| RecordError::NotUtf8)?,
    }))
}

/// A record read out of the store, owning its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub topic: String,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub sys_flag: i32,
    pub born_timestamp: i64,
    pub born_host: SocketAddr,
    pub store_timestamp: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body_crc: u32,
    pub body: Bytes,
    pub properties: Properties,
    /// Size of the whole record in the CommitLog.
    pub store_size: u32,
}

impl StoredMessage {
    /// This record as a message to store again under `topic` / `queue_id` (a retry, dead-letter
    /// or due delayed copy): body, flag, properties, reconsume times and born fields carry over;
    /// the host-address bits of the sys flag are left to the encoder, which sets them from the
    /// addresses themselves.
    pub fn into_message(self, topic: String, queue_id: i32) -> Message {
        Message {
            topic,
            queue_id,
            flag: self.flag,
            body: self.body,
            properties: self.properties,
            sys_flag: self.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6),
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: 0,
        }
    }

    /// The offset message id that locates this record (see [`super::message::offset_message_id`]).
    pub fn offset_message_id(&self) -> String {
        super::message::offset_message_id(self.store_host, self.physical_offset)
    }

    /// The producer's unique id (`UNIQ_KEY`), if it set one.
    pub fn unique_key(&self) -> Option<&str> {
        self.properties.get(super::message::property::UNIQ_KEY)
    }
}

/// A stored record as a consumer sees it on one particular delivery: RECONSUMETIMES replaced and
/// `extra` properties set. Pop consumption needs this: its receipt handle travels as a property
/// (`POP_CK`) and its delivery count belongs to the delivery, not to the stored record. Only the
/// trailing properties and two fixed fields change, so the copy is a splice, not a re-encode.
pub fn for_delivery(
    record: &[u8],
    reconsume_times: i32,
    extra: &[(&str, &str)],
) -> Result<Vec<u8>, RecordError> {
    let view = match decode(record, false)? {
        Entry::Record(view) => view,
        Entry::Blank | Entry::Unwritten => return Err(RecordError::Truncated),
    };
    let mut properties = Properties::decode(view.properties);
    for (key, value) in extra {
        properties.insert(*key, *value);
    }
    let encoded = properties
        .encode()
        .map_err(|_| RecordError::PropertiesTooLarge(usize::MAX))?;
    if encoded.len() > MAX_PROPERTIES_SIZE {
        return Err(RecordError::PropertiesTooLarge(encoded.len()));
    }
    let total = view.total_size as usize;
    // PROPERTIESLENGTH (2 bytes) and PROPERTIES end the record.
    let head = total - view.properties.len() - 2;
    let mut out = Vec::with_capacity(head + 2 + encoded.len());
    out.extend_from_slice(&record[..head]);
    out.extend_from_slice(&(encoded.len() as u16).to_be_bytes());
    out.extend_from_slice(encoded.as_bytes());
    let new_total = out.len() as u32;
    out[pos::TOTAL_SIZE..pos::TOTAL_SIZE + 4].copy_from_slice(&new_total.to_be_bytes());
    let reconsume_at = store_timestamp_pos(view.sys_flag)
        + 8
        + host_len(view.sys_flag & sys_flag::STORE_HOST_V6 != 0);
    out[reconsume_at..reconsume_at + 4].copy_from_slice(&reconsume_times.to_be_bytes());
    Ok(out)
}

impl RecordView<'_> {
    pub fn to_stored_message(&self) -> StoredMessage {
        StoredMessage {
            topic: self.topic.to_owned(),
            queue_id: self.queue_id,
            flag: self.flag,
            queue_offset: self.queue_offset,
            physical_offset: self.physical_offset,
            sys_flag: self.sys_flag,
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            store_timestamp: self.store_timestamp,
            store_host: self.store_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
            body_crc: self.body_crc,
            body: Bytes::copy_from_slice(self.body),
            properties: Properties::decode(self.properties),
            store_size: self.total_size,
        }
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
