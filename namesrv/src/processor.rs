//! The NameServer's request handler: decodes each request, asks the [`RouteTable`], encodes the
//! answer.
//!
//! Nothing a peer sends can make it panic: a header or body that does not decode, a checksum that
//! does not match or a registration over a limit is answered SYSTEM_ERROR with the reason as the
//! remark (RocketMQ's brokers log the remark), and an unknown request code is answered
//! REQUEST_CODE_NOT_SUPPORTED. The work is synchronous ([`NamesrvProcessor::process`]), so it is
//! tested without a socket; [`RequestHandler`] puts it on one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_core::protocol::body::{RegisterBrokerBody, TopicList, decode_json, encode_json};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::{
    DeleteTopicFromNamesrvRequestHeader, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
    TopicRequestHeader, UnregisterBrokerRequestHeader,
};
use tern_core::protocol::{Connection, HeaderError, RemotingCommand, RequestHandler};

use crate::config::MAX_INTERVAL_MS;
use crate::route_table::{BrokerRegistration, RouteError, RouteTable};

/// Shortest per-broker timeout a registration may ask for: a broker asking for less would be
/// dropped between two of its own registrations.
pub const MIN_BROKER_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a request was refused; the text becomes the response's remark.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("{0}")]
    Body(String),
    /// RocketMQ's own remark, so that its brokers' logs read the same.
    #[error("crc32 not match: header says {expected}, body has {actual}")]
    Crc32 { expected: i32, actual: i32 },
    #[error(
        "compressed registration bodies are not supported; set compressedRegister=false on the broker"
    )]
    Compressed,
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Serves the NameServer's requests from one shared [`RouteTable`].
pub struct NamesrvProcessor {
    routes: Arc<RouteTable>,
    broker_timeout: Duration,
}

impl NamesrvProcessor {
    /// `broker_timeout` applies to brokers that do not ask for their own.
    pub fn new(routes: Arc<RouteTable>, broker_timeout: Duration) -> NamesrvProcessor {
        NamesrvProcessor {
            routes,
            broker_timeout,
        }
    }

    pub fn routes(&self) -> &Arc<RouteTable> {
        &self.routes
    }

    /// Answers one request. `connection_id` is the connection it arrived on: a broker registered
    /// over it is dropped when it closes.
    pub fn process(&self, connection_id: Option<u64>, req: &RemotingCommand) -> RemotingCommand {
        let outcome = match req.code {
            request::REGISTER_BROKER => self.register_broker(connection_id, req),
            request::UNREGISTER_BROKER => self.unregister_broker(req),
            request::GET_ROUTEINFO_BY_TOPIC => self.topic_route(req),
            request::GET_BROKER_CLUSTER_INFO => {
                Ok(RemotingCommand::success().with_body(encode_json(&self.routes.cluster_info())))
            }
            request::DELETE_TOPIC_IN_NAMESRV => self.delete_topic(req),
            request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => {
                let list = TopicList {
                    topic_list: self.routes.topic_list(),
                    broker_addr: None,
                };
                Ok(RemotingCommand::success().with_body(encode_json(&list)))
            }
            code => Ok(RemotingCommand::error(
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!("request code {code} is not supported by the NameServer"),
            )),
        };
        outcome.unwrap_or_else(|e| {
            tracing::warn!(code = req.code, error = %e, "request refused");
            RemotingCommand::error(response::SYSTEM_ERROR, e.to_string())
        })
    }

    fn register_broker(
        &self,
        connection_id: Option<u64>,
        req: &RemotingCommand,
    ) -> Result<RemotingCommand, RequestError> {
        let header: RegisterBrokerRequestHeader = req.header()?;
        check_crc(header.body_crc32, &req.body)?;
        let topics = if req.body.is_empty() {
            None
        } else if header.compressed == Some(true) {
            return Err(RequestError::Compressed);
        } else {
            let body: RegisterBrokerBody = decode_json(&req.body).map_err(RequestError::Body)?;
            Some(body.topic_config_serialize_wrapper)
        };
        let timeout = match header.heartbeat_timeout_millis {
            Some(ms) if ms > 0 => Duration::from_millis(ms.unsigned_abs().min(MAX_INTERVAL_MS))
                .max(MIN_BROKER_TIMEOUT),
            _ => self.broker_timeout,
        };
        let registration = BrokerRegistration {
            cluster_name: header.cluster_name,
            broker_name: header.broker_name,
            broker_addr: header.broker_addr,
            broker_id: header.broker_id,
            ha_server_addr: header.ha_server_addr,
            topics,
            connection_id,
            timeout,
        };
        let result = self.routes.register(registration, Instant::now())?;
        Ok(
            RemotingCommand::success().with_header(&RegisterBrokerResponseHeader {
                ha_server_addr: result.ha_server_addr,
                master_addr: result.master_addr,
            }),
        )
    }

