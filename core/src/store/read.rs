//! Reads: messages of a queue from an offset, offset by time, and query by key.
//!
//! Reads never take the append lock. They see only dispatched entries, which only point at
//! visible records, so under SYNC_FLUSH nothing unflushed can be read.

use std::collections::HashSet;
use std::ops::ControlFlow;

use bytes::Bytes;

use super::commit_log::CommitLog;
use super::consume_queue::ConsumeQueue;
use super::index_service::{IndexService, idempotency_index_key};
use super::message::{IDEMPOTENCY_INDEX_TOPIC, property};
use super::record::{self, Entry, StoredMessage};

/// Entries one `get_messages` call looks at, at least, when a filter skips messages (RocketMQ's
/// `maxFilterMessageCount` of 16,000 bytes of ConsumeQueue).
const MIN_SCAN_ENTRIES: usize = 800;
/// Most messages one `get_messages` call returns.
pub const MAX_GET_COUNT: usize = 1024;
/// Most messages one key query returns.
pub const MAX_QUERY_RESULTS: usize = 1024;

/// Outcome of [`get_messages`], with RocketMQ's `GetMessageStatus` meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    /// At least one message is returned.
    Found,
    /// Entries were scanned but the filter kept none of them.
    NoMatchedMessage,
    /// The messages from this offset were deleted by retention.
    MessageWasRemoving,
    /// An entry pointed at a record that could not be read.
    OffsetFoundNull,
    /// The offset is beyond the end of the queue by more than one.
    OffsetOverflowBadly,
    /// The offset is exactly the end of the queue: nothing new yet.
    OffsetOverflowOne,
    /// The offset is below the first readable one.
    OffsetTooSmall,
    /// The queue does not exist.
    NoMatchedLogicQueue,
    /// The queue exists but holds nothing.
    NoMessageInQueue,
}

/// One message of a [`GetResult`]: the raw record as stored (what a consumer receives).
#[derive(Debug, Clone)]
pub struct SelectedMessage {
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub tags_code: i64,
    pub bytes: Bytes,
}

