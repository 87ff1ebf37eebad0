//! LOCK_BATCH_MQ (41) and UNLOCK_BATCH_MQ (42): the queue locks of orderly consumers (see
//! `broker::queue_locks`). Bodies are RocketMQ's JSON `LockBatchRequestBody` /
//! `UnlockBatchRequestBody`; the lock answer is `LockBatchResponseBody {lockOKMQSet}`.

use std::time::Instant;

use crate::protocol::RemotingCommand;
use crate::protocol::body::{
    LockBatchRequestBody, LockBatchResponseBody, MessageQueueData, UnlockBatchRequestBody,
    decode_json, encode_json,
};
use crate::protocol::codes::response;

use super::super::queue_locks::{MAX_CLIENT_ID_LEN, MAX_LOCK_BATCH};
use super::super::state::BrokerState;
use super::super::topic_table::valid_topic_name;
use super::{bad_group, valid_group};

pub(super) fn lock_batch(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let body: LockBatchRequestBody = match decode_json(&req.body) {
        Ok(body) => body,
        Err(e) => return RemotingCommand::error(response::SYSTEM_ERROR, e),
    };
    if let Err(refusal) = check(&body.consumer_group, &body.client_id, &body.mq_set) {
        return refusal;
    }
    let locked = state.queue_locks.lock(
        &body.consumer_group,
        &body.client_id,
        &body.mq_set,
        Instant::now(),
    );
    RemotingCommand::success().with_body(encode_json(&LockBatchResponseBody {
        lock_ok_mq_set: locked,
    }))
}

pub(super) fn unlock_batch(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let body: UnlockBatchRequestBody = match decode_json(&req.body) {
        Ok(body) => body,
        Err(e) => return RemotingCommand::error(response::SYSTEM_ERROR, e),
    };
    if let Err(refusal) = check(&body.consumer_group, &body.client_id, &body.mq_set) {
        return refusal;
    }
    state
        .queue_locks
        .unlock(&body.consumer_group, &body.client_id, &body.mq_set);
    RemotingCommand::success()
}

/// What both requests must carry: a valid group, a client id and at most [`MAX_LOCK_BATCH`]
/// queues of valid topics.
fn check(group: &str, client_id: &str, queues: &[MessageQueueData]) -> Result<(), RemotingCommand> {
    if !valid_group(group) {
        return Err(bad_group(group));
    }
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_LEN {
        return Err(RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("clientId must be 1..={MAX_CLIENT_ID_LEN} bytes"),
        ));
    }
    if queues.len() > MAX_LOCK_BATCH {
        return Err(RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!(
                "mqSet has {} queues, at most {MAX_LOCK_BATCH} per request",
                queues.len()
            ),
        ));
    }
    if let Some(bad) = queues
        .iter()
        .find(|q| !valid_topic_name(&q.topic) || q.queue_id < 0 || q.broker_name.len() > 64)
    {
        return Err(RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!(
                "mqSet names an invalid queue: topic `{}`, broker `{}`, queue {}",
                bad.topic.chars().take(200).collect::<String>(),
                bad.broker_name.chars().take(100).collect::<String>(),
                bad.queue_id
            ),
        ));
    }
    Ok(())
}
