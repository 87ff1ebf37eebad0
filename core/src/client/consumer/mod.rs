//! [`ConsumerGroup`]: a push-style consumer built on pulls (reference §8).
//!
//! One task per assigned queue long-polls the broker and hands messages to the application over
//! one bounded channel (the [`MessageStream`]); a full channel makes the queue tasks wait, so a
//! slow application slows the pulls instead of filling memory. Around them run three loops:
//!
//! - heartbeat (at start, every `heartbeat_interval`, and soon after a broker connection closes):
//!   tells every broker of the subscribed topics that this client is in the group;
//! - rebalance (every `rebalance_interval`, and at once when a broker sends
//!   NOTIFY_CONSUMER_IDS_CHANGED): recomputes this member's queues with
//!   [`allocate_average`]; a queue taken away is stopped and its offset committed before anyone
//!   else can start on it from the broker's offset;
//! - commit (every `offset_commit_interval`, and at shutdown): stores each queue's
//!   [`ProcessQueue::committable`] offset — on the broker when clustering, in this process when
//!   broadcasting.
//!
//! Delivery is at-least-once: a message is acknowledged (explicitly, or on receipt with
//! [`AckMode::OnReceive`]) and the committed offset never passes an unacknowledged one, so after
//! a crash or a rebalance the new owner starts at the oldest message not known to be done.
//! Unacknowledged messages are not redelivered while their consumer keeps the queue.

mod tasks;

use tasks::{commit_loop, heartbeat_loop, rebalance_loop, run_queue};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::protocol::body::{ConsumerData, HeartbeatData};
use crate::protocol::codes::{request, response};
use crate::protocol::headers::ConsumerGroupRequestHeader;
use crate::protocol::{Connection, RemotingClient, RemotingCommand, RequestHandler};
use crate::store::{RETRY_TOPIC_PREFIX, now_millis};

use super::client_id::new_client_id;
use super::config::ClientConfig;
use super::consumer_config::{AckMode, ConsumeFrom, ConsumerConfig, MessageModel};
use super::error::ClientError;
use super::membership::{all_broker_addrs, group_members, send_heartbeats, send_unregister};
use super::message::ReceivedMessage;
use super::process_queue::ProcessQueue;
use super::pull::{PullConsumer, PullStatus};
use super::queue_lock::{lock_on_masters, unlock_on_masters};
use super::rebalance::allocate_average;
use super::route::{MessageQueue, RouteCache, TopicRoute};
use super::subscription::Subscription;

/// Pause after a failed pull before the queue tries again (RocketMQ: 3 s).
const PULL_RETRY_DELAY: Duration = Duration::from_secs(3);
/// Pause after a broker connection closed before heartbeating again (a restarting broker needs
/// a moment to listen).
const RECONNECT_HEARTBEAT_DELAY: Duration = Duration::from_secs(1);
/// How long stopping a queue task may take before it is aborted.
const QUEUE_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A queue held back by flow control re-checks this often even without an ack.
const FLOW_CONTROL_RECHECK: Duration = Duration::from_millis(500);

/// Serves the requests brokers send to a consumer.
pub(crate) struct GroupHandler {
    group: String,
    rebalance: Notify,
    heartbeat: Notify,
    stopped: AtomicBool,
}

impl RequestHandler for GroupHandler {
    async fn handle(&self, _conn: Connection, req: RemotingCommand) -> Option<RemotingCommand> {
        match req.code {
            request::NOTIFY_CONSUMER_IDS_CHANGED => {
                let header = req.header::<ConsumerGroupRequestHeader>();
                if header.is_ok_and(|h| h.consumer_group == self.group) {
                    self.rebalance.notify_one();
                }
                Some(RemotingCommand::success())
            }
            code => Some(RemotingCommand::error(
                response::REQUEST_CODE_NOT_SUPPORTED,
                format!("request code {code} is not supported by this consumer"),
            )),
        }
    }

