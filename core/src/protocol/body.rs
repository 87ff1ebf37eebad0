//! JSON bodies exchanged between NameServer, broker and clients, with RocketMQ's field names.
//!
//! Every field has a default so that a peer of another version that leaves one out is still
//! understood; map keys that are numbers in Java (broker ids) are written as JSON strings, which
//! both RocketMQ's Java parser and serde accept.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::codes::perm;

/// One broker's share of a topic (in a route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueData {
    pub broker_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    pub topic_sys_flag: i32,
}

/// A broker group: its name, cluster and the address of each member by broker id (0 = master).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerData {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addrs: BTreeMap<i64, String>,
    /// RocketMQ 5's "a slave may act as master" switch; always written because some clients
    /// require the field.
    pub enable_acting_master: bool,
}

impl BrokerData {
    /// The master's address, if the master is registered.
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&0).map(String::as_str)
    }
}

/// The answer to GET_ROUTEINFO_BY_TOPIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicRouteData {
    pub order_topic_conf: Option<String>,
    pub queue_datas: Vec<QueueData>,
    pub broker_datas: Vec<BrokerData>,
    pub filter_server_table: HashMap<String, Vec<String>>,
}

/// The answer to GET_BROKER_CLUSTER_INFO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterInfo {
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// A topic's configuration, as brokers persist and register it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfig {
    pub topic_name: String,
    pub read_queue_nums: i32,
    pub write_queue_nums: i32,
    pub perm: i32,
    pub topic_filter_type: String,
    pub topic_sys_flag: i32,
    pub order: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            topic_name: String::new(),
            read_queue_nums: 16,
            write_queue_nums: 16,
            perm: perm::READ | perm::WRITE,
            topic_filter_type: "SINGLE_TAG".into(),
            topic_sys_flag: 0,
            order: false,
        }
    }
}

impl TopicConfig {
    pub fn new(name: impl Into<String>, queues: i32, perm: i32) -> TopicConfig {
        TopicConfig {
            topic_name: name.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            ..TopicConfig::default()
        }
    }
}

/// A version stamp for a table: changes whenever the table does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct DataVersion {
    pub timestamp: i64,
    pub counter: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicConfigSerializeWrapper {
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    pub data_version: DataVersion,
}

/// The body of REGISTER_BROKER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RegisterBrokerBody {
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    pub filter_server_list: Vec<String>,
}

/// The answer to GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206): every topic a NameServer has a route
/// for. `brokerAddr` is only set when a broker answers with its own topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicList {
    pub topic_list: BTreeSet<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_addr: Option<String>,
}

/// A producer group a client belongs to (in a heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    pub group_name: String,
}

/// A topic subscription of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    pub class_filter_mode: bool,
    pub topic: String,
    pub sub_string: String,
    pub tags_set: BTreeSet<String>,
    pub code_set: BTreeSet<i32>,
    pub sub_version: i64,
    pub expression_type: String,
}

impl Default for SubscriptionData {
    fn default() -> Self {
        SubscriptionData {
            class_filter_mode: false,
            topic: String::new(),
            sub_string: "*".into(),
            tags_set: BTreeSet::new(),
            code_set: BTreeSet::new(),
            sub_version: 0,
            expression_type: "TAG".into(),
        }
    }
}

/// A consumer group a client belongs to (in a heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    pub group_name: String,
    /// `CONSUME_ACTIVELY` (pull) or `CONSUME_PASSIVELY` (push).
    pub consume_type: String,
    /// `CLUSTERING` or `BROADCASTING`.
    pub message_model: String,
    pub consume_from_where: String,
    pub subscription_data_set: Vec<SubscriptionData>,
    pub unit_mode: bool,
}

impl Default for ConsumerData {
    fn default() -> Self {
        ConsumerData {
            group_name: String::new(),
            consume_type: "CONSUME_ACTIVELY".into(),
            message_model: "CLUSTERING".into(),
            consume_from_where: "CONSUME_FROM_LAST_OFFSET".into(),
            subscription_data_set: Vec::new(),
            unit_mode: false,
        }
    }
}

/// The body of HEART_BEAT (34).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct HeartbeatData {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(rename = "producerDataSet")]
    pub producer_data_set: Vec<ProducerData>,
    #[serde(rename = "consumerDataSet")]
    pub consumer_data_set: Vec<ConsumerData>,
}

