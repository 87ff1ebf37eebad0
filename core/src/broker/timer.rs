//! The timer service: delivers `rmq_sys_wheel_timer` messages at their `TIMER_DELIVER_MS`.
//!
//! Timer messages have arbitrary due times, so their queue is not ordered by due time. The
//! service follows the queue (**ingestion**: the dispatcher wrote each entry's due time as its
//! tags code, so this reads 20-byte entries only) into an in-memory min-heap of
//! `(due, queue offset, CommitLog offset)`, plus the set of pending queue offsets, and delivers
//! the heap's head when it is due (1 s precision is promised; the service wakes at least every
//! 100 ms and sleeps until the next due time when it is sooner).
//!
//! # Crash safety
//!
//! `<store>/config/timerCheckpoint.json` holds three numbers, written every second when they
//! changed and at shutdown:
//!
//! - `scanFrom`: the smallest pending queue offset (or `consumedTo` when none is pending);
//! - `consumedTo`: the next queue offset to ingest;
//! - `deliveredThroughMs` (W): every ingested entry (offset < `consumedTo`) due at or before W
//!   has been delivered and acknowledged by the store. W is the smallest pending due time − 1
//!   (anything ingested and due earlier is not pending, hence delivered).
//!
//! A restart re-ingests from `scanFrom` and skips entries below `consumedTo` due at or before W.
//! Every acknowledged timer message is therefore delivered eventually, even after SIGKILL; one
//! delivered between the last checkpoint and a crash may be delivered again (at-least-once).
//!
//! # Limits
//!
//! At most `timer_max_pending` timers wait at once (pending = ingested and undelivered, plus not
//! yet ingested); a send beyond it is refused with `TimerBacklogFull`. Each pending timer costs
//! 24 bytes in the heap plus its slot in the offset set: ~50 MB per million (measured by
//! `tern-bench timer`).
//!
//! Ingestion and delivery run in bounded chunks and yield between them, so a backlog of millions
//! (after a restart) never holds the broker's request thread for more than a fraction of a
//! millisecond at a time.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::store::{MessageStore, TIMER_TOPIC, now_millis};

use super::error::BrokerError;
use super::json_file;
use super::schedule::{Outcome, PERSIST_INTERVAL, deliver_all, nap_until};
use super::state::BrokerState;

/// Queue entries ingested per chunk (~0.3 ms of work) before the service yields.
const INGEST_CHUNK: usize = 4096;
/// Chunks ingested per round before due timers get their turn again.
const INGEST_CHUNKS_PER_ROUND: usize = 64;
/// Timers delivered at once (their puts share the group commit) before the service yields.
const DELIVER_CHUNK: usize = 256;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TimerCheckpoint {
    scan_from: u64,
    consumed_to: u64,
    delivered_through_ms: i64,
}

/// What the send path needs to know about the backlog, shared with the service.
#[derive(Debug, Default)]
pub(crate) struct TimerBacklog {
    /// The service's `consumed_to`.
    ingested_to: AtomicU64,
    /// Ingested timers not yet delivered.
    in_heap: AtomicU64,
}

impl TimerBacklog {
    /// Timers waiting: ingested and undelivered, plus those not ingested yet.
    pub(crate) fn pending(&self, store: &MessageStore) -> u64 {
        let written = store.max_offset(TIMER_TOPIC, 0);
        written.saturating_sub(self.ingested_to.load(Ordering::Acquire))
            + self.in_heap.load(Ordering::Acquire)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due_ms: i64,
    queue_offset: u64,
    physical_offset: u64,
}

pub(crate) struct TimerService {
    path: PathBuf,
    heap: BinaryHeap<Reverse<Pending>>,
    pending: BTreeSet<u64>,
    consumed_to: u64,
    /// From the checkpoint read at start: entries below `restart_consumed_to` due at or before
    /// `restart_through_ms` were delivered by a previous run.
    restart_consumed_to: u64,
    restart_through_ms: i64,
    last_written: Option<TimerCheckpoint>,
}

impl TimerService {
    pub(crate) fn load(store_root: &Path) -> Result<TimerService, BrokerError> {
        let path = store_root.join("config").join("timerCheckpoint.json");
        let checkpoint: TimerCheckpoint = json_file::load(&path)?.unwrap_or_default();
        Ok(TimerService {
            path,
            heap: BinaryHeap::new(),
            pending: BTreeSet::new(),
            consumed_to: checkpoint.scan_from.min(checkpoint.consumed_to),
            restart_consumed_to: checkpoint.consumed_to,
            restart_through_ms: checkpoint.delivered_through_ms,
            last_written: Some(checkpoint),
        })
    }

