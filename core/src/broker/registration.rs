//! Registration with the NameServers: at start, every `register_interval_ms`, whenever the topic
//! table changes, and an unregistration at shutdown.
//!
//! Each NameServer is independent (they never talk to each other), so the broker registers with
//! every one, concurrently, and one that is down does not delay the others.

use std::time::Duration;

use futures_util::future::join_all;

use crate::protocol::body::{RegisterBrokerBody, encode_json};
use crate::protocol::codes::request;
use crate::protocol::headers::{RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
use crate::protocol::{RemotingClient, RemotingCommand};

use super::state::BrokerState;

/// The HA address: broker port + 1 (reference §7).
pub(crate) fn ha_addr(addr: &str) -> String {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(mut sock) => {
            sock.set_port(sock.port().wrapping_add(1));
            sock.to_string()
        }
        Err(_) => addr.to_string(),
    }
}

/// Registers with every NameServer once; returns how many accepted.
pub(crate) async fn register_all(state: &BrokerState, client: &RemotingClient) -> usize {
    let body = encode_json(&RegisterBrokerBody {
        topic_config_serialize_wrapper: state.topics.snapshot(),
        filter_server_list: Vec::new(),
    });
    let header = RegisterBrokerRequestHeader {
        broker_name: state.config.broker_name.clone(),
        broker_addr: state.addr.clone(),
        cluster_name: state.config.cluster_name.clone(),
        ha_server_addr: ha_addr(&state.addr),
        broker_id: state.config.broker_id,
        heartbeat_timeout_millis: None,
        compressed: Some(false),
        // RocketMQ's `UtilAll.crc32` clears the top bit; a Java NameServer compares with that.
        body_crc32: Some((crc32fast::hash(&body) & 0x7FFF_FFFF) as i32),
    };
    let timeout = Duration::from_millis(state.config.register_timeout_ms);
    let calls = state.config.namesrv_addrs.iter().map(|addr| {
        let command = RemotingCommand::request_with(request::REGISTER_BROKER, &header)
            .with_body(body.clone());
        async move {
            match client.invoke(addr, command, timeout).await {
                Ok(resp) if resp.is_success() => true,
                Ok(resp) => {
                    tracing::warn!(namesrv = %addr, code = resp.code, remark = resp.remark_or_empty(), "registration refused");
                    false
                }
                Err(e) => {
                    tracing::warn!(namesrv = %addr, error = %e, "registration failed");
                    false
                }
            }
        }
    });
    let results = join_all(calls).await;
    results.into_iter().filter(|ok| *ok).count()
}

/// Tells every NameServer that this broker is leaving.
pub(crate) async fn unregister_all(state: &BrokerState, client: &RemotingClient) {
    let header = UnregisterBrokerRequestHeader {
        broker_name: state.config.broker_name.clone(),
        broker_addr: state.addr.clone(),
        cluster_name: state.config.cluster_name.clone(),
        broker_id: state.config.broker_id,
    };
    let timeout = Duration::from_millis(state.config.register_timeout_ms.min(3_000));
    let calls = state.config.namesrv_addrs.iter().map(|addr| {
        let command = RemotingCommand::request_with(request::UNREGISTER_BROKER, &header);
        async move {
            if let Err(e) = client.invoke(addr, command, timeout).await {
                tracing::debug!(namesrv = %addr, error = %e, "unregistration failed");
            }
        }
    });
    join_all(calls).await;
}
