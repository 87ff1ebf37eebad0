//! The broker's request handlers, one module per family of request codes.

mod admin;
mod clients;
mod groups;
mod idempotent;
mod locks;
mod offsets;
mod pop;
mod pull;
mod query;
mod send;
mod send_back;

use std::sync::Arc;

use crate::protocol::codes::{request, response};
use crate::protocol::{Connection, HeaderError, RemotingCommand, RequestHandler};

use super::state::BrokerState;

/// Most characters of a consumer or producer group name: `%RETRY%<group>` must still be a valid
/// topic name (127).
pub const MAX_GROUP_LEN: usize = 120;

/// Serves every request that reaches the broker.
pub(crate) struct Processor {
    pub state: Arc<BrokerState>,
}

impl RequestHandler for Processor {
    async fn handle(&self, conn: Connection, req: RemotingCommand) -> Option<RemotingCommand> {
        let state = &self.state;
        if state.is_shutting_down() {
            return Some(RemotingCommand::error(
                response::SERVICE_NOT_AVAILABLE,
                "broker is shutting down",
            ));
        }
        let response = match req.code {
            request::SEND_MESSAGE => send::send(state, &conn, &req, false).await,
            request::SEND_MESSAGE_V2 => send::send(state, &conn, &req, true).await,
            request::SEND_BATCH_MESSAGE => send::send_batch(state, &conn, &req).await,
            request::PULL_MESSAGE => pull::pull(state, &conn, &req).await?,
            request::QUERY_CONSUMER_OFFSET => offsets::query_consumer_offset(state, &req),
            request::UPDATE_CONSUMER_OFFSET => offsets::update_consumer_offset(state, &req).await,
            request::GET_MAX_OFFSET => offsets::max_offset(state, &req),
            request::GET_MIN_OFFSET => offsets::min_offset(state, &req),
            request::SEARCH_OFFSET_BY_TIMESTAMP => offsets::search_by_timestamp(state, &req),
            request::QUERY_MESSAGE => query::query_message(state, &req),
            request::VIEW_MESSAGE_BY_ID => query::view_message(state, &req),
            request::UPDATE_AND_CREATE_TOPIC => admin::create_topic(state, &req).await,
            request::DELETE_TOPIC_IN_BROKER => admin::delete_topic(state, &req).await,
            request::GET_ALL_TOPIC_CONFIG => admin::all_topic_config(state),
            request::HEART_BEAT => clients::heartbeat(state, &conn, &req).await,
            request::UNREGISTER_CLIENT => clients::unregister(state, &req),
            request::GET_CONSUMER_LIST_BY_GROUP => clients::consumer_list(state, &req),
            request::CONSUMER_SEND_MSG_BACK => send_back::send_back(state, &req).await,
            request::POP_MESSAGE => pop::pop(state, &conn, &req).await?,
            request::ACK_MESSAGE => pop::ack(state, &req).await,
            request::TERN_BATCH_ACK => pop::batch_ack(state, &req).await,
            request::CHANGE_MESSAGE_INVISIBLETIME => pop::change_invisible(state, &req).await,
            request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => groups::upsert_group(state, &req).await,
            request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => groups::all_groups(state),
            request::DELETE_SUBSCRIPTIONGROUP => groups::delete_group(state, &req).await,
            request::LOCK_BATCH_MQ => locks::lock_batch(state, &req),
            request::UNLOCK_BATCH_MQ => locks::unlock_batch(state, &req),
            code => RemotingCommand::error(
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!("request code {code} is not supported by this broker"),
            ),
        };
        Some(response)
    }

    fn connection_closed(&self, conn: &Connection) {
        for change in self.state.consumers.connection_closed(conn) {
            self.state.notify_members(change);
        }
    }
}

/// The response to a header that does not decode.
fn bad_header(e: HeaderError) -> RemotingCommand {
    RemotingCommand::error(response::SYSTEM_ERROR, e.to_string())
}

/// The topic a consumer reads from (`reading`: "pulling", "popping"), if it exists and is
/// readable; otherwise RocketMQ's answer (TOPIC_NOT_EXIST or NO_PERMISSION).
fn readable_topic(
    state: &BrokerState,
    topic: &str,
    reading: &str,
) -> Result<crate::protocol::body::TopicConfig, RemotingCommand> {
    let Some(config) = state.topics.get(topic) else {
        return Err(RemotingCommand::error(
            response::TOPIC_NOT_EXIST,
            format!("topic[{topic}] not exist, apply first please!"),
        ));
    };
    if !crate::protocol::codes::perm::is_readable(config.perm) {
        return Err(RemotingCommand::error(
            response::NO_PERMISSION,
            format!("the topic[{topic}] {reading} message is forbidden"),
        ));
    }
    Ok(config)
}

/// Group names: what offsets files and retry topic names can hold.
fn valid_group(group: &str) -> bool {
    !group.is_empty()
        && group.len() <= MAX_GROUP_LEN
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

fn bad_group(group: &str) -> RemotingCommand {
    RemotingCommand::error(
        response::SYSTEM_ERROR,
        format!(
            "group `{}` must be 1..={MAX_GROUP_LEN} characters of [A-Za-z0-9%|_-]",
            group.chars().take(200).collect::<String>()
        ),
    )
}
