//! `maxInFlight` for manual-ack SSE streams: which deliveries of a stream are still unacked.
//!
//! A gateway keeps no durable state and sees only the acks that pass through it, so a stream's
//! [`InFlightWindow`] frees a slot when the message is acked, nacked or renewed *through this
//! gateway* ([`WindowRegistry`] routes those to the stream at once), or when its invisible time
//! runs out (by then it was acked elsewhere, or the broker will deliver it again). Either way a
//! stream never has more than `maxInFlight` unacked deliveries outstanding; acks through another
//! gateway only delay the refill until the deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::sync::Notify;

/// One stream's unacked deliveries: broker receipt handle → invisible-time deadline.
pub struct InFlightWindow {
    capacity: usize,
    entries: Mutex<HashMap<String, Instant>>,
    changed: Notify,
}

impl InFlightWindow {
    pub fn new(capacity: usize) -> InFlightWindow {
        InFlightWindow {
            capacity,
            entries: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Free slots after dropping expired entries, and the next deadline (when a slot frees by
    /// itself).
    pub fn free(&self, now: Instant) -> (usize, Option<Instant>) {
        let mut entries = self.lock();
        entries.retain(|_, deadline| *deadline > now);
        let next = entries.values().min().copied();
        (self.capacity.saturating_sub(entries.len()), next)
    }

    pub fn add(&self, handle: String, deadline: Instant) {
        self.lock().insert(handle, deadline);
    }

    /// Removes an acked or nacked delivery; true when this window held it.
    pub fn remove(&self, handle: &str) -> bool {
        let removed = self.lock().remove(handle).is_some();
        if removed {
            self.changed.notify_one();
        }
        removed
    }

    /// A visibility change: the delivery keeps its slot under its new handle and deadline.
    pub fn renew(&self, old: &str, new: String, deadline: Instant) -> bool {
        let mut entries = self.lock();
        if entries.remove(old).is_none() {
            return false;
        }
        entries.insert(new, deadline);
        drop(entries);
        self.changed.notify_one();
        true
    }

    /// Resolves after the next `remove` or `renew`.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The manual-ack streams of this gateway, by broker-side (group, topic), so acks, nacks and
/// visibility changes through this gateway reach the stream that delivered the message.
/// Broker-side (group, topic).
type GroupTopicKey = (String, String);

#[derive(Default)]
pub struct WindowRegistry {
    windows: Mutex<HashMap<GroupTopicKey, Vec<Weak<InFlightWindow>>>>,
}

impl WindowRegistry {
    pub fn register(&self, group: &str, topic: &str, window: &Arc<InFlightWindow>) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let list = windows
            .entry((group.to_string(), topic.to_string()))
            .or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(window));
    }

    /// Drops registrations of ended streams (called when a stream ends).
    pub fn prune(&self, group: &str, topic: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let key = (group.to_string(), topic.to_string());
        if let Some(list) = windows.get_mut(&key) {
            list.retain(|w| w.strong_count() > 0);
            if list.is_empty() {
                windows.remove(&key);
            }
        }
    }

    fn live(&self, group: &str, topic: &str) -> Vec<Arc<InFlightWindow>> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows
            .get(&(group.to_string(), topic.to_string()))
            .map(|list| list.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// Acked or nacked deliveries leave their stream's window.
    pub fn released(&self, group: &str, topic: &str, handles: &[&str]) {
        let windows = self.live(group, topic);
        if windows.is_empty() {
            return;
        }
        for handle in handles {
            for window in &windows {
                if window.remove(handle) {
                    break;
                }
            }
        }
    }

    pub fn renewed(&self, group: &str, topic: &str, old: &str, new: &str, deadline: Instant) {
        for window in self.live(group, topic) {
            if window.renew(old, new.to_string(), deadline) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn slots_free_on_ack_and_on_deadline() {
        let window = Arc::new(InFlightWindow::new(2));
        let now = Instant::now();
        window.add("a".into(), now + Duration::from_secs(10));
        window.add("b".into(), now + Duration::from_secs(1));
        assert_eq!(window.free(now).0, 0);
        let registry = WindowRegistry::default();
        registry.register("g", "t", &window);
        registry.released("g", "t", &["a"]);
        assert_eq!(window.free(now).0, 1);
        registry.renewed("g", "t", "b", "b2", now + Duration::from_secs(5));
        assert_eq!(window.free(now + Duration::from_secs(2)).0, 1);
        assert_eq!(window.free(now + Duration::from_secs(6)).0, 2);
        registry.released("other", "t", &["b2"]);
        drop(window);
        registry.prune("g", "t");
        assert!(registry.live("g", "t").is_empty());
    }
}