    fn connection_closed(&self, _conn: &Connection) {
        // The broker forgets a member whose connection closed: announce ourselves again soon.
        if !self.stopped.load(Ordering::Acquire) {
            self.heartbeat.notify_one();
        }
    }
}

/// A stop signal for one queue task.
#[derive(Default)]
struct Cancel {
    flag: AtomicBool,
    notify: Notify,
}

impl Cancel {
    fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

struct QueueState {
    pq: Mutex<ProcessQueue>,
    acked: Notify,
    cancel: Cancel,
}

struct QueueSlot {
    state: Arc<QueueState>,
    /// Taken when the queue is being released.
    task: Option<JoinHandle<()>>,
    /// The offset last stored for this queue (skip commits that would change nothing).
    committed: Option<i64>,
}

struct Shared {
    config: ClientConfig,
    consumer: ConsumerConfig,
    subscriptions: Vec<(String, Subscription)>,
    /// RocketMQ's `subVersion`: when the subscriptions were made.
    sub_version: i64,
    client_id: String,
    pull: PullConsumer<GroupHandler>,
    handler: Arc<GroupHandler>,
    tx: mpsc::Sender<ReceivedMessage>,
    queues: Mutex<HashMap<MessageQueue, QueueSlot>>,
    /// Broadcasting: offsets of queues this client read, kept across reassignments.
    local_offsets: Mutex<HashMap<MessageQueue, i64>>,
    /// One rebalance (or the shutdown) at a time.
    rebalancing: tokio::sync::Mutex<()>,
    stopped: AtomicBool,
}

/// The application's end of a consumer: messages from every assigned queue, each queue in order.
pub struct MessageStream {
    rx: mpsc::Receiver<ReceivedMessage>,
    /// Weak, so that the channel closes once the consumer is gone.
    shared: Weak<Shared>,
    ack_on_receive: bool,
}

impl MessageStream {
    /// The next message; `None` once the consumer has shut down and everything was received.
    pub async fn recv(&mut self) -> Option<ReceivedMessage> {
        let msg = self.rx.recv().await?;
        self.received(&msg);
        Some(msg)
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<ReceivedMessage> {
        let msg = self.rx.try_recv().ok()?;
        self.received(&msg);
        Some(msg)
    }

    fn received(&self, msg: &ReceivedMessage) {
        if self.ack_on_receive
            && let Some(shared) = self.shared.upgrade()
        {
            shared.ack(msg);
        }
    }
}

/// A member of a consumer group. See the module documentation.
pub struct ConsumerGroup {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    loops: Vec<JoinHandle<()>>,
    refresher: JoinHandle<()>,
}

impl ConsumerGroup {
    /// Joins the group: validates, heartbeats, rebalances once, then starts the loops. Must be
    /// called inside a Tokio runtime. A topic without a route yet is retried at each rebalance.
    pub async fn start(
        config: ClientConfig,
        consumer: ConsumerConfig,
    ) -> Result<(ConsumerGroup, MessageStream), ClientError> {
        config.validate()?;
        let mut subscriptions = consumer.validate()?;
        // Clustering groups also read their retry topic, where CONSUMER_SEND_MSG_BACK puts
        // messages given back with `nack`; the messages surface with their original topic.
        if consumer.model == MessageModel::Clustering {
            let retry = format!("{RETRY_TOPIC_PREFIX}{}", consumer.group);
            if !subscriptions.iter().any(|(t, _)| *t == retry) {
                subscriptions.push((retry, Subscription::parse("*")?));
            }
        }
        let handler = Arc::new(GroupHandler {
            group: consumer.group.clone(),
            rebalance: Notify::new(),
            heartbeat: Notify::new(),
            stopped: AtomicBool::new(false),
        });
        let (routes, refresher) = RouteCache::start(&config);
        let remoting = Arc::new(RemotingClient::with_handler(handler.clone()));
        let pull = PullConsumer::with_parts(config.clone(), &consumer.group, remoting, routes)?;
        let (tx, rx) = mpsc::channel(consumer.channel_capacity);
        let ack_on_receive = consumer.ack_mode == AckMode::OnReceive;
        let shared = Arc::new(Shared {
            config,
            consumer,
            subscriptions,
            sub_version: now_millis(),
            client_id: new_client_id(),
            pull,
            handler,
            tx,
            queues: Mutex::new(HashMap::new()),
            local_offsets: Mutex::new(HashMap::new()),
            rebalancing: tokio::sync::Mutex::new(()),
            stopped: AtomicBool::new(false),
        });
        shared.heartbeat().await;
        shared.rebalance().await;
        let (stop, stopped) = watch::channel(false);
        let loops = vec![
            tokio::spawn(heartbeat_loop(shared.clone(), stopped.clone())),
            tokio::spawn(rebalance_loop(shared.clone(), stopped.clone())),
            tokio::spawn(commit_loop(shared.clone(), stopped)),
        ];
        let stream = MessageStream {
            rx,
            shared: Arc::downgrade(&shared),
            ack_on_receive,
        };
        Ok((
            ConsumerGroup {
                shared,
                stop,
                loops,
                refresher,
            },
            stream,
        ))
    }

