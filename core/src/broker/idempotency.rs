//! The idempotency window: which (topic, idempotency key) pairs this broker has stored recently,
//! and what their first send was answered.
//!
//! A producer that retries a send after a timeout cannot know whether the first attempt was
//! stored. With an idempotency key (`__TERN_IDEMPOTENCY_KEY`), the broker answers a repeat within
//! the window with the first send's result instead of storing the message again.
//!
//! This module is the *memory* half: a bounded map, synchronous, no I/O. The *durable* half is
//! the message itself: the dispatcher indexes every idempotency key in the IndexFile (see
//! `store::IDEMPOTENCY_INDEX_TOPIC`), so after a restart, or after this map evicted a key, the
//! broker finds the first send in the log (`processor::idempotent` glues the two together).
//!
//! The map is authoritative only while it has lost nothing: it tracks since when it holds every
//! key (`complete_since_ms`) and which CommitLog offset the index must cover before a miss in the
//! index can be trusted (`index_must_cover`). Evicting a key, or a send that failed after it may
//! have reached the log, moves both.
//!
//! Memory: one entry costs about [`ENTRY_OVERHEAD_BYTES`] plus the bytes of `topic#key`, at most
//! `idempotency_max_keys` entries (plus the sends in flight, which are never evicted).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use crate::store::MAX_IDEMPOTENCY_KEY_LEN;
/// Longest window a broker can be configured with (24 h).
pub const MAX_IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3_600_000;
/// Most keys the in-memory map can be configured to hold.
pub const MAX_IDEMPOTENCY_KEYS: usize = 10_000_000;
/// Approximate memory per remembered key, without the key's own bytes: the hash map slot and
/// its entry, the order map's node share, and the shared key's allocation header.
pub const ENTRY_OVERHEAD_BYTES: usize = 250;

/// Why an idempotency key is refused (answered MESSAGE_ILLEGAL with this as the remark).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("idempotency key is empty")]
    Empty,
    #[error("idempotency key is {len} bytes, at most {MAX_IDEMPOTENCY_KEY_LEN} are allowed")]
    TooLong { len: usize },
    #[error(
        "idempotency key has a byte outside visible ASCII (`!` to `~`) at position {at}; \
         spaces and control characters are not allowed"
    )]
    InvalidChar { at: usize },
    #[error("idempotency is disabled on this broker (idempotency_window_ms = 0)")]
    Disabled,
    #[error(
        "a batch cannot carry idempotency keys: send keyed messages one by one \
         (message {index} of the batch has one)"
    )]
    InBatch { index: usize },
}

/// Checks a key against [`crate::store::idempotency_key_rule`] (1..=128 bytes of visible
/// ASCII, the rule the client library also applies).
pub fn check_key(key: &str) -> Result<(), IdempotencyKeyError> {
    match crate::store::idempotency_key_rule(key) {
        Ok(()) => Ok(()),
        Err(Some(at)) => Err(IdempotencyKeyError::InvalidChar { at }),
        Err(None) if key.is_empty() => Err(IdempotencyKeyError::Empty),
        Err(None) => Err(IdempotencyKeyError::TooLong { len: key.len() }),
    }
}

/// What tells two sends with one key apart: the body's CRC32 and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub crc: u32,
    pub len: u32,
}

impl Fingerprint {
    pub fn of(body: &[u8]) -> Fingerprint {
        Fingerprint {
            crc: crate::store::body_crc(body),
            len: body.len() as u32,
        }
    }
}

/// What the first send of a key was answered (rebuilt into a SendMessageResponseHeader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The STOREHOST the record carries: with the offset, the message id the producer got (it
    /// can differ from today's address after a restart on another port or IP).
    pub store_host: SocketAddr,
    pub physical_offset: u64,
    /// One past the record's last byte: a replay under SYNC_FLUSH says SUCCESS only once the
    /// log is flushed that far.
    pub end_offset: u64,
    pub queue_id: i32,
    pub queue_offset: i64,
}

/// The answer to [`Window::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Unknown to memory: the caller now holds the key (in flight) under `seq` and must end with
    /// [`Window::complete`] or [`Window::abandon`]. When `check_index` is set, memory may have
    /// lost the key: look in the index first, once it covers `index_must_cover`.
    New {
        seq: u64,
        check_index: bool,
        index_must_cover: u64,
    },
    /// Another send with this key is being stored right now.
    InFlight,
    /// Stored within the window with the same body: answer this again.
    Replay(Outcome),
    /// Stored within the window with a different body.
    Reused,
}

struct Entry {
    seq: u64,
    fingerprint: Fingerprint,
    /// `None` while in flight.
    outcome: Option<Outcome>,
    /// When the key was claimed (in flight) or stored (done), ms.
    at_ms: i64,
}

struct Inner {
    /// Keyed by `topic#key` (topics cannot contain `#`).
    entries: HashMap<Arc<str>, Entry>,
    /// Claim order, oldest first: expiry and eviction take from the front.
    order: BTreeMap<u64, Arc<str>>,
    next_seq: u64,
    /// Memory holds every key claimed at or after this time.
    complete_since_ms: i64,
    /// A miss in the index is only trusted once the dispatcher has indexed the log this far.
    index_must_cover: u64,
    evicted: u64,
}