    /// Reads up to `INGEST_CHUNKS_PER_ROUND` chunks of new queue entries into the heap.
    async fn ingest(&mut self, state: &BrokerState) {
        for _ in 0..INGEST_CHUNKS_PER_ROUND {
            let min = state.store.min_offset(TIMER_TOPIC, 0);
            if self.consumed_to < min {
                tracing::error!(
                    from = self.consumed_to,
                    to = min,
                    "timer queue expired before its timers were delivered; those are lost"
                );
                self.consumed_to = min;
            }
            let entries = state
                .store
                .queue_entries(TIMER_TOPIC, 0, self.consumed_to, INGEST_CHUNK);
            if entries.is_empty() {
                return;
            }
            for entry in &entries {
                let offset = self.consumed_to;
                self.consumed_to += 1;
                if entry.is_padding()
                    || (offset < self.restart_consumed_to
                        && entry.tags_code <= self.restart_through_ms)
                {
                    continue;
                }
                self.heap.push(Reverse(Pending {
                    due_ms: entry.tags_code,
                    queue_offset: offset,
                    physical_offset: entry.physical_offset,
                }));
                self.pending.insert(offset);
            }
            self.publish(state);
            tokio::task::yield_now().await;
        }
    }

    /// The backlog counters as of start. While a restart re-ingests, entries up to the previous
    /// run's `consumedTo` count as ingested (most of them were delivered): the pending count then
    /// misses the not yet re-ingested pending ones for a moment, rather than counting every
    /// timer the queue ever held and refusing sends.
    pub(crate) fn initial_backlog(&self) -> TimerBacklog {
        TimerBacklog {
            ingested_to: AtomicU64::new(self.consumed_to.max(self.restart_consumed_to)),
            in_heap: AtomicU64::new(0),
        }
    }

    fn publish(&self, state: &BrokerState) {
        let backlog = &state.timer_backlog;
        backlog
            .in_heap
            .store(self.heap.len() as u64, Ordering::Release);
        backlog.ingested_to.store(
            self.consumed_to.max(self.restart_consumed_to),
            Ordering::Release,
        );
    }

    /// Delivers every timer due now, [`DELIVER_CHUNK`] at a time (see [`deliver_all`]); returns
    /// the earliest due time still waiting. Every put has completed when this returns, so the
    /// heap and the pending set again describe exactly what is undelivered (the checkpoint
    /// relies on it).
    async fn deliver_due(&mut self, state: &BrokerState) -> Option<i64> {
        loop {
            let now = now_millis();
            let mut chunk = Vec::new();
            while chunk.len() < DELIVER_CHUNK
                && let Some(Reverse(head)) = self.heap.peek().copied()
                && head.due_ms <= now
            {
                self.heap.pop();
                chunk.push(head);
            }
            if chunk.is_empty() {
                self.publish(state);
                return self.heap.peek().map(|Reverse(head)| head.due_ms);
            }
            let outcomes = deliver_all(
                state,
                chunk.iter().map(|p| Some(p.physical_offset)),
                "timer",
            )
            .await;
            let mut retry = false;
            for (timer, outcome) in chunk.into_iter().zip(outcomes) {
                if outcome == Outcome::Retry {
                    // The store cannot take it now: back into the heap, retried next round.
                    self.heap.push(Reverse(timer));
                    retry = true;
                } else {
                    self.pending.remove(&timer.queue_offset);
                }
            }
            self.publish(state);
            if retry {
                return Some(0);
            }
            tokio::task::yield_now().await;
        }
    }

