//! Raw queue locks (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ) for orderly consumption: a client that
//! wants to consume a queue in order across a rebalance locks it on the broker first, renews the
//! lock well within the broker's TTL (default 60 s; RocketMQ clients renew every 20 s), and
//! unlocks it when it gives the queue up.
//!
//! These are single calls to one broker address; the orderly consumer loop itself is not here.

use std::time::Duration;

use crate::protocol::body::{
    LockBatchRequestBody, LockBatchResponseBody, MessageQueueData, UnlockBatchRequestBody,
    decode_json, encode_json,
};
use crate::protocol::codes::request;
use crate::protocol::{RemotingClient, RemotingCommand};

use super::error::ClientError;
use super::route::MessageQueue;

/// Locks `queues` for `client_id` in `group` on the broker at `addr` (renewing those it already
/// holds) and returns the queues the client holds now; the others are held by another client.
pub async fn lock_queues(
    remoting: &RemotingClient,
    addr: &str,
    group: &str,
    client_id: &str,
    queues: &[MessageQueue],
    timeout: Duration,
) -> Result<Vec<MessageQueue>, ClientError> {
    let body = LockBatchRequestBody {
        consumer_group: group.to_string(),
        client_id: client_id.to_string(),
        only_this_broker: true,
        mq_set: queues.iter().map(to_data).collect(),
    };
    let command = RemotingCommand::request(request::LOCK_BATCH_MQ).with_body(encode_json(&body));
    let response = call(remoting, addr, command, timeout).await?;
    let answer: LockBatchResponseBody =
        decode_json(&response.body).map_err(|reason| ClientError::Decode {
            what: "lock batch response",
            addr: addr.to_string(),
            reason,
        })?;
    Ok(answer
        .lock_ok_mq_set
        .into_iter()
        .map(|q| MessageQueue::new(q.topic, q.broker_name, q.queue_id))
        .collect())
}

/// Releases the locks `client_id` holds on `queues` (locks of other clients are left alone).
pub async fn unlock_queues(
    remoting: &RemotingClient,
    addr: &str,
    group: &str,
    client_id: &str,
    queues: &[MessageQueue],
    timeout: Duration,
) -> Result<(), ClientError> {
    let body = UnlockBatchRequestBody {
        consumer_group: group.to_string(),
        client_id: client_id.to_string(),
        only_this_broker: true,
        mq_set: queues.iter().map(to_data).collect(),
    };
    let command = RemotingCommand::request(request::UNLOCK_BATCH_MQ).with_body(encode_json(&body));
    call(remoting, addr, command, timeout).await.map(|_| ())
}

async fn call(
    remoting: &RemotingClient,
    addr: &str,
    command: RemotingCommand,
    timeout: Duration,
) -> Result<RemotingCommand, ClientError> {
    let response = remoting.invoke(addr, command, timeout).await?;
    if !response.is_success() {
        return Err(ClientError::Broker {
            addr: addr.to_string(),
            code: response.code,
            remark: response.remark_or_empty().to_string(),
        });
    }
    Ok(response)
}

fn to_data(queue: &MessageQueue) -> MessageQueueData {
    MessageQueueData {
        topic: queue.topic.clone(),
        broker_name: queue.broker_name.clone(),
        queue_id: queue.queue_id,
    }
}
