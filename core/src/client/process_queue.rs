//! What a consumer holds of one queue: messages pulled but not yet acknowledged.
//!
//! Like RocketMQ's `ProcessQueue`, this is what makes a commit safe. Messages enter the in-flight
//! set when they are pulled, before they are handed to the application, and leave it when the
//! application acknowledges them. The offset to commit is the lowest one still in flight, or,
//! with nothing in flight, where the next pull starts: the committed offset never passes a
//! message that was not handed over and acknowledged, so a crash or a rebalance redelivers it
//! (at-least-once) instead of losing it.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessQueue {
    in_flight: BTreeSet<i64>,
    /// Where the next pull starts: one past the last offset the broker answered for.
    pulled_up_to: i64,
}

impl ProcessQueue {
    /// A queue whose consumption starts at `offset`.
    pub fn new(offset: i64) -> ProcessQueue {
        ProcessQueue {
            in_flight: BTreeSet::new(),
            pulled_up_to: offset,
        }
    }

    /// Records a pull: `offsets` of the messages about to be handed over, `next_begin_offset`
    /// from the broker (it also covers messages the tag filter skipped).
    pub fn on_pulled(&mut self, offsets: impl IntoIterator<Item = i64>, next_begin_offset: i64) {
        self.in_flight.extend(offsets);
        self.pulled_up_to = self.pulled_up_to.max(next_begin_offset);
    }

    /// Marks a message done. `false` when it was not in flight (already acknowledged, or pulled
    /// before a reset).
    pub fn ack(&mut self, offset: i64) -> bool {
        self.in_flight.remove(&offset)
    }

    /// The offset that is safe to commit: below every message in flight, and not past where
    /// pulling resumes (which [`Self::jump_to`] may have moved backwards).
    pub fn committable(&self) -> i64 {
        self.in_flight
            .first()
            .map_or(self.pulled_up_to, |&first| first.min(self.pulled_up_to))
    }

    /// Where the next pull starts.
    pub fn next_pull_offset(&self) -> i64 {
        self.pulled_up_to
    }

    /// Messages handed over (or about to be) and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Continues pulling at `offset`, in either direction (the broker answered OFFSET_MOVED).
    /// Messages in flight stay tracked: they were handed over and are still being processed, so
    /// the commit must keep waiting for their acks.
    pub fn jump_to(&mut self, offset: i64) {
        self.pulled_up_to = offset;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commit_waits_for_the_oldest_unacked() {
        let mut pq = ProcessQueue::new(10);
        assert_eq!(pq.committable(), 10);
        pq.on_pulled([10, 11, 12], 13);
        assert_eq!(pq.committable(), 10);
        assert!(pq.ack(11));
        assert_eq!(pq.committable(), 10);
        assert!(pq.ack(10));
        assert_eq!(pq.committable(), 12);
        assert!(!pq.ack(10));
        assert!(pq.ack(12));
        assert_eq!(pq.committable(), 13);
        // Filtered-out messages: nothing in flight, the pull still moved the offset.
        pq.on_pulled([], 20);
        assert_eq!(pq.committable(), 20);
        pq.on_pulled([20], 21);
        // Moved forward: the unacked 20 still holds the commit.
        pq.jump_to(30);
        assert_eq!((pq.committable(), pq.next_pull_offset()), (20, 30));
        assert!(pq.ack(20));
        assert_eq!(pq.committable(), 30);
        // Moved backwards (offset beyond the queue's end): commit and pull from there.
        pq.on_pulled([30], 31);
        pq.jump_to(0);
        assert_eq!((pq.committable(), pq.next_pull_offset()), (0, 0));
    }

    proptest! {
        /// Random pulls and acks: the committable offset is never above an unacknowledged
        /// message and never goes backwards.
        #[test]
        fn never_passes_an_unacked_message(
            steps in proptest::collection::vec((1usize..5, 0usize..3, any::<u8>()), 1..60)
        ) {
            let mut pq = ProcessQueue::new(0);
            let mut next = 0i64;
            let mut unacked: Vec<i64> = Vec::new();
            let mut last_commit = 0;
            for (pulled, skipped, ack_pick) in steps {
                let offsets: Vec<i64> = (next..next + pulled as i64).collect();
                next += (pulled + skipped) as i64;
                pq.on_pulled(offsets.iter().copied(), next);
                unacked.extend(offsets);
                if !unacked.is_empty() {
                    let i = ack_pick as usize % unacked.len();
                    let offset = unacked.swap_remove(i);
                    prop_assert!(pq.ack(offset));
                }
                let commit = pq.committable();
                prop_assert!(unacked.iter().all(|&o| commit <= o));
                prop_assert!(commit >= last_commit);
                prop_assert_eq!(pq.in_flight(), unacked.len());
                last_commit = commit;
            }
            for o in unacked.drain(..) {
                pq.ack(o);
            }
            prop_assert_eq!(pq.committable(), next);
        }
    }
}
