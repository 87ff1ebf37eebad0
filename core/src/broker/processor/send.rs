//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320).
//!
//! The answer is given only once the store says the message is as durable as the flush mode
//! promises; `FLUSH_DISK_TIMEOUT` means "stored, but the fsync did not finish in time".
//!
//! A single message with `DELAY` or a timer property is stored in its delay topic instead
//! (see [`delay`](super::super::delay)); batches asking for either are refused. Clients may not
//! send to the broker's own topics (`SCHEDULE_TOPIC_XXXX`, `rmq_sys_*`): only the broker writes
//! those, straight to the store.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::protocol::RemotingCommand;
use crate::protocol::batch::decode_batch;
use crate::protocol::body::TopicConfig;
use crate::protocol::codes::{perm, response};
use crate::protocol::headers::{SendMessageRequestHeader, SendMessageResponseHeader};
use crate::protocol::{CommandHeader, Connection};
use crate::store::{
    Message, Properties, PutStatus, SCHEDULE_TOPIC, StoreError, now_millis, offset_message_id,
    property, sys_flag,
};

use super::super::delay::{self, DelayError, Delivery};

use super::super::state::BrokerState;
use super::super::topic_table::valid_topic_name;
use super::{bad_group, bad_header, idempotent, valid_group};

pub(super) async fn send(
    state: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
    v2: bool,
) -> RemotingCommand {
    let header = match if v2 {
        SendMessageRequestHeader::read_v2(&req.ext_fields)
    } else {
        SendMessageRequestHeader::read_from(&req.ext_fields)
    } {
        Ok(h) => h,
        Err(e) => return bad_header(e),
    };
    if header.batch == Some(true) {
        return send_batch_with(state, conn, req, header).await;
    }
    let (topic, queue_id) = match resolve_queue(state, &header).await {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    // Before any rewriting of the topic: the key belongs to the topic the producer named.
    let claim = match idempotent::claim(state, &header, &req.body).await {
        Ok(claim) => claim,
        Err(response) => return response,
    };
    let message = to_message(
        &topic,
        queue_id,
        &header,
        born_host(conn),
        (
            header.flag,
            req.body.clone(),
            header.properties.as_deref().unwrap_or(""),
        ),
    );
    let message = match route_delayed(state, message) {
        Ok(message) => message,
        Err(e) => return delay_error(e),
    };
    let put = state.store.put_message(message).await;
    idempotent::stored(claim, &put, queue_id);
    match put {
        Ok(put) => respond(
            put.status,
            SendMessageResponseHeader {
                msg_id: put.offset_message_id(),
                queue_id,
                queue_offset: put.record.queue_offset as i64,
                transaction_id: None,
                idempotent_replayed: None,
            },
        ),
        Err(e) => store_error(e),
    }
}

pub(super) async fn send_batch(
    state: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
) -> RemotingCommand {
    match SendMessageRequestHeader::read_from(&req.ext_fields)
        .or_else(|_| SendMessageRequestHeader::read_v2(&req.ext_fields))
    {
        Ok(header) => send_batch_with(state, conn, req, header).await,
        Err(e) => bad_header(e),
    }
}

async fn send_batch_with(
    state: &Arc<BrokerState>,
    conn: &Connection,
    req: &RemotingCommand,
    header: SendMessageRequestHeader,
) -> RemotingCommand {
    let (topic, queue_id) = match resolve_queue(state, &header).await {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let entries = match decode_batch(req.body.clone()) {
        Ok(entries) => entries,
        Err(e) => return RemotingCommand::error(response::MESSAGE_ILLEGAL, e.to_string()),
    };
    if let Err(response) = idempotent::refuse_keyed_batch(&entries) {
        return response;
    }
    let born_host = born_host(conn);
    for entry in &entries {
        if let Err(e) = delay::refuse_in_batch(&Properties::decode(&entry.properties)) {
            return delay_error(e);
        }
    }
    let messages: Vec<Message> = entries
        .into_iter()
        .map(|entry| {
            let (flag, body, properties) = (entry.flag, entry.body, entry.properties.as_str());
            to_message(
                &topic,
                queue_id,
                &header,
                born_host,
                (flag, body, properties),
            )
        })
        .collect();
    // The address the store writes as STOREHOST (the broker's, set at start).
    let store_host = state.store.config().store_host;
    match state.store.put_messages(&messages).await {
        Ok(put) => {
            let ids: Vec<String> = put
                .records
                .iter()
                .map(|r| offset_message_id(store_host, r.physical_offset))
                .collect();
            let first = put.records.first().map_or(0, |r| r.queue_offset as i64);
            respond(
                put.status,
                SendMessageResponseHeader {
                    msg_id: ids.join(","),
                    queue_id,
                    queue_offset: first,
                    transaction_id: None,
                    idempotent_replayed: None,
                },
            )
        }
        Err(e) => store_error(e),
    }
}

/// Finds (or, when enabled, creates) the topic and picks the queue.
async fn resolve_queue(
    state: &Arc<BrokerState>,
    header: &SendMessageRequestHeader,
) -> Result<(TopicConfig, i32), RemotingCommand> {
    if !valid_topic_name(&header.topic) {
        return Err(RemotingCommand::error(
            response::MESSAGE_ILLEGAL,
            format!(
                "topic `{}` must be 1..=127 characters of [A-Za-z0-9%|_-]",
                header.topic.chars().take(200).collect::<String>()
            ),
        ));
    }
    if !valid_group(&header.producer_group) {
        return Err(bad_group(&header.producer_group));
    }
    if is_broker_topic(&header.topic) {
        return Err(RemotingCommand::error(
            response::NO_PERMISSION,
            format!(
                "topic[{}] is the broker's own: clients may not send to it",
                header.topic
            ),
        ));
    }
    let topic = match state.topics.get(&header.topic) {
        Some(topic) => topic,
        None if state.config.auto_create_topic => {
            let queues = header
                .default_topic_queue_nums
                .filter(|&n| n > 0)
                .map_or(state.config.default_topic_queues, |n| {
                    n.min(state.config.default_topic_queues)
                });
            let wanted = TopicConfig::new(&header.topic, queues, perm::READ | perm::WRITE);
            match state
                .off_thread(move |s| s.topics.create_if_absent(wanted))
                .await
            {
                Ok((topic, created)) => {
                    if created {
                        tracing::info!(topic = %topic.topic_name, queues, "topic auto-created");
                        state.register_now.notify_one();
                    }
                    topic
                }
                Err(e) => {
                    return Err(RemotingCommand::error(
                        response::SYSTEM_ERROR,
                        e.to_string(),
                    ));
                }
            }
        }
        None => {
            return Err(RemotingCommand::error(
                response::TOPIC_NOT_EXIST,
                format!("topic[{}] not exist, apply first please!", header.topic),
            ));
        }
    };
    if !perm::is_writeable(topic.perm) {
        return Err(RemotingCommand::error(
            response::NO_PERMISSION,
            format!(
                "the topic[{}] sending message is forbidden",
                topic.topic_name
            ),
        ));
    }
    let queue_id = if header.queue_id < 0 {
        (state.next_queue.fetch_add(1, Ordering::Relaxed) % topic.write_queue_nums as usize) as i32
    } else {
        header.queue_id
    };
    if queue_id >= topic.write_queue_nums {
        return Err(RemotingCommand::error(
            response::SYSTEM_ERROR,
            format!(
                "request queueId[{queue_id}] is illegal, topic[{}] has {} write queues",
                topic.topic_name, topic.write_queue_nums
            ),
        ));
    }
    Ok((topic, queue_id))
}

/// The store message for one sent message: `(flag, body, encoded properties)` are per message
/// (a batch entry has its own), everything else comes from the request header.
fn to_message(
    topic: &TopicConfig,
    queue_id: i32,
    header: &SendMessageRequestHeader,
    born_host: SocketAddr,
    (flag, body, properties): (i32, bytes::Bytes, &str),
) -> Message {
    Message {
        topic: topic.topic_name.clone(),
        queue_id,
        flag,
        body,
        properties: Properties::decode(properties),
        // The host-address bits are the encoder's to set, from the addresses themselves.
        sys_flag: header.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6),
        born_timestamp: header.born_timestamp,
        born_host,
        reconsume_times: header.reconsume_times.unwrap_or(0),
        prepared_transaction_offset: 0,
    }
}

/// Topics only the broker writes: the delay-level and timer topics and every `rmq_sys_*` one.
fn is_broker_topic(topic: &str) -> bool {
    topic == SCHEDULE_TOPIC || topic.starts_with("rmq_sys_")
}

/// Rewrites a delayed message into its delay-level or timer form (or strips the timer properties
/// of one already due). Transactional halves are left alone: they are delivered by their commit.
fn route_delayed(state: &BrokerState, mut message: Message) -> Result<Message, DelayError> {
    let transaction = sys_flag::transaction_type(message.sys_flag);
    if transaction == sys_flag::TRANSACTION_PREPARED_TYPE
        || transaction == sys_flag::TRANSACTION_ROLLBACK_TYPE
    {
        return Ok(message);
    }
    let delivery = delay::classify(
        &message.properties,
        now_millis(),
        state.config.timer_max_delay_ms,
        state.delay_level_count,
    )?;
    match delivery {
        Delivery::Now => {
            message.properties.remove(property::TIMER_DELIVER_MS);
            message.properties.remove(property::TIMER_DELAY_SEC);
            Ok(message)
        }
        Delivery::Level(level) => Ok(delay::to_scheduled(message, level, state.delay_level_count)),
        Delivery::Timer(due_ms) => {
            let pending = state.timer_backlog.pending(&state.store);
            let max = state.config.timer_max_pending;
            if pending >= max {
                return Err(DelayError::TimerBacklogFull { pending, max });
            }
            Ok(delay::to_timer(message, due_ms))
        }
    }
}

fn delay_error(e: DelayError) -> RemotingCommand {
    let code = match e {
        DelayError::TimerBacklogFull { .. } => response::SYSTEM_BUSY,
        _ => response::MESSAGE_ILLEGAL,
    };
    RemotingCommand::error(code, e.to_string())
}

fn born_host(conn: &Connection) -> SocketAddr {
    conn.peer_addr()
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

fn respond(status: PutStatus, header: SendMessageResponseHeader) -> RemotingCommand {
    let code = match status {
        PutStatus::Ok => response::SUCCESS,
        PutStatus::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
    };
    // Java clients also read MSG_REGION and TRACE_ON when present; absent, they assume the
    // default region and tracing on, which is what we would send.
    RemotingCommand::response(code, None).with_header(&header)
}

/// Maps a store refusal to the response code RocketMQ clients act on.
pub(super) fn store_error(e: StoreError) -> RemotingCommand {
    let code = match &e {
        StoreError::BodyTooLarge { .. }
        | StoreError::PropertiesTooLarge { .. }
        | StoreError::TopicTooLong { .. }
        | StoreError::TopicEmpty
        | StoreError::TopicInvalidChars { .. }
        | StoreError::InvalidProperty { .. }
        | StoreError::InvalidQueueId(_)
        | StoreError::InvalidBatch { .. }
        | StoreError::BatchTooLarge { .. } => response::MESSAGE_ILLEGAL,
        StoreError::FlushBacklog { .. } => response::SYSTEM_BUSY,
        StoreError::DiskFull { .. } | StoreError::ShuttingDown => response::SERVICE_NOT_AVAILABLE,
        _ => response::SYSTEM_ERROR,
    };
    if code == response::SYSTEM_ERROR {
        tracing::error!(error = %e, "store failed a put");
    }
    RemotingCommand::error(code, e.to_string())
}
