//! The delay-level service: delivers `SCHEDULE_TOPIC_XXXX` messages when they are due.
//!
//! Each level has its own queue (`level − 1`) and, since every message of a level waits the same
//! time, each queue is ordered by due time: one cursor per level is enough. The dispatcher wrote
//! each entry's due time as its tags code, so the service reads only the 20-byte queue entries
//! until one is due, then the record itself.
//!
//! Cursors live in memory and reach `<store>/config/delayOffset.json` (RocketMQ's shape,
//! `{"offsetTable":{"1":123,…}}`) every [`PERSIST_INTERVAL`] when they moved, and at shutdown.
//! A cursor only moves after the store acknowledged the delivered copy, so a crash can deliver
//! the messages of the last second again (at-least-once), never lose one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::{CqEntry, SCHEDULE_TOPIC, StoreError, now_millis};

use super::delay::restore_real;
use super::error::BrokerError;
use super::json_file;
use super::state::BrokerState;

/// How often moved cursors (and the timer checkpoint) are written.
pub(crate) const PERSIST_INTERVAL: Duration = Duration::from_secs(1);
/// The longest the services sleep: new entries are noticed at least this often.
pub(crate) const MAX_NAP: Duration = Duration::from_millis(100);
/// Queue entries read per call.
const ENTRIES_PER_READ: usize = 64;
/// Deliveries per level per round before the service yields the (single) request thread.
/// A chunk of [`ENTRIES_PER_READ`] is delivered at once.
const DELIVERIES_PER_ROUND: usize = 256;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DelayOffsetFile {
    offset_table: BTreeMap<u32, u64>,
}

/// What became of one due record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Put into its real topic (and acknowledged by the store).
    Delivered,
    /// Dropped with a log line: its real topic is gone, the record is unreadable or refused.
    Skipped,
    /// The store could not take it now (shutting down, disk full, …): try again later.
    Retry,
}

/// Puts the real form of the delayed record at `physical_offset` into its real topic.
pub(crate) async fn deliver(state: &BrokerState, physical_offset: u64, what: &str) -> Outcome {
    let Some(stored) = state.store.message_at(physical_offset) else {
        tracing::warn!(
            physical_offset,
            what,
            "delayed record unreadable (expired?); skipped"
        );
        return Outcome::Skipped;
    };
    let Some((mut message, queue_id)) = restore_real(stored) else {
        tracing::warn!(
            physical_offset,
            what,
            "delayed record has no REAL_TOPIC; skipped"
        );
        return Outcome::Skipped;
    };
    let Some(topic) = state.topics.get(&message.topic) else {
        tracing::warn!(topic = %message.topic, physical_offset, what,
            "real topic of a due message no longer exists; skipped");
        return Outcome::Skipped;
    };
    // The topic may have lost queues while the message waited.
    if topic.write_queue_nums > 0 && queue_id >= topic.write_queue_nums {
        message.queue_id = queue_id % topic.write_queue_nums;
    }
    match state.store.put_message(message).await {
        Ok(_) => Outcome::Delivered,
        Err(
            e @ (StoreError::BodyTooLarge { .. }
            | StoreError::PropertiesTooLarge { .. }
            | StoreError::TopicTooLong { .. }
            | StoreError::TopicEmpty
            | StoreError::TopicInvalidChars { .. }
            | StoreError::InvalidProperty { .. }
            | StoreError::InvalidQueueId(_)),
        ) => {
            tracing::warn!(error = %e, physical_offset, what, "due message refused by the store; skipped");
            Outcome::Skipped
        }
        Err(e) => {
            tracing::debug!(error = %e, what, "due message not delivered yet; will retry");
            Outcome::Retry
        }
    }
}

/// Delivers several records at once: their puts are appended in this order and their
/// durability (the group commit under SYNC_FLUSH) is awaited together, so a burst of due messages
/// is not delivered at one fsync per message. `None` (a padding entry) counts as delivered.
pub(crate) async fn deliver_all(
    state: &BrokerState,
    offsets: impl Iterator<Item = Option<u64>>,
    what: &str,
) -> Vec<Outcome> {
    let puts = offsets.map(|offset| async move {
        match offset {
            Some(offset) => deliver(state, offset, what).await,
            None => Outcome::Skipped,
        }
    });
    join_all(puts).await
}

/// The delay-level service's cursors.
pub(crate) struct ScheduleService {
    path: PathBuf,
    /// Level (1-based) → next queue offset to look at.
    cursors: BTreeMap<u32, u64>,
    level_count: u32,
    dirty: bool,
}

