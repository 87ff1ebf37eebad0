//! What every request handler of a broker shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::protocol::Connection;
use crate::protocol::RemotingCommand;
use crate::protocol::codes::request;
use crate::protocol::headers::ConsumerGroupRequestHeader;
use crate::store::{Message, MessageStore, SCHEDULE_TOPIC, property};

use super::config::BrokerConfig;
use super::consumer_groups::{ConsumerGroups, MembershipChange};
use super::consumer_offsets::ConsumerOffsets;
use super::long_poll::LongPoll;
use super::pop::PopLedger;
use super::subscription_groups::SubscriptionGroups;
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

    /// A message with a `DELAY` level, rewritten to wait in `SCHEDULE_TOPIC_XXXX` (queue
    /// level − 1, the real topic and queue in `REAL_TOPIC` / `REAL_QID`).
    pub fn schedule(&self, mut msg: Message) -> Message {
        let levels = self.store.config().delay_levels().map_or(18, |l| l.len()) as i32;
        let Some(level) = msg
            .properties
            .get(property::DELAY)
            .and_then(|l| l.parse::<i32>().ok())
            .filter(|&l| l > 0)
        else {
            return msg;
        };
        let level = level.min(levels);
        msg.properties.insert(property::DELAY, level.to_string());
        msg.properties
            .insert(property::REAL_TOPIC, msg.topic.clone());
        msg.properties
            .insert(property::REAL_QID, msg.queue_id.to_string());
        msg.topic = SCHEDULE_TOPIC.to_string();
        msg.queue_id = level - 1;
        msg
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
