//! A running broker: binds its port, opens the store, serves requests and runs its timers
//! (NameServer registration, offset persistence, client expiry) and the delay-level and timer
//! services until shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::protocol::{RemotingClient, ServerHandle, serve_listener};
use crate::store::MessageStore;

use super::config::BrokerConfig;
use super::consumer_groups::ConsumerGroups;
use super::consumer_offsets::ConsumerOffsets;
use super::error::BrokerError;
use super::idempotency::Window;
use super::long_poll::LongPoll;
use super::pop::PopLedger;
use super::processor::Processor;
use super::queue_locks::QueueLocks;
use super::registration::{register_all, unregister_all};
use super::revive::revive_loop;
use super::schedule::ScheduleService;
use super::state::BrokerState;
use super::subscription_groups::SubscriptionGroups;
use super::timer::TimerService;
use super::topic_table::TopicTable;

/// How often silent clients are looked for.
const CLIENT_SCAN_INTERVAL: Duration = Duration::from_secs(10);

pub struct Broker {
    state: Arc<BrokerState>,
    server: ServerHandle,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    namesrv: Arc<RemotingClient>,
}

impl Broker {
    /// Starts a broker. Returns once it is serving and has tried a first registration with every
    /// NameServer (a NameServer that is down is retried at the next interval).
    pub async fn start(mut config: BrokerConfig) -> Result<Broker, BrokerError> {
        config.validate()?;
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| BrokerError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;
        let port = listener
            .local_addr()
            .map_err(|source| BrokerError::Listen {
                addr: config.listen.clone(),
                source,
            })?
            .port();
        let ip: std::net::IpAddr = config
            .broker_ip
            .parse()
            .map_err(|_| BrokerError::Config(format!("broker_ip `{}`", config.broker_ip)))?;
        let addr = SocketAddr::new(ip, port);
        // Offset message ids must lead back to this broker.
        config.store.store_host = addr;

        let store_config = config.store.clone();
        let store = tokio::task::spawn_blocking(move || MessageStore::open(store_config))
            .await
            .map_err(|e| BrokerError::Config(format!("store open panicked: {e}")))??;
        let root = config.store.store_path.clone();
        let topics = TopicTable::load(&root)?;
        let offsets = ConsumerOffsets::load(&root)?;
        let groups = SubscriptionGroups::load(&root)?;
        let pops = PopLedger::load(&root, &store, config.pop_max_inflight).await?;
        let delay_level_count = config.store.delay_levels()?.len();
        let schedule = ScheduleService::load(&root, delay_level_count)?;
        let timers = TimerService::load(&root)?;
        let long_poll = Arc::new(LongPoll::default());
        store.set_arrival_listener(long_poll.clone());
        // Until the dispatcher has indexed the log as it was at start, a key missing from the
        // index may only be missing from the index (after a crash the tail is replayed).
        let idempotency = Window::new(
            config.idempotency_window_ms,
            config.idempotency_max_keys,
            crate::store::now_millis(),
            store.max_physical_offset(),
        );

        let config_lock_ttl = config.queue_lock_ttl_ms;
        let state = Arc::new(BrokerState {
            config,
            addr: addr.to_string(),
            store: Arc::new(store),
            topics,
            offsets,
            consumers: ConsumerGroups::default(),
            groups,
            pops,
            pop_held: AtomicUsize::new(0),
            long_poll,
            register_now: Notify::new(),
            shutting_down: AtomicBool::new(false),
            next_queue: AtomicUsize::new(0),
            delay_level_count,
            timer_backlog: timers.initial_backlog(),
            idempotency,
            queue_locks: QueueLocks::new(Duration::from_millis(config_lock_ttl)),
        });
        let server = serve_listener(
            listener,
            Arc::new(Processor {
                state: state.clone(),
            }),
        );
        let namesrv = Arc::new(RemotingClient::new());
        register_all(&state, &namesrv).await;

        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(registration_loop(
                state.clone(),
                namesrv.clone(),
                stopped.clone(),
            )),
            tokio::spawn(offset_persist_loop(state.clone(), stopped.clone())),
            tokio::spawn(revive_loop(state.clone(), stopped.clone())),
            tokio::spawn(client_expiry_loop(state.clone(), stopped.clone())),
            // Both services stop before the store closes (shutdown awaits these tasks) and write
            // their cursors / checkpoint on the way out.
            tokio::spawn(schedule.run(state.clone(), stopped.clone())),
            tokio::spawn(timers.run(state.clone(), stopped)),
        ];
        tracing::info!(
            broker = %state.config.broker_name,
            cluster = %state.config.cluster_name,
            id = state.config.broker_id,
            %addr,
            flush = ?state.config.store.flush_disk_type,
            "broker started"
        );
        Ok(Broker {
            state,
            server,
            stop,
            tasks,
            namesrv,
        })
    }

    /// The bound address (as bound: may be 0.0.0.0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The address announced to NameServers and clients.
    pub fn addr(&self) -> &str {
        &self.state.addr
    }

    /// The store, for in-process embedding (the gateway's `--local` mode) and tests.
    pub fn store(&self) -> &Arc<MessageStore> {
        &self.state.store
    }

    /// Makes this broker reachable from clients in the same process through memory pipes
    /// instead of loopback sockets (see [`crate::protocol::in_process`]), under its announced
    /// address: the gateway's `--local` mode. Other processes still use the socket. Undone at
    /// shutdown.
    pub fn serve_in_process(&self) {
        crate::protocol::in_process::register(&self.state.addr, self.server.in_process_connector());
    }

    /// Idempotency keys remembered in memory (in flight included) and keys evicted so far
    /// because of `idempotency_max_keys`, for monitoring and tests.
    pub fn idempotency_stats(&self) -> (usize, u64) {
        self.state.idempotency.stats()
    }

    /// Clean shutdown: stop serving, persist offsets, leave the NameServers, close the store
    /// (flush, checkpoint, remove `abort`).
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        let state = &self.state;
        state.shutting_down.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        crate::protocol::in_process::unregister(&state.addr);
        self.server.shutdown().await;
        let offsets = state.offsets.persist();
        let pops = state.pops.persist(&state.store);
        unregister_all(state, &self.namesrv).await;
        self.namesrv.close_all();
        let store = state.store.close();
        tracing::info!(broker = %state.config.broker_name, "broker stopped");
        offsets?;
        pops?;
        store?;
        Ok(())
    }
}

async fn registration_loop(
    state: Arc<BrokerState>,
    client: Arc<RemotingClient>,
    mut stopped: watch::Receiver<bool>,
) {
    let interval = Duration::from_millis(state.config.register_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = state.register_now.notified() => {}
            _ = stopped.changed() => return,
        }
        register_all(&state, &client).await;
    }
}

async fn offset_persist_loop(state: Arc<BrokerState>, mut stopped: watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.offset_persist_interval_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.changed() => return,
        }
        if let Err(e) = state.off_thread(|s| s.offsets.persist()).await {
            tracing::error!(error = %e, "consumer offsets not persisted");
        }
        if let Err(e) = state.off_thread(|s| s.pops.persist(&s.store)).await {
            tracing::error!(error = %e, "pop state snapshot not written");
        }
    }
}

async fn client_expiry_loop(state: Arc<BrokerState>, mut stopped: watch::Receiver<bool>) {
    let expiry = Duration::from_millis(state.config.client_expiry_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CLIENT_SCAN_INTERVAL) => {}
            _ = stopped.changed() => return,
        }
        for change in state.consumers.expire(expiry) {
            tracing::info!(group = %change.group, "silent consumer dropped");
            state.notify_members(change);
        }
    }
}
