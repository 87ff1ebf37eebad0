//! [`Admin`]: what tools and the gateway need besides producing and consuming: the broker groups,
//! topics (create, delete, list), queue and consumer-group offsets (lag, resets) and message
//! lookups by id or key.
//!
//! Built like [`PullConsumer`]: a [`RouteCache`] with its refresher and one pooled
//! [`RemotingClient`], used for NameServers and brokers alike. The per-queue offset calls are
//! PullConsumer's own, over the same pool and cache.
//!
//! Every method returns [`ClientError`], and everything a peer answers is bounded before it is
//! used: at most [`MAX_BROKER_GROUPS`] groups, [`MAX_LISTED_TOPICS`] topics and
//! [`MAX_QUERY_RESULTS`](crate::store::MAX_QUERY_RESULTS) records per lookup answer; a larger answer is a decoding error rather
//! than a silently shortened list.
//!
//! # Topic changes and the routes
//!
//! A broker re-registers with every NameServer as soon as its topic table changes (not only every
//! `register_interval_ms`), and a master's registration replaces its group's queue data on a Tern
//! NameServer. So after [`Admin::create_topic`] or [`Admin::delete_topic`] changed every master,
//! the routes follow within one registration round trip; both methods then poll every NameServer
//! until its route shows the change, for at most [`ROUTE_PROPAGATION_TIMEOUT`]. A NameServer
//! that does not answer is not waited for: the broker's next registration brings it up to date.
//!
//! Deletion also sends DELETE_TOPIC_IN_NAMESRV to every NameServer, as RocketMQ's
//! `mqadmin deleteTopic` does: a Java NameServer keeps queue data that a broker's registration no
//! longer lists, so without it the route would outlive the topic there. On a Tern NameServer it
//! changes nothing the re-registration would not (see `RouteTable::delete_topic` in
//! `tern-namesrv`: it never hides a topic a live broker still serves).

mod lookup;
mod offsets;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::task::JoinHandle;

use crate::protocol::body::{
    ClusterInfo, SubscriptionGroupConfig, SubscriptionGroupWrapper, TopicList, TopicRouteData,
    decode_json, encode_json,
};
use crate::protocol::codes::{perm, request, response};
use crate::protocol::headers::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, TopicRequestHeader,
};
use crate::protocol::{RemotingClient, RemotingCommand};

use super::config::ClientConfig;
use super::error::ClientError;
use super::message::check_topic;
use super::producer::check_group;
use super::pull::PullConsumer;
use super::route::{
    MAX_BROKERS_PER_ROUTE, MAX_QUEUES_PER_BROKER, RouteCache, TopicRoute, decode_fastjson,
    decode_route,
};

pub use offsets::{GroupQueueOffset, QueueOffsets, ResetTarget};

/// Most topic names [`Admin::topics`] accepts from a NameServer.
pub const MAX_LISTED_TOPICS: usize = 100_000;
/// Most broker groups [`Admin::brokers`] accepts from a NameServer.
pub const MAX_BROKER_GROUPS: usize = MAX_BROKERS_PER_ROUTE;
/// How long [`Admin::create_topic`] and [`Admin::delete_topic`] wait for the NameServers' routes
/// to show the change.
pub const ROUTE_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two looks at the routes while waiting.
const ROUTE_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The group the inner [`PullConsumer`] is made with; the offset calls name their group
/// explicitly, so it is never sent.
const ADMIN_GROUP: &str = "TERN_ADMIN";
/// The template topic RocketMQ's admin tools name in UPDATE_AND_CREATE_TOPIC (a Java broker
/// requires the field).
const DEFAULT_TOPIC: &str = "TBW102";

/// Cluster lookups and administration. Every method takes `&self`; one `Admin` (in an `Arc`)
/// serves any number of concurrent calls.
pub struct Admin {
    config: ClientConfig,
    remoting: Arc<RemotingClient>,
    routes: Arc<RouteCache>,
    /// Queue and consumer offsets, over `remoting` and `routes`.
    queues: PullConsumer,
    /// Set when this `Admin` created its pool and cache (and so closes them).
    refresher: Option<JoinHandle<()>>,
    /// The NameServer asked first: the last one that answered.
    namesrv_current: AtomicUsize,
}

impl Admin {
    /// Must be called inside a Tokio runtime: it starts the route refresher.
    pub fn new(config: ClientConfig) -> Result<Admin, ClientError> {
        config.validate()?;
        let (routes, refresher) = RouteCache::start(&config);
        let mut admin = Admin::with_parts(config, Arc::new(RemotingClient::new()), routes)?;
        admin.refresher = Some(refresher);
        Ok(admin)
    }

