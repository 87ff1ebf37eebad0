//! Store errors. Each limit has its own variant so the broker can map it to the right RocketMQ
//! response code and the gateway to the right HTTP status without parsing strings.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the message store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // --- the message itself breaks a limit (nothing was stored) ---
    #[error("message body is {size} bytes; the limit is {max} bytes")]
    BodyTooLarge { size: usize, max: u32 },
    #[error("message properties encode to {size} bytes; the limit is {max} bytes")]
    PropertiesTooLarge { size: usize, max: usize },
    #[error("topic name is {len} bytes; the limit is {max} bytes")]
    TopicTooLong { len: usize, max: usize },
    #[error("topic name is empty")]
    TopicEmpty,
    #[error("property {key:?} is invalid: {reason}")]
    InvalidProperty { key: String, reason: &'static str },
    #[error("queue id {0} is invalid (must be 0..=65535)")]
    InvalidQueueId(i32),
    #[error("a batch may hold 1..={max} messages, got {len}")]
    InvalidBatch { len: usize, max: usize },
    #[error("a batch encodes to {size} bytes; a CommitLog segment holds at most {max}")]
    BatchTooLarge { size: u64, max: u64 },
    #[error("topic name {topic:?} may only contain letters, digits, '%', '|', '_' and '-'")]
    TopicInvalidChars { topic: String },

    // --- the store cannot take writes right now (nothing was stored) ---
    #[error("disk use {used_percent:.1}% is at or above the {limit_percent:.1}% write limit")]
    DiskFull {
        used_percent: f64,
        limit_percent: f64,
    },
    #[error("{pending} bytes are waiting for the disk (limit {max}); retry shortly")]
    FlushBacklog { pending: usize, max: usize },
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error("the store refuses writes after an I/O failure: {0}")]
    WriteFailed(String),
    #[error("could not create CommitLog segment {path}: {source}")]
    CreateSegment { path: PathBuf, source: io::Error },

    // --- opening the store ---
    #[error("store directory {path} is locked by another process")]
    Locked { path: PathBuf },
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    #[error("{path} is {actual} bytes but segments of this store are {expected} bytes")]
    SegmentWrongSize {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("store data is inconsistent: {0}")]
    Corrupt(String),

    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the message was refused for what it is, so retrying it unchanged cannot succeed.
    pub fn is_message_invalid(&self) -> bool {
        matches!(
            self,
            StoreError::BodyTooLarge { .. }
                | StoreError::PropertiesTooLarge { .. }
                | StoreError::TopicTooLong { .. }
                | StoreError::TopicEmpty
                | StoreError::InvalidProperty { .. }
                | StoreError::InvalidQueueId(_)
                | StoreError::InvalidBatch { .. }
                | StoreError::BatchTooLarge { .. }
                | StoreError::TopicInvalidChars { .. }
        )
    }
}

/// Adds a context line to I/O errors, in the style of `anyhow::Context` but typed.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::io(what(), source))
    }
}
