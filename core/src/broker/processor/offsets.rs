//! Consumer offsets (QUERY/UPDATE_CONSUMER_OFFSET) and queue offsets (min, max, by time).

use crate::protocol::RemotingCommand;
use crate::protocol::codes::response;
use crate::protocol::headers::{
    OffsetResponseHeader, QueryConsumerOffsetRequestHeader, QueueRequestHeader,
    SearchOffsetRequestHeader, UpdateConsumerOffsetRequestHeader,
};

use super::super::state::BrokerState;
use super::{bad_group, bad_header, valid_group};

fn offset(value: i64) -> RemotingCommand {
    RemotingCommand::success().with_header(&OffsetResponseHeader { offset: value })
}

pub(super) fn query_consumer_offset(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let header: QueryConsumerOffsetRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    if !valid_group(&header.consumer_group) {
        return bad_group(&header.consumer_group);
    }
    if let Some(committed) =
        state
            .offsets
            .get(&header.consumer_group, &header.topic, header.queue_id)
    {
        return offset(committed);
    }
    // RocketMQ's rule: a group that never committed starts at 0 when the queue still holds its
    // first message (nothing was lost to retention), unless the client asked not to.
    let min = state.store.min_offset(&header.topic, header.queue_id);
    if min == 0 && header.set_zero_if_not_found != Some(false) {
        return offset(0);
    }
    RemotingCommand::error(
        response::QUERY_NOT_FOUND,
        "Not found, maybe this group consumer boot first",
    )
}

/// Also moves the group's pop position in the queue, if it pops from it: an offset reset applies
/// to both ways of consuming.
pub(super) async fn update_consumer_offset(
    state: &BrokerState,
    req: &RemotingCommand,
) -> RemotingCommand {
    let header: UpdateConsumerOffsetRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    if !valid_group(&header.consumer_group) {
        return bad_group(&header.consumer_group);
    }
    if header.commit_offset < 0 {
        return RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("commitOffset {} is negative", header.commit_offset),
        );
    }
    if !state.topics.contains(&header.topic) {
        return RemotingCommand::error(
            response::TOPIC_NOT_EXIST,
            format!("topic[{}] not exist", header.topic),
        );
    }
    if !state.offsets.commit(
        &header.consumer_group,
        &header.topic,
        header.queue_id,
        header.commit_offset,
    ) {
        return RemotingCommand::error(response::SYSTEM_BUSY, "consumer offset table is full");
    }
    let reset = state.pops.reset(
        &state.store,
        &header.consumer_group,
        &header.topic,
        header.queue_id,
        header.commit_offset as u64,
    );
    match reset {
        Ok(Some(journaled)) => match journaled.durable().await {
            Ok(_) => RemotingCommand::success(),
            Err(e) => super::send::store_error(e),
        },
        Ok(None) => RemotingCommand::success(),
        Err(e) => super::send::store_error(e),
    }
}

pub(super) fn max_offset(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    match req.header::<QueueRequestHeader>() {
        Ok(h) => offset(state.store.max_offset(&h.topic, h.queue_id) as i64),
        Err(e) => bad_header(e),
    }
}

pub(super) fn min_offset(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    match req.header::<QueueRequestHeader>() {
        Ok(h) => offset(state.store.min_offset(&h.topic, h.queue_id) as i64),
        Err(e) => bad_header(e),
    }
}

pub(super) fn search_by_timestamp(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    match req.header::<SearchOffsetRequestHeader>() {
        Ok(h) => offset(
            state
                .store
                .offset_by_time(&h.topic, h.queue_id, h.timestamp) as i64,
        ),
        Err(e) => bad_header(e),
    }
}
