//! `tern-bench pop`: pop + ack consumption against pull consumption of the same preloaded
//! messages, in the same run, on the same broker.
//!
//! Per run: a fresh `tern-broker` child process (ASYNC_FLUSH by default, started like
//! `tern-bench broker` starts it), a topic with `--queues` queues, `--messages` messages of
//! `--size` bytes preloaded (round robin over the queues, 64 sends in flight, at most
//! `--preload-seconds`), then for every consumer count:
//! - **pull**: `min(consumers, queues)` pullers, each owning the queues `q mod pullers == i` as a
//!   RocketMQ rebalance would hand them out, one PULL_MESSAGE (max 32, no suspend) in flight per
//!   puller, round robin over its queues, the consumed offset committed by the next pull's
//!   COMMIT_OFFSET flag (as the Java push consumer does), until every queue is read to its end;
//! - **pop**: that many consumers, each POP_MESSAGE (all queues, max 32, invisible 60 s, 100 ms
//!   poll), then ACK_MESSAGE for every message of the batch, all acks of a batch in flight at
//!   once, awaited before the next pop; until every message is acked;
//! - **pop + batch ack**: the same, with one TERN_BATCH_ACK per popped batch.
//!
//! Each scenario reads all N messages with a consumer group of its own, so every scenario starts
//! from the same data. Each consumer (puller) has its own connection, like a separate client.
//! Throughput = N / time until the last message was acked (pulled). Latency is per call.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tern_core::protocol::body::{
    BatchAckEntry, BatchAckRequestBody, BatchAckResponseBody, decode_json, encode_json,
};
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::{
    AckMessageRequestHeader, PopMessageRequestHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, pull_sys_flag,
};
use tern_core::protocol::{RemotingClient, RemotingCommand, SerializeType};
use tern_core::store::{Entry, decode_record, find_property, property};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

use super::cpu::CpuMark;
use super::host::{self, BrokerServer, Hosting};
use super::load::{self, Producer, SEND_TIMEOUT, interrupted};
use super::{Flush, check_interrupted, client_runtime, settle};
use crate::error::{BenchError, Context, Result};
use crate::stats::{Latency, Percentiles, median};
use crate::sysinfo::Machine;

const TOPIC: &str = "BenchPopTopic";
/// Messages per pop and per pull (RocketMQ's `pullBatchSize` default, and the broker's maximum).
const BATCH: i32 = load::PULL_BATCH;
/// Invisible time of popped messages: far longer than a run, so nothing is redelivered.
const INVISIBLE_MS: i64 = 60_000;
/// How long a pop that finds nothing is held (only at the very end of a scenario, when the last
/// messages are popped by others but not yet acked).
const POP_POLL_MS: i64 = 100;
/// Sends in flight while preloading.
const PRELOAD_IN_FLIGHT: usize = 64;
/// A scenario that has not consumed everything by then is reported as failed.
const SCENARIO_LIMIT: Duration = Duration::from_secs(600);

const DEFAULT_MESSAGES: u64 = 200_000;
const QUICK_MESSAGES: u64 = 10_000;

#[derive(Debug, Args)]
pub struct PopArgs {
    /// Run the broker inside this process on a runtime of its own (for profiling both sides).
    /// Default: a `tern-broker` child process.
    #[arg(long)]
    in_process: bool,
    /// The `tern-broker` executable [default: next to tern-bench].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Flush mode of the broker.
    #[arg(long, value_enum, ignore_case = true, default_value = "ASYNC_FLUSH")]
    flush: Flush,
    /// Messages to preload and consume per scenario [default: 200000; 10000 with --quick].
    #[arg(long)]
    messages: Option<u64>,
    /// Longest the preload may take; fewer messages are used if it takes longer.
    #[arg(long, default_value_t = 10.0)]
    preload_seconds: f64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Queues of the topic. 16 by default, so that each of 16 pullers owns a queue.
    #[arg(long, default_value_t = 16)]
    queues: u32,
    /// Concurrent consumers (pop) and pullers (pull, at most one per queue).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    consumers: Vec<usize>,
    /// Run everything this many times and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A smoke run: few messages, so the whole command takes seconds.
    #[arg(long)]
    quick: bool,
    /// Directory for the broker's store. A fresh temporary directory is made in it and removed at
    /// the end. /tmp is often tmpfs (memory): use a real disk.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Worker threads of the load generator's runtime [default: 1, a current-thread runtime].
    #[arg(long)]
    client_threads: Option<usize>,
    /// Also write every run's figures, the medians and ratios to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Plan {
    hosting: Hosting,
    flush: Flush,
    messages: u64,
    preload: Duration,
    size: usize,
    queues: u32,
    consumers: Vec<usize>,
    repeat: usize,
    client_threads: usize,
}

