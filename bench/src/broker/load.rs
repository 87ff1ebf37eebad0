//! The load: producers that keep exactly N SEND_MESSAGE_V2 requests in flight, and the
//! end-to-end (produce → long-poll pull) latency probe.
//!
//! Producers work like a RocketMQ producer: N tasks share one `RemotingClient` (so one pooled
//! connection), each sends, awaits the response and sends again, choosing queues round-robin
//! itself. Every request is built the way the Java client builds it (same header fields, `TAGS`,
//! `UNIQ_KEY` and `WAIT` properties), so frame sizes and the broker's parsing work are realistic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::{
    CreateTopicRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueueRequestHeader, SendMessageRequestHeader,
    SendMessageResponseHeader, pull_sys_flag,
};
use tern_core::protocol::{RemotingClient, RemotingCommand, SerializeType};
use tern_core::store::{Entry, FIXED_OVERHEAD_V1_IPV4, Properties, decode_record};
use tokio::task::JoinHandle;

use crate::error::{BenchError, Context, Result};
use crate::stats::Latency;
use crate::workload::pseudo_random_bytes;

const PRODUCER_GROUP: &str = "BenchProducerGroup";
const CONSUMER_GROUP: &str = "BenchConsumerGroup";
const TAG: &str = "TagA";
/// Generous: a SYNC_FLUSH send waits for the group commit, and the store gives up after 5 s.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the consumer asks the broker to hold a pull at the head of a queue, as RocketMQ's
/// push consumer does (`brokerSuspendMaxTimeMillis`).
const PULL_SUSPEND: Duration = Duration::from_secs(15);
/// Messages per pull, RocketMQ's `pullBatchSize` default.
pub(super) const PULL_BATCH: i32 = 32;
/// How long the end-to-end probe waits for the last messages after the producer stopped.
const E2E_DRAIN: Duration = Duration::from_secs(5);

