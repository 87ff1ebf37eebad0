//! A member's background tasks: the pull loop of each assigned queue, and the periodic
//! heartbeat, rebalance and offset-commit loops.

use super::*;

/// One assigned queue: pull (long polling), record in the process queue, hand over, repeat.
pub(super) async fn run_queue(
    shared: Arc<Shared>,
    queue: MessageQueue,
    state: Arc<QueueState>,
    subscription: Subscription,
) {
    let max_unacked = shared.consumer.max_unacked_per_queue;
    loop {
        // Flow control: wait for acks while too much of this queue is unacknowledged.
        loop {
            let acked = state.acked.notified();
            tokio::pin!(acked);
            acked.as_mut().enable();
            if state.cancel.is_cancelled() {
                return;
            }
            if state.pq.lock().expect("pq lock").in_flight() < max_unacked {
                break;
            }
            tokio::select! {
                _ = &mut acked => {}
                _ = tokio::time::sleep(FLOW_CONTROL_RECHECK) => {}
                _ = state.cancel.cancelled() => return,
            }
        }
        let offset = state.pq.lock().expect("pq lock").next_pull_offset();
        let pulled = tokio::select! {
            pulled = shared.pull.pull(
                &queue,
                offset,
                shared.consumer.pull_batch_size,
                Some(shared.consumer.long_poll),
                &subscription,
            ) => pulled,
            _ = state.cancel.cancelled() => return,
        };
        let result = match pulled {
            Ok(result) => result,
            Err(e) => {
                tracing::warn!(%queue, offset, error = %e, "pull failed; retrying later");
                tokio::select! {
                    _ = tokio::time::sleep(PULL_RETRY_DELAY) => continue,
                    _ = state.cancel.cancelled() => return,
                }
            }
        };
        match result.status {
            PullStatus::Found => {
                state.pq.lock().expect("pq lock").on_pulled(
                    result.messages.iter().map(|m| m.queue_offset),
                    result.next_begin_offset,
                );
                for msg in result.messages {
                    tokio::select! {
                        sent = shared.tx.send(msg) => if sent.is_err() { return },
                        _ = state.cancel.cancelled() => return,
                    }
                }
            }
            PullStatus::NoNewMsg | PullStatus::NoMatchedMsg => {
                state
                    .pq
                    .lock()
                    .expect("pq lock")
                    .on_pulled([], result.next_begin_offset);
            }
            PullStatus::OffsetIllegal => {
                tracing::warn!(
                    %queue,
                    offset,
                    next = result.next_begin_offset,
                    min = result.min_offset,
                    max = result.max_offset,
                    "offset no longer valid; moving on"
                );
                state
                    .pq
                    .lock()
                    .expect("pq lock")
                    .jump_to(result.next_begin_offset.max(0));
            }
        }
    }
}

pub(super) async fn heartbeat_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.heartbeat_interval) => {}
            _ = shared.handler.heartbeat.notified() => {
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_HEARTBEAT_DELAY) => {}
                    _ = stopped.changed() => return,
                }
            }
            _ = stopped.changed() => return,
        }
        shared.heartbeat().await;
    }
}

pub(super) async fn rebalance_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.rebalance_interval) => {}
            _ = shared.handler.rebalance.notified() => {}
            _ = stopped.changed() => return,
        }
        shared.rebalance().await;
    }
}

pub(super) async fn commit_loop(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.offset_commit_interval) => {}
            _ = stopped.changed() => return,
        }
        let _ = shared.commit_all().await;
    }
}