impl Plan {
    fn from_args(args: &PopArgs) -> Result<Plan> {
        let bad = |m: &str| Err(BenchError::Args(m.to_owned()));
        let messages = args.messages.unwrap_or(if args.quick {
            QUICK_MESSAGES
        } else {
            DEFAULT_MESSAGES
        });
        if !(1..=100_000_000).contains(&messages) {
            return bad("--messages must be in 1..=100000000");
        }
        if !(args.preload_seconds.is_finite()
            && args.preload_seconds > 0.0
            && args.preload_seconds <= 3600.0)
        {
            return bad("--preload-seconds must be in (0, 3600]");
        }
        if args.size == 0 || args.size > 4 << 20 {
            return bad("--size must be in 1..=4194304");
        }
        if !(1..=1024).contains(&args.queues) {
            return bad("--queues must be in 1..=1024");
        }
        if args.consumers.is_empty() || args.consumers.iter().any(|&c| c == 0 || c > 1024) {
            return bad("--consumers must list counts in 1..=1024");
        }
        if args.repeat == 0 {
            return bad("--repeat must be at least 1");
        }
        if args.client_threads == Some(0) {
            return bad("--client-threads must be positive");
        }
        let hosting = if args.in_process {
            Hosting::InProcess
        } else {
            Hosting::Child {
                broker_bin: match &args.broker_bin {
                    Some(bin) => bin.clone(),
                    None => host::default_broker_bin()?,
                },
            }
        };
        let mut consumers = args.consumers.clone();
        consumers.sort_unstable();
        consumers.dedup();
        Ok(Plan {
            hosting,
            flush: args.flush,
            messages,
            preload: Duration::from_secs_f64(args.preload_seconds),
            size: args.size,
            queues: args.queues,
            consumers,
            repeat: args.repeat,
            client_threads: args.client_threads.unwrap_or(1),
        })
    }
}

/// Pop or pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Pull,
    Pop,
    /// Pop, then one TERN_BATCH_ACK per popped batch.
    PopBatchAck,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pull => "pull",
            Mode::Pop => "pop + ack",
            Mode::PopBatchAck => "pop + batch ack",
        }
    }
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct PopRow {
    pub path: Mode,
    /// Consumers (pop) or pullers (pull) running concurrently.
    pub consumers: usize,
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
    /// Latency of the POP_MESSAGE calls that returned messages, or of every PULL_MESSAGE call.
    pub call_latency: Option<Percentiles>,
    /// Latency of the ACK_MESSAGE calls (pop only).
    pub ack_latency: Option<Percentiles>,
    /// POP_MESSAGE (PULL_MESSAGE) calls made, with and without messages.
    pub calls: u64,
    pub empty_calls: u64,
    pub broker_cpu_us_per_msg: Option<f64>,
    pub bench_cpu_us_per_msg: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Settings {
    broker: String,
    flush: String,
    dir: String,
    messages_requested: u64,
    size: usize,
    queues: u32,
    consumers: Vec<usize>,
    batch: i32,
    invisible_ms: i64,
    pop_poll_ms: i64,
    client_threads: usize,
    repeat: usize,
}

#[derive(Debug, Serialize)]
struct Run {
    /// Messages actually preloaded (fewer than requested if the preload hit its time limit).
    preloaded: u64,
    preload_msgs_per_s: f64,
    rows: Vec<PopRow>,
}

#[derive(Debug, Serialize)]
struct Ratio {
    consumers: usize,
    /// Median over runs of (pop msgs/s ÷ pull msgs/s) of the same run.
    pop_over_pull: f64,
    /// The same with batch acks.
    batch_ack_over_pull: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    settings: Settings,
    machine: Machine,
    medians: Vec<PopRow>,
    ratios: Vec<Ratio>,
    runs: Vec<Run>,
}

/// Runs the pop benchmark and prints the report.
pub fn run(args: PopArgs) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    let (work, work_path, machine) =
        crate::sysinfo::work_dir(&args.dir, "tern-bench-pop-", "the broker's figures")?;
    let runtime = client_runtime(plan.client_threads)?;
    eprintln!(
        "tern-bench pop: {} CPUs, {} at {}",
        machine.cpus,
        machine.filesystem,
        work_path.display()
    );
    let mut runs = Vec::with_capacity(plan.repeat);
    for repeat in 1..=plan.repeat {
        eprintln!("run {repeat}/{}", plan.repeat);
        runs.push(run_once(&plan, &runtime, &work_path)?);
    }
    let report = Report {
        settings: Settings {
            broker: match &plan.hosting {
                Hosting::Child { broker_bin } => format!("child process {}", broker_bin.display()),
                Hosting::InProcess => "in process (--in-process)".into(),
                Hosting::External { addr } => format!("external at {addr}"),
            },
            flush: plan.flush.name().to_owned(),
            dir: work_path.display().to_string(),
            messages_requested: plan.messages,
            size: plan.size,
            queues: plan.queues,
            consumers: plan.consumers.clone(),
            batch: BATCH,
            invisible_ms: INVISIBLE_MS,
            pop_poll_ms: POP_POLL_MS,
            client_threads: plan.client_threads,
            repeat: plan.repeat,
        },
        machine,
        medians: medians(&runs),
        ratios: ratios(&plan.consumers, &runs),
        runs,
    };
    print!("{}", report.to_markdown());
    if let Some(path) = &args.json {
        crate::sysinfo::write_json(path, &report)?;
    }
    drop(runtime);
    work.close()
        .context(|| "removing the benchmark directory".to_owned())?;
    Ok(())
}

