//! The dispatcher follows the CommitLog and builds the ConsumeQueues and the index from it.
//!
//! It is the only writer of both. It reads only up to [`CommitLog::visible`], so under SYNC_FLUSH a
//! message reaches consumers only once it is on disk. Every dispatch is idempotent, which lets
//! recovery replay a stretch of the log without caring what was already indexed.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tracing::error;

use super::commit_log::CommitLog;
use super::consume_queue::{ConsumeQueues, CqEntry};
use super::error::StoreError;
use super::index_service::{IndexRequest, IndexService};
use super::message::{SCHEDULE_TOPIC, TIMER_TOPIC, find_property, property};
use super::record::{self, Entry, RecordView};
use super::sleeper::Sleeper;
use crate::java_hash;

/// What a listener learns when a message becomes consumable.
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub queue_offset: u64,
    pub tags_code: i64,
    pub store_timestamp: i64,
    /// The encoded properties, for filters that look beyond the tag.
    pub properties: &'a str,
}

/// Told about each message as soon as its ConsumeQueue entry exists; the broker's long polling
/// hangs off this. Runs on the dispatcher thread: it must be quick and must not block.
pub trait ArrivalListener: Send + Sync {
    fn on_arrival(&self, arrival: &Arrival<'_>);
}

pub(crate) struct Dispatcher {
    log: Arc<CommitLog>,
    queues: Arc<ConsumeQueues>,
    index: Arc<IndexService>,
    delay_levels: Vec<u64>,
    /// The next CommitLog offset to dispatch.
    position: AtomicU64,
    /// Store timestamp of the last dispatched record (the checkpoint's logicsMsgTimestamp once
    /// the queues are flushed).
    last_timestamp: AtomicI64,
    listener: OnceLock<Arc<dyn ArrivalListener>>,
    sleeper: Sleeper,
}

/// How long the dispatcher naps after a round of work before it asks to be woken (see
/// [`Dispatcher::run`]). It bounds the extra delivery latency under load; RocketMQ's dispatcher
/// polls every 1 ms.
pub(crate) const DISPATCH_NAP: std::time::Duration = std::time::Duration::from_micros(100);

/// Tags code of a ConsumeQueue entry: the Java hash of `TAGS`, or for the delay topic the time the
/// message is due (reference §3). Timer messages (`rmq_sys_wheel_timer`) likewise carry their
/// `TIMER_DELIVER_MS`, so the broker's timer service learns every due time from the 20-byte
/// queue entries alone, without reading the CommitLog (0 when the property is missing or bad:
/// such an entry is due at once).
pub(crate) fn tags_code(view: &RecordView<'_>, delay_levels: &[u64]) -> i64 {
    if view.topic == TIMER_TOPIC {
        return find_property(view.properties, property::TIMER_DELIVER_MS)
            .and_then(|ms| ms.parse::<i64>().ok())
            .unwrap_or(0);
    }
    if view.topic == SCHEDULE_TOPIC
        && let Some(level) = find_property(view.properties, property::DELAY)
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|&l| l > 0)
    {
        let level = level.min(delay_levels.len());
        return view.store_timestamp + delay_levels[level - 1] as i64;
    }
    find_property(view.properties, property::TAGS)
        .filter(|t| !t.is_empty())
        .map_or(0, |t| i64::from(java_hash::string_hash(t)))
}

/// `(producer topic, idempotency key)` of a record that carries one. The producer topic is
/// `REAL_TOPIC` when the broker parked the message elsewhere (delay and timer topics), so the
/// key is found under the topic the producer named.
pub(crate) fn idempotency_of<'a>(view: &RecordView<'a>) -> Option<(&'a str, &'a str)> {
    let key = find_property(view.properties, property::IDEMPOTENCY_KEY)?;
    let topic = find_property(view.properties, property::REAL_TOPIC).unwrap_or(view.topic);
    Some((topic, key))
}

impl Dispatcher {
    pub(crate) fn new(
        log: Arc<CommitLog>,
        queues: Arc<ConsumeQueues>,
        index: Arc<IndexService>,
        delay_levels: Vec<u64>,
    ) -> Dispatcher {
        Dispatcher {
            log,
            queues,
            index,
            delay_levels,
            position: AtomicU64::new(0),
            last_timestamp: AtomicI64::new(0),
            listener: OnceLock::new(),
            sleeper: Sleeper::default(),
        }
    }

    pub(crate) fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    pub(crate) fn last_timestamp(&self) -> i64 {
        self.last_timestamp.load(Ordering::Acquire)
    }