/// The answer to GET_CONSUMER_LIST_BY_GROUP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerListBody {
    pub consumer_id_list: Vec<String>,
}

/// A queue as RocketMQ's `MessageQueue` serializes it (in lock bodies).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueueData {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

/// The body of LOCK_BATCH_MQ (41): lock these queues for `clientId` in `consumerGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct LockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    /// RocketMQ 5: `false` asks the broker to also lock on the other replicas of its group.
    /// Tern has no replicas yet, so both values lock here only.
    pub only_this_broker: bool,
    pub mq_set: Vec<MessageQueueData>,
}

/// The answer to LOCK_BATCH_MQ: the queues the client holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet")]
    pub lock_ok_mq_set: Vec<MessageQueueData>,
}

/// The body of UNLOCK_BATCH_MQ (42).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct UnlockBatchRequestBody {
    pub consumer_group: String,
    pub client_id: String,
    pub only_this_broker: bool,
    pub mq_set: Vec<MessageQueueData>,
}

/// Decodes a JSON body, naming the body type in the error.
pub fn decode_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("malformed {} body: {e}", std::any::type_name::<T>()))
}

/// Encodes a JSON body.
pub fn encode_json<T: Serialize>(value: &T) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(value).expect("protocol bodies always serialize"))
}

/// A consumer group's settings (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, `subscriptionGroup.json`).
/// RocketMQ's fields; the ones Tern acts on are documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupConfig {
    pub group_name: String,
    /// A disabled group's pops and pulls are refused.
    pub consume_enable: bool,
    pub consume_from_min_enable: bool,
    pub consume_broadcast_enable: bool,
    /// FIFO: pops deliver one in-flight batch per queue, in queue order.
    pub consume_message_orderly: bool,
    pub retry_queue_nums: i32,
    /// Deliveries after the first before a message goes to `%DLQ%<group>`.
    pub retry_max_times: i32,
    pub broker_id: i64,
    pub which_broker_when_consume_slowly: i64,
    pub notify_consumer_ids_changed_enable: bool,
    pub group_sys_flag: i32,
    pub consume_timeout_minute: i32,
    /// RocketMQ 5's retry policy: the delay before redelivering a message handed back without
    /// one (applied by the gateway to pop nacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_retry_policy: Option<super::retry_policy::GroupRetryPolicy>,
}

impl SubscriptionGroupConfig {
    /// RocketMQ's defaults for a group named `group`.
    pub fn new(group: impl Into<String>) -> SubscriptionGroupConfig {
        SubscriptionGroupConfig {
            group_name: group.into(),
            ..SubscriptionGroupConfig::default()
        }
    }
}

impl Default for SubscriptionGroupConfig {
    fn default() -> Self {
        SubscriptionGroupConfig {
            group_name: String::new(),
            consume_enable: true,
            consume_from_min_enable: true,
            consume_broadcast_enable: true,
            consume_message_orderly: false,
            retry_queue_nums: 1,
            retry_max_times: 16,
            broker_id: 0,
            which_broker_when_consume_slowly: 1,
            notify_consumer_ids_changed_enable: true,
            group_sys_flag: 0,
            consume_timeout_minute: 15,
            group_retry_policy: None,
        }
    }
}

/// The answer to GET_ALL_SUBSCRIPTIONGROUP_CONFIG.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionGroupWrapper {
    pub subscription_group_table: BTreeMap<String, SubscriptionGroupConfig>,
    pub data_version: DataVersion,
}

/// Most acks one TERN_BATCH_ACK carries.
pub const MAX_BATCH_ACKS: usize = 1024;

/// TERN_BATCH_ACK's request body: deliveries of one group and topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchAckRequestBody {
    pub consumer_group: String,
    pub topic: String,
    pub acks: Vec<BatchAckEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchAckEntry {
    pub queue_id: i32,
    pub offset: i64,
    /// The receipt handle.
    pub extra_info: String,
}

/// TERN_BATCH_ACK's response body: a response code per ack, in request order (SUCCESS, or
/// RECEIPT_HANDLE_STALE for a delivery that is no longer current).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchAckResponseBody {
    pub codes: Vec<i32>,
}
