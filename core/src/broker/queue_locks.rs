//! Queue locks for orderly consumers (LOCK_BATCH_MQ 41 / UNLOCK_BATCH_MQ 42).
//!
//! An orderly consumer may only process a queue while it holds the broker's lock on
//! (group, queue): during a rebalance the old owner keeps its lock until it unlocks or the lock
//! lapses, so two members never consume one queue at once. Like RocketMQ the table is in memory
//! only: after a broker restart every lock is free and the holders re-lock at their next
//! rebalance (RocketMQ clients re-lock every 20 s, well inside the 60 s TTL).
//!
//! Rules: one client id holds a (group, queue) at a time; locking again renews the holder's lock;
//! a lock not renewed within the TTL may be taken by another client; an unlock by anyone but the
//! holder changes nothing. Limits: [`MAX_LOCK_BATCH`] queues per request and
//! [`MAX_QUEUE_LOCKS`] locks in all (a full table grants nothing new until locks lapse).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::body::MessageQueueData;

/// Most queues one LOCK_BATCH_MQ / UNLOCK_BATCH_MQ names.
pub const MAX_LOCK_BATCH: usize = 2048;
/// Most locks the broker holds at once (about 200 bytes each).
pub const MAX_QUEUE_LOCKS: usize = 200_000;
/// Longest client id accepted (RocketMQ's are `ip@pid#…`, well under this).
pub const MAX_CLIENT_ID_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LockKey {
    group: String,
    queue: MessageQueueData,
}

struct Holder {
    client_id: String,
    expires: Instant,
}

pub struct QueueLocks {
    ttl: Duration,
    table: Mutex<HashMap<LockKey, Holder>>,
}

impl QueueLocks {
    pub fn new(ttl: Duration) -> QueueLocks {
        QueueLocks {
            ttl,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Locks (or renews) every queue of `queues` that is free, lapsed or already `client_id`'s,
    /// and returns those it holds now.
    pub fn lock(
        &self,
        group: &str,
        client_id: &str,
        queues: &[MessageQueueData],
        now: Instant,
    ) -> Vec<MessageQueueData> {
        let mut table = self.lock_table();
        let mut granted = Vec::new();
        let mut purged = false;
        for queue in queues {
            let key = LockKey {
                group: group.to_string(),
                queue: queue.clone(),
            };
            if let Some(holder) = table.get_mut(&key) {
                if holder.client_id == client_id || holder.expires <= now {
                    if holder.client_id != client_id {
                        tracing::info!(group, queue = ?queue, from = %holder.client_id, to = client_id, "lapsed queue lock taken over");
                        holder.client_id = client_id.to_string();
                    }
                    holder.expires = now + self.ttl;
                    granted.push(queue.clone());
                }
                continue;
            }
            if table.len() >= MAX_QUEUE_LOCKS && !purged {
                table.retain(|_, h| h.expires > now);
                purged = true;
            }
            if table.len() >= MAX_QUEUE_LOCKS {
                tracing::warn!(
                    group,
                    limit = MAX_QUEUE_LOCKS,
                    "queue lock table full; lock refused"
                );
                continue;
            }
            table.insert(
                key,
                Holder {
                    client_id: client_id.to_string(),
                    expires: now + self.ttl,
                },
            );
            granted.push(queue.clone());
        }
        granted
    }

    /// Releases the queues `client_id` holds among `queues`; others' locks are left alone.
    pub fn unlock(&self, group: &str, client_id: &str, queues: &[MessageQueueData]) {
        let mut table = self.lock_table();
        for queue in queues {
            let key = LockKey {
                group: group.to_string(),
                queue: queue.clone(),
            };
            if table.get(&key).is_some_and(|h| h.client_id == client_id) {
                table.remove(&key);
            }
        }
    }

    fn lock_table(&self) -> std::sync::MutexGuard<'_, HashMap<LockKey, Holder>> {
        // Every update is a single map operation: a panic elsewhere cannot leave it half done.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: i32) -> MessageQueueData {
        MessageQueueData {
            topic: "T".into(),
            broker_name: "b".into(),
            queue_id: id,
        }
    }

    #[test]
    fn holder_renews_others_wait_for_lapse() {
        let locks = QueueLocks::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(locks.lock("g", "c1", &[q(0), q(1)], t0), [q(0), q(1)]);
        assert_eq!(locks.lock("g", "c2", &[q(1), q(2)], t0), [q(2)]);
        // Another group is another lock.
        assert_eq!(locks.lock("g2", "c2", &[q(1)], t0), [q(1)]);
        // c1 renews at 50 s; at 61 s its lock still holds against c2.
        let t50 = t0 + Duration::from_secs(50);
        assert_eq!(locks.lock("g", "c1", &[q(0)], t50), [q(0)]);
        let t61 = t0 + Duration::from_secs(61);
        assert_eq!(locks.lock("g", "c2", &[q(0), q(1)], t61), [q(1)]);
        // Unlock by a non-holder does nothing; by the holder frees the queue.
        locks.unlock("g", "c2", &[q(0)]);
        assert!(locks.lock("g", "c3", &[q(0)], t61).is_empty());
        locks.unlock("g", "c1", &[q(0)]);
        assert_eq!(locks.lock("g", "c3", &[q(0)], t61), [q(0)]);
    }
}
