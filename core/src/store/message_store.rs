//! [`MessageStore`]: the store's public face. It opens and recovers the directory, runs the
//! background threads (dispatcher, flusher, queue flusher/checkpointer, retention), and offers
//! appends and reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Timelike;
use tracing::{error, info, warn};

use super::checkpoint::Checkpoint;
use super::commit_log::{AppendedRecord, CommitLog};
use super::config::{FlushDiskType, StoreConfig};
use super::consume_queue::ConsumeQueues;
use super::dispatcher::{ArrivalListener, Dispatcher};
use super::error::StoreError;
use super::flush::{self, FlushWait, GROUP_COMMIT_FLUSHERS, GroupCommit, PeriodicFlush};
use super::health::Health;
use super::index_service::IndexService;
use super::message::{Message, now_millis, offset_message_id, parse_offset_message_id, property};
use super::read::{self, GetResult};
use super::record::StoredMessage;
use super::recovery::{self, RecoveryInput, RecoveryReport};
use super::retention::{self, RetentionInput, RetentionPolicy, RetentionReport};
use super::store_lock::StoreLock;

/// How durable an appended message is when the put returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutStatus {
    /// As durable as the flush mode promises (on disk under SYNC_FLUSH).
    Ok,
    /// Appended, but its fsync did not finish within `sync_flush_timeout_ms`. It will most likely
    /// reach the disk; the producer is told so it can decide (RocketMQ's FLUSH_DISK_TIMEOUT).
    FlushDiskTimeout,
}

/// The outcome of appending one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub status: PutStatus,
    pub record: AppendedRecord,
    /// The store's address, recorded as STOREHOST.
    pub store_host: SocketAddr,
}

impl PutResult {
    /// Store host and CommitLog offset, hex: finds the message without any index. Built on
    /// demand: formatting it for every put cost ~5 % of the append path.
    pub fn offset_message_id(&self) -> String {
        offset_message_id(self.store_host, self.record.physical_offset)
    }
}

/// A message appended by [`MessageStore::append_message`] whose durability is still to be awaited.
#[must_use = "an append is acknowledged only once `durable` says so"]
pub struct Appended<'a> {
    store: &'a MessageStore,
    record: AppendedRecord,
    wait: bool,
}

impl Appended<'_> {
    pub fn record(&self) -> &AppendedRecord {
        &self.record
    }

    /// Waits until the record is as durable as the flush mode promises.
    pub async fn durable(self) -> Result<PutResult, StoreError> {
        let end = self.record.physical_offset + u64::from(self.record.size);
        let status = self.store.inner.await_durable(end, self.wait).await?;
        Ok(PutResult {
            status,
            record: self.record,
            store_host: self.store.inner.log.store_host(),
        })
    }
}

/// Positions and counters, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreStats {
    pub min_physical_offset: u64,
    pub max_physical_offset: u64,
    pub flushed_physical_offset: u64,
    pub dispatched_physical_offset: u64,
    /// CommitLog flushes (fsyncs) that wrote something since the store was opened.
    pub commit_log_flushes: u64,
    pub disk_used_ratio: f64,
}

/// The outcome of appending a batch: one status for all, one record per message in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPutResult {
    pub status: PutStatus,
    pub records: Vec<AppendedRecord>,
}

struct Inner {
    config: StoreConfig,
    lock: StoreLock,
    log: Arc<CommitLog>,
    queues: Arc<ConsumeQueues>,
    index: Arc<IndexService>,
    dispatcher: Dispatcher,
    checkpoint: Checkpoint,
    group_commit: GroupCommit,
    health: Health,
    retention_policy: RetentionPolicy,
    /// Tells the background threads to finish.
    stop: AtomicBool,
}

/// The message store. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct MessageStore {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovery: RecoveryReport,
    closed: AtomicBool,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("path", &self.inner.config.store_path)
            .field("max_physical_offset", &self.max_physical_offset())
            .finish()
    }
}