    fn unregister_broker(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: UnregisterBrokerRequestHeader = req.header()?;
        // Answered SUCCESS either way, like RocketMQ: the broker is gone from the routes after it.
        self.routes
            .unregister(&header.broker_name, &header.broker_addr);
        Ok(RemotingCommand::success())
    }

    /// Answered SUCCESS whether or not the topic had a route, like RocketMQ.
    fn delete_topic(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: DeleteTopicFromNamesrvRequestHeader = req.header()?;
        let cluster = header.cluster_name.as_deref().filter(|c| !c.is_empty());
        self.routes.delete_topic(&header.topic, cluster);
        Ok(RemotingCommand::success())
    }

    fn topic_route(&self, req: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: TopicRequestHeader = req.header()?;
        Ok(match self.routes.topic_route(&header.topic) {
            Some(route) => RemotingCommand::success().with_body(encode_json(&route)),
            None => RemotingCommand::error(
                response::TOPIC_NOT_EXIST,
                format!(
                    "No topic route info in name server for the topic: {}",
                    header.topic
                ),
            ),
        })
    }
}

/// Checks `bodyCrc32` (0 or absent: not checked). RocketMQ's `UtilAll.crc32` clears the sign bit
/// of the CRC; a peer that sends the full CRC-32 is accepted as well.
fn check_crc(expected: Option<i32>, body: &[u8]) -> Result<(), RequestError> {
    let Some(expected) = expected.filter(|c| *c != 0) else {
        return Ok(());
    };
    let crc = crc32fast::hash(body);
    let masked = (crc & 0x7FFF_FFFF) as i32;
    if expected == masked || expected == crc as i32 {
        Ok(())
    } else {
        Err(RequestError::Crc32 {
            expected,
            actual: masked,
        })
    }
}

impl RequestHandler for NamesrvProcessor {
    async fn handle(&self, conn: Connection, request: RemotingCommand) -> Option<RemotingCommand> {
        Some(self.process(Some(conn.id()), &request))
    }

    fn connection_closed(&self, conn: &Connection) {
        self.routes.connection_closed(conn.id());
    }
}

#[cfg(test)]
mod tests {
    use tern_core::protocol::body::{ClusterInfo, TopicConfig, TopicRouteData};
    use tern_core::protocol::codes::perm;

    use super::*;

    fn processor() -> NamesrvProcessor {
        NamesrvProcessor::new(Arc::new(RouteTable::new()), Duration::from_secs(120))
    }

    fn register_request(
        name: &str,
        addr: &str,
        id: i64,
        body: &RegisterBrokerBody,
    ) -> RemotingCommand {
        let body = encode_json(body);
        let header = RegisterBrokerRequestHeader {
            broker_name: name.into(),
            broker_addr: addr.into(),
            cluster_name: "c".into(),
            ha_server_addr: format!("{addr}-ha"),
            broker_id: id,
            heartbeat_timeout_millis: None,
            compressed: Some(false),
            body_crc32: Some((crc32fast::hash(&body) & 0x7FFF_FFFF) as i32),
        };
        RemotingCommand::request_with(request::REGISTER_BROKER, &header).with_body(body)
    }

    fn body(topics: &[&str]) -> RegisterBrokerBody {
        let mut body = RegisterBrokerBody::default();
        for t in topics {
            body.topic_config_serialize_wrapper
                .topic_config_table
                .insert(
                    t.to_string(),
                    TopicConfig::new(*t, 4, perm::READ | perm::WRITE),
                );
        }
        body
    }

    fn route_request(topic: &str) -> RemotingCommand {
        RemotingCommand::request_with(
            request::GET_ROUTEINFO_BY_TOPIC,
            &TopicRequestHeader {
                topic: topic.into(),
            },
        )
    }

