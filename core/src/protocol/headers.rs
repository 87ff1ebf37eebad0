//! Typed request and response headers, with RocketMQ's wire names.

use crate::command_header;

use super::command::ExtFields;
use super::header::{HeaderError, HeaderValue};

command_header! {
    /// SEND_MESSAGE (10) and SEND_BATCH_MESSAGE (320).
    pub struct SendMessageRequestHeader {
        pub producer_group: String = "producerGroup",
        pub topic: String = "topic",
        pub default_topic: Option<String> = "defaultTopic",
        pub default_topic_queue_nums: Option<i32> = "defaultTopicQueueNums",
        pub queue_id: i32 = "queueId",
        pub sys_flag: i32 = "sysFlag",
        pub born_timestamp: i64 = "bornTimestamp",
        pub flag: i32 = "flag",
        pub properties: Option<String> = "properties",
        pub reconsume_times: Option<i32> = "reconsumeTimes",
        pub unit_mode: Option<bool> = "unitMode",
        pub batch: Option<bool> = "batch",
        pub max_reconsume_times: Option<i32> = "maxReconsumeTimes",
        pub broker_name: Option<String> = "bname",
    }
}

impl SendMessageRequestHeader {
    /// Reads the V2 form (SEND_MESSAGE_V2, code 310), whose fields are named `a` … `n` in the
    /// order of the V1 fields. Read straight from the map: this runs for every message sent.
    pub fn read_v2(ext: &ExtFields) -> Result<Self, HeaderError> {
        fn field<T: HeaderValue>(ext: &ExtFields, short: &'static str) -> Result<T, HeaderError> {
            T::parse_field(ext.get(short).map(String::as_str), short)
        }
        Ok(SendMessageRequestHeader {
            producer_group: field(ext, "a")?,
            topic: field(ext, "b")?,
            default_topic: field(ext, "c")?,
            default_topic_queue_nums: field(ext, "d")?,
            queue_id: field(ext, "e")?,
            sys_flag: field(ext, "f")?,
            born_timestamp: field(ext, "g")?,
            flag: field(ext, "h")?,
            properties: field(ext, "i")?,
            reconsume_times: field(ext, "j")?,
            unit_mode: field(ext, "k")?,
            max_reconsume_times: field(ext, "l")?,
            batch: field(ext, "m")?,
            broker_name: field(ext, "n")?,
        })
    }

    /// Writes the V2 form.
    pub fn write_v2(&self, ext: &mut ExtFields) {
        ext.reserve(14);
        let mut put = |short: &str, value: Option<String>| {
            if let Some(value) = value {
                ext.insert(short.to_string(), value);
            }
        };
        put("a", self.producer_group.render_field());
        put("b", self.topic.render_field());
        put("c", self.default_topic.render_field());
        put("d", self.default_topic_queue_nums.render_field());
        put("e", self.queue_id.render_field());
        put("f", self.sys_flag.render_field());
        put("g", self.born_timestamp.render_field());
        put("h", self.flag.render_field());
        put("i", self.properties.render_field());
        put("j", self.reconsume_times.render_field());
        put("k", self.unit_mode.render_field());
        put("l", self.max_reconsume_times.render_field());
        put("m", self.batch.render_field());
        put("n", self.broker_name.render_field());
    }
}

command_header! {
    pub struct SendMessageResponseHeader {
        /// The offset message id (store host + CommitLog offset); comma separated for batches.
        pub msg_id: String = "msgId",
        pub queue_id: i32 = "queueId",
        pub queue_offset: i64 = "queueOffset",
        pub transaction_id: Option<String> = "transactionId",
        /// Tern: `true` when this answers a repeat of an idempotent send (nothing was stored;
        /// the fields are those of the first send). Absent otherwise.
        pub idempotent_replayed: Option<bool> = "idempotentReplayed",
    }
}

command_header! {
    /// PULL_MESSAGE (11).
    pub struct PullMessageRequestHeader {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        pub queue_offset: i64 = "queueOffset",
        pub max_msg_nums: i32 = "maxMsgNums",
        pub sys_flag: i32 = "sysFlag",
        pub commit_offset: i64 = "commitOffset",
        pub suspend_timeout_millis: i64 = "suspendTimeoutMillis",
        pub subscription: Option<String> = "subscription",
        pub sub_version: i64 = "subVersion",
        pub expression_type: Option<String> = "expressionType",
        pub max_msg_bytes: Option<i32> = "maxMsgBytes",
    }
}

/// PULL_MESSAGE `sysFlag` bits.
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 1;
    pub const SUSPEND: i32 = 1 << 1;
    pub const SUBSCRIPTION: i32 = 1 << 2;
    pub const CLASS_FILTER: i32 = 1 << 3;
    pub const LITE_PULL_MESSAGE: i32 = 1 << 4;
}

