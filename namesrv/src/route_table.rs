//! The route registry: which brokers are alive, which broker groups serve which topics.
//!
//! Four tables, kept consistent with each other behind one lock (a registration touches all of
//! them, and a reader must never see a topic whose broker group is half gone):
//!
//! - topics: topic → queue data per broker name (what a GET_ROUTEINFO_BY_TOPIC answers);
//! - brokers: broker name → [`BrokerData`] (cluster, broker id → address);
//! - clusters: cluster name → broker names;
//! - live: broker address → when it last registered, its data version, the connection it
//!   registered over and its HA address.
//!
//! Invariants (checked by `check_invariants` in the unit tests after every step):
//! every address in a `BrokerData` has exactly one live entry with the same broker name and id and
//! vice versa; no `BrokerData` is empty; a broker name is in exactly the cluster its `BrokerData`
//! names; every queue data belongs to a broker name that has a `BrokerData`; no topic is empty.
//! So dropping the last address of a broker group removes the group from every table at once.
//!
//! The logic is synchronous and takes the current [`Instant`] as an argument, so it is tested
//! without sockets or sleeping; [`crate::processor`] and [`crate::server`] put it on the network.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tern_core::protocol::body::{
    BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfigSerializeWrapper, TopicRouteData,
};
use tern_core::store::MAX_TOPIC_LEN;

/// Most broker addresses registered at once. A registration from a new address beyond it is
/// refused: an unbounded table would let any peer grow the NameServer's memory without limit.
pub const MAX_BROKERS: usize = 1024;
/// Most topics one registration may list (RocketMQ brokers hold a few thousand at most).
pub const MAX_TOPICS_PER_REGISTRATION: usize = 100_000;
/// Longest cluster name, broker name or address accepted.
pub const MAX_NAME_LEN: usize = 255;
/// The broker id of a group's master; every other id is a slave.
pub const MASTER_ID: i64 = 0;

/// A registration the table refuses (answered with SYSTEM_ERROR and this text as the remark).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{field} {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("too many brokers: this NameServer holds at most {limit} broker addresses")]
    TooManyBrokers { limit: usize },
    #[error("registration lists {count} topics; at most {limit} are accepted")]
    TooManyTopics { count: usize, limit: usize },
}

/// One REGISTER_BROKER, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerRegistration {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_addr: String,
    pub broker_id: i64,
    pub ha_server_addr: String,
    /// The broker's topic table. `None` (a registration without a body) is a pure heartbeat: the
    /// broker's routes stay as they are. `Some` with an empty table means "no topics".
    pub topics: Option<TopicConfigSerializeWrapper>,
    /// The connection the registration arrived on; when it closes, the broker is dropped.
    pub connection_id: Option<u64>,
    /// How long the broker may stay silent before it is dropped.
    pub timeout: Duration,
}

impl BrokerRegistration {
    /// Checks every field and limit before anything is changed.
    pub fn validate(&self) -> Result<(), RouteError> {
        check_name("clusterName", &self.cluster_name, MAX_NAME_LEN)?;
        check_name("brokerName", &self.broker_name, MAX_NAME_LEN)?;
        check_name("brokerAddr", &self.broker_addr, MAX_NAME_LEN)?;
        if !self.ha_server_addr.is_empty() {
            check_name("haServerAddr", &self.ha_server_addr, MAX_NAME_LEN)?;
        }
        if self.broker_id < 0 {
            return Err(RouteError::InvalidField {
                field: "brokerId",
                reason: format!("must be >= 0, not {}", self.broker_id),
            });
        }
        if let Some(wrapper) = &self.topics {
            let count = wrapper.topic_config_table.len();
            if count > MAX_TOPICS_PER_REGISTRATION {
                return Err(RouteError::TooManyTopics {
                    count,
                    limit: MAX_TOPICS_PER_REGISTRATION,
                });
            }
            for topic in wrapper.topic_config_table.keys() {
                check_name("topic", topic, MAX_TOPIC_LEN)?;
            }
        }
        Ok(())
    }
}

fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), RouteError> {
    let reason = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > max {
        format!("is {} bytes long; at most {max} are accepted", value.len())
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    let shown: String = value.chars().take(64).collect();
    Err(RouteError::InvalidField {
        field,
        reason: format!("`{}` {reason}", shown.escape_debug()),
    })
}

/// What a registering broker learns: for a slave, where its master is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterResult {
    pub master_addr: Option<String>,
    pub ha_server_addr: Option<String>,
}

/// Why a broker address left the table (logged with every drop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// No registration within the broker's timeout.
    Expired {
        silent_for: Duration,
        timeout: Duration,
    },
    /// The connection it registered over closed.
    ConnectionClosed { connection_id: u64 },
    /// It sent UNREGISTER_BROKER.
    Unregistered,
    /// Another address registered with the same broker name and id.
    Replaced { by: String },
    /// The same address registered under another broker name.
    Renamed { broker_name: String },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Expired {
                silent_for,
                timeout,
            } => write!(
                f,
                "no registration for {} ms (timeout {} ms)",
                silent_for.as_millis(),
                timeout.as_millis()
            ),
            DropReason::ConnectionClosed { connection_id } => {
                write!(f, "its connection {connection_id} closed")
            }
            DropReason::Unregistered => f.write_str("it unregistered"),
            DropReason::Replaced { by } => write!(f, "{by} registered with the same name and id"),
            DropReason::Renamed { broker_name } => {
                write!(f, "the address re-registered as broker `{broker_name}`")
            }
        }
    }
}

/// A registered broker address, as [`RouteTable::live_brokers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub broker_addr: String,
    pub broker_name: String,
    pub broker_id: i64,
    pub last_update: Instant,
    pub timeout: Duration,
    pub data_version: DataVersion,
    pub connection_id: Option<u64>,
    pub ha_server_addr: String,
}

#[derive(Default)]
struct Tables {
    topics: HashMap<String, BTreeMap<String, QueueData>>,
    brokers: HashMap<String, BrokerData>,
    clusters: HashMap<String, BTreeSet<String>>,
    live: HashMap<String, LiveBroker>,
}

/// The NameServer's route registry. Cheap to share behind an `Arc`; every method takes the one
/// lock for a short, bounded time (no I/O under it).
#[derive(Default)]
pub struct RouteTable {
    tables: Mutex<Tables>,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // Every update validates before it mutates and nothing under the lock panics by design;
        // should a bug panic anyway, serving the tables beats refusing every later request.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers (or refreshes) a broker. A master's topic table replaces the group's queue
    /// data: topics it no longer lists lose the group. A slave never changes queue data. As in
    /// RocketMQ, a master whose data version is the one it registered last time is only
    /// refreshed: its topics cannot have changed without the version changing.
    pub fn register(
        &self,
        registration: BrokerRegistration,
        now: Instant,
    ) -> Result<RegisterResult, RouteError> {
        registration.validate()?;
        self.lock().register(registration, now)
    }

    /// Drops `broker_addr` if it is registered as a member of `broker_name`; returns whether it
    /// was. An unregistration from an address that has since joined another group is ignored.
    pub fn unregister(&self, broker_name: &str, broker_addr: &str) -> bool {
        let mut tables = self.lock();
        match tables.live.get(broker_addr) {
            Some(live) if live.broker_name == broker_name => {
                tables.drop_addr(broker_addr, DropReason::Unregistered)
            }
            Some(live) => {
                tracing::debug!(
                    broker_addr,
                    broker_name,
                    registered_as = %live.broker_name,
                    "unregistration for another broker name ignored"
                );
                false
            }
            None => false,
        }
    }