/// One fresh broker: preload, then pull and pop with every consumer count.
fn run_once(plan: &Plan, runtime: &Runtime, work: &Path) -> Result<Run> {
    check_interrupted()?;
    let broker = BrokerServer::start(&plan.hosting, work, plan.flush)?;
    let pid = broker
        .pid
        .map_or_else(String::new, |p| format!(", pid {p}"));
    eprintln!("  broker {} at {}{pid}", plan.flush, broker.addr);
    let producer = Arc::new(Producer::new(
        TOPIC,
        plan.queues,
        plan.size,
        SerializeType::Json,
    ));
    let started = Instant::now();
    let (preloaded, ends) = runtime.block_on(async {
        let client = RemotingClient::new();
        load::create_topic(&client, &broker.addr, TOPIC, plan.queues).await?;
        client.close_all();
        let sent = preload(&broker.addr, producer.clone(), plan.messages, plan.preload).await?;
        let ends = dispatched(&broker.addr, plan.queues, sent).await?;
        Ok::<_, BenchError>((sent, ends))
    })?;
    let preload_msgs_per_s = preloaded as f64 / started.elapsed().as_secs_f64();
    eprintln!("  preloaded {preloaded} messages ({preload_msgs_per_s:.0} msgs/s)");
    let mut rows = Vec::new();
    for &consumers in &plan.consumers {
        for path in [Mode::Pull, Mode::Pop, Mode::PopBatchAck] {
            check_interrupted()?;
            settle();
            let group = match path {
                Mode::Pull => format!("BenchPull-{consumers}"),
                Mode::Pop => format!("BenchPop-{consumers}"),
                Mode::PopBatchAck => format!("BenchPopBatch-{consumers}"),
            };
            let cpu = CpuMark::now(broker.pid);
            let outcome = match path {
                Mode::Pull => runtime.block_on(pull(&broker.addr, &group, consumers, &ends)),
                Mode::Pop => {
                    runtime.block_on(pop(&broker.addr, &group, consumers, preloaded, false))
                }
                Mode::PopBatchAck => {
                    runtime.block_on(pop(&broker.addr, &group, consumers, preloaded, true))
                }
            }?;
            let cpu = cpu.since();
            let per_msg = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6 / preloaded as f64);
            let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
            let row = PopRow {
                path,
                consumers: match path {
                    Mode::Pull => consumers.min(plan.queues as usize),
                    Mode::Pop | Mode::PopBatchAck => consumers,
                },
                messages: outcome.messages,
                seconds,
                msgs_per_s: outcome.messages as f64 / seconds,
                call_latency: outcome.calls.percentiles(),
                ack_latency: outcome.acks.percentiles(),
                calls: outcome.call_count,
                empty_calls: outcome.empty_calls,
                broker_cpu_us_per_msg: per_msg(cpu.server),
                bench_cpu_us_per_msg: per_msg(cpu.bench),
            };
            progress(&row);
            rows.push(row);
        }
    }
    broker.stop()?;
    Ok(Run {
        preloaded,
        preload_msgs_per_s,
        rows,
    })
}

