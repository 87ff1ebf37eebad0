//! Client heartbeats and consumer-group membership: HEART_BEAT (34), UNREGISTER_CLIENT (35),
//! GET_CONSUMER_LIST_BY_GROUP (38).

use std::sync::Arc;

use crate::protocol::body::{
    ConsumerListBody, HeartbeatData, TopicConfig, decode_json, encode_json,
};
use crate::protocol::codes::{perm, response};
use crate::protocol::headers::{ConsumerGroupRequestHeader, UnregisterClientRequestHeader};
use crate::protocol::{Connection, RemotingCommand};
use crate::store::RETRY_TOPIC_PREFIX;

use super::super::state::BrokerState;
use super::{bad_group, bad_header, valid_group};

/// Longest client id accepted.
const MAX_CLIENT_ID_LEN: usize = 255;

pub(super) async fn heartbeat(
    state: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
) -> RemotingCommand {
    let data: HeartbeatData = match decode_json(&req.body) {
        Ok(d) => d,
        Err(e) => return RemotingCommand::error(response::SYSTEM_ERROR, e),
    };
    if data.client_id.is_empty() || data.client_id.len() > MAX_CLIENT_ID_LEN {
        return RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("clientID must be 1..={MAX_CLIENT_ID_LEN} bytes"),
        );
    }
    for consumer in &data.consumer_data_set {
        if !valid_group(&consumer.group_name) {
            return bad_group(&consumer.group_name);
        }
    }
    for consumer in &data.consumer_data_set {
        // Clustering groups get their retry topic now, as RocketMQ does, so that a client that
        // subscribes to `%RETRY%<group>` finds a route.
        if consumer.message_model != "BROADCASTING" {
            let retry = format!("{RETRY_TOPIC_PREFIX}{}", consumer.group_name);
            let wanted = TopicConfig::new(&retry, 1, perm::READ | perm::WRITE);
            match state
                .off_thread(move |s| s.topics.create_if_absent(wanted))
                .await
            {
                Ok((_, true)) => state.register_now.notify_one(),
                Ok(_) => {}
                Err(e) => return RemotingCommand::error(response::SYSTEM_ERROR, e.to_string()),
            }
        }
        match state.consumers.heartbeat(&data.client_id, conn, consumer) {
            Ok(Some(change)) => {
                tracing::info!(group = %consumer.group_name, client = %data.client_id, "consumer joined");
                state.notify_members(change);
            }
            Ok(None) => {}
            Err(reason) => return RemotingCommand::error(response::SYSTEM_BUSY, reason),
        }
    }
    RemotingCommand::success()
}

pub(super) fn unregister(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let header: UnregisterClientRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    if let Some(group) = &header.consumer_group
        && let Some(change) = state.consumers.unregister(&header.client_id, group)
    {
        tracing::info!(%group, client = %header.client_id, "consumer left");
        state.notify_members(change);
    }
    RemotingCommand::success()
}

pub(super) fn consumer_list(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let header: ConsumerGroupRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    match state.consumers.members(&header.consumer_group) {
        Some(ids) => RemotingCommand::success().with_body(encode_json(&ConsumerListBody {
            consumer_id_list: ids,
        })),
        None => RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("no consumer for this group, {}", header.consumer_group),
        ),
    }
}
