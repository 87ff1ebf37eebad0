//! Consumer group settings: UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200),
//! GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201), DELETE_SUBSCRIPTIONGROUP (207).

use std::sync::Arc;

use crate::protocol::RemotingCommand;
use crate::protocol::body::{SubscriptionGroupConfig, decode_json, encode_json};
use crate::protocol::codes::response;
use crate::protocol::headers::DeleteSubscriptionGroupRequestHeader;

use super::super::state::BrokerState;
use super::{bad_group, bad_header, valid_group};

pub(super) async fn upsert_group(
    state: &Arc<BrokerState>,
    req: &RemotingCommand,
) -> RemotingCommand {
    if req.body.is_empty() {
        return RemotingCommand::error(
            response::SYSTEM_ERROR,
            "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP needs a SubscriptionGroupConfig body",
        );
    }
    let config: SubscriptionGroupConfig = match decode_json(&req.body) {
        Ok(config) => config,
        Err(e) => {
            return RemotingCommand::error(
                response::SYSTEM_ERROR,
                format!("subscription group body: {e}"),
            );
        }
    };
    if !valid_group(&config.group_name) {
        return bad_group(&config.group_name);
    }
    if let Some(Err(e)) = config.group_retry_policy.as_ref().map(|p| p.validate()) {
        return RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("group {}: {e}", config.group_name),
        );
    }
    let group = config.group_name.clone();
    let (fifo, retries) = (config.consume_message_orderly, config.retry_max_times);
    match state.off_thread(move |s| s.groups.upsert(config)).await {
        Ok(()) => {
            tracing::info!(%group, fifo, retries, "subscription group created or updated");
            RemotingCommand::success()
        }
        Err(e) => RemotingCommand::error(response::SYSTEM_ERROR, e.to_string()),
    }
}

pub(super) fn all_groups(state: &BrokerState) -> RemotingCommand {
    RemotingCommand::success().with_body(encode_json(&state.groups.wrapper()))
}

pub(super) async fn delete_group(
    state: &Arc<BrokerState>,
    req: &RemotingCommand,
) -> RemotingCommand {
    let header: DeleteSubscriptionGroupRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    let group = header.group_name;
    match state.off_thread(move |s| s.groups.delete(&group)).await {
        Ok(_) => RemotingCommand::success(),
        Err(e) => RemotingCommand::error(response::SYSTEM_ERROR, e.to_string()),
    }
}
