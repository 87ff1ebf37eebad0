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
pub struct LongPoll {
    /// topic → queue id → signal (nested so that a wake-up looks up by `&str`, allocation-free).
    queues: Mutex<HashMap<String, HashMap<i32, Arc<Notify>>>>,
}

impl LongPoll {
    /// The wake-up signal of a queue. Create the `notified()` future before reading the queue so
    /// that an arrival between the read and the wait is not missed.
    pub fn signal(&self, topic: &str, queue_id: i32) -> Arc<Notify> {
        let mut queues = self.queues.lock().expect("long poll lock");
        if let Some(signal) = queues.get(topic).and_then(|q| q.get(&queue_id)) {
            return signal.clone();
        }
        // The map is bounded by the number of queues that exist: pulls on unknown topics or
        // queues are refused before they get here.
        queues
            .entry(topic.to_string())
            .or_default()
            .entry(queue_id)
            .or_default()
            .clone()
    }

    /// Wakes every pull held on a queue.
    pub fn wake(&self, topic: &str, queue_id: i32) {
        let signal = {
            let queues = self.queues.lock().expect("long poll lock");
            queues.get(topic).and_then(|q| q.get(&queue_id)).cloned()
        };
        if let Some(signal) = signal {
            signal.notify_waiters();
        }
    }
}

impl ArrivalListener for LongPoll {
    fn on_arrival(&self, arrival: &Arrival<'_>) {
        self.wake(arrival.topic, arrival.queue_id);
    }
}