pub struct Window {
    window_ms: i64,
    max_keys: usize,
    inner: Mutex<Inner>,
}

impl Window {
    /// A window of `window_ms` holding at most `max_keys` keys (plus those in flight), complete
    /// from `now_ms` on. `log_end` is the CommitLog's end at start: the index must reach it
    /// before a miss can be trusted (after a crash the dispatcher replays the log's tail).
    pub fn new(window_ms: u64, max_keys: usize, now_ms: i64, log_end: u64) -> Window {
        Window {
            window_ms: window_ms as i64,
            max_keys,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                next_seq: 0,
                complete_since_ms: now_ms,
                index_must_cover: log_end,
                evicted: 0,
            }),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    pub fn is_enabled(&self) -> bool {
        self.window_ms > 0
    }

    /// Looks `topic#key` up and, when memory does not know it, claims it for this send.
    pub fn claim(&self, topic: &str, key: &str, fingerprint: Fingerprint, now_ms: i64) -> Claimed {
        let id = map_key(topic, key);
        let mut inner = self.lock();
        inner.expire(now_ms - self.window_ms);
        if let Some(entry) = inner.entries.get(id.as_str()) {
            let expired = entry
                .outcome
                .is_some_and(|_| entry.at_ms < now_ms - self.window_ms);
            if !expired {
                return if entry.fingerprint != fingerprint {
                    Claimed::Reused
                } else {
                    match entry.outcome {
                        Some(outcome) => Claimed::Replay(outcome),
                        None => Claimed::InFlight,
                    }
                };
            }
            let seq = entry.seq;
            inner.entries.remove(id.as_str());
            inner.order.remove(&seq);
        }
        inner.evict_to(self.max_keys.saturating_sub(1), now_ms);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let id: Arc<str> = Arc::from(id);
        inner.order.insert(seq, id.clone());
        inner.entries.insert(
            id,
            Entry {
                seq,
                fingerprint,
                outcome: None,
                at_ms: now_ms,
            },
        );
        Claimed::New {
            seq,
            check_index: inner.complete_since_ms > now_ms - self.window_ms,
            index_must_cover: inner.index_must_cover,
        }
    }

    /// The claim `seq` was stored (or found in the index) with `outcome`.
    pub fn complete(&self, topic: &str, key: &str, seq: u64, outcome: Outcome, at_ms: i64) {
        let id = map_key(topic, key);
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.get_mut(id.as_str())
            && entry.seq == seq
        {
            entry.outcome = Some(outcome);
            entry.at_ms = at_ms;
        }
    }

    /// The index knew the key: remember what it found, with the body it found (which may
    /// differ from this send's), and answer as memory would have.
    pub fn found(
        &self,
        topic: &str,
        key: &str,
        seq: u64,
        (outcome, fingerprint, stored_ms): (Outcome, Fingerprint, i64),
    ) -> Claimed {
        let id = map_key(topic, key);
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(id.as_str()).filter(|e| e.seq == seq) else {
            return Claimed::Replay(outcome);
        };
        let answer = if entry.fingerprint == fingerprint {
            Claimed::Replay(outcome)
        } else {
            Claimed::Reused
        };
        entry.fingerprint = fingerprint;
        entry.outcome = Some(outcome);
        entry.at_ms = stored_ms;
        answer
    }

    /// The claim `seq` ended without a stored result (refused, failed, or dropped). The message
    /// may still have reached the log (a failure after the append), so memory is no longer
    /// complete and the index must cover `log_end` before a miss is trusted.
    pub fn abandon(&self, topic: &str, key: &str, seq: u64, now_ms: i64, log_end: u64) {
        let id = map_key(topic, key);
        let mut inner = self.lock();
        if inner.entries.get(id.as_str()).is_some_and(|e| e.seq == seq) {
            inner.entries.remove(id.as_str());
            inner.order.remove(&seq);
        }
        inner.complete_since_ms = inner.complete_since_ms.max(now_ms);
        inner.index_must_cover = inner.index_must_cover.max(log_end);
    }

    /// Keys held (in flight included) and keys evicted so far because of the cap.
    pub fn stats(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.entries.len(), inner.evicted)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing under this lock can panic halfway through an update.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    /// Drops stored keys older than `oldest_ms` from the front. Entries are in claim order and a
    /// send is stored shortly after its claim, so the front is (nearly) the oldest; an entry
    /// that is stuck behind a younger one expires on its own lookup (see `claim`).
    fn expire(&mut self, oldest_ms: i64) {
        while let Some((&seq, id)) = self.order.first_key_value() {
            let entry = &self.entries[id];
            if entry.outcome.is_none() || entry.at_ms >= oldest_ms {
                return;
            }
            let id = id.clone();
            self.entries.remove(&id);
            self.order.remove(&seq);
        }
    }