    /// DELETE_TOPIC_IN_NAMESRV: removes `topic`'s queue data of every broker group, or of the
    /// groups of `cluster` only; returns how many groups lost it.
    ///
    /// Tern's brokers re-register as soon as their topic table changes, and a master's table
    /// replaces its group's queue data, so a topic deleted on its brokers leaves the routes without
    /// this request; it exists for admin tools that send it (RocketMQ's `mqadmin deleteTopic`,
    /// `client::Admin`). The NameServer mirrors the brokers' tables, so it must not hide a topic a
    /// broker still serves: the data version remembered for each affected master is forgotten,
    /// and that master's next registration applies its whole table again (a broker that still
    /// has the topic puts it back within one registration interval).
    pub fn delete_topic(&self, topic: &str, cluster: Option<&str>) -> usize {
        let mut tables = self.lock();
        let Tables {
            topics,
            brokers,
            live,
            ..
        } = &mut *tables;
        let Some(queues) = topics.get_mut(topic) else {
            return 0;
        };
        let removed: Vec<String> = queues
            .keys()
            .filter(|name| {
                cluster.is_none_or(|c| brokers.get(*name).is_some_and(|data| data.cluster == c))
            })
            .cloned()
            .collect();
        for name in &removed {
            queues.remove(name);
            if let Some(master) = brokers.get(name).and_then(BrokerData::master_addr)
                && let Some(entry) = live.get_mut(master)
            {
                entry.data_version = DataVersion::default();
            }
        }
        if queues.is_empty() {
            topics.remove(topic);
        }
        if !removed.is_empty() {
            tracing::info!(topic, ?cluster, groups = ?removed, "topic deleted from the routes");
        }
        removed.len()
    }

    /// Drops every broker that registered over connection `connection_id`; returns how many.
    pub fn connection_closed(&self, connection_id: u64) -> usize {
        let mut tables = self.lock();
        let addrs: Vec<String> = tables
            .live
            .values()
            .filter(|l| l.connection_id == Some(connection_id))
            .map(|l| l.broker_addr.clone())
            .collect();
        for addr in &addrs {
            tables.drop_addr(addr, DropReason::ConnectionClosed { connection_id });
        }
        addrs.len()
    }

    /// Drops every broker silent for longer than its timeout at `now`; returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut tables = self.lock();
        let expired: Vec<(String, DropReason)> = tables
            .live
            .values()
            .filter_map(|l| {
                let silent_for = now.saturating_duration_since(l.last_update);
                (silent_for > l.timeout).then(|| {
                    let reason = DropReason::Expired {
                        silent_for,
                        timeout: l.timeout,
                    };
                    (l.broker_addr.clone(), reason)
                })
            })
            .collect();
        for (addr, reason) in &expired {
            tables.drop_addr(addr, reason.clone());
        }
        expired.len()
    }

    /// The route of `topic`: its queue data per broker group and those groups' members, both in
    /// broker-name order. `None` when no live broker group serves it.
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let tables = self.lock();
        let queues = tables.topics.get(topic)?;
        let broker_datas: Vec<BrokerData> = queues
            .keys()
            .filter_map(|name| tables.brokers.get(name).cloned())
            .collect();
        if queues.is_empty() || broker_datas.is_empty() {
            return None;
        }
        Some(TopicRouteData {
            queue_datas: queues.values().cloned().collect(),
            broker_datas,
            ..TopicRouteData::default()
        })
    }

    /// Every broker group and cluster (GET_BROKER_CLUSTER_INFO).
    pub fn cluster_info(&self) -> ClusterInfo {
        let tables = self.lock();
        ClusterInfo {
            broker_addr_table: tables
                .brokers
                .iter()
                .map(|(name, data)| (name.clone(), data.clone()))
                .collect(),
            cluster_addr_table: tables
                .clusters
                .iter()
                .map(|(name, members)| (name.clone(), members.clone()))
                .collect(),
        }
    }

    /// Every topic with a route.
    pub fn topic_list(&self) -> BTreeSet<String> {
        self.lock().topics.keys().cloned().collect()
    }

    /// Every registered broker address, in address order.
    pub fn live_brokers(&self) -> Vec<LiveBroker> {
        let mut brokers: Vec<LiveBroker> = self.lock().live.values().cloned().collect();
        brokers.sort_by(|a, b| a.broker_addr.cmp(&b.broker_addr));
        brokers
    }

    /// Panics if the tables contradict each other (see the module docs).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.lock().check_invariants();
    }
}

