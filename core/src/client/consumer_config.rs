//! [`ConsumerConfig`]: what a [`ConsumerGroup`](super::ConsumerGroup) consumes and how.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::ClientError;
use super::message::check_topic;
use super::producer::check_group;
use super::subscription::Subscription;

/// Most topics one consumer subscribes to.
pub const MAX_SUBSCRIPTIONS: usize = 1024;
/// Bounds of the delivery channel, the pull batch and the unacknowledged messages per queue.
pub const MAX_CHANNEL_CAPACITY: usize = 1 << 20;
pub const MAX_PULL_BATCH: i32 = 1024;
pub const MAX_UNACKED_PER_QUEUE: usize = 1 << 20;
/// Bounds of the long-poll suspension (the broker caps it at 60 s).
pub const MIN_LONG_POLL: Duration = Duration::from_millis(10);
pub const MAX_LONG_POLL: Duration = Duration::from_secs(60);

/// How a group's members share a topic (reference §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageModel {
    /// Queues are divided among the members; offsets live on the broker.
    #[default]
    Clustering,
    /// Every member reads every queue; each keeps its own offsets, in memory.
    Broadcasting,
}

impl MessageModel {
    /// RocketMQ's name, as heartbeats carry it.
    pub fn wire_name(self) -> &'static str {
        match self {
            MessageModel::Clustering => "CLUSTERING",
            MessageModel::Broadcasting => "BROADCASTING",
        }
    }
}

/// Where a queue without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumeFrom {
    /// At the oldest message still stored.
    First,
    /// At the end: only messages sent from now on.
    #[default]
    Last,
}

impl ConsumeFrom {
    pub fn wire_name(self) -> &'static str {
        match self {
            ConsumeFrom::First => "CONSUME_FROM_FIRST_OFFSET",
            ConsumeFrom::Last => "CONSUME_FROM_LAST_OFFSET",
        }
    }
}

/// When a delivered message counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// Only [`ConsumerGroup::ack`](super::ConsumerGroup::ack) does: a message being processed
    /// when the consumer dies is delivered again (at-least-once).
    #[default]
    Manual,
    /// Receiving it from the [`MessageStream`](super::MessageStream) does (at-most-once for
    /// a message received but not processed).
    OnReceive,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    pub group: String,
    /// Topic → tag expression (`*` or `a || b`).
    pub subscriptions: BTreeMap<String, String>,
    pub model: MessageModel,
    pub consume_from: ConsumeFrom,
    pub ack_mode: AckMode,
    /// Messages waiting in the delivery channel before queue tasks wait.
    pub channel_capacity: usize,
    /// Messages asked for per pull.
    pub pull_batch_size: i32,
    /// A queue stops pulling while this many of its messages are unacknowledged (RocketMQ's
    /// `pullThresholdForQueue`): a consumer that stops acking does not buffer without bound.
    pub max_unacked_per_queue: usize,
    /// How long a pull at the head of a queue waits for a message.
    pub long_poll: Duration,
    /// Orderly consumption (clustering only): a member consumes a queue only while it holds the
    /// queue's lock on the broker (LOCK_BATCH_MQ, renewed at every rebalance), so two members
    /// never consume one queue at the same time, not even while a rebalance moves it. Messages
    /// cannot be nacked (a retry copy would overtake the messages after it).
    pub orderly: bool,
}

impl ConsumerConfig {
    /// RocketMQ's push-consumer defaults: clustering, from the last offset, 32 messages per pull,
    /// 1000 unacknowledged per queue, 15 s long polls.
    pub fn new(group: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            group: group.into(),
            subscriptions: BTreeMap::new(),
            model: MessageModel::Clustering,
            consume_from: ConsumeFrom::Last,
            ack_mode: AckMode::Manual,
            channel_capacity: 1024,
            pull_batch_size: 32,
            max_unacked_per_queue: 1000,
            long_poll: Duration::from_secs(15),
            orderly: false,
        }
    }

    /// Orderly consumption: see [`ConsumerConfig::orderly`].
    pub fn orderly(mut self) -> Self {
        self.orderly = true;
        self
    }

    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.insert(topic.into(), expression.into());
        self
    }

    pub fn with_model(mut self, model: MessageModel) -> Self {
        self.model = model;
        self
    }

    pub fn with_consume_from(mut self, from: ConsumeFrom) -> Self {
        self.consume_from = from;
        self
    }

    pub fn with_ack_mode(mut self, mode: AckMode) -> Self {
        self.ack_mode = mode;
        self
    }

    /// Checks every field and parses the subscriptions.
    pub fn validate(&self) -> Result<Vec<(String, Subscription)>, ClientError> {
        let bad = |msg: String| Err(ClientError::InvalidConfig(msg));
        check_group(&self.group)?;
        if self.subscriptions.is_empty() {
            return bad("a consumer needs at least one subscription".into());
        }
        if self.orderly && self.model != MessageModel::Clustering {
            return bad("orderly consumption needs the clustering model (queue locks)".into());
        }
        if self.subscriptions.len() > MAX_SUBSCRIPTIONS {
            return bad(format!(
                "{} subscriptions, at most {MAX_SUBSCRIPTIONS} are allowed",
                self.subscriptions.len()
            ));
        }
        if !(1..=MAX_CHANNEL_CAPACITY).contains(&self.channel_capacity) {
            return bad(format!(
                "channel_capacity must be 1..={MAX_CHANNEL_CAPACITY}"
            ));
        }
        if !(1..=MAX_PULL_BATCH).contains(&self.pull_batch_size) {
            return bad(format!("pull_batch_size must be 1..={MAX_PULL_BATCH}"));
        }
        if !(1..=MAX_UNACKED_PER_QUEUE).contains(&self.max_unacked_per_queue) {
            return bad(format!(
                "max_unacked_per_queue must be 1..={MAX_UNACKED_PER_QUEUE}"
            ));
        }
        if !(MIN_LONG_POLL..=MAX_LONG_POLL).contains(&self.long_poll) {
            return bad(format!(
                "long_poll must be {MIN_LONG_POLL:?}..={MAX_LONG_POLL:?}"
            ));
        }
        self.subscriptions
            .iter()
            .map(|(topic, expression)| {
                check_topic(topic).map_err(|e| ClientError::InvalidConfig(e.to_string()))?;
                Ok((topic.clone(), Subscription::parse(expression)?))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        let ok = ConsumerConfig::new("g").subscribe("T", "a || b");
        let subs = ok.validate().unwrap();
        assert_eq!(subs[0].0, "T");
        assert!(subs[0].1.matches(Some("b")));
        let bad = [
            ConsumerConfig::new("g"),
            ConsumerConfig::new("bad group").subscribe("T", "*"),
            ConsumerConfig::new("g").subscribe("bad topic", "*"),
            ConsumerConfig::new("g").subscribe("T", "a ||"),
            ConsumerConfig {
                channel_capacity: 0,
                ..ok.clone()
            },
            ConsumerConfig {
                pull_batch_size: 0,
                ..ok.clone()
            },
            ConsumerConfig {
                max_unacked_per_queue: 0,
                ..ok.clone()
            },
            ConsumerConfig {
                long_poll: Duration::from_secs(61),
                ..ok.clone()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ClientError::InvalidConfig(_))),
                "{config:?}"
            );
        }
    }
}