    /// Evicts the oldest stored keys until at most `keep` remain (in-flight keys are never
    /// evicted: they are what stops a concurrent duplicate). The index still has every evicted
    /// key, so memory stops being complete and the index must cover the evicted records.
    fn evict_to(&mut self, keep: usize, now_ms: i64) {
        if self.entries.len() <= keep {
            return;
        }
        let mut victims = Vec::new();
        let mut excess = self.entries.len() - keep;
        for (&seq, id) in &self.order {
            if excess == 0 {
                break;
            }
            if let Some(outcome) = self.entries[id].outcome {
                victims.push((seq, id.clone(), outcome.end_offset));
                excess -= 1;
            }
        }
        for (seq, id, end) in victims {
            self.entries.remove(&id);
            self.order.remove(&seq);
            self.index_must_cover = self.index_must_cover.max(end);
            self.complete_since_ms = self.complete_since_ms.max(now_ms);
            self.evicted += 1;
        }
    }
}

fn map_key(topic: &str, key: &str) -> String {
    let mut id = String::with_capacity(topic.len() + 1 + key.len());
    id.push_str(topic);
    id.push('#');
    id.push_str(key);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: Fingerprint = Fingerprint { crc: 1, len: 1 };
    const OTHER: Fingerprint = Fingerprint { crc: 2, len: 1 };

    fn outcome(offset: u64) -> Outcome {
        Outcome {
            store_host: SocketAddr::from(([127, 0, 0, 1], 10911)),
            physical_offset: offset,
            end_offset: offset + 10,
            queue_id: 0,
            queue_offset: offset as i64,
        }
    }

    fn new_seq(c: Claimed) -> (u64, bool) {
        match c {
            Claimed::New {
                seq, check_index, ..
            } => (seq, check_index),
            other => panic!("expected New, got {other:?}"),
        }
    }

    #[test]
    fn keys_are_checked() {
        check_key("order-42:retry_1").unwrap();
        check_key(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN)).unwrap();
        assert_eq!(check_key(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            check_key(&"k".repeat(129)),
            Err(IdempotencyKeyError::TooLong { len: 129 })
        );
        assert_eq!(
            check_key("a b"),
            Err(IdempotencyKeyError::InvalidChar { at: 1 })
        );
        assert_eq!(
            check_key("ké"),
            Err(IdempotencyKeyError::InvalidChar { at: 1 })
        );
        assert!(check_key("a\u{1}b").is_err());
    }

    #[test]
    fn in_flight_replay_reused_and_expiry() {
        let w = Window::new(1000, 10, 0, 0);
        // Memory was complete from t=0 but the window reaches back before it: check the index.
        let (seq, check) = new_seq(w.claim("T", "k", FP, 10));
        assert!(check);
        assert_eq!(w.claim("T", "k", FP, 11), Claimed::InFlight);
        assert_eq!(w.claim("T", "k", OTHER, 11), Claimed::Reused);
        w.complete("T", "k", seq, outcome(5), 12);
        assert_eq!(w.claim("T", "k", FP, 500), Claimed::Replay(outcome(5)));
        assert_eq!(w.claim("T", "k", OTHER, 500), Claimed::Reused);
        // Another topic is another key.
        new_seq(w.claim("U", "k", FP, 500));
        // After the window: new again, and memory is now complete for the whole window.
        let (_, check) = new_seq(w.claim("T", "k", FP, 1013));
        assert!(!check);
    }

    #[test]
    fn abandon_frees_the_key_and_makes_memory_incomplete() {
        let w = Window::new(1000, 10, 0, 0);
        let (seq, _) = new_seq(w.claim("T", "k", FP, 2000));
        w.abandon("T", "k", seq, 2001, 777);
        match w.claim("T", "k", FP, 2002) {
            Claimed::New {
                check_index,
                index_must_cover,
                ..
            } => assert!(check_index && index_must_cover == 777),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cap_evicts_the_oldest_stored_key_never_one_in_flight() {
        let w = Window::new(1_000_000, 2, 0, 0);
        let (a, _) = new_seq(w.claim("T", "a", FP, 1));
        let (b, _) = new_seq(w.claim("T", "b", FP, 2));
        w.complete("T", "b", b, outcome(100), 2);
        // Full: "c" evicts "b" (stored), not "a" (in flight).
        let (_, _) = new_seq(w.claim("T", "c", FP, 3));
        assert_eq!(w.stats(), (2, 1));
        assert_eq!(w.claim("T", "a", FP, 4), Claimed::InFlight);
        match w.claim("T", "b", FP, 5) {
            Claimed::New {
                check_index,
                index_must_cover,
                ..
            } => assert!(check_index && index_must_cover == 110),
            other => panic!("{other:?}"),
        }
        w.abandon("T", "a", a, 6, 0);
    }

    #[test]
    fn found_in_the_index_is_remembered_with_its_own_body() {
        let w = Window::new(1000, 10, 0, 0);
        let (seq, _) = new_seq(w.claim("T", "k", OTHER, 10));
        assert_eq!(w.found("T", "k", seq, (outcome(1), FP, 9)), Claimed::Reused);
        assert_eq!(w.claim("T", "k", FP, 11), Claimed::Replay(outcome(1)));
    }
}