impl SelectedMessage {
    pub fn decode(&self) -> Option<StoredMessage> {
        match record::decode(&self.bytes, false) {
            Ok(Entry::Record(view)) => Some(view.to_stored_message()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GetResult {
    pub status: GetStatus,
    pub messages: Vec<SelectedMessage>,
    /// Where the next read should start.
    pub next_begin_offset: u64,
    pub min_offset: u64,
    pub max_offset: u64,
}

pub(crate) fn get_messages(
    log: &CommitLog,
    queue: Option<&ConsumeQueue>,
    offset: u64,
    max_count: usize,
    max_bytes: usize,
    filter: Option<&dyn Fn(i64) -> bool>,
) -> GetResult {
    let empty = |status, next, min, max| GetResult {
        status,
        messages: Vec::new(),
        next_begin_offset: next,
        min_offset: min,
        max_offset: max,
    };
    let Some(queue) = queue else {
        return empty(GetStatus::NoMatchedLogicQueue, 0, 0, 0);
    };
    let (min, max) = (queue.min_offset(), queue.max_offset());
    if max == 0 {
        return empty(GetStatus::NoMessageInQueue, 0, min, max);
    }
    if offset < min {
        return empty(GetStatus::OffsetTooSmall, min, min, max);
    }
    if offset == max {
        return empty(GetStatus::OffsetOverflowOne, offset, min, max);
    }
    if offset > max {
        let next = if min == 0 { min } else { max };
        return empty(GetStatus::OffsetOverflowBadly, next, min, max);
    }

    let max_count = max_count.clamp(1, MAX_GET_COUNT);
    let scan_limit = MIN_SCAN_ENTRIES.max(max_count);
    let log_min = log.min_offset();
    let mut status = GetStatus::NoMatchedMessage;
    let mut messages = Vec::new();
    let mut total_bytes = 0usize;
    let mut next = offset;
    let mut scanned = 0;
    'scan: while next < max && scanned < scan_limit {
        let entries = queue.entries(next, scan_limit - scanned);
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            if messages.len() >= max_count {
                break 'scan;
            }
            scanned += 1;
            if entry.is_padding() {
                next += 1;
                continue;
            }
            if entry.physical_offset < log_min {
                status = GetStatus::MessageWasRemoving;
                next += 1;
                continue;
            }
            if filter.is_some_and(|keep| !keep(entry.tags_code)) {
                next += 1;
                continue;
            }
            if !messages.is_empty() && total_bytes + entry.size as usize > max_bytes {
                break 'scan;
            }
            let Some(bytes) = log.read(entry.physical_offset, entry.size as usize) else {
                if messages.is_empty() {
                    status = GetStatus::OffsetFoundNull;
                }
                break 'scan;
            };
            total_bytes += bytes.len();
            messages.push(SelectedMessage {
                queue_offset: next,
                physical_offset: entry.physical_offset,
                tags_code: entry.tags_code,
                bytes,
            });
            next += 1;
        }
    }
    if !messages.is_empty() {
        status = GetStatus::Found;
    }
    GetResult {
        status,
        messages,
        next_begin_offset: next,
        min_offset: min,
        max_offset: max,
    }
}

/// The lowest queue offset whose message was stored at or after `timestamp`, or the queue's max
/// offset when none was. Store timestamps never decrease along a queue, so a binary search works.
pub(crate) fn offset_by_time(log: &CommitLog, queue: &ConsumeQueue, timestamp: i64) -> u64 {
    let (mut lo, mut hi) = (queue.min_offset(), queue.max_offset());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let stored = queue
            .entry(mid)
            .filter(|e| !e.is_padding())
            .and_then(|e| log.store_timestamp_at(e.physical_offset));
        // Padding and deleted messages are older than anything still readable.
        if stored.is_some_and(|ts| ts >= timestamp) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Messages of `topic` with `key` as `UNIQ_KEY` or as one of their `KEYS`, stored within
/// `[begin, end]`, newest first, at most `max` (capped at [`MAX_QUERY_RESULTS`]).
pub(crate) fn query_by_key(
    log: &CommitLog,
    index: &IndexService,
    topic: &str,
    key: &str,
    max: usize,
    begin: i64,
    end: i64,
) -> Vec<StoredMessage> {
    let max = max.min(MAX_QUERY_RESULTS);
    let mut out = Vec::new();
    if max == 0 || begin > end {
        return out;
    }
    let mut seen = HashSet::new();
    index.query(topic, key, begin, end, &mut |offset| {
        if seen.insert(offset)
            && let Some(msg) = log.read_record(offset)
            && msg.topic == topic
            && (begin..=end).contains(&msg.store_timestamp)
            && has_key(&msg, key)
        {
            out.push(msg);
        }
        if out.len() >= max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    out
}

fn has_key(msg: &StoredMessage, key: &str) -> bool {
    msg.properties.get(property::UNIQ_KEY) == Some(key)
        || msg
            .properties
            .get(property::KEYS)
            .is_some_and(|keys| keys.split(property::KEY_SEPARATOR).any(|k| k == key))
}

/// The newest message the producer sent to `topic` with idempotency key `key`, stored within
/// `[begin, end]`. The index only narrows by hash; each candidate record is re-checked (its
/// property, the topic the producer named, its store time). `None` as the outer value means the
/// index was busy and `blocking` was false.
pub(crate) fn find_idempotent(
    log: &CommitLog,
    index: &IndexService,
    (topic, key): (&str, &str),
    (begin, end): (i64, i64),
    blocking: bool,
) -> Option<Option<StoredMessage>> {
    let mut found = None;
    if begin > end {
        return Some(None);
    }
    let index_key = idempotency_index_key(topic, key);
    let mut visit = |offset: u64| {
        if let Some(msg) = log.read_record(offset)
            && (begin..=end).contains(&msg.store_timestamp)
            && msg.properties.get(property::IDEMPOTENCY_KEY) == Some(key)
            && msg
                .properties
                .get(property::REAL_TOPIC)
                .unwrap_or(&msg.topic)
                == topic
            && found
                .as_ref()
                .is_none_or(|f: &StoredMessage| f.physical_offset < msg.physical_offset)
        {
            found = Some(msg);
        }
        ControlFlow::Continue(())
    };
    if blocking {
        index.query(IDEMPOTENCY_INDEX_TOPIC, &index_key, begin, end, &mut visit);
    } else {
        index.try_query(IDEMPOTENCY_INDEX_TOPIC, &index_key, begin, end, &mut visit)?;
    }
    Some(found)
}