    /// The id this member announces to brokers.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    pub fn group(&self) -> &str {
        &self.shared.consumer.group
    }

    /// Marks a delivered message as processed. `false` when its queue is no longer assigned here
    /// or it was acknowledged before (harmless: at worst it is delivered again elsewhere).
    pub fn ack(&self, msg: &ReceivedMessage) -> bool {
        self.shared.ack(msg)
    }

    /// Gives a message back: the broker stores a copy in `%RETRY%<group>` that this group
    /// receives again after a growing delay (delay level `3 + reconsumeTimes`: 10 s, 30 s, 1 min,
    /// …), or in `%DLQ%<group>` once the group's `retryMaxTimes` is reached. The message itself
    /// counts as done here (its offset may advance), so the copy is its only next delivery.
    pub async fn nack(&self, msg: &ReceivedMessage) -> Result<(), ClientError> {
        if self.shared.consumer.orderly {
            return Err(ClientError::InvalidArgument(
                "an orderly group cannot nack: the retry copy would overtake the messages after \
                 it; leave the message unacknowledged instead"
                    .into(),
            ));
        }
        self.shared
            .pull
            .send_back(&self.shared.consumer.group, msg, 0)
            .await?;
        self.shared.ack(msg);
        Ok(())
    }

    /// The queues this member reads now, sorted.
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        let queues = self.shared.queues.lock().expect("queues lock");
        let mut list: Vec<MessageQueue> = queues.keys().cloned().collect();
        list.sort();
        list
    }

    /// Each assigned queue with the offset that would be committed now.
    pub fn offsets(&self) -> Vec<(MessageQueue, i64)> {
        let queues = self.shared.queues.lock().expect("queues lock");
        let mut list: Vec<(MessageQueue, i64)> = queues
            .iter()
            .map(|(q, slot)| {
                (
                    q.clone(),
                    slot.state.pq.lock().expect("pq lock").committable(),
                )
            })
            .collect();
        list.sort();
        list
    }

    /// Rebalances now instead of waiting for the next interval.
    pub async fn rebalance(&self) {
        self.shared.rebalance().await;
    }

    /// Commits every queue's offset now; the first failure is returned (the rest still run).
    pub async fn commit_offsets(&self) -> Result<(), ClientError> {
        self.shared.commit_all().await
    }

