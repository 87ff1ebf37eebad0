//! Topic routes: which broker holds which queues of a topic, cached from the NameServers.
//!
//! A [`TopicRoute`] turns the NameServer's `TopicRouteData` into the two lists clients work with:
//! write queues (where a producer may send) and read queues (what a consumer group divides among
//! its members). Both are sorted by (brokerName, queueId) because every client of a group must
//! derive the same list from the same route: ordering keys pick `queues[hash % n]` and rebalance
//! cuts the list into ranges. The [`RouteCache`] keeps one route per topic, refreshes them in the
//! background and re-fetches one on demand after a failure marked it stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::protocol::body::{TopicRouteData, decode_json};
use crate::protocol::codes::{perm, request, response};
use crate::protocol::headers::TopicRequestHeader;
use crate::protocol::{RemotingClient, RemotingCommand};

use super::client_id::random_u64;
use super::config::ClientConfig;
use super::error::ClientError;

/// Queues per broker taken from a route at most (the broker's own per-topic limit).
pub const MAX_QUEUES_PER_BROKER: i32 = 1024;
/// Broker groups taken from a route at most.
pub const MAX_BROKERS_PER_ROUTE: usize = 1024;
/// Topics a cache holds at most; the least recently used route is dropped beyond it.
pub const MAX_CACHED_TOPICS: usize = 10_000;
/// A stale route is fetched again at most this often, so a NameServer outage does not turn every
/// send into a NameServer call.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(1);

/// One queue of a topic on one broker group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

impl MessageQueue {
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: i32) -> Self {
        MessageQueue {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

impl std::fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.topic, self.broker_name, self.queue_id)
    }
}

/// A topic's route, digested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRoute {
    pub topic: String,
    /// Queues a producer may send to: brokers whose queue data is writable and whose master
    /// (id 0) is registered, sorted by (brokerName, queueId).
    pub write_queues: Vec<MessageQueue>,
    /// Queues a consumer may read: brokers whose queue data is readable, sorted. Like RocketMQ,
    /// this does not depend on which broker members are up, so every client of a group computes
    /// the same list.
    pub read_queues: Vec<MessageQueue>,
    /// Broker name → address of each member by broker id (0 = master).
    pub brokers: BTreeMap<String, BTreeMap<i64, String>>,
}

impl TopicRoute {
    /// Digests a NameServer answer. Counts are clamped to the limits above and duplicate broker
    /// names are ignored after their first entry, so a malformed route cannot make the client
    /// allocate without bound.
    pub fn from_data(topic: &str, data: &TopicRouteData) -> TopicRoute {
        let mut brokers: BTreeMap<String, BTreeMap<i64, String>> = BTreeMap::new();
        for broker in data.broker_datas.iter().take(MAX_BROKERS_PER_ROUTE) {
            brokers
                .entry(broker.broker_name.clone())
                .or_insert_with(|| broker.broker_addrs.clone());
        }
        let mut write_queues = Vec::new();
        let mut read_queues = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for queue_data in data.queue_datas.iter().take(MAX_BROKERS_PER_ROUTE) {
            if !seen.insert(queue_data.broker_name.as_str()) {
                continue;
            }
            let name = &queue_data.broker_name;
            if perm::is_writeable(queue_data.perm)
                && brokers
                    .get(name)
                    .is_some_and(|addrs| addrs.contains_key(&0))
            {
                let n = queue_data.write_queue_nums.clamp(0, MAX_QUEUES_PER_BROKER);
                write_queues.extend((0..n).map(|id| MessageQueue::new(topic, name.clone(), id)));
            }
            if perm::is_readable(queue_data.perm) {
                let n = queue_data.read_queue_nums.clamp(0, MAX_QUEUES_PER_BROKER);
                read_queues.extend((0..n).map(|id| MessageQueue::new(topic, name.clone(), id)));
            }
        }
        write_queues.sort();
        read_queues.sort();
        TopicRoute {
            topic: topic.to_string(),
            write_queues,
            read_queues,
            brokers,
        }
    }

