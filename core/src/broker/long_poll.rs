//! Long polling: pulls that found nothing wait for an arrival on their queue.
//!
//! The store's dispatcher calls [`LongPoll::on_arrival`] (through [`ArrivalListener`]) right after
//! a message's ConsumeQueue entry exists; that wakes every pull held on the queue, which then reads
//! again. A held pull also re-checks every `long_poll_recheck_ms` (in case a wake-up raced with
//! it) and gives up at its deadline. No sleep loop polls the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::store::{Arrival, ArrivalListener};

#[derive(Default)]
struct TopicSignals {
    /// Woken by an arrival on any queue of the topic (pops that may take any queue wait here).
    any: Arc<Notify>,
    queues: HashMap<i32, Arc<Notify>>,
}

#[derive(Default)]
pub struct LongPoll {
    /// topic → signals (nested so that a wake-up looks up by `&str`, allocation-free).
    topics: Mutex<HashMap<String, TopicSignals>>,
}

impl LongPoll {
    /// The wake-up signal of a queue. Create the `notified()` future before reading the queue so
    /// that an arrival between the read and the wait is not missed.
    pub fn signal(&self, topic: &str, queue_id: i32) -> Arc<Notify> {
        let mut topics = self.topics.lock().expect("long poll lock");
        if let Some(signal) = topics.get(topic).and_then(|t| t.queues.get(&queue_id)) {
            return signal.clone();
        }
        // The map is bounded by the number of queues that exist: pulls on unknown topics or
        // queues are refused before they get here.
        topics
            .entry(topic.to_string())
            .or_default()
            .queues
            .entry(queue_id)
            .or_default()
            .clone()
    }

    /// The signal woken by an arrival on any queue of `topic` (and by [`LongPoll::wake_topic`]).
    pub fn topic_signal(&self, topic: &str) -> Arc<Notify> {
        let mut topics = self.topics.lock().expect("long poll lock");
        if let Some(signals) = topics.get(topic) {
            return signals.any.clone();
        }
        topics.entry(topic.to_string()).or_default().any.clone()
    }

    /// Wakes every pull held on a queue, and every pop held on its topic.
    pub fn wake(&self, topic: &str, queue_id: i32) {
        let (queue, any) = {
            let topics = self.topics.lock().expect("long poll lock");
            match topics.get(topic) {
                Some(signals) => (
                    signals.queues.get(&queue_id).cloned(),
                    Some(signals.any.clone()),
                ),
                None => (None, None),
            }
        };
        for signal in [queue, any].into_iter().flatten() {
            signal.notify_waiters();
        }
    }

    /// Wakes every pop held on a topic: an in-flight message became deliverable again.
    pub fn wake_topic(&self, topic: &str) {
        let any = {
            let topics = self.topics.lock().expect("long poll lock");
            topics.get(topic).map(|signals| signals.any.clone())
        };
        if let Some(signal) = any {
            signal.notify_waiters();
        }
    }
}

impl ArrivalListener for LongPoll {
    fn on_arrival(&self, arrival: &Arrival<'_>) {
        self.wake(arrival.topic, arrival.queue_id);
    }
}
