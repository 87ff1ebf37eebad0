//! The message store (reference §1–6).
//!
//! One append-only [CommitLog](commit_log) holds every message of every topic. A dispatcher
//! follows it and maintains a [ConsumeQueue](consume_queue) per (topic, queue), the positional
//! index consumers read through, and [IndexFiles](index_file) for lookups by key. Durability comes
//! from [flushing](flush) (group commit under SYNC_FLUSH), the [checkpoint](checkpoint) and
//! [recovery] after a crash; [retention] keeps the disk from filling up.
//!
//! Everything is reached through [`MessageStore`].

mod checkpoint;
mod commit_log;
mod config;
mod consume_queue;
mod dispatcher;
mod error;
mod flush;
mod health;
mod index_file;
mod index_service;
mod mapped_file;
mod message;
mod message_store;
mod prefault;
mod read;
mod record;
mod recovery;
mod retention;
mod segment_allocator;
mod sleeper;
mod store_lock;
mod write_buffer;

pub use checkpoint::CheckpointValues;
pub use commit_log::{AppendedRecord, MAX_BATCH_MESSAGES};
pub use config::{FlushDiskType, Preallocate, StoreConfig};
pub use consume_queue::{CqEntry, ENTRY_SIZE as CONSUME_QUEUE_ENTRY_SIZE};
pub use dispatcher::{Arrival, ArrivalListener};
pub use error::StoreError;
pub(crate) use message::upper_hex;
pub use message::{
    DLQ_TOPIC_PREFIX, IDEMPOTENCY_INDEX_TOPIC, MAX_IDEMPOTENCY_KEY_LEN, MAX_PROPERTIES_SIZE,
    Message, Properties, RETRY_TOPIC_PREFIX, SCHEDULE_TOPIC, TIMER_TOPIC, find_property,
    idempotency_key_rule, now_millis, offset_message_id, parse_offset_message_id, property,
    sys_flag,
};
pub use message_store::{Appended, BatchPutResult, MessageStore, PutResult, PutStatus, StoreStats};
pub use read::{GetResult, GetStatus, MAX_GET_COUNT, MAX_QUERY_RESULTS, SelectedMessage};
pub use record::pos as record_pos;
pub use record::{
    BLANK_MAGIC, Entry, FIXED_OVERHEAD_V1_IPV4, MAGIC_V1, MAGIC_V2, MAX_SYSTEM_TOPIC_LEN,
    MAX_TOPIC_LEN, RecordError, RecordView, StoredMessage, body_crc, decode as decode_record,
    for_delivery, max_record_size,
};
pub use recovery::RecoveryReport;
pub use retention::RetentionReport;