impl MessageStore {
    /// Opens the store at `config.store_path`, creating it if needed, recovering it if the last
    /// run crashed, and starting its threads. Fails with [`StoreError::Locked`] if another process
    /// has it open.
    pub fn open(config: StoreConfig) -> Result<MessageStore, StoreError> {
        config.validate()?;
        let root = config.store_path.clone();
        let lock = StoreLock::acquire(&root)?;
        let crashed = lock.previous_run_crashed();
        let checkpoint = Checkpoint::open(&root.join("checkpoint"))?;
        let log = Arc::new(CommitLog::load(&config)?);
        let loaded = ConsumeQueues::load(
            &root,
            config.consume_queue_entries_per_file,
            config.preallocate,
        )?;
        let queues_dropped =
            !loaded.unusable.is_empty() || (loaded.root_missing && !log.segments().is_empty());
        if queues_dropped {
            // Record the rebuild before destroying anything: with the queues' promise at 0, a
            // crash in the middle of the rebuild makes the next start replay the whole log again.
            checkpoint.update(|v| v.logics_msg_timestamp = 0)?;
            for dir in &loaded.unusable {
                info!(path = %dir.display(), "removing unusable ConsumeQueue for rebuild");
                std::fs::remove_dir_all(dir)
                    .map_err(|e| StoreError::io(format!("removing {}", dir.display()), e))?;
            }
        }
        let cp = checkpoint.values();
        let queues = Arc::new(loaded.queues);
        let index = Arc::new(IndexService::load(
            &config,
            cp.index_msg_timestamp,
            crashed,
        )?);
        let dispatcher = Dispatcher::new(
            log.clone(),
            queues.clone(),
            index.clone(),
            config.delay_levels()?,
        );
        let report = recovery::recover(RecoveryInput {
            log: &log,
            queues: &queues,
            index: &index,
            dispatcher: &dispatcher,
            checkpoint: cp,
            crashed,
            queues_dropped,
        })?;
        info!(?report, path = %root.display(), "message store opened");

        let health = Health::new(config.disk_refuse_write_ratio);
        retention::check_disk(&root, &health);
        let retention_policy = RetentionPolicy {
            reserved_ms: (config.file_reserved_time_secs as i64).saturating_mul(1000),
            clean_ratio: config.disk_clean_ratio,
            forcibly_ratio: config.disk_clean_forcibly_ratio,
        };
        log.prepare_next_segment();
        let inner = Arc::new(Inner {
            group_commit: GroupCommit::new(log.flushed()),
            config,
            lock,
            log,
            queues,
            index,
            dispatcher,
            checkpoint,
            health,
            retention_policy,
            stop: AtomicBool::new(false),
        });
        let store = MessageStore {
            threads: Mutex::new(Vec::new()),
            recovery: report,
            closed: AtomicBool::new(false),
            inner,
        };
        store.start_threads()?;
        Ok(store)
    }