    /// Leaves the group cleanly: stops the loops and queue tasks, commits every offset, sends
    /// UNREGISTER_CLIENT (so the others rebalance at once) and closes the connections. Messages
    /// already in the [`MessageStream`] can still be received; then it ends. Returns the first
    /// commit failure, if any.
    pub async fn shutdown(mut self) -> Result<(), ClientError> {
        let shared = self.shared.clone();
        shared.stopped.store(true, Ordering::Release);
        shared.handler.stopped.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        // The loops finish what they are doing (bounded by the request timeout) and return.
        for task in std::mem::take(&mut self.loops) {
            let _ = task.await;
        }
        let _rebalancing = shared.rebalancing.lock().await;
        let queues: Vec<MessageQueue> = self.assigned_queues();
        // Stop every queue at once; each is then committed as its task ends.
        for slot in shared.queues.lock().expect("queues lock").values() {
            slot.state.cancel.cancel();
        }
        let mut first_error = None;
        for queue in &queues {
            if let Err(e) = shared.release_queue(queue).await {
                first_error.get_or_insert(e);
            }
        }
        if shared.consumer.orderly {
            shared.unlock(&queues).await;
        }
        let routes: Vec<Arc<TopicRoute>> = shared
            .subscriptions
            .iter()
            .filter_map(|(topic, _)| shared.routes().cached(topic))
            .collect();
        send_unregister(
            shared.pull.remoting(),
            &all_broker_addrs(routes.iter().map(|r| r.as_ref())),
            &shared.client_id,
            &shared.consumer.group,
            shared.config.request_timeout,
        )
        .await;
        self.refresher.abort();
        shared.pull.shutdown();
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for ConsumerGroup {
    /// Without [`ConsumerGroup::shutdown`], everything stops and nothing is committed.
    fn drop(&mut self) {
        for task in &self.loops {
            task.abort();
        }
        self.refresher.abort();
        self.shared.handler.stopped.store(true, Ordering::Release);
        {
            let queues = self.shared.queues.lock().expect("queues lock");
            for slot in queues.values() {
                slot.state.cancel.cancel();
                if let Some(task) = &slot.task {
                    task.abort();
                }
            }
        }
        // Connection tasks outlive the pool that made them: close them explicitly.
        self.shared.pull.remoting().close_all();
    }
}

impl Shared {
    fn ack(&self, msg: &ReceivedMessage) -> bool {
        let queues = self.queues.lock().expect("queues lock");
        let Some(slot) = queues.get(&msg.queue) else {
            return false;
        };
        let acked = slot.state.pq.lock().expect("pq lock").ack(msg.queue_offset);
        if acked {
            slot.state.acked.notify_one();
        }
        acked
    }

    fn subscription(&self, topic: &str) -> Option<&Subscription> {
        self.subscriptions
            .iter()
            .find(|(t, _)| t == topic)
            .map(|(_, s)| s)
    }

    fn routes(&self) -> &Arc<RouteCache> {
        self.pull.routes()
    }

    /// Routes of the subscribed topics that have one.
    async fn topic_routes(&self) -> Vec<Arc<TopicRoute>> {
        let mut routes = Vec::new();
        for (topic, _) in &self.subscriptions {
            match self.routes().route(topic).await {
                Ok(route) => routes.push(route),
                Err(e) => {
                    tracing::warn!(%topic, group = %self.consumer.group, error = %e, "no route for a subscribed topic")
                }
            }
        }
        routes
    }

    fn heartbeat_data(&self) -> HeartbeatData {
        HeartbeatData {
            client_id: self.client_id.clone(),
            producer_data_set: Vec::new(),
            consumer_data_set: vec![ConsumerData {
                group_name: self.consumer.group.clone(),
                consume_type: "CONSUME_ACTIVELY".into(),
                message_model: self.consumer.model.wire_name().into(),
                consume_from_where: self.consumer.consume_from.wire_name().into(),
                subscription_data_set: self
                    .subscriptions
                    .iter()
                    .map(|(topic, s)| s.to_subscription_data(topic, self.sub_version))
                    .collect(),
                unit_mode: false,
            }],
        }
    }

    async fn heartbeat(&self) {
        let routes = self.topic_routes().await;
        let addrs = all_broker_addrs(routes.iter().map(|r| r.as_ref()));
        send_heartbeats(
            self.pull.remoting(),
            &addrs,
            &self.heartbeat_data(),
            self.config.request_timeout,
        )
        .await;
    }

    /// Recomputes this member's queues and starts or stops queue tasks to match. A topic whose
    /// route or member list cannot be had keeps its current queues.
    async fn rebalance(self: &Arc<Self>) {
        let _rebalancing = self.rebalancing.lock().await;
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let mut wanted: HashSet<MessageQueue> = HashSet::new();
        let mut settled: HashSet<String> = HashSet::new();
        for route in self.topic_routes().await {
            let mine = match self.consumer.model {
                MessageModel::Broadcasting => route.read_queues.clone(),
                MessageModel::Clustering => match group_members(
                    self.pull.remoting(),
                    &route,
                    &self.consumer.group,
                    self.config.request_timeout,
                )
                .await
                {
                    Ok(members) if members.contains(&self.client_id) => {
                        allocate_average(&members, &route.read_queues, &self.client_id)
                    }
                    Ok(_) => {
                        // The broker does not know us (yet, or any more): allocating now would
                        // drop every queue. Heartbeat; its membership change brings us back.
                        tracing::info!(topic = %route.topic, group = %self.consumer.group, "not in the member list yet; heartbeating");
                        self.handler.heartbeat.notify_one();
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(topic = %route.topic, group = %self.consumer.group, error = %e, "member list unavailable; keeping current queues");
                        continue;
                    }
                },
            };
            settled.insert(route.topic.clone());
            wanted.extend(mine);
        }
        let current: Vec<MessageQueue> = self
            .queues
            .lock()
            .expect("queues lock")
            .keys()
            .cloned()
            .collect();
        let mut released: Vec<MessageQueue> = current
            .iter()
            .filter(|q| settled.contains(&q.topic) && !wanted.contains(q))
            .cloned()
            .collect();
        // Orderly: keep or take only the queues whose lock this member holds (renewed here,
        // well within the broker's TTL).
        let locked = if self.consumer.orderly {
            let mut candidates: Vec<MessageQueue> = wanted.iter().cloned().collect();
            candidates.extend(current.iter().filter(|q| !released.contains(q)).cloned());
            candidates.sort();
            candidates.dedup();
            let held = lock_on_masters(
                self.pull.remoting(),
                self.routes(),
                &self.consumer.group,
                &self.client_id,
                &candidates,
                self.config.request_timeout,
            )
            .await;
            for queue in current.iter().filter(|q| !held.contains(q)) {
                if !released.contains(queue) {
                    tracing::warn!(%queue, group = %self.consumer.group, "queue lock lost; queue stopped");
                    released.push(queue.clone());
                }
            }
            Some(held)
        } else {
            None
        };
        for queue in &released {
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            tracing::info!(%queue, group = %self.consumer.group, "queue released");
            if let Err(e) = self.release_queue(queue).await {
                tracing::warn!(%queue, error = %e, "offset of a released queue not committed");
            }
        }
        if self.consumer.orderly && !released.is_empty() {
            self.unlock(&released).await;
        }
        let mut added: Vec<MessageQueue> = wanted
            .into_iter()
            .filter(|q| !current.contains(q))
            .filter(|q| {
                let held = locked.as_ref().is_none_or(|held| held.contains(q));
                if !held {
                    tracing::info!(queue = %q, group = %self.consumer.group, "queue locked by another member; retried at the next rebalance");
                }
                held
            })
            .collect();
        added.sort();
        for queue in added {
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            match self.initial_offset(&queue).await {
                Ok((offset, stored)) => {
                    tracing::info!(%queue, offset, group = %self.consumer.group, "queue assigned");
                    self.start_queue(queue, offset, stored);
                }
                Err(e) => tracing::warn!(%queue, error = %e, "queue not started: no start offset"),
            }
        }
    }

    /// Releases this member's locks on `queues` (orderly groups).
    async fn unlock(&self, queues: &[MessageQueue]) {
        unlock_on_masters(
            self.pull.remoting(),
            self.routes(),
            &self.consumer.group,
            &self.client_id,
            queues,
            self.config.request_timeout,
        )
        .await;
    }

    /// Where consumption of a newly assigned queue starts, and whether that offset is already
    /// stored (so the first commit can be skipped).
    async fn initial_offset(&self, queue: &MessageQueue) -> Result<(i64, bool), ClientError> {
        let stored = match self.consumer.model {
            MessageModel::Clustering => self.pull.fetch_offset(&self.consumer.group, queue).await?,
            MessageModel::Broadcasting => self
                .local_offsets
                .lock()
                .expect("local offsets lock")
                .get(queue)
                .copied(),
        };
        if let Some(offset) = stored {
            return Ok((offset, true));
        }
        let offset = match self.consumer.consume_from {
            ConsumeFrom::First => self.pull.min_offset(queue).await?,
            ConsumeFrom::Last => self.pull.max_offset(queue).await?,
        };
        Ok((offset, false))
    }

    fn start_queue(self: &Arc<Self>, queue: MessageQueue, offset: i64, stored: bool) {
        let Some(subscription) = self.subscription(&queue.topic).cloned() else {
            return;
        };
        let state = Arc::new(QueueState {
            pq: Mutex::new(ProcessQueue::new(offset)),
            acked: Notify::new(),
            cancel: Cancel::default(),
        });
        let task = tokio::spawn(run_queue(
            self.clone(),
            queue.clone(),
            state.clone(),
            subscription,
        ));
        self.queues.lock().expect("queues lock").insert(
            queue,
            QueueSlot {
                state,
                task: Some(task),
                committed: stored.then_some(offset),
            },
        );
    }

    /// Stops a queue's task, then commits its offset and forgets it.
    async fn release_queue(&self, queue: &MessageQueue) -> Result<(), ClientError> {
        let (state, task) = {
            let mut queues = self.queues.lock().expect("queues lock");
            let Some(slot) = queues.get_mut(queue) else {
                return Ok(());
            };
            slot.state.cancel.cancel();
            (slot.state.clone(), slot.task.take())
        };
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(QUEUE_STOP_TIMEOUT, task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let (offset, committed) = {
            let mut queues = self.queues.lock().expect("queues lock");
            let committed = queues.remove(queue).and_then(|slot| slot.committed);
            (state.pq.lock().expect("pq lock").committable(), committed)
        };
        if committed == Some(offset) {
            return Ok(());
        }
        self.store_offset(queue, offset).await
    }

    async fn store_offset(&self, queue: &MessageQueue, offset: i64) -> Result<(), ClientError> {
        match self.consumer.model {
            MessageModel::Clustering => {
                self.pull
                    .commit_offset(&self.consumer.group, queue, offset)
                    .await
            }
            MessageModel::Broadcasting => {
                self.local_offsets
                    .lock()
                    .expect("local offsets lock")
                    .insert(queue.clone(), offset);
                Ok(())
            }
        }
    }

    /// Commits every queue whose committable offset moved since its last commit.
    async fn commit_all(&self) -> Result<(), ClientError> {
        let due: Vec<(MessageQueue, i64)> = {
            let queues = self.queues.lock().expect("queues lock");
            queues
                .iter()
                .filter_map(|(q, slot)| {
                    let offset = slot.state.pq.lock().expect("pq lock").committable();
                    (slot.committed != Some(offset)).then(|| (q.clone(), offset))
                })
                .collect()
        };
        let mut first_error = None;
        for (queue, offset) in due {
            match self.store_offset(&queue, offset).await {
                Ok(()) => {
                    if let Some(slot) = self.queues.lock().expect("queues lock").get_mut(&queue) {
                        slot.committed = Some(offset);
                    }
                }
                Err(e) => {
                    tracing::warn!(%queue, offset, error = %e, "offset commit failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
