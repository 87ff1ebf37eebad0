//! The in-flight table: per (group, topic, queue), the next offset never delivered to the group
//! and every delivered message not yet acknowledged, with its invisibility deadline.
//!
//! The table changes only through [`Table::apply`], so the live broker and a restart replaying
//! the journal reach the same state from the same events.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::journal::Event;

/// One delivered, unacknowledged message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The current delivery's version (its receipt handle's popTime). Older handles are stale.
    #[serde(rename = "v")]
    pub version: i64,
    /// Unix ms after which the message may be delivered again.
    #[serde(rename = "d")]
    pub deadline: i64,
    /// Deliveries before the current one.
    #[serde(rename = "r")]
    pub reconsume_times: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QueueKey {
    #[serde(rename = "g")]
    pub group: String,
    #[serde(rename = "t")]
    pub topic: String,
    #[serde(rename = "q")]
    pub queue_id: i32,
}

#[derive(Debug, Default)]
pub struct PopQueue {
    /// The next offset never delivered to this group.
    pub next: u64,
    /// Queue offset → delivery.
    pub inflight: BTreeMap<u64, InFlight>,
    /// (deadline, queue offset) of every in-flight entry, so expired entries are found without a
    /// scan.
    by_deadline: BTreeSet<(i64, u64)>,
}

