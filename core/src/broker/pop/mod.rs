//! Pop consumption (RocketMQ 5's POP_MESSAGE / ACK_MESSAGE / CHANGE_MESSAGE_INVISIBLETIME): the
//! broker, not the client, decides which member of a group gets which message.
//!
//! - A pop hands out messages and makes each invisible until a deadline. The group's position in
//!   the queue advances at pop time.
//! - An ack removes the message from the in-flight table; an ack naming an older delivery (a stale
//!   receipt handle) is refused.
//! - A message not acked by its deadline is delivered again with `reconsumeTimes + 1`, before new
//!   messages, by the next pop; once it has been redelivered `retryMaxTimes` times the reviver
//!   moves it to `%DLQ%<group>` instead.
//! - FIFO groups: a queue with an invisible message serves nothing; once every in-flight message of
//!   the queue is acked or expired, expired ones are redelivered (in queue order) before anything
//!   new, so per-queue (and so per-ordering-key) order holds across redeliveries.
//!
//! Unlike RocketMQ, redelivery does not copy the message into a retry topic: the in-flight table
//! remembers it and re-reads it from its own queue. That keeps FIFO and non-FIFO on one mechanism
//! and costs no write per redelivery. Every change to the table is journaled (see `journal`), so a
//! broker restart neither loses in-flight messages nor redelivers them early: deadlines are wall
//! clock times and survive with the table.

mod journal;
mod receipt;
mod table;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use journal::JOURNAL_TOPIC;
pub use receipt::ReceiptHandle;

use crate::protocol::subscription::TagFilter;
use crate::store::{
    Appended, GetStatus, MessageStore, StoreError, decode_record, for_delivery, property,
};

use super::consumer_offsets::ConsumerOffsets;
use super::error::BrokerError;
use super::json_file;
use journal::{Event, Snapshot, SnapshotQueue};
use table::{InFlight, PopQueue, QueueKey, Table};

/// How long start-up waits for the store to index the journal's tail before replaying it.
const REPLAY_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PopError {
    /// The handle names a delivery that is no longer current (acked, redelivered, or superseded
    /// by a visibility change).
    #[error("receipt handle is stale: the message was acked, redelivered or its handle renewed")]
    Stale,
    #[error("{0} messages are in flight, the broker's limit; ack some first")]
    TooManyInFlight(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pop asks for.
pub struct PopRequest<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    /// The queues to look at, in order.
    pub queue_ids: Vec<i32>,
    pub max_messages: usize,
    pub max_bytes: usize,
    pub invisible_ms: i64,
    /// A group without a position starts at the end of the queue instead of its start.
    pub start_at_end: bool,
    pub fifo: bool,
    pub filter: Option<&'a TagFilter>,
    /// Redeliveries allowed before the dead-letter queue.
    pub retry_max_times: i32,
    pub broker_name: &'a str,
}

/// One message handed out: its record as delivered (with `POP_CK` and the delivery count).
pub struct Delivery {
    pub record: Vec<u8>,
}

pub struct PopOutcome<'s> {
    pub deliveries: Vec<Delivery>,
    /// The pop's version (RocketMQ's popTime).
    pub version: i64,
    /// Messages not yet delivered in the queues looked at.
    pub rest: u64,
    /// The last journal record; the pop is acknowledged once it is durable.
    pub journaled: Option<Appended<'s>>,
}

/// An in-flight message that has used up its redeliveries and is due for the dead-letter queue.
pub struct Exhausted {
    pub group: String,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: u64,
    pub reconsume_times: i32,
    /// The delivery that expired; the entry is dropped only if it is still this one.
    pub version: i64,
}

pub struct PopLedger {
    table: Mutex<Table>,
    snapshot_path: PathBuf,
    max_inflight: usize,
    dirty: AtomicBool,
    /// Rotates the first queue a pop over all queues looks at, so that queues share the load.
    rotation: AtomicUsize,
}