    /// Where dispatch starts (recovery decides).
    pub(crate) fn set_position(&self, offset: u64, timestamp: i64) {
        self.position.store(offset, Ordering::Release);
        self.last_timestamp.store(timestamp, Ordering::Release);
    }

    /// Tells the dispatcher that more of the log may be visible.
    pub(crate) fn wake(&self) {
        self.sleeper.wake();
    }

    /// Installs the arrival listener; `false` if one is already set.
    pub(crate) fn set_listener(&self, listener: Arc<dyn ArrivalListener>) -> bool {
        self.listener.set(listener).is_ok()
    }

    /// Dispatches every record from the current position up to `limit` (a record boundary).
    /// Returns how many records it dispatched. Only one thread at a time may call this.
    pub(crate) fn dispatch_until(&self, limit: u64, notify: bool) -> Result<u64, StoreError> {
        let mut position = self.position();
        let mut count = 0;
        while position < limit {
            let Some(segment) = self.log.segment_for(position) else {
                return Err(StoreError::Corrupt(format!(
                    "dispatch position {position} is outside the CommitLog"
                )));
            };
            let bytes = segment.read_from(position - segment.base());
            match record::decode(bytes, false) {
                Ok(Entry::Record(view)) => {
                    if view.physical_offset != position {
                        return Err(StoreError::Corrupt(format!(
                            "record at {position} says it is at {}",
                            view.physical_offset
                        )));
                    }
                    self.dispatch(&view, notify)?;
                    position += u64::from(view.total_size);
                    self.last_timestamp
                        .store(view.store_timestamp, Ordering::Release);
                    count += 1;
                }
                Ok(Entry::Blank) => position = segment.end(),
                Ok(Entry::Unwritten) => {
                    return Err(StoreError::Corrupt(format!(
                        "no record at {position}, below the visible end {limit}"
                    )));
                }
                Err(e) => {
                    return Err(StoreError::Corrupt(format!(
                        "undecodable record at {position}: {e}"
                    )));
                }
            }
            self.position.store(position, Ordering::Release);
        }
        Ok(count)
    }

    fn dispatch(&self, view: &RecordView<'_>, notify: bool) -> Result<(), StoreError> {
        let tags_code = tags_code(view, &self.delay_levels);
        if record::takes_queue_offset(view.sys_flag) {
            let queue = self.queues.get_or_create(view.topic, view.queue_id);
            let entry = CqEntry {
                physical_offset: view.physical_offset,
                size: view.total_size,
                tags_code,
            };
            queue.put(view.queue_offset, entry)?;
            if notify && let Some(listener) = self.listener.get() {
                listener.on_arrival(&Arrival {
                    topic: view.topic,
                    queue_id: view.queue_id,
                    queue_offset: view.queue_offset,
                    tags_code,
                    store_timestamp: view.store_timestamp,
                    properties: view.properties,
                });
            }
        }
        self.index.dispatch(&IndexRequest {
            topic: view.topic,
            physical_offset: view.physical_offset,
            store_timestamp: view.store_timestamp,
            sys_flag: view.sys_flag,
            unique_key: find_property(view.properties, property::UNIQ_KEY),
            keys: find_property(view.properties, property::KEYS),
            idempotency: idempotency_of(view),
        })
    }

    /// The dispatcher thread's body: dispatch whatever became visible, then sleep until woken
    /// (the appender under ASYNC_FLUSH, the flusher under SYNC_FLUSH) or a safety timeout passes.
    ///
    /// After a round of work the thread first naps for [`DISPATCH_NAP`] *without* announcing
    /// that it sleeps: under a steady stream of appends it then wakes on its own timer and takes
    /// a batch, instead of every append paying a futex wake-up (at ~70k appends/s those wake-ups
    /// cost the appenders a fifth of their CPU). Only when a nap finds nothing does it sleep
    /// until woken, so an idle store still reacts to the next append at once.
    pub(crate) fn run(&self, stop: &std::sync::atomic::AtomicBool) {
        let mut failing = false;
        let mut busy = false;
        loop {
            let limit = self.log.visible();
            if self.position() < limit {
                busy = true;
                match self.dispatch_until(limit, true) {
                    Ok(_) => failing = false,
                    Err(e) => {
                        if !failing {
                            error!(error = %e, "dispatch failed; consumers will not see new messages until it recovers");
                        }
                        failing = true;
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
                continue;
            }
            if stop.load(Ordering::Acquire) {
                return;
            }
            if busy {
                busy = false;
                std::thread::sleep(DISPATCH_NAP);
                continue;
            }
            self.sleeper
                .sleep(std::time::Duration::from_millis(100), || {
                    self.log.visible() > self.position()
                });
        }
    }
}
