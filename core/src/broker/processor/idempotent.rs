//! Idempotent sends: what `send` calls before and after storing a message that carries an
//! idempotency key (`__TERN_IDEMPOTENCY_KEY`). See `broker::idempotency` for the window itself.
//!
//! - [`claim`] runs before anything is stored (and before any topic rewriting, so the key is
//!   the topic the producer named). It answers a repeat from memory, or, when memory may have
//!   lost the key (restart, eviction, a failed send), from the IndexFile once the dispatcher has
//!   indexed the log far enough.
//! - [`stored`] records the result after a successful put. A [`Claim`] dropped without
//!   it (the put failed, the request was dropped) gives the key back and makes the window look
//!   in the index for a while, because the message may have reached the log anyway.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::RemotingCommand;
use crate::protocol::batch::BatchEntry;
use crate::protocol::codes::response;
use crate::protocol::headers::{SendMessageRequestHeader, SendMessageResponseHeader};
use crate::store::{
    FlushDiskType, PutResult, StoreError, StoredMessage, find_property, now_millis,
    offset_message_id, property,
};

use super::super::idempotency::{Claimed, Fingerprint, IdempotencyKeyError, Outcome, check_key};
use super::super::state::BrokerState;

/// Longest a send waits for the dispatcher to index the log before trusting a miss in the index
/// (only after a restart, an eviction or a failed send; normally the index is far enough
/// already). Past it the send is answered SYSTEM_BUSY, which producers retry.
pub const INDEX_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// Store timestamps may run slightly ahead of the clock (they never go back): look this far past
/// "now" in the index.
const CLOCK_SLACK_MS: i64 = 60_000;

/// A key held by one send until it is stored. Dropping it without [`Claim::stored`] abandons it.
pub(super) struct Claim {
    state: Arc<BrokerState>,
    topic: String,
    key: String,
    seq: u64,
    finished: bool,
}

/// After the put: a stored message's result is remembered for later repeats; a failed put gives
/// the key back (dropping the claim).
pub(super) fn stored(claim: Option<Claim>, put: &Result<PutResult, StoreError>, queue_id: i32) {
    if let (Some(claim), Ok(put)) = (claim, put) {
        claim.stored(put, queue_id);
    }
}

impl Claim {
    /// The put succeeded: later repeats are answered with this result.
    fn stored(mut self, put: &PutResult, queue_id: i32) {
        let outcome = Outcome {
            store_host: put.store_host,
            physical_offset: put.record.physical_offset,
            end_offset: put.record.physical_offset + u64::from(put.record.size),
            queue_id,
            queue_offset: put.record.queue_offset as i64,
        };
        self.state
            .idempotency
            .complete(&self.topic, &self.key, self.seq, outcome, now_millis());
        self.finished = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.finished {
            let log_end = self.state.store.max_physical_offset();
            self.state
                .idempotency
                .abandon(&self.topic, &self.key, self.seq, now_millis(), log_end);
        }
    }
}

/// Before a single send is stored: `Ok(None)` for a message without a key, `Ok(Some(claim))` for
/// a new key (store it, then call [`Claim::stored`]), `Err(response)` to answer at once (a
/// replay, a reused or in-flight key, an invalid key).
pub(super) async fn claim(
    state: &Arc<BrokerState>,
    header: &SendMessageRequestHeader,
    body: &Bytes,
) -> Result<Option<Claim>, RemotingCommand> {
    let Some(key) = header
        .properties
        .as_deref()
        .and_then(|p| find_property(p, property::IDEMPOTENCY_KEY))
    else {
        return Ok(None);
    };
    let window = &state.idempotency;
    if !window.is_enabled() {
        return Err(illegal(IdempotencyKeyError::Disabled));
    }
    check_key(key).map_err(illegal)?;
    let topic = header.topic.as_str();
    let fingerprint = Fingerprint::of(body);
    let now = now_millis();
    let (seq, check_index, must_cover) = match window.claim(topic, key, fingerprint, now) {
        Claimed::New {
            seq,
            check_index,
            index_must_cover,
        } => (seq, check_index, index_must_cover),
        other => return Err(answer(state, topic, key, other)),
    };
    let claim = Claim {
        state: state.clone(),
        topic: topic.to_string(),
        key: key.to_string(),
        seq,
        finished: false,
    };
    if !check_index {
        return Ok(Some(claim));
    }
    // Memory may have lost the key: the log decides, once the index covers it.
    if !index_caught_up(state, must_cover).await {
        return Err(RemotingCommand::error(
            response::SYSTEM_BUSY,
            format!(
                "the idempotency index is still catching up with the log (at {} of {must_cover}); retry",
                state.store.dispatched_physical_offset()
            ),
        ));
    }
    let found = find_in_index(state, topic, key, now).await;
    let Some(message) = found else {
        return Ok(Some(claim));
    };
    let found = (
        outcome_of(&message),
        Fingerprint::of(&message.body),
        message.store_timestamp,
    );
    let mut claim = claim;
    claim.finished = true;
    let answer_with = window.found(topic, key, seq, found);
    Err(answer(state, topic, key, answer_with))
}