/// Set by the Ctrl-C handler; every load loop checks it, so the run ends within one request and
/// the guards in `host` clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// The measured interval of a scenario: the load runs from "now" (the warm-up, which connects
/// and fills the pipeline) until `end`, and only what completes in `start..end` counts.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn after_warmup(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + duration,
        }
    }

    pub fn is_over(&self, now: Instant) -> bool {
        now >= self.end
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

/// What completed inside a window: the count of every response that arrived in it, and the
/// latency of those that were also sent in it (a request sent during the warm-up has part of its
/// latency outside the window).
#[derive(Default)]
pub struct Tally {
    pub messages: u64,
    pub latency: Latency,
}

impl Tally {
    pub fn record(&mut self, window: &Window, started: Instant, done: Instant) {
        if done >= window.start && done < window.end {
            self.messages += 1;
            if started >= window.start {
                self.latency.record(done - started);
            }
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.messages += other.messages;
        self.latency.merge(&other.latency);
    }
}

/// Builds the producer's requests.
pub struct Producer {
    pub topic: String,
    queues: u32,
    body: Bytes,
    /// Process id and start time, so two runs never make the same `UNIQ_KEY`s.
    key_prefix: String,
    serialize: SerializeType,
    /// Every message also carries a fresh idempotency key.
    idempotency_keys: bool,
}

impl Producer {
    pub fn new(topic: &str, queues: u32, body_size: usize, serialize: SerializeType) -> Producer {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
        Producer {
            topic: topic.to_owned(),
            queues: queues.max(1),
            body: Bytes::from(pseudo_random_bytes(body_size)),
            key_prefix: format!("{:08X}{:08X}", std::process::id(), nanos),
            serialize,
            idempotency_keys: false,
        }
    }

    /// Gives every message a fresh idempotency key (a first send each: the window's full cost).
    pub fn with_idempotency_keys(mut self, on: bool) -> Producer {
        self.idempotency_keys = on;
        self
    }

    pub fn queue_of(&self, n: u64) -> i32 {
        (n % u64::from(self.queues)) as i32
    }

    /// The properties a Java producer sends: tags, a 32-hex-digit unique key, wait-for-store.
    fn properties(&self, n: u64) -> String {
        let mut properties = format!(
            "TAGS\u{1}{TAG}\u{2}UNIQ_KEY\u{1}{}{n:016X}\u{2}WAIT\u{1}true\u{2}",
            self.key_prefix
        );
        if self.idempotency_keys {
            properties.push_str(&format!(
                "{}\u{1}idem-{}-{n}\u{2}",
                tern_core::store::property::IDEMPOTENCY_KEY,
                self.key_prefix
            ));
        }
        properties
    }

    /// The `n`-th request, with the benchmark body.
    pub fn request(&self, n: u64) -> RemotingCommand {
        self.request_with_body(n, self.body.clone())
    }

    /// The `n`-th request (queue `n mod queues`) carrying `body`.
    pub fn request_with_body(&self, n: u64, body: Bytes) -> RemotingCommand {
        let born_timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // The fields DefaultMQProducer (5.x) sets, so the header is as long as a real one.
        let header = SendMessageRequestHeader {
            producer_group: PRODUCER_GROUP.into(),
            topic: self.topic.clone(),
            default_topic: Some("TBW102".into()),
            default_topic_queue_nums: Some(4),
            queue_id: self.queue_of(n),
            sys_flag: 0,
            born_timestamp,
            flag: 0,
            properties: Some(self.properties(n)),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            batch: Some(false),
            max_reconsume_times: None,
            broker_name: Some("broker-a".into()),
        };
        let mut command = RemotingCommand::request(request::SEND_MESSAGE_V2)
            .with_body(body)
            .with_serialize_type(self.serialize);
        header.write_v2(&mut command.ext_fields);
        command
    }

    /// Size of the CommitLog record the broker stores for one message (what the raw group-commit
    /// baseline writes per message).
    pub fn record_len(&self) -> Result<usize> {
        let properties = Properties::decode(&self.properties(0))
            .encode()
            .map_err(|e| BenchError::Invalid(format!("benchmark message properties: {e}")))?;
        Ok(FIXED_OVERHEAD_V1_IPV4 + self.topic.len() + properties.len() + self.body.len())
    }
}

/// Calls `addr` and fails on anything but SUCCESS.
pub(super) async fn call_ok(
    client: &RemotingClient,
    addr: &str,
    command: RemotingCommand,
    what: &str,
) -> Result<RemotingCommand> {
    let response = client
        .invoke(addr, command, ADMIN_TIMEOUT)
        .await
        .context(|| what.to_owned())?;
    if !response.is_success() {
        return Err(BenchError::Invalid(format!(
            "{what}: code {} ({})",
            response.code,
            response.remark_or_empty()
        )));
    }
    Ok(response)
}

/// Creates (or updates) `topic` with `queues` read and write queues.
pub async fn create_topic(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queues: u32,
) -> Result<()> {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        read_queue_nums: queues as i32,
        write_queue_nums: queues as i32,
        perm: 6,
        ..Default::default()
    };
    let command = RemotingCommand::request_with(request::UPDATE_AND_CREATE_TOPIC, &header);
    call_ok(client, addr, command, &format!("creating topic {topic}")).await?;
    Ok(())
}

/// Sends one request and checks the answer: SUCCESS (anything else, e.g. FLUSH_DISK_TIMEOUT,
/// makes the figures meaningless) for the queue that was asked for.
pub(super) async fn send_checked(
    client: &RemotingClient,
    addr: &str,
    command: RemotingCommand,
    queue_id: i32,
) -> Result<()> {
    let response = client
        .invoke(addr, command, SEND_TIMEOUT)
        .await
        .context(|| format!("sending to {addr}"))?;
    if response.code != response::SUCCESS {
        return Err(BenchError::Invalid(format!(
            "a send was answered with code {} ({})",
            response.code,
            response.remark_or_empty()
        )));
    }
    let header: SendMessageResponseHeader = response
        .header()
        .map_err(|e| BenchError::Invalid(format!("send response header: {e}")))?;
    if header.queue_id != queue_id {
        return Err(BenchError::Invalid(format!(
            "a send to queue {queue_id} was stored in queue {}",
            header.queue_id
        )));
    }
    Ok(())
}

/// Awaits every task, even after one failed (so none keeps sending into a broker about to be
/// stopped), and merges their tallies; the first error wins.
pub(super) async fn join_all(tasks: Vec<JoinHandle<Result<Tally>>>) -> Result<Tally> {
    let mut total = Tally::default();
    let mut first_error = None;
    for task in tasks {
        let outcome = task
            .await
            .map_err(|e| BenchError::Invalid(format!("a load task failed: {e}")))
            .and_then(|result| result);
        match outcome {
            Ok(tally) => total.merge(&tally),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(total), Err)
}

/// `in_flight` tasks over one pooled connection, each sending and awaiting in a loop until the
/// window closes.
pub async fn produce(
    addr: &str,
    producer: Arc<Producer>,
    in_flight: usize,
    window: Window,
) -> Result<Tally> {
    let client = Arc::new(RemotingClient::new());
    let addr: Arc<str> = Arc::from(addr);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let tasks = (0..in_flight.max(1))
        .map(|_| {
            let (client, addr, producer) = (client.clone(), addr.clone(), producer.clone());
            let (next, failed) = (next.clone(), failed.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                loop {
                    if window.is_over(Instant::now()) || failed.load(Ordering::Relaxed) {
                        return Ok(tally);
                    }
                    if interrupted() {
                        return Err(BenchError::Interrupted);
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let command = producer.request(n);
                    let started = Instant::now();
                    let sent = send_checked(&client, &addr, command, producer.queue_of(n)).await;
                    if let Err(e) = sent {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    tally.record(&window, started, Instant::now());
                }
            })
        })
        .collect();
    let outcome = join_all(tasks).await;
    client.close_all();
    outcome
}

/// Nanoseconds since a process-wide epoch: the end-to-end probe's producer and consumer run in
/// this process, so their clocks agree exactly.
fn since_epoch(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    now.saturating_duration_since(epoch).as_nanos() as u64
}

/// One producer sending `rate` messages/s (each send on its own task, so a slow send does not
/// delay the schedule) with its send time in the body, and one consumer long-polling every
/// queue on a connection of its own, like a separate consumer client; latency = receive time −
/// send time. Returns the messages sent inside the window with their latencies; all of them
/// must arrive, or the probe fails.
pub async fn end_to_end(
    addr: &str,
    producer: Arc<Producer>,
    rate: f64,
    window: Window,
) -> Result<Tally> {
    let consumer = Arc::new(RemotingClient::new());
    let sender = Arc::new(RemotingClient::new());
    let addr: Arc<str> = Arc::from(addr);
    let seen = Arc::new(Mutex::new(Tally::default()));
    let mut pullers = Vec::new();
    for queue_id in 0..producer.queues as i32 {
        let offset = max_offset(&consumer, &addr, &producer.topic, queue_id).await?;
        let puller = Puller {
            client: consumer.clone(),
            addr: addr.clone(),
            topic: producer.topic.clone(),
            queue_id,
            serialize: producer.serialize,
        };
        pullers.push(tokio::spawn(puller.run(offset, window, seen.clone())));
    }
    let outcome = produce_at_rate(&sender, &addr, &producer, rate, window).await;
    let outcome = match outcome {
        Ok(sent) => drain(&pullers, &seen, sent).await,
        Err(e) => Err(e),
    };
    // A puller that stopped early did so with an error: report it rather than the symptom.
    for puller in pullers {
        if puller.is_finished() {
            match puller.await {
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(BenchError::Invalid(format!("a puller failed: {e}"))),
                Ok(Ok(())) => {}
            }
        } else {
            puller.abort(); // held in a long poll: nothing more is expected
        }
    }
    sender.close_all();
    consumer.close_all();
    outcome?;
    let tally = std::mem::take(&mut *seen.lock().expect("e2e tally lock"));
    Ok(tally)
}

/// Waits until all `sent` window messages were seen, for at most [`E2E_DRAIN`].
async fn drain(pullers: &[JoinHandle<Result<()>>], seen: &Mutex<Tally>, sent: u64) -> Result<()> {
    let deadline = Instant::now() + E2E_DRAIN;
    loop {
        let received = seen.lock().expect("e2e tally lock").messages;
        if received >= sent {
            return Ok(());
        }
        if Instant::now() >= deadline || pullers.iter().any(JoinHandle::is_finished) {
            return Err(BenchError::Invalid(format!(
                "end-to-end: only {received} of the {sent} messages sent in the window arrived"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The open-loop producer of the end-to-end probe; returns how many sends fell in the window.
async fn produce_at_rate(
    client: &Arc<RemotingClient>,
    addr: &Arc<str>,
    producer: &Producer,
    rate: f64,
    window: Window,
) -> Result<u64> {
    let padding = pseudo_random_bytes(producer.body.len().max(8));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // After a stall, continue at the rate rather than bursting to catch up.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sends: Vec<JoinHandle<Result<()>>> = Vec::new();
    let mut sent = 0u64;
    let mut outcome = Ok(());
    for n in 0.. {
        ticks.tick().await;
        let now = Instant::now();
        if window.is_over(now) {
            break;
        }
        if interrupted() {
            outcome = Err(BenchError::Interrupted);
            break;
        }
        let mut body = BytesMut::with_capacity(padding.len());
        body.put_u64_le(since_epoch(now));
        body.extend_from_slice(&padding[8..]);
        let command = producer.request_with_body(n, body.freeze());
        let queue_id = producer.queue_of(n);
        if now >= window.start {
            sent += 1;
        }
        let (client, addr) = (client.clone(), addr.clone());
        sends.push(tokio::spawn(async move {
            send_checked(&client, &addr, command, queue_id).await
        }));
        // Finished sends are checked as we go, so the list stays short.
        if sends.len() >= 256 {
            outcome = check_sends(std::mem::take(&mut sends)).await;
            if outcome.is_err() {
                break;
            }
        }
    }
    let rest = check_sends(sends).await;
    outcome.and(rest).map(|()| sent)
}

/// Awaits every send; the first error wins.
async fn check_sends(sends: Vec<JoinHandle<Result<()>>>) -> Result<()> {
    let mut outcome = Ok(());
    for send in sends {
        let result = send
            .await
            .map_err(|e| BenchError::Invalid(format!("a send task failed: {e}")))
            .and_then(|r| r);
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}

pub(super) async fn max_offset(
    client: &RemotingClient,
    addr: &str,
    topic: &str,
    queue_id: i32,
) -> Result<i64> {
    let header = QueueRequestHeader {
        topic: topic.into(),
        queue_id,
    };
    let command = RemotingCommand::request_with(request::GET_MAX_OFFSET, &header);
    let response = call_ok(client, addr, command, "querying a queue's max offset").await?;
    let offset: OffsetResponseHeader = response
        .header()
        .map_err(|e| BenchError::Invalid(format!("max offset header: {e}")))?;
    Ok(offset.offset)
}

/// The consumer side of the probe for one queue: long-polls from the queue's head, as RocketMQ's
/// push consumer does.
struct Puller {
    client: Arc<RemotingClient>,
    addr: Arc<str>,
    topic: String,
    queue_id: i32,
    serialize: SerializeType,
}

impl Puller {
    /// Pulls until aborted; records every message whose send time is inside the window.
    async fn run(self, mut offset: i64, window: Window, seen: Arc<Mutex<Tally>>) -> Result<()> {
        let (start, end) = (since_epoch(window.start), since_epoch(window.end));
        loop {
            let header = PullMessageRequestHeader {
                consumer_group: CONSUMER_GROUP.into(),
                topic: self.topic.clone(),
                queue_id: self.queue_id,
                queue_offset: offset,
                max_msg_nums: PULL_BATCH,
                sys_flag: pull_sys_flag::SUSPEND,
                commit_offset: 0,
                suspend_timeout_millis: PULL_SUSPEND.as_millis() as i64,
                subscription: None,
                sub_version: 0,
                expression_type: Some("TAG".into()),
                max_msg_bytes: None,
            };
            let command = RemotingCommand::request_with(request::PULL_MESSAGE, &header)
                .with_serialize_type(self.serialize);
            let response = self
                .client
                .invoke(&self.addr, command, PULL_SUSPEND + SEND_TIMEOUT)
                .await
                .context(|| format!("pulling queue {}", self.queue_id))?;
            let received = since_epoch(Instant::now());
            match response.code {
                response::SUCCESS
                | response::PULL_NOT_FOUND
                | response::PULL_RETRY_IMMEDIATELY
                | response::PULL_OFFSET_MOVED => {}
                code => {
                    return Err(BenchError::Invalid(format!(
                        "a pull was answered with code {code} ({})",
                        response.remark_or_empty()
                    )));
                }
            }
            let next: PullMessageResponseHeader = response
                .header()
                .map_err(|e| BenchError::Invalid(format!("pull response header: {e}")))?;
            if response.code == response::SUCCESS {
                let sends = send_times(&response.body)?;
                let mut seen = seen.lock().expect("e2e tally lock");
                for sent in sends.into_iter().filter(|t| (start..end).contains(t)) {
                    seen.messages += 1;
                    seen.latency
                        .record(Duration::from_nanos(received.saturating_sub(sent)));
                }
            }
            offset = next.next_begin_offset;
        }
    }
}

/// The send times carried in the first 8 bytes of every record's body in a pull response.
fn send_times(mut rest: &[u8]) -> Result<Vec<u64>> {
    let mut times = Vec::new();
    while !rest.is_empty() {
        match decode_record(rest, true) {
            Ok(Entry::Record(view)) => {
                let stamp: [u8; 8] = view
                    .body
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        BenchError::Invalid(
                            "a pulled message is too short for its send time".into(),
                        )
                    })?;
                times.push(u64::from_le_bytes(stamp));
                rest = rest.get(view.total_size as usize..).unwrap_or(&[]);
            }
            other => {
                return Err(BenchError::Invalid(format!(
                    "a pull response holds {other:?} instead of records"
                )));
            }
        }
    }
    Ok(times)
}