impl ScheduleService {
    /// Reads `delayOffset.json` (missing: every cursor at 0).
    pub(crate) fn load(store_root: &Path, level_count: usize) -> Result<Self, BrokerError> {
        let path = store_root.join("config").join("delayOffset.json");
        let file: DelayOffsetFile = json_file::load(&path)?.unwrap_or_default();
        Ok(ScheduleService {
            path,
            cursors: file.offset_table,
            level_count: level_count as u32,
            dirty: false,
        })
    }

    /// Delivers what is due on every level; returns the earliest due time still waiting.
    async fn deliver_due(&mut self, state: &BrokerState) -> Option<i64> {
        let mut next_due: Option<i64> = None;
        for level in 1..=self.level_count {
            let queue_id = level as i32 - 1;
            let mut cursor = self.cursors.get(&level).copied().unwrap_or(0);
            let min = state.store.min_offset(SCHEDULE_TOPIC, queue_id);
            if cursor < min {
                tracing::warn!(level, cursor, min, "delay queue expired below its cursor");
                cursor = min;
            }
            let mut delivered = 0;
            while delivered < DELIVERIES_PER_ROUND {
                let entries: Vec<CqEntry> =
                    state
                        .store
                        .queue_entries(SCHEDULE_TOPIC, queue_id, cursor, ENTRIES_PER_READ);
                let now = now_millis();
                // The due prefix of this chunk (the queue is in due order).
                let due_len = entries
                    .iter()
                    .position(|e| !e.is_padding() && e.tags_code > now)
                    .unwrap_or(entries.len());
                if let Some(waiting) = entries.get(due_len) {
                    next_due =
                        Some(next_due.map_or(waiting.tags_code, |d| d.min(waiting.tags_code)));
                }
                if due_len == 0 {
                    break;
                }
                let outcomes = deliver_all(
                    state,
                    entries[..due_len]
                        .iter()
                        .map(|e| (!e.is_padding()).then_some(e.physical_offset)),
                    "delay level",
                )
                .await;
                // The cursor stops at the first record the store could not take; any delivered
                // after it in this chunk are delivered again next round (at-least-once).
                let mut retry = false;
                for outcome in outcomes {
                    if outcome == Outcome::Retry {
                        retry = true;
                        break;
                    }
                    cursor += 1;
                    delivered += 1;
                }
                if retry || due_len < entries.len() {
                    break;
                }
            }
            if self.cursors.get(&level) != Some(&cursor) {
                self.cursors.insert(level, cursor);
                self.dirty = true;
            }
            if delivered >= DELIVERIES_PER_ROUND {
                // More is due: come back at once, after letting requests run.
                next_due = Some(0);
                tokio::task::yield_now().await;
            }
        }
        next_due
    }

    async fn persist(&mut self, state: &Arc<BrokerState>) {
        if !self.dirty {
            return;
        }
        let path = self.path.clone();
        let file = DelayOffsetFile {
            offset_table: self.cursors.clone(),
        };
        match state
            .off_thread(move |_| json_file::store(&path, &file))
            .await
        {
            Ok(()) => self.dirty = false,
            Err(e) => tracing::error!(error = %e, "delayOffset.json not written"),
        }
    }

    /// The service's task: deliver, sleep until the next due time (at most [`MAX_NAP`]), persist
    /// the cursors every [`PERSIST_INTERVAL`]; persist once more when stopped.
    pub(crate) async fn run(mut self, state: Arc<BrokerState>, mut stopped: watch::Receiver<bool>) {
        let mut persisted = Instant::now();
        loop {
            let next_due = self.deliver_due(&state).await;
            if persisted.elapsed() >= PERSIST_INTERVAL {
                self.persist(&state).await;
                persisted = Instant::now();
            }
            let nap = nap_until(next_due);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = stopped.changed() => break,
            }
        }
        self.persist(&state).await;
    }
}

/// How long to sleep when the earliest waiting message is due at `next_due` (unix ms).
pub(crate) fn nap_until(next_due: Option<i64>) -> Duration {
    match next_due {
        Some(due) => {
            let ms = due
                .saturating_sub(now_millis())
                .clamp(0, MAX_NAP.as_millis() as i64);
            Duration::from_millis(ms as u64)
        }
        None => MAX_NAP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_file_has_rocketmq_shape() {
        let file = DelayOffsetFile {
            offset_table: [(1, 123), (18, 4)].into_iter().collect(),
        };
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(text, r#"{"offsetTable":{"1":123,"18":4}}"#);
        let back: DelayOffsetFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back.offset_table.get(&18), Some(&4));
    }
}