/// Refuses a batch whose messages carry idempotency keys: one key per batch entry would need
/// per-entry replay answers that RocketMQ's batch response (one queue, consecutive offsets)
/// cannot express.
pub(super) fn refuse_keyed_batch(entries: &[BatchEntry]) -> Result<(), RemotingCommand> {
    match entries
        .iter()
        .position(|e| find_property(&e.properties, property::IDEMPOTENCY_KEY).is_some())
    {
        Some(index) => Err(illegal(IdempotencyKeyError::InBatch { index })),
        None => Ok(()),
    }
}

async fn index_caught_up(state: &BrokerState, must_cover: u64) -> bool {
    let deadline = Instant::now() + INDEX_CATCH_UP_TIMEOUT;
    while state.store.dispatched_physical_offset() < must_cover {
        if Instant::now() >= deadline || state.is_shutting_down() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// Looks the key up on the request thread when the index lock is free, else on the blocking pool
/// (the dispatcher holds the lock while it creates an IndexFile).
async fn find_in_index(
    state: &Arc<BrokerState>,
    topic: &str,
    key: &str,
    now: i64,
) -> Option<StoredMessage> {
    let (begin, end) = (now - state.idempotency.window_ms(), now + CLOCK_SLACK_MS);
    if let Some(found) = state
        .store
        .find_by_idempotency_key(topic, key, begin, end, false)
    {
        return found;
    }
    let (topic, key) = (topic.to_string(), key.to_string());
    state
        .off_thread(move |s| {
            s.store
                .find_by_idempotency_key(&topic, &key, begin, end, true)
                .flatten()
        })
        .await
}

/// The result a stored message was answered with. A message parked in a delay or timer topic
/// was answered with the queue id the producer asked for (`REAL_QID`).
fn outcome_of(message: &StoredMessage) -> Outcome {
    let queue_id = message
        .properties
        .get(property::REAL_TOPIC)
        .and(message.properties.get(property::REAL_QID))
        .and_then(|q| q.parse().ok())
        .unwrap_or(message.queue_id);
    Outcome {
        store_host: message.store_host,
        physical_offset: message.physical_offset,
        end_offset: message.physical_offset + u64::from(message.store_size),
        queue_id,
        queue_offset: message.queue_offset as i64,
    }
}

fn answer(state: &BrokerState, topic: &str, key: &str, claimed: Claimed) -> RemotingCommand {
    match claimed {
        Claimed::Replay(outcome) => replay(state, outcome),
        Claimed::InFlight => RemotingCommand::error(
            response::IDEMPOTENCY_KEY_IN_FLIGHT,
            format!(
                "a message with idempotency key `{key}` on topic {topic} is still being stored; \
                 retry to get its result"
            ),
        ),
        Claimed::Reused => RemotingCommand::error(
            response::IDEMPOTENCY_KEY_REUSED,
            format!(
                "idempotency key `{key}` was used on topic {topic} within the last {} ms for a \
                 message with a different body",
                state.idempotency.window_ms()
            ),
        ),
        Claimed::New { .. } => {
            RemotingCommand::error(response::SYSTEM_ERROR, "idempotency: unexpected new claim")
        }
    }
}

/// The first send's answer again, marked `idempotentReplayed`. Under SYNC_FLUSH a result whose
/// record is not yet flushed is FLUSH_DISK_TIMEOUT, as the first answer was.
fn replay(state: &BrokerState, outcome: Outcome) -> RemotingCommand {
    let config = state.store.config();
    let code = if config.flush_disk_type == FlushDiskType::SyncFlush
        && state.store.flushed_physical_offset() < outcome.end_offset
    {
        response::FLUSH_DISK_TIMEOUT
    } else {
        response::SUCCESS
    };
    RemotingCommand::response(code, None).with_header(&SendMessageResponseHeader {
        msg_id: offset_message_id(outcome.store_host, outcome.physical_offset),
        queue_id: outcome.queue_id,
        queue_offset: outcome.queue_offset,
        transaction_id: None,
        idempotent_replayed: Some(true),
    })
}

fn illegal(e: IdempotencyKeyError) -> RemotingCommand {
    RemotingCommand::error(response::MESSAGE_ILLEGAL, e.to_string())
}
