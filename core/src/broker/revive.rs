//! The reviver: every [`REVIVE_INTERVAL`], moves popped messages that used up their redeliveries
//! to `%DLQ%<group>` and wakes held pops on topics where a message became visible again.
//!
//! A message goes to the dead-letter queue first and leaves the in-flight table after (both
//! durably), so a crash in between delivers it to the dead-letter queue twice, never zero times.
//! It leaves the table only if its delivery is still the one that expired: an ack or visibility
//! change that raced with the copy wins (the copy in the dead-letter queue stays).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::now_millis;

use super::pop::Exhausted;
use super::retry::{copy_for, dlq_topic, ensure_topic};
use super::state::BrokerState;

/// How often expired pops are looked at: the redelivery latency a held pop may see.
pub const REVIVE_INTERVAL: Duration = Duration::from_millis(100);

/// Every this many rounds the reviver looks at every expired message, not only the newly expired
/// ones: dead-lettering that failed, or a group whose limit was lowered, is caught up then.
const FULL_SCAN_EVERY: u64 = 100;

pub async fn revive_loop(state: Arc<BrokerState>, mut stopped: watch::Receiver<bool>) {
    let mut last = now_millis();
    // The first round looks at everything (messages may have expired while the broker was down).
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REVIVE_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
        let now = now_millis();
        for topic in state.pops.newly_visible_topics(last, now) {
            state.long_poll.wake_topic(&topic);
        }
        let since = if round.is_multiple_of(FULL_SCAN_EVERY) {
            i64::MIN
        } else {
            last
        };
        round += 1;
        last = now;
        let exhausted = state
            .pops
            .exhausted(since, now, |group| state.groups.get(group).retry_max_times);
        for message in exhausted {
            if let Err(e) = dead_letter(&state, &message).await {
                tracing::error!(group = %message.group, topic = %message.topic, queue_id = message.queue_id, offset = message.queue_offset, error = %e, "dead-lettering failed; retried next round");
            }
        }
    }
}

async fn dead_letter(state: &Arc<BrokerState>, message: &Exhausted) -> Result<(), String> {
    let got = state.store.get_messages(
        &message.topic,
        message.queue_id,
        message.queue_offset,
        1,
        usize::MAX,
        None,
    );
    let original = got
        .messages
        .first()
        .filter(|m| m.queue_offset == message.queue_offset)
        .and_then(|m| m.decode());
    if let Some(original) = original {
        let topic = dlq_topic(&message.group);
        ensure_topic(state, topic.clone()).await?;
        let copy = copy_for(&original, &topic, message.reconsume_times + 1);
        state
            .store
            .put_message(copy)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(group = %message.group, topic = %message.topic, queue_id = message.queue_id, offset = message.queue_offset, deliveries = message.reconsume_times + 1, "message moved to the dead-letter queue");
    } else {
        tracing::warn!(group = %message.group, topic = %message.topic, offset = message.queue_offset, "exhausted message no longer in the store; dropped");
    }
    let journaled = state
        .pops
        .drop_exhausted(&state.store, message)
        .map_err(|e| e.to_string())?;
    match journaled {
        Some(journaled) => {
            journaled.durable().await.map_err(|e| e.to_string())?;
        }
        None => {
            tracing::info!(group = %message.group, topic = %message.topic, offset = message.queue_offset, "dead-lettered message was acked or renewed meanwhile; it stays with its consumer");
            return Ok(());
        }
    }
    // A FIFO queue blocked behind this message may go on.
    state.long_poll.wake_topic(&message.topic);
    Ok(())
}