impl Tables {
    fn register(
        &mut self,
        reg: BrokerRegistration,
        now: Instant,
    ) -> Result<RegisterResult, RouteError> {
        let BrokerRegistration {
            cluster_name,
            broker_name,
            broker_addr,
            broker_id,
            ha_server_addr,
            topics,
            connection_id,
            timeout,
        } = reg;
        let previous = self
            .live
            .get(&broker_addr)
            .map(|l| (l.broker_name.clone(), l.broker_id, l.data_version.clone()));
        if previous.is_none() && self.live.len() >= MAX_BROKERS {
            return Err(RouteError::TooManyBrokers { limit: MAX_BROKERS });
        }
        let mut topics_unchanged = false;
        match previous {
            None => tracing::info!(
                broker_addr,
                broker_name,
                broker_id,
                cluster = cluster_name,
                "broker registered"
            ),
            Some((old_name, _, _)) if old_name != broker_name => {
                self.drop_addr(
                    &broker_addr,
                    DropReason::Renamed {
                        broker_name: broker_name.clone(),
                    },
                );
            }
            Some((_, old_id, _)) if old_id != broker_id => {
                // Same group, new role (a slave promoted or a master demoted): the address moves
                // to its new id. RocketMQ keeps one entry per address per group too.
                if let Some(data) = self.brokers.get_mut(&broker_name)
                    && data.broker_addrs.get(&old_id) == Some(&broker_addr)
                {
                    data.broker_addrs.remove(&old_id);
                }
                tracing::info!(
                    broker_addr,
                    broker_name,
                    old_id,
                    broker_id,
                    "broker changed its id"
                );
            }
            Some((_, _, old_version)) => {
                topics_unchanged = topics
                    .as_ref()
                    .is_some_and(|w| w.data_version == old_version);
            }
        }

        let data = self
            .brokers
            .entry(broker_name.clone())
            .or_insert_with(|| BrokerData {
                cluster: cluster_name.clone(),
                broker_name: broker_name.clone(),
                ..BrokerData::default()
            });
        if data.cluster != cluster_name {
            let old_cluster = std::mem::replace(&mut data.cluster, cluster_name.clone());
            tracing::info!(
                broker_name,
                old_cluster,
                cluster = cluster_name,
                "broker group moved to another cluster"
            );
            remove_from_cluster(&mut self.clusters, &old_cluster, &broker_name);
        }
        self.clusters
            .entry(cluster_name)
            .or_default()
            .insert(broker_name.clone());
        if let Some(old_addr) = data.broker_addrs.insert(broker_id, broker_addr.clone())
            && old_addr != broker_addr
        {
            // The old address lost its place to this one; it stays no member of anything.
            if let Some(old) = self.live.remove(&old_addr) {
                log_drop(
                    &old,
                    &data.cluster,
                    false,
                    &DropReason::Replaced {
                        by: broker_addr.clone(),
                    },
                );
            }
        }
        let master_addr = data.broker_addrs.get(&MASTER_ID).cloned();

        let mut data_version = previous_version(&self.live, &broker_addr);
        if let Some(wrapper) = topics {
            if broker_id == MASTER_ID && !topics_unchanged {
                apply_topics(&mut self.topics, &broker_name, &wrapper);
            }
            data_version = wrapper.data_version;
        }
        self.live.insert(
            broker_addr.clone(),
            LiveBroker {
                broker_addr: broker_addr.clone(),
                broker_name,
                broker_id,
                last_update: now,
                timeout,
                data_version,
                connection_id,
                ha_server_addr,
            },
        );

        if broker_id == MASTER_ID {
            return Ok(RegisterResult::default());
        }
        // A slave learns where its master is, and where to replicate from, once the master is
        // registered (RocketMQ answers nothing until then either).
        Ok(match master_addr {
            Some(master) => RegisterResult {
                ha_server_addr: self
                    .live
                    .get(&master)
                    .map(|l| l.ha_server_addr.clone())
                    .filter(|a| !a.is_empty()),
                master_addr: Some(master),
            },
            None => RegisterResult::default(),
        })
    }