    #[test]
    fn registers_and_answers_routes() {
        let p = processor();
        let resp = p.process(Some(1), &register_request("a", "h:1", 0, &body(&["t"])));
        assert_eq!(resp.code, response::SUCCESS, "{:?}", resp.remark);
        let resp = p.process(None, &route_request("t"));
        assert_eq!(resp.code, response::SUCCESS);
        let route: TopicRouteData = decode_json(&resp.body).unwrap();
        assert_eq!(route.queue_datas[0].read_queue_nums, 4);
        let resp = p.process(
            None,
            &RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO),
        );
        let info: ClusterInfo = decode_json(&resp.body).unwrap();
        assert_eq!(info.cluster_addr_table["c"].len(), 1);
        let resp = p.process(
            None,
            &RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER),
        );
        assert_eq!(&resp.body[..], br#"{"topicList":["t"]}"#);
    }

    #[test]
    fn deletes_a_topic_from_the_routes() {
        let p = processor();
        assert!(
            p.process(
                Some(1),
                &register_request("a", "h:1", 0, &body(&["t", "u"]))
            )
            .is_success()
        );
        let delete = |topic: &str| {
            RemotingCommand::request_with(
                request::DELETE_TOPIC_IN_NAMESRV,
                &DeleteTopicFromNamesrvRequestHeader {
                    topic: topic.into(),
                    cluster_name: None,
                },
            )
        };
        assert!(p.process(None, &delete("t")).is_success());
        assert_eq!(
            p.process(None, &route_request("t")).code,
            response::TOPIC_NOT_EXIST
        );
        assert!(p.process(None, &route_request("u")).is_success());
        // Unknown topic: still SUCCESS; no topic field: the reason.
        assert!(p.process(None, &delete("t")).is_success());
        let resp = p.process(
            None,
            &RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV),
        );
        assert_eq!(resp.code, response::SYSTEM_ERROR);
        assert!(resp.remark_or_empty().contains("topic"));
    }

    #[test]
    fn the_full_crc_is_accepted_and_a_wrong_one_refused() {
        let p = processor();
        let mut req = register_request("a", "h:1", 0, &body(&["t"]));
        req.ext_fields.insert(
            "bodyCrc32".into(),
            (crc32fast::hash(&req.body) as i32).to_string(),
        );
        assert!(p.process(None, &req).is_success());
        req.ext_fields.insert("bodyCrc32".into(), "12345".into());
        let resp = p.process(None, &req);
        assert_eq!(resp.code, response::SYSTEM_ERROR);
        assert!(resp.remark_or_empty().starts_with("crc32 not match"));
    }

    #[test]
    fn bad_input_is_a_system_error_with_the_reason() {
        let p = processor();
        let mut no_name = register_request("a", "h:1", 0, &body(&[]));
        no_name.ext_fields.remove("brokerName");
        let mut bad_id = register_request("a", "h:1", 0, &body(&[]));
        bad_id.ext_fields.insert("brokerId".into(), "zero".into());
        let mut bad_body =
            register_request("a", "h:1", 0, &body(&[])).with_body(b"{not json".to_vec());
        bad_body.ext_fields.remove("bodyCrc32");
        let mut compressed = register_request("a", "h:1", 0, &body(&[]));
        compressed
            .ext_fields
            .insert("compressed".into(), "true".into());
        let cases = [
            (no_name, "brokerName"),
            (bad_id, "brokerId"),
            (bad_body, "malformed"),
            (compressed, "compressed"),
            (
                RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC),
                "topic",
            ),
            (
                RemotingCommand::request(request::UNREGISTER_BROKER),
                "brokerName",
            ),
        ];
        for (req, needle) in cases {
            let resp = p.process(None, &req);
            assert_eq!(resp.code, response::SYSTEM_ERROR, "{needle}");
            assert!(resp.remark_or_empty().contains(needle), "{:?}", resp.remark);
        }
        assert!(p.routes().live_brokers().is_empty());
    }

    #[test]
    fn unknown_codes_and_topics() {
        let p = processor();
        let resp = p.process(None, &RemotingCommand::request(9999));
        assert_eq!(resp.code, response::REQUEST_CODE_NOT_SUPPORTED);
        assert!(resp.remark_or_empty().contains("9999"));
        let resp = p.process(None, &route_request("nope"));
        assert_eq!(resp.code, response::TOPIC_NOT_EXIST);
        assert_eq!(
            resp.remark_or_empty(),
            "No topic route info in name server for the topic: nope"
        );
    }

    #[test]
    fn a_broker_may_ask_for_its_own_timeout_within_bounds() {
        let p = processor();
        for (asked, got) in [
            ("5000", Duration::from_secs(5)),
            ("1", MIN_BROKER_TIMEOUT),
            ("0", Duration::from_secs(120)),
            ("99999999999", Duration::from_millis(MAX_INTERVAL_MS)),
        ] {
            let mut req = register_request("a", "h:1", 0, &body(&[]));
            req.ext_fields
                .insert("heartbeatTimeoutMillis".into(), asked.into());
            assert!(p.process(None, &req).is_success());
            assert_eq!(p.routes().live_brokers()[0].timeout, got, "{asked}");
        }
    }
}
