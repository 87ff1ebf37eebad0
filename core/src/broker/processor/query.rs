//! QUERY_MESSAGE (12, by key through the IndexFile) and VIEW_MESSAGE_BY_ID (33, by CommitLog
//! offset). Both answer with raw stored records, like a pull.

use bytes::BytesMut;

use crate::protocol::RemotingCommand;
use crate::protocol::codes::response;
use crate::protocol::headers::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use crate::store::MAX_QUERY_RESULTS;

use super::super::state::BrokerState;
use super::bad_header;

pub(super) fn query_message(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let header: QueryMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    let max = header.max_num.clamp(1, MAX_QUERY_RESULTS as i32) as usize;
    let found = state.store.query_by_key(
        &header.topic,
        &header.key,
        max,
        header.begin_timestamp,
        header.end_timestamp,
    );
    let mut body = BytesMut::new();
    let mut last_timestamp = 0;
    let mut last_offset = 0;
    for message in &found {
        if let Some(bytes) = state
            .store
            .record_bytes(message.physical_offset, message.store_size)
        {
            body.extend_from_slice(&bytes);
            last_timestamp = last_timestamp.max(message.store_timestamp);
            last_offset = last_offset.max(message.physical_offset as i64);
        }
    }
    if body.is_empty() {
        return RemotingCommand::error(
            response::QUERY_NOT_FOUND,
            format!(
                "no message with key `{}` in topic {}",
                header.key, header.topic
            ),
        );
    }
    RemotingCommand::success()
        .with_header(&QueryMessageResponseHeader {
            index_last_update_timestamp: last_timestamp,
            index_last_update_phyoffset: last_offset,
        })
        .with_body(body.freeze())
}

pub(super) fn view_message(state: &BrokerState, req: &RemotingCommand) -> RemotingCommand {
    let header: ViewMessageRequestHeader = match req.header() {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    let not_found = || {
        RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!("can not find message by the offset, {}", header.offset),
        )
    };
    if header.offset < 0 {
        return not_found();
    }
    // `message_at` validates that a whole record starts exactly there.
    let Some(message) = state.store.message_at(header.offset as u64) else {
        return not_found();
    };
    if header.topic.as_deref().is_some_and(|t| t != message.topic) {
        return not_found();
    }
    match state
        .store
        .record_bytes(message.physical_offset, message.store_size)
    {
        Some(bytes) => RemotingCommand::success().with_body(bytes),
        None => not_found(),
    }
}