    /// An `Admin` over an existing connection pool and route cache (whose owner refreshes and
    /// closes them).
    pub fn with_parts(
        config: ClientConfig,
        remoting: Arc<RemotingClient>,
        routes: Arc<RouteCache>,
    ) -> Result<Admin, ClientError> {
        let queues = PullConsumer::with_parts(
            config.clone(),
            ADMIN_GROUP,
            remoting.clone(),
            routes.clone(),
        )?;
        Ok(Admin {
            config,
            remoting,
            routes,
            queues,
            refresher: None,
            namesrv_current: AtomicUsize::new(0),
        })
    }

    pub fn routes(&self) -> &Arc<RouteCache> {
        &self.routes
    }

    /// Every broker group the NameServers know (GET_BROKER_CLUSTER_INFO, from the first
    /// NameServer that answers): broker name → member addresses by broker id (0 = master).
    pub async fn brokers(&self) -> Result<BTreeMap<String, BTreeMap<i64, String>>, ClientError> {
        let (addr, resp) = self
            .namesrv_call(|| RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO))
            .await?;
        broker_groups(&addr, &resp)
    }

    /// Every topic with a route (GET_ALL_TOPIC_LIST_FROM_NAMESERVER, from the first NameServer
    /// that answers), sorted; system, retry and dead-letter topics included.
    pub async fn topics(&self) -> Result<Vec<String>, ClientError> {
        let (addr, resp) = self
            .namesrv_call(|| RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER))
            .await?;
        let decode_error = |reason: String| ClientError::Decode {
            what: "TopicList",
            addr: addr.clone(),
            reason,
        };
        let list: TopicList = decode_json(&resp.body).map_err(decode_error)?;
        if list.topic_list.len() > MAX_LISTED_TOPICS {
            return Err(decode_error(format!(
                "{} topics, at most {MAX_LISTED_TOPICS} are accepted",
                list.topic_list.len()
            )));
        }
        Ok(list.topic_list.into_iter().collect())
    }

    /// Creates `topic`, or updates it, on every registered master (UPDATE_AND_CREATE_TOPIC) with
    /// `queues` read and write queues (1..=1024) and permission `perm` (RocketMQ's bits: 4 read,
    /// 2 write, 1 inherit; 6 = read-write), then waits until every NameServer that answers routes
    /// it that way (see the [module docs](self)). The masters are those any NameServer that
    /// answers knows. A master that refused leaves the others changed, and
    /// [`ClientError::Timeout`] means every master has the topic but a NameServer did not show it
    /// in time: calling again is safe either way.
    pub async fn create_topic(
        &self,
        topic: &str,
        queues: i32,
        perm: i32,
    ) -> Result<(), ClientError> {
        check_topic_arg(topic)?;
        if !(1..=MAX_QUEUES_PER_BROKER).contains(&queues) {
            return Err(ClientError::InvalidArgument(format!(
                "queues must be 1..={MAX_QUEUES_PER_BROKER}, got {queues}"
            )));
        }
        if perm < 0 || perm & !(perm::READ | perm::WRITE | perm::INHERIT) != 0 {
            return Err(ClientError::InvalidArgument(format!(
                "perm {perm} has bits other than read (4), write (2) and inherit (1)"
            )));
        }
        let masters = self.masters().await?;
        let header = CreateTopicRequestHeader {
            topic: topic.to_string(),
            default_topic: Some(DEFAULT_TOPIC.into()),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            topic_filter_type: Some("SINGLE_TAG".into()),
            topic_sys_flag: Some(0),
            order: Some(false),
        };
        self.on_every_master(&masters, || {
            RemotingCommand::request_with(request::UPDATE_AND_CREATE_TOPIC, &header)
        })
        .await?;
        self.await_routes(topic, "topic creation", |route| {
            route.is_some_and(|route| {
                masters.iter().all(|(name, _)| {
                    route.queue_datas.iter().any(|q| {
                        &q.broker_name == name
                            && q.read_queue_nums == queues
                            && q.write_queue_nums == queues
                            && q.perm == perm
                    })
                })
            })
        })
        .await?;
        self.reload_route(topic).await;
        Ok(())
    }

    /// Deletes `topic` from every registered master (DELETE_TOPIC_IN_BROKER) and from every
    /// NameServer (DELETE_TOPIC_IN_NAMESRV), then waits until no NameServer that answers routes
    /// it (see the [module docs](self)). Stored messages stay until retention removes their
    /// CommitLog segments; consumer offsets of the topic are kept. Deleting a topic that does not
    /// exist succeeds. Failures leave what was done done, as for [`Self::create_topic`].
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        check_topic_arg(topic)?;
        let masters = self.masters().await?;
        let header = TopicRequestHeader {
            topic: topic.to_string(),
        };
        self.on_every_master(&masters, || {
            RemotingCommand::request_with(request::DELETE_TOPIC_IN_BROKER, &header)
        })
        .await?;
        let header = DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_string(),
            cluster_name: None,
        };
        let calls = self.config.namesrv_addrs.iter().map(|addr| {
            let req = RemotingCommand::request_with(request::DELETE_TOPIC_IN_NAMESRV, &header);
            async move {
                match self
                    .remoting
                    .invoke(addr, req, self.config.request_timeout)
                    .await
                {
                    // A NameServer without the request relies on the brokers' registrations.
                    Ok(resp)
                        if resp.code == response::SUCCESS
                            || resp.code == response::REQUEST_CODE_NOT_SUPPORTED =>
                    {
                        Ok(())
                    }
                    Ok(resp) => Err(ClientError::NameServer {
                        addr: addr.clone(),
                        code: resp.code,
                        remark: resp.remark_or_empty().to_string(),
                    }),
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "NameServer unreachable; it learns from the brokers");
                        Ok(())
                    }
                }
            }
        });
        join_all(calls)
            .await
            .into_iter()
            .collect::<Result<(), _>>()?;
        self.await_routes(topic, "topic deletion", |route| route.is_none())
            .await?;
        self.reload_route(topic).await;
        Ok(())
    }

    /// After a topic change, reads its route into the cache at once (a deleted topic's is
    /// dropped). A route only marked stale is still served for up to a second: a send right
    /// after a delete would follow the deleted topic's route (and a broker that creates topics
    /// would bring it back with its own defaults), one right after an update would spread
    /// ordering keys over the old queue count. When the read fails, the route is marked stale.
    async fn reload_route(&self, topic: &str) {
        match self.routes.refresh(topic).await {
            Ok(_) | Err(ClientError::NoRoute { .. }) => {}
            Err(e) => {
                tracing::debug!(topic, error = %e, "route reload after a topic change failed");
                self.routes.mark_stale(topic);
            }
        }
    }

    /// Creates or updates a consumer group's settings (FIFO, retries) on every registered master
    /// (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP), so the group behaves the same on every broker
    /// whichever topics it consumes. A master registered later gets default settings until this
    /// is called again.
    pub async fn configure_group(
        &self,
        config: &SubscriptionGroupConfig,
    ) -> Result<(), ClientError> {
        check_group_arg(&config.group_name)?;
        let masters = self.masters().await?;
        if masters.is_empty() {
            return Err(ClientError::NoBrokerAddress {
                broker_name: "*".into(),
            });
        }
        let body = encode_json(config);
        self.on_every_master(&masters, || {
            RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
                .with_body(body.clone())
        })
        .await
    }

    /// Every consumer group's settings, as one master holds them (GET_ALL_SUBSCRIPTIONGROUP_CONFIG;
    /// [`Self::configure_group`] writes the same settings to every master). Groups never
    /// configured are absent: they run with the defaults.
    pub async fn group_configs(
        &self,
    ) -> Result<BTreeMap<String, SubscriptionGroupConfig>, ClientError> {
        let masters = self.masters().await?;
        let Some((_, addr)) = masters.iter().next() else {
            return Err(ClientError::NoBrokerAddress {
                broker_name: "*".into(),
            });
        };
        let resp = self
            .broker_call(
                addr,
                RemotingCommand::request(request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG),
            )
            .await?;
        let wrapper: SubscriptionGroupWrapper =
            decode_json(&resp.body).map_err(|reason| ClientError::Decode {
                what: "subscription group table",
                addr: addr.clone(),
                reason,
            })?;
        Ok(wrapper.subscription_group_table)
    }

    /// Closes every connection and stops the route refresher, if this `Admin` owns them.
    pub fn shutdown(&self) {
        let Some(refresher) = &self.refresher else {
            return;
        };
        refresher.abort();
        self.remoting.close_all();
        self.routes.close();
    }

    /// The topic's route, from the cache or the NameServers.
    async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>, ClientError> {
        check_topic_arg(topic)?;
        self.routes.route(topic).await
    }

    /// Every registered master, as (broker name, address): the union of what every NameServer
    /// that answers knows, so that a NameServer that missed a registration (it restarted, say)
    /// cannot hide a master from a topic change.
    async fn masters(&self) -> Result<BTreeSet<(String, String)>, ClientError> {
        let asks = self.config.namesrv_addrs.iter().map(|addr| async move {
            let req = RemotingCommand::request(request::GET_BROKER_CLUSTER_INFO);
            let resp = self
                .remoting
                .invoke(addr, req, self.config.request_timeout)
                .await?;
            if resp.code != response::SUCCESS {
                return Err(ClientError::NameServer {
                    addr: addr.clone(),
                    code: resp.code,
                    remark: resp.remark_or_empty().to_string(),
                });
            }
            broker_groups(addr, &resp)
        });
        let mut masters = BTreeSet::new();
        let mut answered = false;
        let mut last_error = None;
        for answer in join_all(asks).await {
            match answer {
                Ok(groups) => {
                    answered = true;
                    masters.extend(
                        groups
                            .into_iter()
                            .filter_map(|(name, mut addrs)| Some((name, addrs.remove(&0)?))),
                    );
                }
                Err(e) => last_error = Some(e),
            }
        }
        if !answered && let Some(e) = last_error {
            return Err(e);
        }
        if masters.is_empty() {
            return Err(ClientError::NoBrokerAddress {
                broker_name: "(no master is registered with the NameServers)".into(),
            });
        }
        Ok(masters)
    }

    /// Sends a request to every master address once, all at once; the first refusal or failure
    /// is the error, once every call finished.
    async fn on_every_master(
        &self,
        masters: &BTreeSet<(String, String)>,
        make: impl Fn() -> RemotingCommand,
    ) -> Result<(), ClientError> {
        let addrs: BTreeSet<&String> = masters.iter().map(|(_, addr)| addr).collect();
        let calls = addrs.into_iter().map(|addr| self.broker_call(addr, make()));
        join_all(calls)
            .await
            .into_iter()
            .try_for_each(|r| r.map(|_| ()))
    }

    /// One request to a broker; anything but SUCCESS is an error.
    async fn broker_call(
        &self,
        addr: &str,
        req: RemotingCommand,
    ) -> Result<RemotingCommand, ClientError> {
        let resp = self
            .remoting
            .invoke(addr, req, self.config.request_timeout)
            .await?;
        if resp.code != response::SUCCESS {
            return Err(broker_error(addr, &resp));
        }
        Ok(resp)
    }

    /// Asks the NameServers in turn, from the last one that answered, until one answers SUCCESS.
    async fn namesrv_call(
        &self,
        make: impl Fn() -> RemotingCommand,
    ) -> Result<(String, RemotingCommand), ClientError> {
        let addrs = &self.config.namesrv_addrs;
        let n = addrs.len();
        let start = self.namesrv_current.load(Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..n {
            let index = (start + i) % n;
            let addr = &addrs[index];
            match self
                .remoting
                .invoke(addr, make(), self.config.request_timeout)
                .await
            {
                Ok(resp) if resp.code == response::SUCCESS => {
                    self.namesrv_current.store(index, Ordering::Relaxed);
                    return Ok((addr.clone(), resp));
                }
                Ok(resp) => {
                    last_error = Some(ClientError::NameServer {
                        addr: addr.clone(),
                        code: resp.code,
                        remark: resp.remark_or_empty().to_string(),
                    })
                }
                Err(e) => {
                    self.namesrv_current
                        .store((index + 1) % n, Ordering::Relaxed);
                    last_error = Some(e.into());
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| ClientError::InvalidConfig("namesrv_addrs is empty".into())))
    }

    /// The topic's route on one NameServer, `None` when it has none.
    async fn namesrv_route(
        &self,
        addr: &str,
        topic: &str,
    ) -> Result<Option<TopicRouteData>, ClientError> {
        let req = RemotingCommand::request_with(
            request::GET_ROUTEINFO_BY_TOPIC,
            &TopicRequestHeader {
                topic: topic.to_string(),
            },
        );
        let resp = self
            .remoting
            .invoke(addr, req, self.config.request_timeout)
            .await?;
        match resp.code {
            response::SUCCESS => {
                decode_route(&resp.body)
                    .map(Some)
                    .map_err(|reason| ClientError::Decode {
                        what: "TopicRouteData",
                        addr: addr.to_string(),
                        reason,
                    })
            }
            response::TOPIC_NOT_EXIST => Ok(None),
            code => Err(ClientError::NameServer {
                addr: addr.to_string(),
                code,
                remark: resp.remark_or_empty().to_string(),
            }),
        }
    }

    /// Polls every NameServer until each one that answers has a route of `topic` that `done`
    /// accepts (`None`: no route), for at most [`ROUTE_PROPAGATION_TIMEOUT`].
    async fn await_routes(
        &self,
        topic: &str,
        operation: &'static str,
        done: impl Fn(Option<&TopicRouteData>) -> bool,
    ) -> Result<(), ClientError> {
        let deadline = Instant::now() + ROUTE_PROPAGATION_TIMEOUT;
        loop {
            let looks = self
                .config
                .namesrv_addrs
                .iter()
                .map(|addr| self.namesrv_route(addr, topic));
            let mut answered = 0;
            let mut all_done = true;
            let mut last_error = None;
            for look in join_all(looks).await {
                match look {
                    Ok(route) => {
                        answered += 1;
                        all_done &= done(route.as_ref());
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if answered > 0 && all_done {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(match last_error {
                    Some(e) if answered == 0 => e,
                    _ => ClientError::Timeout {
                        operation,
                        after: ROUTE_PROPAGATION_TIMEOUT,
                    },
                });
            }
            tokio::time::sleep(ROUTE_POLL_INTERVAL).await;
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("namesrv_addrs", &self.config.namesrv_addrs)
            .finish_non_exhaustive()
    }
}

fn broker_error(addr: &str, resp: &RemotingCommand) -> ClientError {
    ClientError::Broker {
        addr: addr.to_string(),
        code: resp.code,
        remark: resp.remark_or_empty().to_string(),
    }
}

/// The broker groups of a GET_BROKER_CLUSTER_INFO answer: name → addresses by broker id.
fn broker_groups(
    addr: &str,
    resp: &RemotingCommand,
) -> Result<BTreeMap<String, BTreeMap<i64, String>>, ClientError> {
    let decode_error = |reason: String| ClientError::Decode {
        what: "ClusterInfo",
        addr: addr.to_string(),
        reason,
    };
    let info: ClusterInfo = decode_fastjson(&resp.body).map_err(decode_error)?;
    if info.broker_addr_table.len() > MAX_BROKER_GROUPS {
        return Err(decode_error(format!(
            "{} broker groups, at most {MAX_BROKER_GROUPS} are accepted",
            info.broker_addr_table.len()
        )));
    }
    Ok(info
        .broker_addr_table
        .into_iter()
        .map(|(name, data)| (name, data.broker_addrs))
        .collect())
}

/// A topic argument: what a producer may name (an error about the argument, not a message).
fn check_topic_arg(topic: &str) -> Result<(), ClientError> {
    check_topic(topic).map_err(|e| match e {
        ClientError::InvalidMessage(reason) => ClientError::InvalidArgument(reason),
        e => e,
    })
}

/// A group argument.
fn check_group_arg(group: &str) -> Result<(), ClientError> {
    check_group(group).map_err(|e| match e {
        ClientError::InvalidConfig(reason) => ClientError::InvalidArgument(reason),
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_before_any_call() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Nothing listens there: a call that got past the checks would fail differently.
            let admin = Admin::new(ClientConfig::new(["127.0.0.1:1"])).unwrap();
            let invalid = |r: Result<(), ClientError>| {
                assert!(matches!(r, Err(ClientError::InvalidArgument(_))), "{r:?}");
            };
            invalid(admin.create_topic("a b", 4, 6).await);
            invalid(admin.create_topic("T", 0, 6).await);
            invalid(admin.create_topic("T", 1025, 6).await);
            invalid(admin.create_topic("T", 4, 8).await);
            invalid(admin.create_topic("T", 4, -1).await);
            invalid(admin.delete_topic("").await);
            invalid(admin.queue_offsets("x/y").await.map(|_| ()));
            invalid(admin.group_offsets("g g", "T").await.map(|_| ()));
            invalid(
                admin
                    .reset_group_offsets("g", "T", ResetTarget::Timestamp(-1))
                    .await
                    .map(|_| ()),
            );
            invalid(admin.message_by_id("T", "").await.map(|_| ()));
            invalid(admin.message_by_id("T", "a\u{1}b").await.map(|_| ()));
            invalid(admin.messages_by_key("T", "a b", 0, 1, 1).await.map(|_| ()));
            invalid(admin.messages_by_key("T", "k", 2, 1, 1).await.map(|_| ()));
            assert_eq!(admin.messages_by_key("T", "k", 0, 1, 0).await, Ok(vec![]));
            // Past the checks, an unreachable NameServer is a remoting error.
            assert!(matches!(
                admin.topics().await,
                Err(ClientError::Remoting(_))
            ));
            admin.shutdown();
        });
    }
}