    fn start_threads(&self) -> Result<(), StoreError> {
        let spawn = |name: &str, body: Box<dyn FnOnce(&Inner) + Send>| {
            let inner = self.inner.clone();
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || body(&inner))
                .map_err(|e| StoreError::io(format!("starting thread {name}"), e))
        };
        let mut threads = self.threads.lock().expect("threads lock poisoned");
        threads.push(spawn(
            "tern-dispatch",
            Box::new(|inner| inner.dispatcher.run(&inner.stop)),
        )?);
        match self.inner.config.flush_disk_type {
            FlushDiskType::SyncFlush => {
                for index in 0..GROUP_COMMIT_FLUSHERS {
                    threads.push(spawn(
                        &format!("tern-group-commit-{index}"),
                        Box::new(move |inner| {
                            let wake = || inner.dispatcher.wake();
                            flush::run_group_commit(
                                index,
                                &inner.log,
                                &inner.group_commit,
                                &inner.health,
                                &wake,
                                &inner.stop,
                            )
                        }),
                    )?);
                }
            }
            FlushDiskType::AsyncFlush => {
                threads.push(spawn(
                    "tern-flush",
                    Box::new(|inner| {
                        let c = &inner.config;
                        let settings = PeriodicFlush {
                            interval: Duration::from_millis(c.flush_interval_commit_log_ms),
                            least_pages: u64::from(c.flush_commit_log_least_pages),
                            thorough_interval: Duration::from_millis(
                                c.flush_commit_log_thorough_interval_ms,
                            ),
                        };
                        flush::run_periodic(
                            &inner.log,
                            &inner.group_commit,
                            &inner.health,
                            &settings,
                            &inner.stop,
                        )
                    }),
                )?);
                threads.push(spawn(
                    "tern-prefault",
                    Box::new(|inner| inner.log.run_prefaulter(&inner.stop)),
                )?);
            }
        }
        threads.push(spawn(
            "tern-cq-flush",
            Box::new(|inner| inner.run_queue_flush()),
        )?);
        threads.push(spawn(
            "tern-retention",
            Box::new(|inner| inner.run_retention()),
        )?);
        Ok(())
    }

    /// What recovery found when the store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Appends one message and, under SYNC_FLUSH, waits for its fsync (unless its `WAIT` property
    /// is `false`). Must be called inside a tokio runtime.
    pub async fn put_message(&self, msg: Message) -> Result<PutResult, StoreError> {
        self.append_message(&msg)?.durable().await
    }

    /// Appends one message now, without waiting: the record's place in the log (and so its order
    /// relative to other appends) is fixed when this returns, which lets a caller append while it
    /// holds a lock and wait for durability after releasing it. The message is not acknowledged
    /// until [`Appended::durable`] says so.
    pub fn append_message(&self, msg: &Message) -> Result<Appended<'_>, StoreError> {
        let wait = msg.properties.get(property::WAIT) != Some("false");
        let mut encoded = [self.inner.log.encode(msg)?];
        let record = self.inner.append(&mut encoded)?[0];
        Ok(Appended {
            store: self,
            record,
            wait,
        })
    }

    /// Appends messages as one contiguous run (consecutive queue offsets per queue) and waits
    /// once for all of them. All or none are appended.
    pub async fn put_messages(&self, msgs: &[Message]) -> Result<BatchPutResult, StoreError> {
        let wait = msgs
            .iter()
            .all(|m| m.properties.get(property::WAIT) != Some("false"));
        let mut encoded = msgs
            .iter()
            .map(|m| self.inner.log.encode(m))
            .collect::<Result<Vec<_>, _>>()?;
        let records = self.inner.append(&mut encoded)?;
        let last = records.last().expect("a batch appends at least one record");
        let status = self
            .inner
            .await_durable(last.physical_offset + u64::from(last.size), wait)
            .await?;
        Ok(BatchPutResult { status, records })
    }

    /// Up to `max_count` messages (and about `max_bytes`, at least one) of a queue from
    /// `offset`. `filter` gets each entry's tags code and keeps the message when it returns true.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_count: usize,
        max_bytes: usize,
        filter: Option<&dyn Fn(i64) -> bool>,
    ) -> GetResult {
        let queue = self.inner.queues.get(topic, queue_id);
        read::get_messages(
            &self.inner.log,
            queue.as_deref(),
            offset,
            max_count,
            max_bytes,
            filter,
        )
    }

    /// The first queue offset still readable (0 for an unknown queue).
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.inner
            .queues
            .get(topic, queue_id)
            .map_or(0, |q| q.min_offset())
    }

    /// The next queue offset to be written, i.e. the number of entries (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> u64 {
        self.inner
            .queues
            .get(topic, queue_id)
            .map_or(0, |q| q.max_offset())
    }

    /// Up to `max` raw ConsumeQueue entries of a queue from `offset` (fewer at a queue-file
    /// boundary or the queue's end; none for an unknown queue or an offset below its minimum).
    /// Padding entries are included (see [`CqEntry::is_padding`]). The broker's delay and timer
    /// services read their queues through this: 20 bytes an entry, no CommitLog access.
    pub fn queue_entries(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max: usize,
    ) -> Vec<super::consume_queue::CqEntry> {
        match self.inner.queues.get(topic, queue_id) {
            Some(queue) if offset >= queue.min_offset() => queue.entries(offset, max),
            _ => Vec::new(),
        }
    }

    /// Queue ids that exist for `topic`, sorted.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .inner
            .queues
            .all()
            .iter()
            .filter(|q| q.topic() == topic)
            .map(|q| q.queue_id())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The message stored at CommitLog offset `physical_offset`, if any is visible there.
    pub fn message_at(&self, physical_offset: u64) -> Option<StoredMessage> {
        self.inner.log.read_record(physical_offset)
    }

    /// Raw record bytes at `physical_offset` (as a consumer would receive them), without copying.
    pub fn record_bytes(&self, physical_offset: u64, size: u32) -> Option<Bytes> {
        self.inner.log.read(physical_offset, size as usize)
    }

    /// The message an offset message id names, if it names this store.
    pub fn message_by_offset_id(&self, id: &str) -> Option<StoredMessage> {
        let (host, offset) = parse_offset_message_id(id)?;
        (host == self.inner.log.store_host())
            .then(|| self.message_at(offset))
            .flatten()
    }

    /// The first queue offset whose message was stored at or after `timestamp_ms` (the queue's
    /// max offset if none was).
    pub fn offset_by_time(&self, topic: &str, queue_id: i32, timestamp_ms: i64) -> u64 {
        match self.inner.queues.get(topic, queue_id) {
            Some(queue) => read::offset_by_time(&self.inner.log, &queue, timestamp_ms),
            None => 0,
        }
    }

    /// Messages of `topic` whose `UNIQ_KEY` or one of whose `KEYS` equals `key`, stored within
    /// `[begin_ms, end_ms]`, newest first, at most `max`.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Vec<StoredMessage> {
        read::query_by_key(
            &self.inner.log,
            &self.inner.index,
            topic,
            key,
            max,
            begin_ms,
            end_ms,
        )
    }

    /// The newest message sent to `topic` (the topic the producer named: `REAL_TOPIC` for parked
    /// messages) with idempotency key `key` and stored within `[begin_ms, end_ms]`. Sees only
    /// dispatched messages: compare [`Self::dispatched_physical_offset`] with the log end to know
    /// whether a miss can be trusted. Finds nothing when the index is disabled.
    ///
    /// With `blocking = false` the call never waits for the index lock and answers `None` when
    /// the dispatcher holds it (request threads then retry on a blocking pool).
    pub fn find_by_idempotency_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        blocking: bool,
    ) -> Option<Option<StoredMessage>> {
        read::find_idempotent(
            &self.inner.log,
            &self.inner.index,
            (topic, key),
            (begin_ms, end_ms),
            blocking,
        )
    }

    /// One past the last byte of the last record.
    pub fn max_physical_offset(&self) -> u64 {
        self.inner.log.written()
    }

    /// The oldest CommitLog offset still kept.
    pub fn min_physical_offset(&self) -> u64 {
        self.inner.log.min_offset()
    }

    /// How much of the log is on disk.
    pub fn flushed_physical_offset(&self) -> u64 {
        self.inner.log.flushed()
    }

    /// How much of the log the ConsumeQueues and index cover.
    pub fn dispatched_physical_offset(&self) -> u64 {
        self.inner.dispatcher.position()
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            min_physical_offset: self.min_physical_offset(),
            max_physical_offset: self.max_physical_offset(),
            flushed_physical_offset: self.flushed_physical_offset(),
            dispatched_physical_offset: self.dispatched_physical_offset(),
            commit_log_flushes: self.inner.log.flush_count(),
            disk_used_ratio: self.disk_used_ratio(),
        }
    }

    /// Installs the listener told about every message that becomes consumable. Only one may be set.
    pub fn set_arrival_listener(&self, listener: Arc<dyn ArrivalListener>) -> bool {
        self.inner.dispatcher.set_listener(listener)
    }

    /// Runs a retention pass now, deleting expired files whatever the hour, as if the clock read
    /// `now_ms`.
    pub fn run_retention(&self, now_ms: i64) -> Result<RetentionReport, StoreError> {
        self.inner.retention_pass(now_ms, true)
    }

    /// The last measured disk-use ratio of the store's filesystem.
    pub fn disk_used_ratio(&self) -> f64 {
        self.inner.health.disk_used_ratio()
    }

    /// Clean shutdown: refuse new appends, flush everything, let the dispatcher finish, write the
    /// checkpoint and remove `abort`. Dropping the store does the same; this reports errors.
    pub fn shutdown(self) -> Result<(), StoreError> {
        self.close()
    }

    /// [`Self::shutdown`] through a shared reference, for owners that hand the store out in an
    /// `Arc` (the broker). Appends fail with `ShuttingDown` afterwards; reads keep working until
    /// the last reference is dropped. Idempotent.
    pub fn close(&self) -> Result<(), StoreError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let inner = &self.inner;
        inner.log.close();
        let flushed = inner.log.flush();
        if let Ok(offset) = &flushed {
            inner.group_commit.publish(*offset);
        }
        inner.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().expect("threads lock poisoned"));
        for handle in &threads {
            handle.thread().unpark();
        }
        for handle in threads {
            if handle.join().is_err() {
                error!("a store thread panicked");
            }
        }
        inner.log.finish_allocation();
        flushed.map_err(|e| StoreError::io("flushing the CommitLog at shutdown", e))?;
        if inner.dispatcher.position() < inner.log.written() {
            warn!("dispatch did not reach the end of the log; the next start replays the rest");
        }
        inner.queues.flush(0)?;
        inner.index.flush_all()?;
        inner.write_checkpoint(Some(inner.dispatcher.last_timestamp()))?;
        if let Some(reason) = inner.health.failure() {
            return Err(StoreError::WriteFailed(reason.to_owned()));
        }
        inner.lock.remove_abort()?;
        info!(path = %inner.config.store_path.display(), "message store shut down cleanly");
        Ok(())
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            error!(error = %e, "message store did not shut down cleanly");
        }
    }
}