    /// The master's address of a broker group.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.brokers.get(broker_name)?.get(&0).map(String::as_str)
    }

    /// Where to read a queue of `broker_name`: the master, or the lowest-id slave while the master
    /// is not registered (RocketMQ's `findBrokerAddressInSubscribe`).
    pub fn read_addr(&self, broker_name: &str) -> Option<&str> {
        let addrs = self.brokers.get(broker_name)?;
        addrs
            .get(&0)
            .or_else(|| addrs.values().next())
            .map(String::as_str)
    }

    /// Every registered master address, each once.
    pub fn master_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .brokers
            .values()
            .filter_map(|a| a.get(&0).cloned())
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// The queue an ordering key pins a message to: `abs(javaHashCode(key) % n)` over the sorted
    /// write queues, as RocketMQ's `SelectMessageQueueByHash` and the TypeScript SDK compute it.
    pub fn queue_for_key(&self, key: &str) -> Option<&MessageQueue> {
        let n = i32::try_from(self.write_queues.len())
            .ok()
            .filter(|&n| n > 0)?;
        let index = (crate::java_hash::string_hash(key) % n).unsigned_abs() as usize;
        self.write_queues.get(index)
    }
}

struct Cached {
    route: Arc<TopicRoute>,
    fetched: Instant,
    stale: bool,
}

#[derive(Default)]
struct Slot {
    /// One fetch per topic at a time; callers that waited use its result.
    fetch: tokio::sync::Mutex<()>,
    cached: Mutex<Option<Cached>>,
    last_used: Mutex<Option<Instant>>,
}

impl Slot {
    /// The cached route unless it is stale and due for a re-fetch.
    fn usable(&self) -> Option<Arc<TopicRoute>> {
        *self.last_used.lock().expect("last_used lock") = Some(Instant::now());
        let cached = self.cached.lock().expect("cached lock");
        let c = cached.as_ref()?;
        (!c.stale || c.fetched.elapsed() < MIN_REFETCH_INTERVAL).then(|| c.route.clone())
    }

    fn store(&self, route: Arc<TopicRoute>) {
        *self.cached.lock().expect("cached lock") = Some(Cached {
            route,
            fetched: Instant::now(),
            stale: false,
        });
    }

    fn fetched_since(&self, since: Instant) -> Option<Arc<TopicRoute>> {
        let cached = self.cached.lock().expect("cached lock");
        cached
            .as_ref()
            .filter(|c| c.fetched >= since)
            .map(|c| c.route.clone())
    }
}

