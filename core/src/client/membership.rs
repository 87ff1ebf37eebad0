//! The calls that make a client a member of a consumer group: HEART_BEAT, UNREGISTER_CLIENT and
//! GET_CONSUMER_LIST_BY_GROUP.
//!
//! A broker only knows a consumer through its heartbeats (and forgets it when its connection
//! closes or it goes silent), and rebalance only sees the members a broker knows, so these calls
//! decide who reads what.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::protocol::body::{ConsumerListBody, HeartbeatData, decode_json, encode_json};
use crate::protocol::codes::request;
use crate::protocol::headers::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use crate::protocol::{RemotingClient, RemotingCommand, RequestHandler};

use super::error::ClientError;
use super::route::TopicRoute;

/// Every broker address (masters and slaves) of these routes: a consumer may read from slaves,
/// so slaves must know it too.
pub fn all_broker_addrs<'a>(routes: impl IntoIterator<Item = &'a TopicRoute>) -> BTreeSet<String> {
    routes
        .into_iter()
        .flat_map(|r| r.brokers.values().flat_map(|a| a.values().cloned()))
        .collect()
}

/// HEART_BEAT to every address, concurrently. Returns how many brokers accepted it; failures are
/// logged (the next heartbeat tries again).
pub async fn send_heartbeats<H: RequestHandler>(
    remoting: &RemotingClient<H>,
    addrs: &BTreeSet<String>,
    data: &HeartbeatData,
    timeout: Duration,
) -> usize {
    let body = encode_json(data);
    let calls = addrs.iter().map(|addr| {
        let req = RemotingCommand::request(request::HEART_BEAT).with_body(body.clone());
        async move {
            match remoting.invoke(addr, req, timeout).await {
                Ok(resp) if resp.is_success() => true,
                Ok(resp) => {
                    tracing::warn!(%addr, code = resp.code, remark = resp.remark_or_empty(), "heartbeat refused");
                    false
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "heartbeat failed");
                    false
                }
            }
        }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count()
}

/// UNREGISTER_CLIENT for `group` to every address, concurrently, best effort.
pub async fn send_unregister<H: RequestHandler>(
    remoting: &RemotingClient<H>,
    addrs: &BTreeSet<String>,
    client_id: &str,
    group: &str,
    timeout: Duration,
) {
    let header = UnregisterClientRequestHeader {
        client_id: client_id.to_string(),
        producer_group: None,
        consumer_group: Some(group.to_string()),
    };
    let calls = addrs.iter().map(|addr| {
        let req = RemotingCommand::request_with(request::UNREGISTER_CLIENT, &header);
        async move {
            if let Err(e) = remoting.invoke(addr, req, timeout).await {
                tracing::debug!(%addr, error = %e, "unregister failed");
            }
        }
    });
    futures_util::future::join_all(calls).await;
}

/// The group's members as the first answering master of `route` knows them, sorted and
/// deduplicated (the order every member allocates by).
pub async fn group_members<H: RequestHandler>(
    remoting: &RemotingClient<H>,
    route: &TopicRoute,
    group: &str,
    timeout: Duration,
) -> Result<Vec<String>, ClientError> {
    let header = ConsumerGroupRequestHeader {
        consumer_group: group.to_string(),
    };
    let mut last_error = ClientError::NoRoute {
        topic: route.topic.clone(),
    };
    for addr in route.master_addrs() {
        let req = RemotingCommand::request_with(request::GET_CONSUMER_LIST_BY_GROUP, &header);
        match remoting.invoke(&addr, req, timeout).await {
            Ok(resp) if resp.is_success() => {
                let body: ConsumerListBody =
                    decode_json(&resp.body).map_err(|reason| ClientError::Decode {
                        what: "ConsumerListBody",
                        addr: addr.clone(),
                        reason,
                    })?;
                let mut ids = body.consumer_id_list;
                ids.sort();
                ids.dedup();
                return Ok(ids);
            }
            Ok(resp) => {
                last_error = ClientError::Broker {
                    addr,
                    code: resp.code,
                    remark: resp.remark_or_empty().to_string(),
                }
            }
            Err(e) => last_error = e.into(),
        }
    }
    Err(last_error)
}