command_header! {
    pub struct PullMessageResponseHeader {
        pub suggest_which_broker_id: i64 = "suggestWhichBrokerId",
        pub next_begin_offset: i64 = "nextBeginOffset",
        pub min_offset: i64 = "minOffset",
        pub max_offset: i64 = "maxOffset",
    }
}

command_header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        pub set_zero_if_not_found: Option<bool> = "setZeroIfNotFound",
    }
}

command_header! {
    /// The answer to QUERY_CONSUMER_OFFSET, GET_MAX_OFFSET, GET_MIN_OFFSET and
    /// SEARCH_OFFSET_BY_TIMESTAMP.
    pub struct OffsetResponseHeader {
        pub offset: i64 = "offset",
    }
}

command_header! {
    /// UPDATE_CONSUMER_OFFSET (15).
    pub struct UpdateConsumerOffsetRequestHeader {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        pub commit_offset: i64 = "commitOffset",
    }
}

command_header! {
    /// UPDATE_AND_CREATE_TOPIC (17).
    pub struct CreateTopicRequestHeader {
        pub topic: String = "topic",
        pub default_topic: Option<String> = "defaultTopic",
        pub read_queue_nums: i32 = "readQueueNums",
        pub write_queue_nums: i32 = "writeQueueNums",
        pub perm: i32 = "perm",
        pub topic_filter_type: Option<String> = "topicFilterType",
        pub topic_sys_flag: Option<i32> = "topicSysFlag",
        pub order: Option<bool> = "order",
    }
}

command_header! {
    /// GET_MAX_OFFSET (30), GET_MIN_OFFSET (31), GET_EARLIEST_MSG_STORETIME (32).
    pub struct QueueRequestHeader {
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
    }
}

command_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        pub timestamp: i64 = "timestamp",
    }
}

command_header! {
    /// VIEW_MESSAGE_BY_ID (33): `offset` is the CommitLog offset from the offset message id.
    pub struct ViewMessageRequestHeader {
        pub offset: i64 = "offset",
        pub topic: Option<String> = "topic",
    }
}

command_header! {
    /// QUERY_MESSAGE (12).
    pub struct QueryMessageRequestHeader {
        pub topic: String = "topic",
        pub key: String = "key",
        pub max_num: i32 = "maxNum",
        pub begin_timestamp: i64 = "beginTimestamp",
        pub end_timestamp: i64 = "endTimestamp",
    }
}

command_header! {
    pub struct QueryMessageResponseHeader {
        pub index_last_update_timestamp: i64 = "indexLastUpdateTimestamp",
        pub index_last_update_phyoffset: i64 = "indexLastUpdatePhyoffset",
    }
}

command_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38) and NOTIFY_CONSUMER_IDS_CHANGED (40).
    pub struct ConsumerGroupRequestHeader {
        pub consumer_group: String = "consumerGroup",
    }
}

command_header! {
    /// UNREGISTER_CLIENT (35).
    pub struct UnregisterClientRequestHeader {
        pub client_id: String = "clientID",
        pub producer_group: Option<String> = "producerGroup",
        pub consumer_group: Option<String> = "consumerGroup",
    }
}

command_header! {
    /// REGISTER_BROKER (103).
    pub struct RegisterBrokerRequestHeader {
        pub broker_name: String = "brokerName",
        pub broker_addr: String = "brokerAddr",
        pub cluster_name: String = "clusterName",
        pub ha_server_addr: String = "haServerAddr",
        pub broker_id: i64 = "brokerId",
        pub heartbeat_timeout_millis: Option<i64> = "heartbeatTimeoutMillis",
        pub compressed: Option<bool> = "compressed",
        pub body_crc32: Option<i32> = "bodyCrc32",
    }
}

command_header! {
    pub struct RegisterBrokerResponseHeader {
        pub ha_server_addr: Option<String> = "haServerAddr",
        pub master_addr: Option<String> = "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104).
    pub struct UnregisterBrokerRequestHeader {
        pub broker_name: String = "brokerName",
        pub broker_addr: String = "brokerAddr",
        pub cluster_name: String = "clusterName",
        pub broker_id: i64 = "brokerId",
    }
}

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    pub struct TopicRequestHeader {
        pub topic: String = "topic",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216): RocketMQ 5's header; without `clusterName` the topic leaves
    /// every broker group's route.
    pub struct DeleteTopicFromNamesrvRequestHeader {
        pub topic: String = "topic",
        pub cluster_name: Option<String> = "clusterName",
    }
}