impl PopLedger {
    /// Loads the snapshot and replays the journal after it. The store must be open and recovered.
    pub async fn load(
        store_root: &Path,
        store: &MessageStore,
        max_inflight: usize,
    ) -> Result<PopLedger, BrokerError> {
        let snapshot_path = store_root.join("config").join("popState.json");
        let snapshot: Snapshot = json_file::load(&snapshot_path)?.unwrap_or_default();
        // The journal's tail is indexed by the dispatcher after recovery; wait for it.
        let log_end = store.max_physical_offset();
        let started = Instant::now();
        while store.dispatched_physical_offset() < log_end {
            if started.elapsed() > REPLAY_WAIT {
                return Err(BrokerError::Config(format!(
                    "the store did not index its log within {REPLAY_WAIT:?}; pop state not replayed"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut table = Table {
            last_version: snapshot.last_version,
            ..Table::default()
        };
        for queue in snapshot.queues {
            table.apply(&Event::Pop {
                key: queue.key,
                next: queue.next,
                entries: queue.entries,
            });
        }
        let events = journal::read_from(store, snapshot.journal_offset).map_err(|reason| {
            BrokerError::CorruptConfigFile {
                file: JOURNAL_TOPIC.into(),
                reason,
            }
        })?;
        let replayed = events.len();
        for event in &events {
            table.apply(event);
        }
        tracing::info!(
            in_flight = table.inflight,
            replayed,
            from = snapshot.journal_offset,
            "pop state loaded"
        );
        Ok(PopLedger {
            table: Mutex::new(table),
            snapshot_path,
            max_inflight,
            dirty: AtomicBool::new(replayed > 0),
            rotation: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().expect("pop table lock")
    }

    /// Journals `event` and applies it, in that order and under the table lock, so that the
    /// journal's order is the order of the changes. Nothing changes if the append fails.
    fn record<'s>(
        &self,
        table: &mut Table,
        store: &'s MessageStore,
        event: Event,
    ) -> Result<Appended<'s>, StoreError> {
        let appended = store.append_message(&event.to_message())?;
        table.apply(&event);
        self.dirty.store(true, Ordering::Release);
        Ok(appended)
    }

    /// Hands out up to `req.max_messages` messages. Never blocks on I/O beyond reading the store.
    pub fn pop<'s>(
        &self,
        store: &'s MessageStore,
        offsets: &ConsumerOffsets,
        req: &PopRequest<'_>,
        now: i64,
    ) -> Result<PopOutcome<'s>, PopError> {
        let mut table = self.lock();
        let deadline = now.saturating_add(req.invisible_ms);
        let mut outcome = PopOutcome {
            deliveries: Vec::new(),
            version: now,
            rest: 0,
            journaled: None,
        };
        // A version is drawn only when something is delivered, so that empty pops do not push
        // versions ahead of the clock.
        let mut version = None;
        let mut hit_limit = false;
        let mut bytes = 0usize;
        let count = req.queue_ids.len().max(1);
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % count;
        for i in 0..req.queue_ids.len() {
            let queue_id = req.queue_ids[(start + i) % count];
            let key = QueueKey {
                group: req.group.to_string(),
                topic: req.topic.to_string(),
                queue_id,
            };
            if !table.queues.contains_key(&key) {
                let next = initial_offset(store, offsets, req, queue_id);
                let mut queue = PopQueue::default();
                queue.next = next;
                table.queues.insert(key.clone(), queue);
            }
            let room = req.max_messages - outcome.deliveries.len();
            if room == 0 || bytes >= req.max_bytes {
                outcome.rest += store
                    .max_offset(req.topic, queue_id)
                    .saturating_sub(table.queues[&key].next);
                continue;
            }
            let inflight_room = self.max_inflight.saturating_sub(table.inflight);
            let plan = plan_queue(
                store,
                &table.queues[&key],
                req,
                queue_id,
                room,
                inflight_room,
                now,
            );
            outcome.rest += store
                .max_offset(req.topic, queue_id)
                .saturating_sub(plan.next);
            if !plan.lost.is_empty() {
                let lost = plan.lost.clone();
                tracing::warn!(
                    group = req.group,
                    topic = req.topic,
                    queue_id,
                    ?lost,
                    "in-flight messages no longer in the store; dropped"
                );
                outcome.journaled = Some(self.record(
                    &mut table,
                    store,
                    Event::Drop {
                        key: key.clone(),
                        offsets: lost,
                    },
                )?);
            }
            hit_limit |= plan.inflight_full;
            if plan.picked.is_empty() && plan.next == table.queues[&key].next {
                continue;
            }
            let version = match version {
                Some(v) => v,
                None if plan.picked.is_empty() => now,
                None => *version.insert(table.next_version(now)),
            };
            outcome.version = version;
            let mut entries = Vec::with_capacity(plan.picked.len());
            for picked in plan.picked {
                let entry = InFlight {
                    version,
                    deadline,
                    reconsume_times: picked.reconsume_times,
                };
                let handle = ReceiptHandle {
                    version,
                    invisible_ms: req.invisible_ms,
                    fifo: req.fifo,
                    broker_name: req.broker_name.to_string(),
                    queue_id,
                    queue_offset: picked.offset,
                };
                let record = for_delivery(
                    &picked.record,
                    picked.reconsume_times,
                    &[(property::POP_CK, &handle.to_string())],
                )
                .map_err(|e| StoreError::Corrupt(format!("popped record: {e}")))?;
                bytes += record.len();
                outcome.deliveries.push(Delivery { record });
                entries.push((picked.offset, entry));
            }
            offsets.commit(req.group, req.topic, queue_id, plan.next as i64);
            outcome.journaled = Some(self.record(
                &mut table,
                store,
                Event::Pop {
                    key,
                    next: plan.next,
                    entries,
                },
            )?);
        }
        if outcome.deliveries.is_empty() && hit_limit {
            return Err(PopError::TooManyInFlight(self.max_inflight));
        }
        Ok(outcome)
    }

    /// Acknowledges the delivery `handle` names.
    pub fn ack<'s>(
        &self,
        store: &'s MessageStore,
        group: &str,
        topic: &str,
        handle: &ReceiptHandle,
    ) -> Result<Appended<'s>, PopError> {
        let mut table = self.lock();
        let key = current(&table, group, topic, handle)?;
        Ok(self.record(
            &mut table,
            store,
            Event::Ack {
                key,
                offset: handle.queue_offset,
            },
        )?)
    }

    /// Acknowledges many deliveries of one group and topic with one journal record. Each handle
    /// gets its own verdict (`Ok` or [`PopError::Stale`]); the record covers the accepted ones and
    /// is `None` when none was.
    pub fn ack_many<'s>(
        &self,
        store: &'s MessageStore,
        group: &str,
        topic: &str,
        handles: &[ReceiptHandle],
    ) -> Result<(Vec<bool>, Option<Appended<'s>>), PopError> {
        let mut table = self.lock();
        let mut accepted = Vec::with_capacity(handles.len());
        let mut seen = std::collections::HashSet::with_capacity(handles.len());
        let mut verdicts = Vec::with_capacity(handles.len());
        for handle in handles {
            // A delivery named twice in one batch is acked once; the repeat is stale.
            let current = current(&table, group, topic, handle).is_ok()
                && seen.insert((handle.queue_id, handle.queue_offset));
            if current {
                accepted.push((handle.queue_id, handle.queue_offset));
            }
            verdicts.push(current);
        }
        if accepted.is_empty() {
            return Ok((verdicts, None));
        }
        let event = Event::AckMany {
            group: group.to_string(),
            topic: topic.to_string(),
            acked: accepted,
        };
        Ok((verdicts, Some(self.record(&mut table, store, event)?)))
    }