impl Inner {
    fn append(
        &self,
        records: &mut [super::record::EncodedRecord],
    ) -> Result<Vec<AppendedRecord>, StoreError> {
        self.health.check_writable()?;
        let appended = self.log.append(records)?;
        match self.config.flush_disk_type {
            FlushDiskType::SyncFlush => self.group_commit.request(),
            FlushDiskType::AsyncFlush => self.dispatcher.wake(),
        }
        Ok(appended)
    }

    async fn await_durable(&self, end: u64, wait: bool) -> Result<PutStatus, StoreError> {
        if self.config.flush_disk_type == FlushDiskType::AsyncFlush || !wait {
            return Ok(PutStatus::Ok);
        }
        match self
            .group_commit
            .wait(end, self.config.sync_flush_timeout())
            .await
        {
            FlushWait::Done => Ok(PutStatus::Ok),
            FlushWait::TimedOut => Ok(PutStatus::FlushDiskTimeout),
            FlushWait::Failed(reason) => Err(StoreError::WriteFailed(reason.to_string())),
        }
    }

    /// Writes the checkpoint. `logics` is the timestamp up to which every ConsumeQueue is known
    /// to be on disk, when that is known (after a full flush).
    fn write_checkpoint(&self, logics: Option<i64>) -> Result<(), StoreError> {
        self.checkpoint.update(|v| {
            v.physic_msg_timestamp = self.log.flushed_timestamp();
            if let Some(logics) = logics {
                v.logics_msg_timestamp = logics;
            }
            v.index_msg_timestamp = self.index.flushed_timestamp();
        })
    }

