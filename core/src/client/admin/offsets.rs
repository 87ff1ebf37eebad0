//! Queue offsets, consumer-group offsets and lag, offset resets.
//!
//! Each is a call per read queue of the topic (GET_MIN_OFFSET, GET_MAX_OFFSET,
//! QUERY_CONSUMER_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP, UPDATE_CONSUMER_OFFSET: [`PullConsumer`]'s
//! own calls), at most [`QUEUE_CALLS_IN_FLIGHT`] queues at a time, answered in the route's
//! (brokerName, queueId) order.
//!
//! [`PullConsumer`]: crate::client::PullConsumer

use std::future::Future;

use futures_util::{StreamExt, TryStreamExt, stream};

use super::super::error::ClientError;
use super::super::route::MessageQueue;
use super::{Admin, check_group_arg};

/// Queues whose calls run at once within one request.
pub const QUEUE_CALLS_IN_FLIGHT: usize = 16;

/// A queue's stored range: `min_offset` is its first message still stored, `max_offset` one past
/// its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOffsets {
    pub queue: MessageQueue,
    pub min_offset: i64,
    pub max_offset: i64,
}

/// A consumer group's position in one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupQueueOffset {
    pub queue: MessageQueue,
    /// The group's committed offset (the next message it consumes), or -1 when the group never
    /// committed one in this queue.
    pub committed: i64,
    pub max_offset: i64,
    /// Messages the group has still to consume: `max_offset - committed` (never negative), or
    /// `max_offset - min_offset` without a committed offset.
    pub lag: i64,
}

/// Where [`Admin::reset_group_offsets`] moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// The first message still stored in each queue.
    Earliest,
    /// The end of each queue: only messages arriving from now on are consumed.
    Latest,
    /// The first message stored at or after this time (epoch ms) in each queue; the end of a
    /// queue that has none.
    Timestamp(i64),
}

impl Admin {
    /// Per read queue of `topic`: its first and next offsets.
    pub async fn queue_offsets(&self, topic: &str) -> Result<Vec<QueueOffsets>, ClientError> {
        let route = self.route(topic).await?;
        per_queue(route.read_queues.clone(), |queue| async move {
            Ok(QueueOffsets {
                min_offset: self.queues.min_offset(&queue).await?,
                max_offset: self.queues.max_offset(&queue).await?,
                queue,
            })
        })
        .await
    }

    /// Per read queue of `topic`: `group`'s committed offset, the queue's max offset and the lag.
    pub async fn group_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<GroupQueueOffset>, ClientError> {
        check_group_arg(group)?;
        let route = self.route(topic).await?;
        per_queue(route.read_queues.clone(), |queue| async move {
            let committed = self.queues.fetch_offset(group, &queue).await?;
            let max_offset = self.queues.max_offset(&queue).await?;
            let (committed, lag) = match committed {
                Some(committed) => (committed, max_offset.saturating_sub(committed).max(0)),
                None => {
                    let min_offset = self.queues.min_offset(&queue).await?;
                    (-1, max_offset.saturating_sub(min_offset).max(0))
                }
            };
            Ok(GroupQueueOffset {
                queue,
                committed,
                max_offset,
                lag,
            })
        })
        .await
    }

    /// Moves `group`'s committed offset in every read queue of `topic` to `to`
    /// (UPDATE_CONSUMER_OFFSET) and returns the new positions. On a Tern broker this also moves
    /// the group's pop position, so the next pop or pull of the group starts there.
    ///
    /// Running classic consumers ([`ConsumerGroup`](crate::client::ConsumerGroup)) keep their
    /// positions in memory and commit them over the reset: stop them first. A failure on one
    /// queue can leave others reset; calling again is safe.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTarget,
    ) -> Result<Vec<GroupQueueOffset>, ClientError> {
        check_group_arg(group)?;
        if let ResetTarget::Timestamp(ms) = to
            && ms < 0
        {
            return Err(ClientError::InvalidArgument(format!(
                "reset timestamp {ms} is negative"
            )));
        }
        let route = self.route(topic).await?;
        per_queue(route.read_queues.clone(), |queue| async move {
            let max_offset = self.queues.max_offset(&queue).await?;
            let target = match to {
                ResetTarget::Earliest => self.queues.min_offset(&queue).await?,
                ResetTarget::Latest => max_offset,
                ResetTarget::Timestamp(ms) => self.queues.search_offset(&queue, ms).await?,
            }
            .clamp(0, max_offset.max(0));
            self.queues.commit_offset(group, &queue, target).await?;
            Ok(GroupQueueOffset {
                queue,
                committed: target,
                max_offset,
                lag: max_offset - target,
            })
        })
        .await
    }
}

/// Runs `f` for every queue, [`QUEUE_CALLS_IN_FLIGHT`] at a time; the results keep the queues'
/// order, and the first error ends the whole.
async fn per_queue<T, F, Fut>(queues: Vec<MessageQueue>, f: F) -> Result<Vec<T>, ClientError>
where
    F: FnMut(MessageQueue) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    stream::iter(queues)
        .map(f)
        .buffered(QUEUE_CALLS_IN_FLIGHT)
        .try_collect()
        .await
}