impl PopQueue {
    /// Entries whose deadline has passed, earliest deadline first.
    pub fn expired(&self, now: i64) -> impl Iterator<Item = (u64, InFlight)> + '_ {
        self.by_deadline
            .range(..=(now, u64::MAX))
            .map(|&(_, offset)| (offset, self.inflight[&offset]))
    }

    /// Entries whose deadline fell in `(since, now]`, earliest first.
    pub fn expired_between(
        &self,
        since: i64,
        now: i64,
    ) -> impl Iterator<Item = (u64, InFlight)> + '_ {
        let from = (since.saturating_add(1), 0);
        let to = (now, u64::MAX);
        let range = if from <= to {
            Some(self.by_deadline.range(from..=to))
        } else {
            None
        };
        range
            .into_iter()
            .flatten()
            .map(|&(_, offset)| (offset, self.inflight[&offset]))
    }

    /// Whether some entry is still invisible (its consumer may still ack it).
    pub fn any_invisible(&self, now: i64) -> bool {
        self.by_deadline
            .last()
            .is_some_and(|&(deadline, _)| deadline > now)
    }

    /// The earliest deadline, if anything is in flight.
    pub fn first_deadline(&self) -> Option<i64> {
        self.by_deadline.first().map(|&(deadline, _)| deadline)
    }

    /// Inserts or replaces; true when the entry is new.
    fn put(&mut self, offset: u64, entry: InFlight) -> bool {
        let old = self.inflight.insert(offset, entry);
        if let Some(old) = old {
            self.by_deadline.remove(&(old.deadline, offset));
        }
        self.by_deadline.insert((entry.deadline, offset));
        old.is_none()
    }

    fn remove(&mut self, offset: u64) -> bool {
        match self.inflight.remove(&offset) {
            Some(old) => {
                self.by_deadline.remove(&(old.deadline, offset));
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Default)]
pub struct Table {
    pub queues: HashMap<QueueKey, PopQueue>,
    /// In-flight entries over all queues (bounded by the broker's `pop_max_inflight`).
    pub inflight: usize,
    /// The last version handed out; versions only grow, also across restarts (they are
    /// wall-clock ms, bumped past the last one seen).
    pub last_version: i64,
}

impl Table {
    /// A fresh version: the current time, or one past the last if the clock has not moved.
    pub fn next_version(&mut self, now: i64) -> i64 {
        self.last_version = now.max(self.last_version + 1);
        self.last_version
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Pop { key, next, entries } => {
                let queue = self.queues.entry(key.clone()).or_default();
                queue.next = *next;
                for &(offset, entry) in entries {
                    self.last_version = self.last_version.max(entry.version);
                    if queue.put(offset, entry) {
                        self.inflight += 1;
                    }
                }
            }
            Event::Change { key, offset, entry } => {
                self.last_version = self.last_version.max(entry.version);
                if let Some(queue) = self.queues.get_mut(key)
                    && queue.inflight.contains_key(offset)
                {
                    queue.put(*offset, *entry);
                }
            }
            Event::Ack { key, offset } => self.remove(key, std::slice::from_ref(offset)),
            Event::AckMany {
                group,
                topic,
                acked,
            } => {
                for &(queue_id, offset) in acked {
                    let key = QueueKey {
                        group: group.clone(),
                        topic: topic.clone(),
                        queue_id,
                    };
                    self.remove(&key, &[offset]);
                }
            }
            Event::Drop { key, offsets } => self.remove(key, offsets),
            Event::Reset { key, next } => {
                self.queues.entry(key.clone()).or_default().next = *next;
            }
        }
    }

    fn remove(&mut self, key: &QueueKey, offsets: &[u64]) {
        if let Some(queue) = self.queues.get_mut(key) {
            for &offset in offsets {
                if queue.remove(offset) {
                    self.inflight -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The table's two indexes agree with each other and with the total count.
    fn check(table: &Table) {
        let mut total = 0;
        for queue in table.queues.values() {
            assert_eq!(queue.by_deadline.len(), queue.inflight.len());
            for &(deadline, offset) in &queue.by_deadline {
                assert_eq!(queue.inflight[&offset].deadline, deadline);
            }
            total += queue.inflight.len();
        }
        assert_eq!(table.inflight, total);
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let key = (0..2i32).prop_map(|q| QueueKey {
            group: "g".into(),
            topic: "t".into(),
            queue_id: q,
        });
        let entry = (0..50i64, 0..50i64, 0..3i32).prop_map(|(v, d, r)| InFlight {
            version: v,
            deadline: d,
            reconsume_times: r,
        });
        prop_oneof![
            (
                key.clone(),
                0..20u64,
                prop::collection::vec((0..8u64, entry.clone()), 0..4)
            )
                .prop_map(|(key, next, entries)| Event::Pop { key, next, entries }),
            (key.clone(), 0..8u64).prop_map(|(key, offset)| Event::Ack { key, offset }),
            (key.clone(), 0..8u64, entry).prop_map(|(key, offset, entry)| Event::Change {
                key,
                offset,
                entry
            }),
            (key.clone(), prop::collection::vec(0..8u64, 0..3))
                .prop_map(|(key, offsets)| Event::Drop { key, offsets }),
            (key, 0..20u64).prop_map(|(key, next)| Event::Reset { key, next }),
        ]
    }

    proptest! {
        /// Any sequence of events keeps the indexes consistent, and the state a snapshot
        /// captures (positions and entries) rebuilds the same table.
        #[test]
        fn events_keep_the_table_consistent(events in prop::collection::vec(arb_event(), 0..60)) {
            let mut table = Table::default();
            for event in &events {
                table.apply(event);
                check(&table);
            }
            let mut rebuilt = Table::default();
            for (key, queue) in &table.queues {
                rebuilt.apply(&Event::Pop {
                    key: key.clone(),
                    next: queue.next,
                    entries: queue.inflight.iter().map(|(&o, &e)| (o, e)).collect(),
                });
            }
            check(&rebuilt);
            prop_assert_eq!(rebuilt.inflight, table.inflight);
            for (key, queue) in &table.queues {
                prop_assert_eq!(&rebuilt.queues[key].inflight, &queue.inflight);
                prop_assert_eq!(rebuilt.queues[key].next, queue.next);
            }
        }
    }

    fn key() -> QueueKey {
        QueueKey {
            group: "g".into(),
            topic: "t".into(),
            queue_id: 0,
        }
    }

    fn entry(version: i64, deadline: i64) -> InFlight {
        InFlight {
            version,
            deadline,
            reconsume_times: 0,
        }
    }

    #[test]
    fn events_move_entries_in_and_out() {
        let mut table = Table::default();
        table.apply(&Event::Pop {
            key: key(),
            next: 3,
            entries: vec![
                (0, entry(10, 100)),
                (1, entry(10, 100)),
                (2, entry(10, 200)),
            ],
        });
        assert_eq!(table.inflight, 3);
        let queue = &table.queues[&key()];
        assert_eq!(queue.next, 3);
        assert_eq!(
            queue.expired(150).map(|(o, _)| o).collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(queue.any_invisible(150));
        assert!(!queue.any_invisible(200));

        table.apply(&Event::Ack {
            key: key(),
            offset: 1,
        });
        table.apply(&Event::Change {
            key: key(),
            offset: 0,
            entry: entry(11, 300),
        });
        // A change for an entry that is gone does not bring it back.
        table.apply(&Event::Change {
            key: key(),
            offset: 1,
            entry: entry(12, 300),
        });
        assert_eq!(table.inflight, 2);
        assert_eq!(table.last_version, 12);
        let queue = &table.queues[&key()];
        assert_eq!(queue.expired(250).map(|(o, _)| o).collect::<Vec<_>>(), [2]);
        assert_eq!(queue.first_deadline(), Some(200));

        table.apply(&Event::Drop {
            key: key(),
            offsets: vec![0, 2, 7],
        });
        assert_eq!(table.inflight, 0);
        table.apply(&Event::Reset {
            key: key(),
            next: 1,
        });
        assert_eq!(table.queues[&key()].next, 1);
        assert_eq!(table.next_version(5), 13);
        assert_eq!(table.next_version(100), 100);
    }
}
