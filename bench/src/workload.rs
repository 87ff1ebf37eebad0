//! The messages the store benchmark appends, made to look like a real producer's.
//!
//! A realistic message matters because the store does per-message work beyond the copy: the
//! dispatcher parses properties, hashes `TAGS` for the ConsumeQueue entry and inserts `UNIQ_KEY`
//! into the IndexFile. A benchmark of bare bodies would skip that and flatter the store.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tern_core::store::{FIXED_OVERHEAD_V1_IPV4, Message, property};

use crate::error::{BenchError, Result};

pub const TOPIC: &str = "BenchTopic";
const TAG: &str = "TagA";

/// Builds the `n`-th message of a run: same body for all (its content is irrelevant to the store,
/// but it is not all zeros, so nothing along the way can compress or skip it), queues round-robin,
/// and a unique 32-hex-digit `UNIQ_KEY` like RocketMQ clients generate.
#[derive(Debug, Clone)]
pub struct Workload {
    body: Bytes,
    queues: u32,
    /// The first 16 hex digits of every key: process id and start time, so two runs never make
    /// the same keys; the last 16 are the message number.
    key_prefix: String,
}

impl Workload {
    pub fn new(body_size: usize, queues: u32) -> Result<Workload> {
        if body_size == 0 {
            return Err(BenchError::Args("body sizes must be positive".into()));
        }
        if queues == 0 {
            return Err(BenchError::Args("--queues must be positive".into()));
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
        Ok(Workload {
            body: Bytes::from(pseudo_random_bytes(body_size)),
            queues,
            key_prefix: format!("{:08X}{:08X}", std::process::id(), nanos),
        })
    }

    /// The `n`-th message.
    pub fn message(&self, n: u64) -> Message {
        let queue_id = (n % u64::from(self.queues)) as i32;
        Message::new(TOPIC, queue_id, self.body.clone())
            .with_property(property::TAGS, TAG)
            .with_property(property::UNIQ_KEY, format!("{}{n:016X}", self.key_prefix))
    }

    /// Size of every CommitLog record this workload produces (keys have a fixed width, so all
    /// records are the same size). The raw baselines write records of exactly this size, so both
    /// sides move the same bytes; the store scenario checks the figure against what it stored.
    pub fn record_len(&self) -> Result<usize> {
        let properties = self
            .message(0)
            .properties
            .encode()
            .map_err(|e| BenchError::Invalid(format!("benchmark message properties: {e}")))?;
        Ok(FIXED_OVERHEAD_V1_IPV4 + TOPIC.len() + properties.len() + self.body.len())
    }
}

/// `len` bytes from a xorshift generator: cheap, deterministic, and incompressible enough.
pub fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_robin_with_unique_fixed_width_keys() {
        let w = Workload::new(128, 8).unwrap();
        let a = w.message(0);
        let b = w.message(9);
        assert_eq!(a.queue_id, 0);
        assert_eq!(b.queue_id, 1);
        let key = |m: &Message| m.properties.get(property::UNIQ_KEY).unwrap().to_owned();
        assert_eq!(key(&a).len(), 32);
        assert_eq!(key(&b).len(), 32);
        assert_ne!(key(&a), key(&b));
        assert!(key(&a).bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.body.len(), 128);
    }

    #[test]
    fn rejects_empty_bodies_and_zero_queues() {
        assert!(Workload::new(0, 8).is_err());
        assert!(Workload::new(8, 0).is_err());
    }
}