/// Routes per topic, from the NameServers.
pub struct RouteCache {
    namesrv: RemotingClient,
    addrs: Vec<String>,
    /// The NameServer asked first: random at start, moved on when one fails.
    current: AtomicUsize,
    timeout: Duration,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl RouteCache {
    /// A cache asking `namesrv_addrs` (already validated by `ClientConfig`), each call limited
    /// to `timeout`.
    pub fn new(namesrv_addrs: Vec<String>, timeout: Duration) -> RouteCache {
        let start = random_u64() as usize % namesrv_addrs.len().max(1);
        RouteCache {
            namesrv: RemotingClient::new(),
            addrs: namesrv_addrs,
            current: AtomicUsize::new(start),
            timeout,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A cache for `config`'s NameServers with its background refresher started (every
    /// `config.route_refresh`); aborting the handle stops it. Must be called inside a Tokio
    /// runtime.
    pub fn start(config: &ClientConfig) -> (Arc<RouteCache>, JoinHandle<()>) {
        let routes = Arc::new(RouteCache::new(
            config.namesrv_addrs.clone(),
            config.request_timeout,
        ));
        let refresher = routes.spawn_refresher(config.route_refresh);
        (routes, refresher)
    }

    /// The topic's route: cached, or fetched now. A stale route whose re-fetch fails is still
    /// returned (an old route beats none while the NameServers are unreachable).
    pub async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>, ClientError> {
        let slot = self.slot(topic);
        if let Some(route) = slot.usable() {
            return Ok(route);
        }
        let waited_since = Instant::now();
        let _fetching = slot.fetch.lock().await;
        if let Some(route) = slot.fetched_since(waited_since) {
            return Ok(route);
        }
        self.fetch_into(topic, &slot).await
    }

    /// Fetches the topic's route now, whatever the cache holds.
    pub async fn refresh(&self, topic: &str) -> Result<Arc<TopicRoute>, ClientError> {
        let slot = self.slot(topic);
        let _fetching = slot.fetch.lock().await;
        self.fetch_into(topic, &slot).await
    }

    /// The cached route, without any network call.
    pub fn cached(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        let slot = self.slots.lock().expect("slots lock").get(topic).cloned()?;
        let cached = slot.cached.lock().expect("cached lock");
        cached.as_ref().map(|c| c.route.clone())
    }

    /// Marks a topic's route as suspect after a failed call: the next [`Self::route`] fetches it
    /// again (at most once per [`MIN_REFETCH_INTERVAL`]).
    pub fn mark_stale(&self, topic: &str) {
        let slot = self.slots.lock().expect("slots lock").get(topic).cloned();
        if let Some(slot) = slot
            && let Some(c) = slot.cached.lock().expect("cached lock").as_mut()
        {
            c.stale = true;
        }
    }

    /// Topics with a cached route.
    pub fn topics(&self) -> Vec<String> {
        self.slots
            .lock()
            .expect("slots lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Re-fetches every cached route; failures keep the old route and are logged.
    pub async fn refresh_all(&self) {
        for topic in self.topics() {
            if let Err(e) = self.refresh(&topic).await {
                tracing::debug!(%topic, error = %e, "route refresh failed");
            }
        }
    }

    /// Refreshes every cached route each `interval` until the cache is dropped (the task holds
    /// only a weak reference) or the handle is aborted.
    pub fn spawn_refresher(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let cache: Weak<RouteCache> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(cache) = cache.upgrade() else { return };
                cache.refresh_all().await;
            }
        })
    }

    /// Closes the NameServer connections.
    pub fn close(&self) {
        self.namesrv.close_all();
    }

    fn slot(&self, topic: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("slots lock");
        if let Some(slot) = slots.get(topic) {
            return slot.clone();
        }
        if slots.len() >= MAX_CACHED_TOPICS {
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| *s.last_used.lock().expect("last_used lock"))
                .map(|(t, _)| t.clone());
            if let Some(oldest) = oldest {
                slots.remove(&oldest);
            }
        }
        slots.entry(topic.to_string()).or_default().clone()
    }

    async fn fetch_into(&self, topic: &str, slot: &Slot) -> Result<Arc<TopicRoute>, ClientError> {
        match self.fetch(topic).await {
            Ok(data) => {
                let route = Arc::new(TopicRoute::from_data(topic, &data));
                slot.store(route.clone());
                Ok(route)
            }
            Err(e @ ClientError::NoRoute { .. }) => {
                *slot.cached.lock().expect("cached lock") = None;
                self.slots.lock().expect("slots lock").remove(topic);
                Err(e)
            }
            Err(e) => {
                let mut cached = slot.cached.lock().expect("cached lock");
                match cached.as_mut() {
                    Some(c) => {
                        tracing::warn!(%topic, error = %e, "route fetch failed; keeping the old route");
                        c.fetched = Instant::now();
                        Ok(c.route.clone())
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// Asks the NameServers in turn, starting at the current one, until one knows the topic.
    /// NoRoute only when at least one NameServer answered TOPIC_NOT_EXIST and none knew the
    /// topic: a NameServer that just restarted may not have every registration yet.
    pub async fn fetch(&self, topic: &str) -> Result<TopicRouteData, ClientError> {
        let n = self.addrs.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut not_found = false;
        let mut last_error = None;
        for i in 0..n {
            let index = (start + i) % n;
            let addr = &self.addrs[index];
            let req = RemotingCommand::request_with(
                request::GET_ROUTEINFO_BY_TOPIC,
                &TopicRequestHeader {
                    topic: topic.to_string(),
                },
            );
            match self.namesrv.invoke(addr, req, self.timeout).await {
                Ok(resp) if resp.code == response::SUCCESS => {
                    self.current.store(index, Ordering::Relaxed);
                    return decode_route(&resp.body).map_err(|reason| ClientError::Decode {
                        what: "TopicRouteData",
                        addr: addr.clone(),
                        reason,
                    });
                }
                Ok(resp) if resp.code == response::TOPIC_NOT_EXIST => not_found = true,
                Ok(resp) => {
                    last_error = Some(ClientError::NameServer {
                        addr: addr.clone(),
                        code: resp.code,
                        remark: resp.remark_or_empty().to_string(),
                    })
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "NameServer unreachable");
                    self.current.store((index + 1) % n, Ordering::Relaxed);
                    last_error = Some(e.into());
                }
            }
        }
        if not_found || last_error.is_none() {
            return Err(ClientError::NoRoute {
                topic: topic.to_string(),
            });
        }
        Err(last_error.expect("checked above"))
    }
}

impl Drop for RouteCache {
    fn drop(&mut self) {
        self.namesrv.close_all();
    }
}

/// Decodes a route body. Java NameServers serialise with fastjson, which writes the integer keys of
/// `brokerAddrs` unquoted (`{0:"ip:port"}`); such a body is repaired and decoded again.
pub fn decode_route(body: &[u8]) -> Result<TopicRouteData, String> {
    decode_fastjson(body)
}

/// Decodes a NameServer's JSON body that may hold fastjson's unquoted integer keys (routes,
/// cluster info), repairing it when plain JSON fails.
pub(crate) fn decode_fastjson<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    decode_json(body).or_else(|first| decode_json(&quote_integer_keys(body)).map_err(|_| first))
}

/// Puts quotes around object keys that are bare integers, leaving strings untouched.
fn quote_integer_keys(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    // Whether the next non-space byte starts an object key.
    let mut expect_key = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if expect_key && (b.is_ascii_digit() || b == b'-') {
            let end = json[i + 1..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(json.len(), |p| i + 1 + p);
            out.push(b'"');
            out.extend_from_slice(&json[i..end]);
            out.push(b'"');
            expect_key = false;
            i = end;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                expect_key = false;
            }
            b'{' => expect_key = true,
            b',' => expect_key = true,
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => expect_key = false,
        }
        out.push(b);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body::{BrokerData, QueueData};

    fn queue_data(name: &str, read: i32, write: i32, perm: i32) -> QueueData {
        QueueData {
            broker_name: name.into(),
            read_queue_nums: read,
            write_queue_nums: write,
            perm,
            topic_sys_flag: 0,
        }
    }

    fn broker(name: &str, addrs: &[(i64, &str)]) -> BrokerData {
        BrokerData {
            cluster: "c".into(),
            broker_name: name.into(),
            broker_addrs: addrs.iter().map(|(id, a)| (*id, a.to_string())).collect(),
            ..BrokerData::default()
        }
    }

    #[test]
    fn route_to_sorted_queue_lists() {
        let data = TopicRouteData {
            queue_datas: vec![
                queue_data("broker-b", 2, 2, 6),
                queue_data("broker-a", 3, 2, 6),
                // Read-only broker: consumers read it, producers skip it.
                queue_data("broker-c", 1, 1, 4),
                // Master not registered: no writes, reads stay listed.
                queue_data("broker-d", 1, 1, 6),
                // Duplicate entry: ignored.
                queue_data("broker-a", 9, 9, 6),
            ],
            broker_datas: vec![
                broker("broker-a", &[(0, "10.0.0.1:10911"), (1, "10.0.0.2:10911")]),
                broker("broker-b", &[(0, "10.0.0.3:10911")]),
                broker("broker-c", &[(0, "10.0.0.4:10911")]),
                broker("broker-d", &[(1, "10.0.0.6:10911")]),
            ],
            ..TopicRouteData::default()
        };
        let route = TopicRoute::from_data("T", &data);
        let ids = |qs: &[MessageQueue]| -> Vec<String> {
            qs.iter()
                .map(|q| format!("{}:{}", q.broker_name, q.queue_id))
                .collect()
        };
        assert_eq!(
            ids(&route.write_queues),
            ["broker-a:0", "broker-a:1", "broker-b:0", "broker-b:1"]
        );
        assert_eq!(
            ids(&route.read_queues),
            [
                "broker-a:0",
                "broker-a:1",
                "broker-a:2",
                "broker-b:0",
                "broker-b:1",
                "broker-c:0",
                "broker-d:0"
            ]
        );
        assert_eq!(route.master_addr("broker-a"), Some("10.0.0.1:10911"));
        assert_eq!(route.master_addr("broker-d"), None);
        assert_eq!(route.read_addr("broker-d"), Some("10.0.0.6:10911"));
        assert_eq!(route.master_addrs().len(), 3);
        assert!(route.write_queues.iter().all(|q| q.topic == "T"));
    }

    #[test]
    fn hostile_counts_are_clamped() {
        let data = TopicRouteData {
            queue_datas: vec![queue_data("b", i32::MAX, -5, 6)],
            broker_datas: vec![broker("b", &[(0, "1.2.3.4:5")])],
            ..TopicRouteData::default()
        };
        let route = TopicRoute::from_data("T", &data);
        assert!(route.write_queues.is_empty());
        assert_eq!(route.read_queues.len(), MAX_QUEUES_PER_BROKER as usize);
    }

    #[test]
    fn ordering_key_matches_java_selector() {
        let data = TopicRouteData {
            queue_datas: vec![queue_data("a", 4, 4, 6), queue_data("b", 4, 4, 6)],
            broker_datas: vec![
                broker("a", &[(0, "1.1.1.1:1")]),
                broker("b", &[(0, "1.1.1.2:1")]),
            ],
            ..TopicRouteData::default()
        };
        let route = TopicRoute::from_data("T", &data);
        // javaHashCode("order-42") = 1234255197; % 8 = 5 → broker b, queue 1.
        assert_eq!(
            route.queue_for_key("order-42"),
            Some(&MessageQueue::new("T", "b", 1))
        );
        // A negative hash: -1614302714 % 8 = -2 → abs 2 → a:2.
        assert_eq!(
            route.queue_for_key("negative-key-zz"),
            Some(&MessageQueue::new("T", "a", 2))
        );
        // i32::MIN % 8 = 0.
        assert_eq!(
            route.queue_for_key("polygenelubricants"),
            Some(&MessageQueue::new("T", "a", 0))
        );
        assert_eq!(
            TopicRoute::from_data("T", &TopicRouteData::default()).queue_for_key("k"),
            None
        );
    }

    #[test]
    fn decodes_fastjson_integer_keys() {
        let body = br#"{"brokerDatas":[{"brokerAddrs":{0:"127.0.0.1:10911",1:"127.0.0.1:10921"},"brokerName":"b","cluster":"c"}],"queueDatas":[{"brokerName":"b","perm":6,"readQueueNums":4,"writeQueueNums":4,"topicSysFlag":0}],"filterServerTable":{},"x":"{0: not a key, 1"}"#;
        let data = decode_route(body).unwrap();
        assert_eq!(data.broker_datas[0].master_addr(), Some("127.0.0.1:10911"));
        assert_eq!(data.broker_datas[0].broker_addrs.len(), 2);
        assert!(decode_route(b"{not json").is_err());
        let standard = crate::protocol::body::encode_json(&data);
        assert_eq!(decode_route(&standard).unwrap(), data);
    }
}