    /// Makes the delivery `handle` names invisible for `invisible_ms` from `now` (0: visible at
    /// once) and returns its new handle; the old one becomes stale.
    pub fn change_invisible<'s>(
        &self,
        store: &'s MessageStore,
        group: &str,
        topic: &str,
        handle: &ReceiptHandle,
        invisible_ms: i64,
        now: i64,
    ) -> Result<(Appended<'s>, ReceiptHandle), PopError> {
        let mut table = self.lock();
        let key = current(&table, group, topic, handle)?;
        let old = table.queues[&key].inflight[&handle.queue_offset];
        let version = table.next_version(now);
        let entry = InFlight {
            version,
            deadline: now.saturating_add(invisible_ms),
            reconsume_times: old.reconsume_times,
        };
        let appended = self.record(
            &mut table,
            store,
            Event::Change {
                key,
                offset: handle.queue_offset,
                entry,
            },
        )?;
        let renewed = ReceiptHandle {
            version,
            invisible_ms,
            ..handle.clone()
        };
        Ok((appended, renewed))
    }

    /// Sets the group's position in a queue it pops from (offset reset). `None` when the group
    /// never popped from the queue: its committed offset alone decides where it starts.
    pub fn reset<'s>(
        &self,
        store: &'s MessageStore,
        group: &str,
        topic: &str,
        queue_id: i32,
        next: u64,
    ) -> Result<Option<Appended<'s>>, StoreError> {
        let mut table = self.lock();
        let key = QueueKey {
            group: group.to_string(),
            topic: topic.to_string(),
            queue_id,
        };
        if !table.queues.contains_key(&key) {
            return Ok(None);
        }
        self.record(&mut table, store, Event::Reset { key, next })
            .map(Some)
    }

    /// Messages whose deadline fell in `(since, now]` and that used up their redeliveries
    /// (`retry_max` gives a group's limit). `since = i64::MIN` looks at every expired message.
    pub fn exhausted(
        &self,
        since: i64,
        now: i64,
        retry_max: impl Fn(&str) -> i32,
    ) -> Vec<Exhausted> {
        let table = self.lock();
        let mut out = Vec::new();
        for (key, queue) in &table.queues {
            if queue.first_deadline().is_none_or(|d| d > now) {
                continue;
            }
            let limit = retry_max(&key.group);
            for (offset, entry) in queue.expired_between(since, now) {
                if entry.reconsume_times >= limit {
                    out.push(Exhausted {
                        group: key.group.clone(),
                        topic: key.topic.clone(),
                        queue_id: key.queue_id,
                        queue_offset: offset,
                        reconsume_times: entry.reconsume_times,
                        version: entry.version,
                    });
                }
            }
        }
        out
    }

    /// Topics with a message whose deadline fell in `(since, now]`: pops waiting on them should
    /// look again.
    pub fn newly_visible_topics(&self, since: i64, now: i64) -> Vec<String> {
        let table = self.lock();
        let mut topics: Vec<String> = table
            .queues
            .iter()
            .filter(|(_, q)| q.expired(now).any(|(_, entry)| entry.deadline > since))
            .map(|(key, _)| key.topic.clone())
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// Removes a message that was moved to the dead-letter queue, unless its delivery changed
    /// meanwhile (acked, or its invisibility changed by a consumer that still holds it): then
    /// nothing is dropped and `None` is returned.
    pub fn drop_exhausted<'s>(
        &self,
        store: &'s MessageStore,
        message: &Exhausted,
    ) -> Result<Option<Appended<'s>>, StoreError> {
        let mut table = self.lock();
        let key = QueueKey {
            group: message.group.clone(),
            topic: message.topic.clone(),
            queue_id: message.queue_id,
        };
        let current = table
            .queues
            .get(&key)
            .and_then(|q| q.inflight.get(&message.queue_offset))
            .is_some_and(|e| e.version == message.version);
        if !current {
            return Ok(None);
        }
        let event = Event::Drop {
            key,
            offsets: vec![message.queue_offset],
        };
        self.record(&mut table, store, event).map(Some)
    }

    /// Writes the snapshot if anything changed since the last one, so the journal replayed at the
    /// next start stays short. Blocking (fsync): call it off the request thread.
    pub fn persist(&self, store: &MessageStore) -> Result<(), BrokerError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = {
            let table = self.lock();
            Snapshot {
                // Taken under the lock: every event below this offset was applied before it was
                // appended, so it is in the table we copy.
                journal_offset: store.max_offset(JOURNAL_TOPIC, 0),
                last_version: table.last_version,
                queues: table
                    .queues
                    .iter()
                    .map(|(key, queue)| SnapshotQueue {
                        key: key.clone(),
                        next: queue.next,
                        entries: queue.inflight.iter().map(|(&o, &e)| (o, e)).collect(),
                    })
                    .collect(),
            }
        };
        let result = json_file::store(&self.snapshot_path, &snapshot);
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