/// Sends up to `messages` messages with [`PRELOAD_IN_FLIGHT`] in flight over one connection,
/// round robin over the queues, for at most `limit`; returns how many were stored (a prefix of
/// the sequence: messages `0..sent`).
async fn preload(
    addr: &str,
    producer: Arc<Producer>,
    messages: u64,
    limit: Duration,
) -> Result<u64> {
    let client = Arc::new(RemotingClient::new());
    let addr: Arc<str> = Arc::from(addr);
    let next = Arc::new(AtomicU64::new(0));
    let stored = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + limit;
    let tasks: Vec<JoinHandle<Result<load::Tally>>> = (0..PRELOAD_IN_FLIGHT)
        .map(|_| {
            let (client, addr, producer) = (client.clone(), addr.clone(), producer.clone());
            let (next, stored, failed) = (next.clone(), stored.clone(), failed.clone());
            tokio::spawn(async move {
                loop {
                    if failed.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        return Ok(load::Tally::default());
                    }
                    if interrupted() {
                        return Err(BenchError::Interrupted);
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= messages {
                        return Ok(load::Tally::default());
                    }
                    let sent = load::send_checked(
                        &client,
                        &addr,
                        producer.request(n),
                        producer.queue_of(n),
                    )
                    .await;
                    if let Err(e) = sent {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    stored.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let outcome = load::join_all(tasks).await;
    client.close_all();
    outcome?;
    // Every task stops after its current send, so the messages stored are exactly `0..stored`.
    Ok(stored.load(Ordering::Relaxed))
}

/// Waits until the consume queues index all `sent` messages; returns each queue's end offset.
async fn dispatched(addr: &str, queues: u32, sent: u64) -> Result<Vec<i64>> {
    let client = RemotingClient::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ends = Vec::with_capacity(queues as usize);
        for queue_id in 0..queues as i32 {
            ends.push(load::max_offset(&client, addr, TOPIC, queue_id).await?);
        }
        let indexed: i64 = ends.iter().sum();
        if indexed as u64 >= sent {
            client.close_all();
            return Ok(ends);
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Invalid(format!(
                "only {indexed} of {sent} preloaded messages were indexed after 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one consumer (or all of them, merged) saw.
#[derive(Default)]
struct Outcome {
    messages: u64,
    elapsed: Duration,
    calls: Latency,
    acks: Latency,
    call_count: u64,
    empty_calls: u64,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.messages += other.messages;
        self.calls.merge(&other.calls);
        self.acks.merge(&other.acks);
        self.call_count += other.call_count;
        self.empty_calls += other.empty_calls;
    }
}

/// Awaits every consumer task (even after one failed) and merges them; the first error wins.
async fn join_consumers(tasks: Vec<JoinHandle<Result<Outcome>>>) -> Result<Outcome> {
    let mut total = Outcome::default();
    let mut first_error = None;
    for task in tasks {
        let outcome = task
            .await
            .map_err(|e| BenchError::Invalid(format!("a consumer task failed: {e}")))
            .and_then(|r| r);
        match outcome {
            Ok(outcome) => total.merge(outcome),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(total), Err)
}

/// State shared by the consumers of one scenario.
struct Shared {
    started: Instant,
    total: u64,
    done: AtomicU64,
    /// When the last message was consumed.
    finished: Mutex<Option<Instant>>,
    failed: AtomicBool,
}

impl Shared {
    fn new(total: u64) -> Arc<Shared> {
        Arc::new(Shared {
            started: Instant::now(),
            total,
            done: AtomicU64::new(0),
            finished: Mutex::new(None),
            failed: AtomicBool::new(false),
        })
    }

    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::AcqRel) + n;
        if done >= self.total {
            self.finished
                .lock()
                .expect("finish lock")
                .get_or_insert_with(Instant::now);
        }
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.total || self.failed.load(Ordering::Relaxed)
    }

    /// Fails the consumer on interruption or when the scenario runs far too long.
    fn check(&self) -> Result<()> {
        if interrupted() {
            return Err(BenchError::Interrupted);
        }
        if self.started.elapsed() > SCENARIO_LIMIT {
            return Err(BenchError::Invalid(format!(
                "only {} of {} messages consumed after {SCENARIO_LIMIT:?}",
                self.done.load(Ordering::Relaxed),
                self.total
            )));
        }
        Ok(())
    }

    fn elapsed(&self) -> Duration {
        let finished = *self.finished.lock().expect("finish lock");
        finished.unwrap_or_else(Instant::now) - self.started
    }
}

/// Runs `body` on `consumers` tasks, each with its own connection, and merges their outcomes.
async fn consume<F, Fut>(shared: Arc<Shared>, consumers: usize, body: F) -> Result<Outcome>
where
    F: Fn(usize, Arc<RemotingClient>, Arc<Shared>) -> Fut,
    Fut: Future<Output = Result<Outcome>> + Send + 'static,
{
    let clients: Vec<Arc<RemotingClient>> = (0..consumers)
        .map(|_| Arc::new(RemotingClient::new()))
        .collect();
    let tasks = clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let work = body(i, client.clone(), shared.clone());
            let shared = shared.clone();
            tokio::spawn(async move {
                let outcome = work.await;
                if outcome.is_err() {
                    shared.failed.store(true, Ordering::Relaxed);
                }
                outcome
            })
        })
        .collect();
    let outcome = join_consumers(tasks).await;
    for client in clients {
        client.close_all();
    }
    let mut outcome = outcome?;
    outcome.elapsed = shared.elapsed();
    if outcome.messages != shared.total {
        return Err(BenchError::Invalid(format!(
            "{} messages consumed, {} preloaded",
            outcome.messages, shared.total
        )));
    }
    Ok(outcome)
}

/// `pullers` (at most one per queue) read every queue from 0 to its end.
async fn pull(addr: &str, group: &str, pullers: usize, ends: &[i64]) -> Result<Outcome> {
    let pullers = pullers.min(ends.len()).max(1);
    let total = ends.iter().sum::<i64>() as u64;
    let shared = Shared::new(total);
    let addr: Arc<str> = Arc::from(addr);
    let group: Arc<str> = Arc::from(group);
    consume(shared, pullers, |i, client, shared| {
        // (queue, next offset, end offset) of the queues this puller owns.
        let owned: Vec<(i32, i64, i64)> = (0..ends.len())
            .filter(|q| q % pullers == i)
            .map(|q| (q as i32, 0, ends[q]))
            .collect();
        pull_queues(client, addr.clone(), group.clone(), owned, shared)
    })
    .await
}

async fn pull_queues(
    client: Arc<RemotingClient>,
    addr: Arc<str>,
    group: Arc<str>,
    mut owned: Vec<(i32, i64, i64)>,
    shared: Arc<Shared>,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    owned.retain(|&(_, next, end)| next < end);
    let mut turn = 0;
    while !owned.is_empty() {
        shared.check()?;
        if shared.failed.load(Ordering::Relaxed) {
            return Ok(outcome);
        }
        turn %= owned.len();
        let (queue_id, offset, end) = owned[turn];
        let header = PullMessageRequestHeader {
            consumer_group: group.to_string(),
            topic: TOPIC.into(),
            queue_id,
            queue_offset: offset,
            max_msg_nums: BATCH,
            sys_flag: pull_sys_flag::COMMIT_OFFSET,
            commit_offset: offset,
            suspend_timeout_millis: 0,
            subscription: None,
            sub_version: 0,
            expression_type: Some("TAG".into()),
            max_msg_bytes: None,
        };
        let command = RemotingCommand::request_with(request::PULL_MESSAGE, &header);
        let started = Instant::now();
        let answer = client
            .invoke(&addr, command, SEND_TIMEOUT)
            .await
            .context(|| format!("pulling queue {queue_id}"))?;
        outcome.calls.record(started.elapsed());
        outcome.call_count += 1;
        let next: PullMessageResponseHeader = answer
            .header()
            .map_err(|e| BenchError::Invalid(format!("pull response header: {e}")))?;
        match answer.code {
            response::SUCCESS => {
                let got = count_records(&answer.body)?;
                outcome.messages += got;
                shared.add(got);
            }
            response::PULL_NOT_FOUND | response::PULL_RETRY_IMMEDIATELY => {
                outcome.empty_calls += 1;
            }
            code => {
                return Err(BenchError::Invalid(format!(
                    "a pull was answered with code {code} ({})",
                    answer.remark_or_empty()
                )));
            }
        }
        owned[turn].1 = next.next_begin_offset;
        if next.next_begin_offset >= end {
            owned.remove(turn);
        } else {
            turn += 1;
        }
    }
    Ok(outcome)
}

/// The records in a pull response.
fn count_records(mut rest: &[u8]) -> Result<u64> {
    let mut count = 0;
    while !rest.is_empty() {
        match decode_record(rest, true) {
            Ok(Entry::Record(view)) => {
                count += 1;
                rest = rest.get(view.total_size as usize..).unwrap_or(&[]);
            }
            other => {
                return Err(BenchError::Invalid(format!(
                    "a response holds {other:?} instead of records"
                )));
            }
        }
    }
    Ok(count)
}

/// What an ack needs of a popped message.
struct Popped {
    queue_id: i32,
    offset: i64,
    handle: String,
}

/// The messages of a pop response, which must all be first deliveries.
fn popped(mut rest: &[u8]) -> Result<Vec<Popped>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Ok(Entry::Record(view)) = decode_record(rest, true) else {
            return Err(BenchError::Invalid(
                "a pop response holds something else than records".into(),
            ));
        };
        if view.reconsume_times != 0 {
            return Err(BenchError::Invalid(format!(
                "queue {} offset {} was redelivered (reconsumeTimes {}): the run outlasted the \
                 invisible time or lost an ack",
                view.queue_id, view.queue_offset, view.reconsume_times
            )));
        }
        let handle = find_property(view.properties, property::POP_CK)
            .ok_or_else(|| BenchError::Invalid("a popped message has no POP_CK property".into()))?;
        out.push(Popped {
            queue_id: view.queue_id,
            offset: view.queue_offset as i64,
            handle: handle.to_string(),
        });
        rest = rest.get(view.total_size as usize..).unwrap_or(&[]);
    }
    Ok(out)
}

/// `consumers` pop + ack until all `total` messages are acked (`batch_ack`: one TERN_BATCH_ACK per
/// popped batch instead of one ACK_MESSAGE per message).
async fn pop(
    addr: &str,
    group: &str,
    consumers: usize,
    total: u64,
    batch_ack: bool,
) -> Result<Outcome> {
    let shared = Shared::new(total);
    let addr: Arc<str> = Arc::from(addr);
    let group: Arc<str> = Arc::from(group);
    consume(shared, consumers, |_, client, shared| {
        pop_and_ack(client, addr.clone(), group.clone(), shared, batch_ack)
    })
    .await
}

async fn pop_and_ack(
    client: Arc<RemotingClient>,
    addr: Arc<str>,
    group: Arc<str>,
    shared: Arc<Shared>,
    batch_ack: bool,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    while !shared.is_done() {
        shared.check()?;
        let header = PopMessageRequestHeader {
            consumer_group: group.to_string(),
            topic: TOPIC.into(),
            queue_id: -1,
            max_msg_nums: BATCH,
            invisible_time: INVISIBLE_MS,
            poll_time: POP_POLL_MS,
            born_time: 0,
            init_mode: 0,
            exp_type: Some("TAG".into()),
            exp: Some("*".into()),
            order: None,
            attempt_id: None,
        };
        let command = RemotingCommand::request_with(request::POP_MESSAGE, &header);
        let started = Instant::now();
        let answer = client
            .invoke(
                &addr,
                command,
                SEND_TIMEOUT + Duration::from_millis(POP_POLL_MS as u64),
            )
            .await
            .context(|| "popping".to_owned())?;
        let took = started.elapsed();
        outcome.call_count += 1;
        match answer.code {
            response::SUCCESS => outcome.calls.record(took),
            response::PULL_NOT_FOUND | response::POLLING_TIMEOUT => {
                outcome.empty_calls += 1;
                continue;
            }
            code => {
                return Err(BenchError::Invalid(format!(
                    "a pop was answered with code {code} ({})",
                    answer.remark_or_empty()
                )));
            }
        }
        let batch = popped(&answer.body)?;
        if batch_ack {
            let acked = ack_batch(&client, &addr, &group, batch, &mut outcome).await?;
            outcome.messages += acked;
            shared.add(acked);
            continue;
        }
        let mut acks = JoinSet::new();
        for message in batch {
            let (client, addr, group) = (client.clone(), addr.clone(), group.clone());
            acks.spawn(async move {
                let header = AckMessageRequestHeader {
                    consumer_group: group.to_string(),
                    topic: TOPIC.into(),
                    queue_id: message.queue_id,
                    extra_info: message.handle,
                    offset: message.offset,
                };
                let command = RemotingCommand::request_with(request::ACK_MESSAGE, &header);
                let started = Instant::now();
                let answer = client
                    .invoke(&addr, command, SEND_TIMEOUT)
                    .await
                    .context(|| "acking".to_owned())?;
                let took = started.elapsed();
                if answer.code != response::SUCCESS {
                    return Err(BenchError::Invalid(format!(
                        "an ack was answered with code {} ({})",
                        answer.code,
                        answer.remark_or_empty()
                    )));
                }
                Ok(took)
            });
        }
        let mut acked = 0;
        while let Some(result) = acks.join_next().await {
            let took =
                result.map_err(|e| BenchError::Invalid(format!("an ack task failed: {e}")))??;
            outcome.acks.record(took);
            acked += 1;
        }
        outcome.messages += acked;
        shared.add(acked);
    }
    Ok(outcome)
}

/// One TERN_BATCH_ACK for a popped batch; every verdict must be SUCCESS.
async fn ack_batch(
    client: &RemotingClient,
    addr: &str,
    group: &str,
    batch: Vec<Popped>,
    outcome: &mut Outcome,
) -> Result<u64> {
    let count = batch.len() as u64;
    let body = BatchAckRequestBody {
        consumer_group: group.to_string(),
        topic: TOPIC.into(),
        acks: batch
            .into_iter()
            .map(|m| BatchAckEntry {
                queue_id: m.queue_id,
                offset: m.offset,
                extra_info: m.handle,
            })
            .collect(),
    };
    let command = RemotingCommand::request(request::TERN_BATCH_ACK).with_body(encode_json(&body));
    let started = Instant::now();
    let answer = client
        .invoke(addr, command, SEND_TIMEOUT)
        .await
        .context(|| "batch acking".to_owned())?;
    outcome.acks.record(started.elapsed());
    let verdicts: BatchAckResponseBody = decode_json(&answer.body).map_err(|e| {
        BenchError::Invalid(format!(
            "a batch ack was answered with code {} ({}): {e}",
            answer.code,
            answer.remark_or_empty()
        ))
    })?;
    if answer.code != response::SUCCESS || verdicts.codes.iter().any(|&c| c != response::SUCCESS) {
        return Err(BenchError::Invalid(format!(
            "a batch ack was refused: code {}, verdicts {:?}",
            answer.code, verdicts.codes
        )));
    }
    Ok(count)
}

fn progress(row: &PopRow) {
    let us = |p: Option<Percentiles>| {
        p.map_or_else(
            || "-".to_owned(),
            |p| format!("{:.0}/{:.0}", p.p50_us, p.p99_us),
        )
    };
    eprintln!(
        "  {:<9} x{:<3} {:>9.0} msgs/s  call p50/p99 {} us  ack p50/p99 {} us  ({} calls, {} empty)",
        row.path.name(),
        row.consumers,
        row.msgs_per_s,
        us(row.call_latency),
        us(row.ack_latency),
        row.calls,
        row.empty_calls
    );
}

/// The median of every figure per scenario (every run has the same scenarios in the same order).
fn medians(runs: &[Run]) -> Vec<PopRow> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    (0..first.rows.len())
        .map(|i| {
            let same: Vec<&PopRow> = runs.iter().filter_map(|r| r.rows.get(i)).collect();
            let of = |f: &dyn Fn(&PopRow) -> Option<f64>| median(same.iter().filter_map(|r| f(r)));
            let pct = |f: &dyn Fn(&PopRow) -> Option<Percentiles>| {
                let at = |g: &dyn Fn(&Percentiles) -> f64| {
                    median(same.iter().filter_map(|r| f(r).map(|p| g(&p))))
                };
                Some(Percentiles {
                    p50_us: at(&|p| p.p50_us)?,
                    p99_us: at(&|p| p.p99_us)?,
                    p999_us: at(&|p| p.p999_us)?,
                    max_us: at(&|p| p.max_us)?,
                })
            };
            let count =
                |f: &dyn Fn(&PopRow) -> u64| of(&|r| Some(f(r) as f64)).unwrap_or(0.0) as u64;
            PopRow {
                path: first.rows[i].path,
                consumers: first.rows[i].consumers,
                messages: count(&|r| r.messages),
                seconds: of(&|r| Some(r.seconds)).unwrap_or(0.0),
                msgs_per_s: of(&|r| Some(r.msgs_per_s)).unwrap_or(0.0),
                call_latency: pct(&|r| r.call_latency),
                ack_latency: pct(&|r| r.ack_latency),
                calls: count(&|r| r.calls),
                empty_calls: count(&|r| r.empty_calls),
                broker_cpu_us_per_msg: of(&|r| r.broker_cpu_us_per_msg),
                bench_cpu_us_per_msg: of(&|r| r.bench_cpu_us_per_msg),
            }
        })
        .collect()
}

/// Pop ÷ pull throughput per consumer count: the median of the per-run ratios. Rows come in
/// threes, pull, pop + ack, pop + batch ack, one three per consumer count.
fn ratios(consumers: &[usize], runs: &[Run]) -> Vec<Ratio> {
    let over_pull = |k: usize, which: usize| {
        median(runs.iter().filter_map(|run| {
            let pull = run.rows.get(3 * k)?;
            let pop = run.rows.get(3 * k + which)?;
            (pull.msgs_per_s > 0.0).then(|| pop.msgs_per_s / pull.msgs_per_s)
        }))
    };
    consumers
        .iter()
        .enumerate()
        .filter_map(|(k, &c)| {
            Some(Ratio {
                consumers: c,
                pop_over_pull: over_pull(k, 1)?,
                batch_ack_over_pull: over_pull(k, 2)?,
            })
        })
        .collect()
}

impl Report {
    fn to_markdown(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(out, "\n# tern-bench pop\n");
        let _ = writeln!(
            out,
            "Broker: {} ({}), store in {} ({} on {}), {} CPUs ({}).",
            s.broker,
            s.flush,
            s.dir,
            self.machine.filesystem,
            self.machine.device,
            self.machine.cpus,
            self.machine.cpu_model
        );
        let preloaded: Vec<String> = self.runs.iter().map(|r| r.preloaded.to_string()).collect();
        let _ = writeln!(
            out,
            "Per run: {} messages of {} B preloaded on {} queues ({}); pop max {} invisible {} ms \
             poll {} ms, every message acked (a batch's acks in flight at once); pull max {} with \
             the offset committed by the next pull. {} run(s), medians.\n",
            preloaded.join(" / "),
            s.size,
            s.queues,
            if s.repeat > 1 { "per run" } else { "one run" },
            s.batch,
            s.invisible_ms,
            s.pop_poll_ms,
            s.batch,
            s.repeat
        );
        let _ = writeln!(
            out,
            "| path | consumers | msgs/s | call p50 / p99 µs | ack p50 / p99 µs | broker CPU µs/msg |"
        );
        let _ = writeln!(out, "|---|--:|--:|--|--|--:|");
        let us = |p: Option<Percentiles>| {
            p.map_or_else(
                || "–".to_owned(),
                |p| format!("{:.0} / {:.0}", p.p50_us, p.p99_us),
            )
        };
        for row in &self.medians {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {} |",
                row.path.name(),
                row.consumers,
                row.msgs_per_s,
                us(row.call_latency),
                us(row.ack_latency),
                row.broker_cpu_us_per_msg
                    .map_or_else(|| "–".to_owned(), |c| format!("{c:.1}"))
            );
        }
        let _ = writeln!(out);
        for ratio in &self.ratios {
            let _ = writeln!(
                out,
                "pop ÷ pull, {} consumer(s): {:.2}; with batch acks: {:.2}",
                ratio.consumers, ratio.pop_over_pull, ratio.batch_ack_over_pull
            );
        }
        if self.runs.len() > 1 {
            let _ = writeln!(out, "\nPer run msgs/s:");
            for (i, row) in self.medians.iter().enumerate() {
                let values: Vec<String> = self
                    .runs
                    .iter()
                    .filter_map(|r| r.rows.get(i))
                    .map(|r| format!("{:.0}", r.msgs_per_s))
                    .collect();
                let _ = writeln!(
                    out,
                    "- {} x{}: {}",
                    row.path.name(),
                    row.consumers,
                    values.join(" / ")
                );
            }
        }
        out
    }
}
