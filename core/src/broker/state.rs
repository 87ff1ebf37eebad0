//! What every request handler of a broker shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::protocol::Connection;
use crate::protocol::RemotingCommand;
use crate::protocol::codes::request;
use crate::protocol::headers::ConsumerGroupRequestHeader;
use crate::store::MessageStore;

use super::config::BrokerConfig;
use super::consumer_groups::{ConsumerGroups, MembershipChange};
use super::consumer_offsets::ConsumerOffsets;
use super::idempotency::Window;
use super::long_poll::LongPoll;
use super::pop::PopLedger;
use super::queue_locks::QueueLocks;
use super::subscription_groups::SubscriptionGroups;
use super::timer::TimerBacklog;
use super::topic_table::TopicTable;

pub(crate) struct BrokerState {
    pub config: BrokerConfig,
    /// `ip:port` announced to NameServers and written as STOREHOST.
    pub addr: String,
    pub store: Arc<MessageStore>,
    pub topics: TopicTable,
    pub offsets: ConsumerOffsets,
    pub consumers: ConsumerGroups,
    pub groups: SubscriptionGroups,
    pub pops: PopLedger,
    /// Pops currently held waiting for messages (bounded by `pop_max_held`).
    pub pop_held: AtomicUsize,
    pub long_poll: Arc<LongPoll>,
    /// Wakes the registration task when the topic table changed.
    pub register_now: Notify,
    pub shutting_down: AtomicBool,
    /// Round-robin cursor for sends that leave the queue to the broker (queueId < 0).
    pub next_queue: AtomicUsize,
    /// How many delay levels the store is configured with (`DELAY` above it is clamped).
    pub delay_level_count: usize,
    /// Pending timer messages, for the send path's `timer_max_pending` check.
    pub timer_backlog: TimerBacklog,
    /// Recent idempotency keys (memory half; the IndexFile is the durable half).
    pub idempotency: Window,
    /// Orderly consumers' queue locks (volatile, like RocketMQ's).
    pub queue_locks: QueueLocks,
}

impl BrokerState {
    /// Runs `work` on the blocking pool. Topic-table changes and offset persistence write and
    /// fsync files (milliseconds); on the request thread they would stall every connection.
    pub async fn off_thread<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&BrokerState) -> T + Send + 'static,
    ) -> T {
        let state = self.clone();
        match tokio::task::spawn_blocking(move || work(&state)).await {
            Ok(value) => value,
            // A panic in our own code is a bug; let it surface where it happened.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Tells the members of a group that its membership changed, so they rebalance now rather
    /// than at their next periodic rebalance. Oneway and best effort, like RocketMQ.
    pub fn notify_members(&self, change: MembershipChange) {
        let header = ConsumerGroupRequestHeader {
            consumer_group: change.group,
        };
        for member in change.members {
            let command =
                RemotingCommand::request_with(request::NOTIFY_CONSUMER_IDS_CHANGED, &header);
            tokio::spawn(notify(member, command));
        }
    }
}

async fn notify(member: Connection, command: RemotingCommand) {
    if let Err(e) = member.invoke_oneway(command).await {
        tracing::debug!(peer = %member.peer(), error = %e, "consumer-ids-changed not delivered");
    }
}