/// The key of the in-flight entry `handle` names, if the handle is its current one.
fn current(
    table: &Table,
    group: &str,
    topic: &str,
    handle: &ReceiptHandle,
) -> Result<QueueKey, PopError> {
    let key = QueueKey {
        group: group.to_string(),
        topic: topic.to_string(),
        queue_id: handle.queue_id,
    };
    match table
        .queues
        .get(&key)
        .and_then(|q| q.inflight.get(&handle.queue_offset))
    {
        Some(entry) if entry.version == handle.version => Ok(key),
        _ => Err(PopError::Stale),
    }
}

/// Where a group that never popped from a queue starts: its committed offset (set by a classic
/// consumer of the same group or an offset reset), else the start or the end of the queue.
fn initial_offset(
    store: &MessageStore,
    offsets: &ConsumerOffsets,
    req: &PopRequest<'_>,
    queue_id: i32,
) -> u64 {
    let (min, max) = (
        store.min_offset(req.topic, queue_id),
        store.max_offset(req.topic, queue_id),
    );
    match offsets.get(req.group, req.topic, queue_id) {
        Some(committed) if committed >= 0 => (committed as u64).clamp(min, max),
        _ if req.start_at_end => max,
        _ => min,
    }
}

struct Picked {
    offset: u64,
    reconsume_times: i32,
    record: bytes::Bytes,
}