command_header! {
    /// CONSUMER_SEND_MSG_BACK (36): a classic consumer hands a message it failed to consume back
    /// to the broker, which stores a copy in `%RETRY%<group>` (or `%DLQ%<group>`).
    pub struct ConsumerSendMsgBackRequestHeader {
        /// CommitLog offset of the message (from its offset message id).
        pub offset: i64 = "offset",
        pub group: String = "group",
        /// 0: the broker picks `3 + reconsumeTimes`; < 0: straight to the dead-letter queue.
        pub delay_level: i32 = "delayLevel",
        pub origin_msg_id: Option<String> = "originMsgId",
        pub origin_topic: Option<String> = "originTopic",
        pub unit_mode: Option<bool> = "unitMode",
        pub max_reconsume_times: Option<i32> = "maxReconsumeTimes",
    }
}

command_header! {
    /// POP_MESSAGE (200050).
    pub struct PopMessageRequestHeader {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        /// A queue, or -1 for "any queue of this topic on this broker".
        pub queue_id: i32 = "queueId",
        pub max_msg_nums: i32 = "maxMsgNums",
        /// How long popped messages stay invisible to other pops, in ms.
        pub invisible_time: i64 = "invisibleTime",
        /// How long the pop may wait for a message, in ms (0: answer at once).
        pub poll_time: i64 = "pollTime",
        pub born_time: i64 = "bornTime",
        /// Where a group without an offset starts: 0 the first message, 1 the end of the queue.
        pub init_mode: i32 = "initMode",
        /// "TAG" (the only filter type served) and the tag expression.
        pub exp_type: Option<String> = "expType",
        pub exp: Option<String> = "exp",
        /// FIFO: one in-flight batch per queue.
        pub order: Option<bool> = "order",
        pub attempt_id: Option<String> = "attemptId",
    }
}

command_header! {
    pub struct PopMessageResponseHeader {
        pub pop_time: i64 = "popTime",
        pub invisible_time: i64 = "invisibleTime",
        pub revive_qid: i32 = "reviveQid",
        /// Messages left in the queues that were looked at.
        pub rest_num: i64 = "restNum",
        pub start_offset_info: Option<String> = "startOffsetInfo",
        pub msg_offset_info: Option<String> = "msgOffsetInfo",
        pub order_count_info: Option<String> = "orderCountInfo",
    }
}

command_header! {
    /// ACK_MESSAGE (200051).
    pub struct AckMessageRequestHeader {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        /// The receipt handle (the popped message's `POP_CK` property).
        pub extra_info: String = "extraInfo",
        pub offset: i64 = "offset",
    }
}

command_header! {
    /// CHANGE_MESSAGE_INVISIBLETIME (200053).
    pub struct ChangeInvisibleTimeRequestHeader {
        pub consumer_group: String = "consumerGroup",
        pub topic: String = "topic",
        pub queue_id: i32 = "queueId",
        pub extra_info: String = "extraInfo",
        pub offset: i64 = "offset",
        /// From now, in ms.
        pub invisible_time: i64 = "invisibleTime",
    }
}

command_header! {
    pub struct ChangeInvisibleTimeResponseHeader {
        pub pop_time: i64 = "popTime",
        pub invisible_time: i64 = "invisibleTime",
        pub revive_qid: i32 = "reviveQid",
        /// Tern: the new receipt handle (RocketMQ clients rebuild it from the fields above).
        pub extra_info: Option<String> = "extraInfo",
    }
}

command_header! {
    /// DELETE_SUBSCRIPTIONGROUP (207).
    pub struct DeleteSubscriptionGroupRequestHeader {
        pub group_name: String = "groupName",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CommandHeader;

    #[test]
    fn v2_short_names_carry_the_same_header() {
        let header = SendMessageRequestHeader {
            producer_group: "pg".into(),
            topic: "t".into(),
            default_topic: Some("TBW102".into()),
            default_topic_queue_nums: Some(4),
            queue_id: 3,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 7,
            properties: Some("TAGS\u{1}a\u{2}".into()),
            reconsume_times: Some(1),
            unit_mode: Some(false),
            batch: Some(true),
            max_reconsume_times: Some(16),
            broker_name: Some("broker-a".into()),
        };
        let mut v2 = ExtFields::default();
        header.write_v2(&mut v2);
        assert_eq!(v2.len(), 14);
        assert_eq!(v2["b"], "t");
        assert_eq!(v2["m"], "true");
        assert_eq!(SendMessageRequestHeader::read_v2(&v2).unwrap(), header);
        let mut v1 = ExtFields::default();
        header.write_to(&mut v1);
        assert_eq!(v1["maxReconsumeTimes"], v2["l"]);
        assert_eq!(SendMessageRequestHeader::read_from(&v1).unwrap(), header);
        v2.remove("b");
        assert_eq!(
            SendMessageRequestHeader::read_v2(&v2),
            Err(HeaderError::Missing("b"))
        );
    }
}
