//! Topic administration: UPDATE_AND_CREATE_TOPIC (17), DELETE_TOPIC_IN_BROKER (215),
//! GET_ALL_TOPIC_CONFIG (21).

use std::sync::Arc;

use crate::protocol::RemotingCommand;
use crate::protocol::body::{TopicConfig, encode_json};
use crate::protocol::codes::response;
use crate::protocol::headers::{CreateTopicRequestHeader, TopicRequestHeader};

use super::super::state::BrokerState;
use super::bad_header;

pub(super) async fn create_topic(
    state: &Arc<BrokerState>,
    req: &RemotingCommand,
) -> RemotingCommand {
    let header: CreateTopicRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    let config = TopicConfig {
        topic_name: header.topic,
        read_queue_nums: header.read_queue_nums,
        write_queue_nums: header.write_queue_nums,
        perm: header.perm,
        topic_filter_type: header
            .topic_filter_type
            .unwrap_or_else(|| "SINGLE_TAG".into()),
        topic_sys_flag: header.topic_sys_flag.unwrap_or(0),
        order: header.order.unwrap_or(false),
    };
    let wanted = config.clone();
    match state.off_thread(move |s| s.topics.upsert(wanted)).await {
        Ok(changed) => {
            if changed {
                tracing::info!(topic = %config.topic_name, queues = config.write_queue_nums, perm = config.perm, "topic created or updated");
                state.register_now.notify_one();
            }
            RemotingCommand::success()
        }
        Err(e) => RemotingCommand::error(response::SYSTEM_ERROR, e.to_string()),
    }
}

/// Removes the topic from the table (and so from the routes). Its stored messages stay until
/// retention deletes their CommitLog segments.
pub(super) async fn delete_topic(
    state: &Arc<BrokerState>,
    req: &RemotingCommand,
) -> RemotingCommand {
    let header: TopicRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    let topic = header.topic.clone();
    match state.off_thread(move |s| s.topics.remove(&topic)).await {
        Ok(removed) => {
            if removed {
                tracing::info!(topic = %header.topic, "topic deleted");
                state.register_now.notify_one();
            }
            RemotingCommand::success()
        }
        Err(e) => RemotingCommand::error(response::SYSTEM_ERROR, e.to_string()),
    }
}

pub(super) fn all_topic_config(state: &BrokerState) -> RemotingCommand {
    RemotingCommand::success().with_body(encode_json(&state.topics.snapshot()))
}