/// What one queue contributes to a pop, decided without changing anything.
struct Plan {
    picked: Vec<Picked>,
    next: u64,
    /// In-flight messages whose record is gone (retention deleted it).
    lost: Vec<u64>,
    /// New messages were available but the in-flight limit stopped them.
    inflight_full: bool,
}

fn plan_queue(
    store: &MessageStore,
    queue: &PopQueue,
    req: &PopRequest<'_>,
    queue_id: i32,
    room: usize,
    inflight_room: usize,
    now: i64,
) -> Plan {
    let mut plan = Plan {
        picked: Vec::new(),
        next: queue.next,
        lost: Vec::new(),
        inflight_full: false,
    };
    // Expired deliveries first. FIFO: only when nothing of the queue is still invisible, all of
    // them in queue order; a message due for the dead-letter queue blocks the queue until the
    // reviver has moved it, or the messages after it would overtake it.
    let mut again: Vec<(u64, InFlight)> = queue.expired(now).collect();
    if req.fifo {
        if queue.any_invisible(now)
            || again
                .iter()
                .any(|(_, e)| e.reconsume_times >= req.retry_max_times)
        {
            return plan;
        }
        again.sort_by_key(|&(offset, _)| offset);
    } else {
        again.retain(|(_, e)| e.reconsume_times < req.retry_max_times);
    }
    for (offset, entry) in again.into_iter().take(room) {
        let got = store.get_messages(req.topic, queue_id, offset, 1, usize::MAX, None);
        match got.messages.first() {
            Some(m) if m.queue_offset == offset => plan.picked.push(Picked {
                offset,
                reconsume_times: entry.reconsume_times + 1,
                record: m.bytes.clone(),
            }),
            _ => plan.lost.push(offset),
        }
    }
    if req.fifo && !queue.inflight.is_empty() {
        // Redeliveries (or lost entries) only: new messages wait for the batch to finish.
        return plan;
    }
    let room = room - plan.picked.len();
    if room == 0 {
        return plan;
    }
    let room = if room > inflight_room {
        plan.inflight_full = true;
        inflight_room
    } else {
        room
    };
    if room == 0 {
        return plan;
    }
    let codes = req.filter.and_then(TagFilter::codes);
    let keep = |code: i64| codes.as_ref().is_none_or(|c| c.contains(&code));
    let got = store.get_messages(
        req.topic,
        queue_id,
        queue.next,
        room,
        req.max_bytes,
        Some(&keep),
    );
    match got.status {
        GetStatus::Found
        | GetStatus::NoMatchedMessage
        | GetStatus::OffsetTooSmall
        | GetStatus::OffsetOverflowBadly
        | GetStatus::MessageWasRemoving => plan.next = got.next_begin_offset.max(got.min_offset),
        _ => {}
    }
    for m in got.messages {
        // The store filtered by tag hash; the exact tag decides (hashes collide).
        if let Some(filter) = req.filter
            && !matches_exactly(filter, &m.bytes)
        {
            continue;
        }
        plan.picked.push(Picked {
            offset: m.queue_offset,
            reconsume_times: 0,
            record: m.bytes,
        });
    }
    plan
}

fn matches_exactly(filter: &TagFilter, record: &[u8]) -> bool {
    match decode_record(record, false) {
        Ok(crate::store::Entry::Record(view)) => {
            filter.matches(crate::store::find_property(view.properties, property::TAGS))
        }
        _ => false,
    }
}