    /// The queue flusher thread: flush ConsumeQueues every interval (all of them at the thorough
    /// interval), then write the checkpoint.
    fn run_queue_flush(&self) {
        let c = &self.config;
        let interval = Duration::from_millis(c.flush_interval_consume_queue_ms);
        let thorough_every = Duration::from_millis(c.flush_consume_queue_thorough_interval_ms);
        let mut last_thorough = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(interval);
            let thorough = last_thorough.elapsed() >= thorough_every;
            // Read before flushing: everything dispatched up to this timestamp is in the queues'
            // pages now and will be on disk once the flush below returns.
            let dispatched = self.dispatcher.last_timestamp();
            let least = if thorough {
                0
            } else {
                c.flush_consume_queue_least_pages
            };
            if let Err(e) = self.queues.flush(least) {
                self.health
                    .fail(format!("flushing ConsumeQueues failed: {e}"));
                continue;
            }
            if thorough {
                last_thorough = Instant::now();
            }
            let fully_flushed = thorough || least == 0;
            let result = self.write_checkpoint(fully_flushed.then_some(dispatched));
            if let Err(e) = result {
                warn!(error = %e, "cannot write the checkpoint");
            }
        }
    }

    /// The retention thread: a pass every interval; expired files go at the configured hour.
    fn run_retention(&self) {
        let interval = Duration::from_millis(self.config.retention_check_interval_ms);
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(interval);
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let at_hour = chrono::Local::now().hour() == u32::from(self.config.delete_when_hour);
            if let Err(e) = self.retention_pass(now_millis(), at_hour) {
                warn!(error = %e, "retention pass failed");
            }
        }
    }

    fn retention_pass(
        &self,
        now_ms: i64,
        time_to_delete: bool,
    ) -> Result<RetentionReport, StoreError> {
        retention::run_pass(RetentionInput {
            root: &self.config.store_path,
            policy: self.retention_policy,
            log: &self.log,
            queues: &self.queues,
            index: &self.index,
            health: &self.health,
            safe_end: self.dispatcher.position(),
            now_ms,
            time_to_delete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYNC_FLUSH store in `dir` with the given flush timeout.
    fn sync_store(dir: &std::path::Path, timeout_ms: u64) -> MessageStore {
        let mut config = StoreConfig::for_tests(dir);
        config.flush_disk_type = FlushDiskType::SyncFlush;
        config.sync_flush_timeout_ms = timeout_ms;
        MessageStore::open(config).unwrap()
    }

    /// Holds the group-commit flushers still (or lets them go).
    fn pause_flushers(store: &MessageStore, paused: bool) {
        store
            .inner
            .group_commit
            .paused
            .store(paused, Ordering::Release);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_fsync_answers_flush_disk_timeout_but_keeps_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = sync_store(dir.path(), 50);
        pause_flushers(&store, true);
        let result = store
            .put_message(Message::new("T", 0, "late"))
            .await
            .unwrap();
        assert_eq!(result.status, PutStatus::FlushDiskTimeout);
        assert_eq!(store.flushed_physical_offset(), 0);
        assert_eq!(
            store.max_offset("T", 0),
            0,
            "not visible before it is flushed"
        );
        pause_flushers(&store, false);
        let next = store
            .put_message(Message::new("T", 0, "on time"))
            .await
            .unwrap();
        assert_eq!(next.status, PutStatus::Ok);
        assert_eq!(
            next.record.queue_offset, 1,
            "the timed-out message kept its offset"
        );
        assert!(store.flushed_physical_offset() >= next.record.physical_offset);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_sync_appenders_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(sync_store(dir.path(), 5_000));
        let appends_per_task = 40;
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..appends_per_task {
                        let msg = Message::new("G", t % 8, format!("{t}-{i}"));
                        assert_eq!(store.put_message(msg).await.unwrap().status, PutStatus::Ok);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let appends = 64 * appends_per_task as u64;
        let flushes = store.stats().commit_log_flushes;
        // One fsync per append would be `appends`; group commit shares each among many writers.
        assert!(
            flushes * 2 <= appends,
            "{flushes} flushes for {appends} appends"
        );
    }

    #[tokio::test]
    async fn unflushed_backlog_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = sync_store(dir.path(), 5_000);
        pause_flushers(&store, true);
        let body = vec![7u8; 60 * 1024];
        let mut accepted = 0usize;
        let err = loop {
            let msg = Message::new("B", 0, body.clone()).with_property(property::WAIT, "false");
            match store.put_message(msg).await {
                Ok(_) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 10_000, "the backlog was never refused");
        };
        assert!(matches!(err, StoreError::FlushBacklog { .. }), "{err:?}");
        assert!(accepted * body.len() <= 64 << 20);
        pause_flushers(&store, false);
        // Once the flushers catch up, writes are accepted again.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while store.flushed_physical_offset() < store.max_physical_offset() {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store
            .put_message(Message::new("B", 0, "again"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn wait_false_does_not_wait_for_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = sync_store(dir.path(), 10_000);
        pause_flushers(&store, true);
        let msg = Message::new("W", 0, "fire and forget").with_property(property::WAIT, "false");
        let result = store.put_message(msg).await.unwrap();
        assert_eq!(result.status, PutStatus::Ok);
        pause_flushers(&store, false);
    }
}
