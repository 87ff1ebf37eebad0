//! Raw queue locks (LOCK_BATCH_MQ / UNLOCK_BATCH_MQ) for orderly consumption: a client that
//! wants to consume a queue in order across a rebalance locks it on the broker first, renews the
//! lock well within the broker's TTL (default 60 s; RocketMQ clients renew every 20 s), and
//! unlocks it when it gives the queue up.
//!
//! [`lock_queues`] / [`unlock_queues`] are single calls to one broker address;
//! [`lock_on_masters`] / [`unlock_on_masters`] spread a set of queues over their brokers, which
//! is what an orderly [`ConsumerGroup`](super::ConsumerGroup) does at every rebalance.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::protocol::body::{
    LockBatchRequestBody, LockBatchResponseBody, MessageQueueData, UnlockBatchRequestBody,
    decode_json, encode_json,
};
use crate::protocol::codes::request;
use crate::protocol::{RemotingClient, RemotingCommand};

use super::error::ClientError;
use super::route::{MessageQueue, RouteCache};

/// Locks `queues` for `client_id` in `group` on the broker at `addr` (renewing those it already
/// holds) and returns the queues the client holds now; the others are held by another client.
pub async fn lock_queues<H: crate::protocol::RequestHandler>(
    remoting: &RemotingClient<H>,
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
pub async fn unlock_queues<H: crate::protocol::RequestHandler>(
    remoting: &RemotingClient<H>,
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

/// Locks (or renews) each queue on its broker's master, one call per broker, and returns the
/// queues held now. A broker that cannot be reached, or a queue without a route, holds none: the
/// caller must not consume those queues in order.
pub async fn lock_on_masters<H: crate::protocol::RequestHandler>(
    remoting: &RemotingClient<H>,
    routes: &RouteCache,
    group: &str,
    client_id: &str,
    queues: &[MessageQueue],
    timeout: Duration,
) -> HashSet<MessageQueue> {
    let mut held = HashSet::new();
    for (addr, queues) in by_master(routes, queues).await {
        match lock_queues(remoting, &addr, group, client_id, &queues, timeout).await {
            Ok(locked) => held.extend(locked),
            Err(e) => tracing::warn!(%addr, %group, error = %e, "queue locks not taken or renewed"),
        }
    }
    held
}

/// Releases this client's locks on `queues`, best effort (an unreleased lock lapses after the
/// broker's TTL).
pub async fn unlock_on_masters<H: crate::protocol::RequestHandler>(
    remoting: &RemotingClient<H>,
    routes: &RouteCache,
    group: &str,
    client_id: &str,
    queues: &[MessageQueue],
    timeout: Duration,
) {
    for (addr, queues) in by_master(routes, queues).await {
        if let Err(e) = unlock_queues(remoting, &addr, group, client_id, &queues, timeout).await {
            tracing::warn!(%addr, %group, error = %e, "queue locks not released; they lapse");
        }
    }
}

/// The queues grouped by the address of their broker's master.
async fn by_master(
    routes: &RouteCache,
    queues: &[MessageQueue],
) -> BTreeMap<String, Vec<MessageQueue>> {
    let mut out: BTreeMap<String, Vec<MessageQueue>> = BTreeMap::new();
    for queue in queues {
        let Ok(route) = routes.route(&queue.topic).await else {
            continue;
        };
        if let Some(addr) = route.master_addr(&queue.broker_name) {
            out.entry(addr.to_string()).or_default().push(queue.clone());
        }
    }
    out
}

async fn call<H: crate::protocol::RequestHandler>(
    remoting: &RemotingClient<H>,
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