    fn checkpoint(&self) -> TimerCheckpoint {
        let delivered_through_ms = self
            .heap
            .peek()
            .map_or(i64::MAX, |Reverse(p)| p.due_ms.saturating_sub(1));
        let scan_from = self.pending.first().copied().unwrap_or(self.consumed_to);
        if self.consumed_to < self.restart_consumed_to {
            // Still re-ingesting after a restart: the previous run's promise covers the rest.
            TimerCheckpoint {
                scan_from,
                consumed_to: self.restart_consumed_to,
                delivered_through_ms: delivered_through_ms.min(self.restart_through_ms),
            }
        } else {
            TimerCheckpoint {
                scan_from,
                consumed_to: self.consumed_to,
                delivered_through_ms,
            }
        }
    }

    async fn persist(&mut self, state: &Arc<BrokerState>) {
        let checkpoint = self.checkpoint();
        if self.last_written == Some(checkpoint) {
            return;
        }
        let path = self.path.clone();
        match state
            .off_thread(move |_| json_file::store(&path, &checkpoint))
            .await
        {
            Ok(()) => self.last_written = Some(checkpoint),
            Err(e) => tracing::error!(error = %e, "timerCheckpoint.json not written"),
        }
    }

    /// The service's task: ingest, deliver, sleep until the next due time (at most 100 ms),
    /// checkpoint every second; checkpoint once more when stopped.
    pub(crate) async fn run(mut self, state: Arc<BrokerState>, mut stopped: watch::Receiver<bool>) {
        let mut persisted = Instant::now();
        loop {
            self.ingest(&state).await;
            let next_due = self.deliver_due(&state).await;
            if persisted.elapsed() >= PERSIST_INTERVAL {
                self.persist(&state).await;
                persisted = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep(nap_until(next_due)) => {}
                _ = stopped.changed() => break,
            }
        }
        self.persist(&state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TimerService {
        TimerService {
            path: PathBuf::new(),
            heap: BinaryHeap::new(),
            pending: BTreeSet::new(),
            consumed_to: 0,
            restart_consumed_to: 0,
            restart_through_ms: i64::MIN,
            last_written: None,
        }
    }

    fn push(s: &mut TimerService, due_ms: i64, queue_offset: u64) {
        s.heap.push(Reverse(Pending {
            due_ms,
            queue_offset,
            physical_offset: 0,
        }));
        s.pending.insert(queue_offset);
    }

    #[test]
    fn checkpoint_promises_only_what_was_delivered() {
        let mut s = service();
        s.consumed_to = 10;
        assert_eq!(
            s.checkpoint(),
            TimerCheckpoint {
                scan_from: 10,
                consumed_to: 10,
                delivered_through_ms: i64::MAX
            }
        );
        push(&mut s, 5_000, 7);
        push(&mut s, 3_000, 9);
        assert_eq!(
            s.checkpoint(),
            TimerCheckpoint {
                scan_from: 7,
                consumed_to: 10,
                delivered_through_ms: 2_999
            }
        );
        // Mid re-ingestion the previous run's promise is kept, narrowed.
        s.restart_consumed_to = 20;
        s.restart_through_ms = 1_000;
        assert_eq!(
            s.checkpoint(),
            TimerCheckpoint {
                scan_from: 7,
                consumed_to: 20,
                delivered_through_ms: 1_000
            }
        );
    }

    #[test]
    fn checkpoint_file_shape() {
        let text = serde_json::to_string(&TimerCheckpoint {
            scan_from: 1,
            consumed_to: 2,
            delivered_through_ms: 3,
        })
        .unwrap();
        assert_eq!(
            text,
            r#"{"scanFrom":1,"consumedTo":2,"deliveredThroughMs":3}"#
        );
    }
}
