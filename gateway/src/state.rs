//! [`Gateway`]: everything a request handler reaches, shared by all connections.
//!
//! The gateway keeps no durable state: offsets, in-flight receipts and the idempotency window
//! live in the brokers, so this struct holds only clients (connection pools and route caches),
//! keys and counters. Any instance can serve any request, and a restart loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tern_core::client::{Admin, ClientConfig, PopConsumer, Producer, PullConsumer, RouteCache};
use tern_core::protocol::RemotingClient;
use tern_core::protocol::retry_policy::GroupRetryPolicy;
use tokio::sync::{Semaphore, watch};

use crate::auth::Verifier;
use crate::config::GatewayConfig;
use crate::http::in_flight::WindowRegistry;
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::receipt::ReceiptSealer;

/// The producer group the gateway sends with (brokers only check its syntax).
const PRODUCER_GROUP: &str = "tern-gateway";
/// Pop consumers kept at most (one per broker-side group; each is a few hundred bytes sharing one
/// connection pool). Beyond it the cache is cleared and rebuilt on demand.
const MAX_POP_GROUPS: usize = 10_000;

pub struct Gateway {
    pub config: GatewayConfig,
    pub producer: Producer,
    pub puller: PullConsumer,
    pub admin: Admin,
    /// `None` when auth is off.
    pub verifier: Option<Verifier>,
    pub sealer: ReceiptSealer,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    /// Open SSE streams; each holds a permit.
    pub streams: Arc<Semaphore>,
    /// The in-flight windows of this gateway's manual-ack streams.
    pub windows: WindowRegistry,
    /// Flips to `true` when the gateway starts shutting down: SSE streams end, long polls are
    /// not started any more.
    pub shutdown: watch::Receiver<bool>,
    remoting: Arc<RemotingClient>,
    routes: Arc<RouteCache>,
    refresher: tokio::task::JoinHandle<()>,
    client_config: ClientConfig,
    pops: Mutex<HashMap<String, Arc<PopConsumer>>>,
    /// Retry policies by broker-side group, and when they were read.
    group_table: Mutex<Option<GroupTable>>,
}

type GroupTable = (std::time::Instant, Arc<HashMap<String, GroupRetryPolicy>>);

/// How long a read of the brokers' group table serves nacks. A group changed through another
/// gateway takes effect here within this time.
pub const GROUP_TABLE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("auth: {0}")]
    Auth(String),
    #[error("receipt keys: {0}")]
    Receipt(String),
    #[error("client: {0}")]
    Client(#[from] tern_core::client::ClientError),
}

impl Gateway {
    /// Builds the clients and keys. Must run inside a Tokio runtime (route refreshers start).
    pub fn new(
        config: GatewayConfig,
        receipt_keys: Vec<String>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Gateway, StartError> {
        config.validate()?;
        let mut client_config = ClientConfig::new(config.namesrv_addrs.clone());
        client_config.request_timeout = config.broker_timeout();
        client_config.validate()?;
        let verifier = if config.auth.enabled {
            Some(Verifier::from_config(&config.auth).map_err(|e| StartError::Auth(e.to_string()))?)
        } else {
            None
        };
        let sealer = ReceiptSealer::from_text_keys(&receipt_keys)
            .map_err(|e| StartError::Receipt(e.to_string()))?;
        // One connection pool and one route cache serve every client of the gateway, so a
        // topic change seen by one (an admin call, a failed send) is seen by all.
        let (routes, refresher) = RouteCache::start(&client_config);
        let remoting = Arc::new(RemotingClient::new());
        let puller = PullConsumer::with_parts(
            client_config.clone(),
            PRODUCER_GROUP,
            remoting.clone(),
            routes.clone(),
        )?;
        Ok(Gateway {
            producer: Producer::with_parts(
                client_config.clone(),
                PRODUCER_GROUP,
                remoting.clone(),
                routes.clone(),
            )?,
            admin: Admin::with_parts(client_config.clone(), remoting.clone(), routes.clone())?,
            puller,
            verifier,
            sealer,
            limiter: RateLimiter::new(&config.rate_limit),
            metrics: Metrics::default(),
            streams: Arc::new(Semaphore::new(config.sse.max_streams)),
            windows: WindowRegistry::default(),
            shutdown,
            remoting,
            routes,
            refresher,
            client_config,
            pops: Mutex::new(HashMap::new()),
            group_table: Mutex::new(None),
            config,
        })
    }

    /// The pop consumer of a broker-side group.
    pub fn pop_consumer(
        &self,
        group: &str,
    ) -> Result<Arc<PopConsumer>, tern_core::client::ClientError> {
        let mut pops = self.pops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(consumer) = pops.get(group) {
            return Ok(consumer.clone());
        }
        if pops.len() >= MAX_POP_GROUPS {
            pops.clear();
        }
        let consumer = Arc::new(PopConsumer::with_parts(
            self.client_config.clone(),
            group,
            self.remoting.clone(),
            self.routes.clone(),
        )?);
        pops.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    /// The route cache every client of the gateway shares.
    pub fn routes(&self) -> &Arc<RouteCache> {
        &self.routes
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs a long poll, cut short when the gateway starts shutting down (`None`), so a drain
    /// never waits for a client's 30 s wait: a receive then answers what it has (nothing), a pull
    /// answers like a pull without a wait. A pop cut short leaves what it popped invisible until
    /// its invisible time ends; nothing is lost.
    pub async fn unless_shutdown<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            return None;
        }
        tokio::select! {
            result = work => Some(result),
            _ = shutdown.wait_for(|stopping| *stopping) => None,
        }
    }

    /// A group's retry policy (`retryBackoff`), from the brokers' group table, cached for
    /// [`GROUP_TABLE_TTL`] so nacks do not each ask a broker. `None`: the group has none.
    pub async fn retry_policy(
        &self,
        group: &str,
    ) -> Result<Option<GroupRetryPolicy>, tern_core::client::ClientError> {
        let cached = self
            .group_table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < GROUP_TABLE_TTL)
            .map(|(_, table)| table.clone());
        let table = match cached {
            Some(table) => table,
            None => {
                let table: Arc<HashMap<String, GroupRetryPolicy>> = Arc::new(
                    self.admin
                        .group_configs()
                        .await?
                        .into_iter()
                        .filter_map(|(name, config)| Some((name, config.group_retry_policy?)))
                        .collect(),
                );
                *self.group_table.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((std::time::Instant::now(), table.clone()));
                table
            }
        };
        Ok(table.get(group).cloned())
    }

    /// Forgets the cached group table (after this gateway changed a group).
    pub fn forget_group_table(&self) {
        *self.group_table.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Closes every broker connection and stops the route refreshers.
    pub fn close(&self) {
        self.producer.shutdown();
        self.refresher.abort();
        self.routes.close();
        self.remoting.close_all();
    }
}