    /// Removes `addr` from every table; a group left without members goes with it.
    fn drop_addr(&mut self, addr: &str, reason: DropReason) -> bool {
        let Some(live) = self.live.remove(addr) else {
            return false;
        };
        let mut cluster = String::new();
        let mut group_removed = false;
        if let Some(data) = self.brokers.get_mut(&live.broker_name) {
            data.broker_addrs.retain(|_, a| a != addr);
            cluster = data.cluster.clone();
            if data.broker_addrs.is_empty() {
                self.brokers.remove(&live.broker_name);
                self.topics.retain(|_, queues| {
                    queues.remove(&live.broker_name);
                    !queues.is_empty()
                });
                remove_from_cluster(&mut self.clusters, &cluster, &live.broker_name);
                group_removed = true;
            }
        }
        log_drop(&live, &cluster, group_removed, &reason);
        true
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        for (name, data) in &self.brokers {
            assert_eq!(&data.broker_name, name);
            assert!(!data.broker_addrs.is_empty(), "group {name} is empty");
            assert!(
                self.clusters
                    .get(&data.cluster)
                    .is_some_and(|m| m.contains(name)),
                "group {name} missing from cluster {}",
                data.cluster
            );
            for (id, addr) in &data.broker_addrs {
                let live = self.live.get(addr).expect("member without a live entry");
                assert_eq!((&live.broker_name, live.broker_id), (name, *id));
            }
        }
        for (addr, live) in &self.live {
            assert_eq!(&live.broker_addr, addr);
            let data = self
                .brokers
                .get(&live.broker_name)
                .expect("live entry without a group");
            assert_eq!(data.broker_addrs.get(&live.broker_id), Some(addr));
        }
        for (cluster, members) in &self.clusters {
            assert!(!members.is_empty(), "cluster {cluster} is empty");
            for name in members {
                assert_eq!(&self.brokers[name].cluster, cluster);
            }
        }
        for (topic, queues) in &self.topics {
            assert!(!queues.is_empty(), "topic {topic} is empty");
            for (name, queue) in queues {
                assert_eq!(&queue.broker_name, name);
                assert!(
                    self.brokers.contains_key(name),
                    "{topic} served by gone {name}"
                );
            }
        }
    }
}

fn previous_version(live: &HashMap<String, LiveBroker>, addr: &str) -> DataVersion {
    live.get(addr)
        .map(|l| l.data_version.clone())
        .unwrap_or_default()
}

/// Makes `broker_name`'s queue data exactly what `wrapper` lists.
fn apply_topics(
    topics: &mut HashMap<String, BTreeMap<String, QueueData>>,
    broker_name: &str,
    wrapper: &TopicConfigSerializeWrapper,
) {
    let table = &wrapper.topic_config_table;
    for (topic, config) in table {
        // The map key is the topic's name; a config's own `topicName` is not trusted over it.
        topics.entry(topic.clone()).or_default().insert(
            broker_name.to_string(),
            QueueData {
                broker_name: broker_name.to_string(),
                read_queue_nums: config.read_queue_nums,
                write_queue_nums: config.write_queue_nums,
                perm: config.perm,
                topic_sys_flag: config.topic_sys_flag,
            },
        );
    }
    let mut stale = 0usize;
    topics.retain(|topic, queues| {
        if !table.contains_key(topic) && queues.remove(broker_name).is_some() {
            stale += 1;
        }
        !queues.is_empty()
    });
    if stale > 0 {
        tracing::info!(
            broker_name,
            stale,
            "broker no longer lists some topics; their queue data is removed"
        );
    }
}

fn remove_from_cluster(
    clusters: &mut HashMap<String, BTreeSet<String>>,
    cluster: &str,
    broker_name: &str,
) {
    if let Some(members) = clusters.get_mut(cluster) {
        members.remove(broker_name);
        if members.is_empty() {
            clusters.remove(cluster);
        }
    }
}

fn log_drop(live: &LiveBroker, cluster: &str, group_removed: bool, reason: &DropReason) {
    tracing::info!(
        broker_addr = %live.broker_addr,
        broker_name = %live.broker_name,
        broker_id = live.broker_id,
        cluster,
        group_removed,
        %reason,
        "broker dropped"
    );
}

#[cfg(test)]
mod tests;
