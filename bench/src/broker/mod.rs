//! `tern-bench broker`: the broker driven over the remoting protocol, next to loopback and disk
//! baselines measured in the same run.
//!
//! Per run, for every body size and in-flight count:
//! - the baselines: the same frames against a raw TCP echo server and the same client load
//!   against a remoting echo server (see `echo`), and, for SYNC_FLUSH, the ideal group commit
//!   (N broker-sized records per `write` + `fdatasync`);
//! - per flush mode, a broker with a fresh store (a `tern-broker` child process unless
//!   `--in-process` or `--broker-addr`): the producer load (N requests in flight over one
//!   connection) and the end-to-end probe (produce → long-poll pull latency at a fixed rate).
//!
//! Loopback baselines say what the machine can do with these frames at all; the broker's figures
//! are reported as ratios to them, so they travel between machines, and `--repeat N` gives medians
//! because the machines this runs on are shared and noisy.

mod cpu;
mod echo;
mod host;
mod load;
pub mod pop;
mod report;
mod results;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;
use tern_core::protocol::{RemotingClient, SerializeType, encode_frame};
use tern_core::store::FlushDiskType;
use tokio::runtime::Runtime;

use crate::error::{BenchError, Context, Result};
use crate::raw;
use crate::stats::Figures;
pub(crate) use cpu::{CpuMark, sample_window};
use host::EchoServers;
pub use host::run_echo_server;
pub(crate) use host::{BrokerServer, ChildProcess, Hosting, default_broker_bin};
use load::Producer;
pub(crate) use load::create_topic;
pub(crate) use load::{Tally, Window, interrupted};
pub(crate) use report::micros;
use report::{Report, Settings};
pub(crate) use results::Cpu;
use results::{Row, Scenario};

const TOPIC: &str = "BenchTopic";
const E2E_TOPIC: &str = "BenchE2eTopic";

/// Time budgets of a full run and of `--quick`.
const DEFAULT_DURATION: f64 = 5.0;
const DEFAULT_WARMUP: f64 = 1.0;
const QUICK_DURATION: f64 = 0.3;
const QUICK_WARMUP: f64 = 0.1;
/// Longest each group-commit baseline runs (its figures settle within a second or two).
const GROUP_COMMIT_SECONDS: f64 = 2.0;

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Drive this already running broker (host:port) instead of starting one. It must run the
    /// single flush mode given with --flush; nothing is started or cleaned up on its side.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "in_process")]
    broker_addr: Option<String>,
    /// Run the broker (and the echo servers) inside this process, on a runtime of their own,
    /// e.g. for profiling both sides at once. Default: a `tern-broker` child process.
    #[arg(long)]
    in_process: bool,
    /// The `tern-broker` executable [default: next to tern-bench].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Flush modes to measure, each with its own fresh broker and store.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        ignore_case = true,
        default_value = "ASYNC_FLUSH,SYNC_FLUSH"
    )]
    flush: Vec<Flush>,
    /// Message body sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "128,1024")]
    sizes: Vec<usize>,
    /// Requests in flight (producer tasks sharing one connection).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    in_flight: Vec<usize>,
    /// Measured seconds per scenario [default: 5; 0.3 with --quick].
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up seconds before each measurement (connects, fills the pipeline) [default: 1; 0.1
    /// with --quick].
    #[arg(long)]
    warmup: Option<f64>,
    /// Header encoding of every request: json (RocketMQ's default) or binary (ROCKETMQ).
    #[arg(long, value_enum, default_value_t = HeaderArg::Json)]
    header: HeaderArg,
    /// Queues of the benchmark topics; the producer picks them round-robin.
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// Messages per second of the end-to-end probe's producer.
    #[arg(long, default_value_t = 1000.0)]
    e2e_rate: f64,
    /// Body size of the end-to-end probe's messages (at least 8: the send time).
    #[arg(long, default_value_t = 128)]
    e2e_size: usize,
    /// Which scenario groups to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "produce,e2e,echo,disk"
    )]
    scenarios: Vec<Group>,
    /// Run everything this many times and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A smoke run: tiny durations, so the whole command takes seconds.
    #[arg(long)]
    quick: bool,
    /// Directory for the brokers' stores and the disk baseline. A fresh temporary directory is
    /// made in it and removed at the end. /tmp is often tmpfs (memory): use a real disk.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Worker threads of the load generator's runtime [default: 1, a current-thread runtime: on
    /// a small machine shared with the broker it leaves the broker the most CPU].
    #[arg(long)]
    client_threads: Option<usize>,
    /// Also write every run's figures, the medians, ratios and verdicts to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Give every produced message its own idempotency key (`__TERN_IDEMPOTENCY_KEY`), to
    /// measure what the broker's idempotency window costs a send.
    #[arg(long)]
    idempotency_keys: bool,
}

/// A flush mode, named as RocketMQ's `flushDiskType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ValueEnum)]
pub enum Flush {
    #[value(name = "ASYNC_FLUSH", alias = "async")]
    #[serde(rename = "ASYNC_FLUSH")]
    AsyncFlush,
    #[value(name = "SYNC_FLUSH", alias = "sync")]
    #[serde(rename = "SYNC_FLUSH")]
    SyncFlush,
}

impl Flush {
    pub fn name(self) -> &'static str {
        match self {
            Flush::AsyncFlush => "ASYNC_FLUSH",
            Flush::SyncFlush => "SYNC_FLUSH",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Flush::AsyncFlush => "async",
            Flush::SyncFlush => "sync",
        }
    }
}

impl fmt::Display for Flush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Flush> for FlushDiskType {
    fn from(flush: Flush) -> FlushDiskType {
        match flush {
            Flush::AsyncFlush => FlushDiskType::AsyncFlush,
            Flush::SyncFlush => FlushDiskType::SyncFlush,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HeaderArg {
    Json,
    Binary,
}

impl From<HeaderArg> for SerializeType {
    fn from(arg: HeaderArg) -> SerializeType {
        match arg {
            HeaderArg::Json => SerializeType::Json,
            HeaderArg::Binary => SerializeType::RocketMq,
        }
    }
}

/// Scenario groups, for running part of the benchmark (e.g. one scenario under `perf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// The producer load against the broker.
    Produce,
    /// The end-to-end latency probe.
    E2e,
    /// The TCP and remoting echo baselines.
    Echo,
    /// The ideal group commit baseline (only with SYNC_FLUSH).
    Disk,
}

/// The run's plan, with `--quick` resolved and every value checked.
struct Plan {
    hosting: Hosting,
    flush: Vec<Flush>,
    sizes: Vec<usize>,
    in_flight: Vec<usize>,
    duration: Duration,
    warmup: Duration,
    serialize: SerializeType,
    idempotency_keys: bool,
    queues: u32,
    e2e_rate: f64,
    e2e_size: usize,
    groups: Vec<Group>,
    repeat: usize,
    client_threads: usize,
}

impl Plan {
    fn from_args(args: &BrokerArgs) -> Result<Plan> {
        let bad = |m: &str| Err(BenchError::Args(m.to_owned()));
        let (duration, warmup) = if args.quick {
            (QUICK_DURATION, QUICK_WARMUP)
        } else {
            (DEFAULT_DURATION, DEFAULT_WARMUP)
        };
        let duration = args.duration.unwrap_or(duration);
        let warmup = args.warmup.unwrap_or(warmup);
        if !(duration.is_finite() && duration > 0.0 && duration <= 3600.0) {
            return bad("--duration must be in (0, 3600] seconds");
        }
        if !(warmup.is_finite() && (0.0..=3600.0).contains(&warmup)) {
            return bad("--warmup must be in [0, 3600] seconds");
        }
        if args.sizes.is_empty() || args.sizes.iter().any(|&s| s == 0 || s > 4 << 20) {
            return bad("--sizes must list sizes in 1..=4194304");
        }
        if args.in_flight.is_empty() || args.in_flight.iter().any(|&n| n == 0 || n > 4096) {
            return bad("--in-flight must list counts in 1..=4096");
        }
        if args.flush.is_empty() {
            return bad("--flush must name at least one mode");
        }
        if !(1..=1024).contains(&args.queues) {
            return bad("--queues must be in 1..=1024");
        }
        if !(args.e2e_rate.is_finite() && args.e2e_rate > 0.0 && args.e2e_rate <= 100_000.0) {
            return bad("--e2e-rate must be in (0, 100000]");
        }
        if !(8..=4 << 20).contains(&args.e2e_size) {
            return bad("--e2e-size must be in 8..=4194304 (the body carries the send time)");
        }
        if args.repeat == 0 {
            return bad("--repeat must be at least 1");
        }
        if args.client_threads == Some(0) {
            return bad("--client-threads must be positive");
        }
        let hosting = match (&args.broker_addr, args.in_process) {
            (Some(addr), _) => {
                if args.flush.len() != 1 {
                    return bad(
                        "--broker-addr drives one running broker: name its mode with \
                         --flush ASYNC_FLUSH or --flush SYNC_FLUSH",
                    );
                }
                Hosting::External { addr: addr.clone() }
            }
            (None, true) => Hosting::InProcess,
            (None, false) => Hosting::Child {
                broker_bin: match &args.broker_bin {
                    Some(bin) => bin.clone(),
                    None => host::default_broker_bin()?,
                },
            },
        };
        let dedup = |v: &[usize]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut flush = args.flush.clone();
        flush.sort();
        flush.dedup();
        Ok(Plan {
            hosting,
            flush,
            sizes: dedup(&args.sizes),
            in_flight: dedup(&args.in_flight),
            duration: Duration::from_secs_f64(duration),
            warmup: Duration::from_secs_f64(warmup),
            serialize: args.header.into(),
            idempotency_keys: args.idempotency_keys,
            queues: args.queues,
            e2e_rate: args.e2e_rate,
            e2e_size: args.e2e_size,
            groups: args.scenarios.clone(),
            repeat: args.repeat,
            client_threads: args.client_threads.unwrap_or(1),
        })
    }

    fn runs(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }

    fn producer(&self, topic: &str, size: usize) -> Arc<Producer> {
        Arc::new(
            Producer::new(topic, self.queues, size, self.serialize)
                .with_idempotency_keys(self.idempotency_keys),
        )
    }
}

/// Runs the broker benchmark and prints the report.
pub fn run(args: BrokerArgs) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    let (work, work_path, machine) =
        crate::sysinfo::work_dir(&args.dir, "tern-bench-broker-", "SYNC_FLUSH figures")?;
    let runtime = client_runtime(plan.client_threads)?;
    eprintln!(
        "tern-bench broker: {} CPUs, {} at {}",
        machine.cpus,
        machine.filesystem,
        work_path.display()
    );

    let mut runs = Vec::with_capacity(plan.repeat);
    for repeat in 1..=plan.repeat {
        eprintln!("run {repeat}/{}", plan.repeat);
        runs.push(run_once(&plan, &runtime, &work_path)?);
    }
    let medians = results::medians(&runs);
    let report = Report {
        settings: Settings {
            broker: match &plan.hosting {
                Hosting::Child { broker_bin } => format!("child process {}", broker_bin.display()),
                Hosting::InProcess => "in process (--in-process)".into(),
                Hosting::External { addr } => format!("external at {addr}"),
            },
            dir: work_path.display().to_string(),
            flush: plan.flush.iter().map(|f| f.name().to_owned()).collect(),
            sizes: plan.sizes.clone(),
            in_flight: plan.in_flight.clone(),
            header: plan.serialize.name().to_owned(),
            queues: plan.queues,
            warmup_seconds: plan.warmup.as_secs_f64(),
            duration_seconds: plan.duration.as_secs_f64(),
            e2e_rate: plan.e2e_rate,
            e2e_size: plan.e2e_size,
            client_threads: plan.client_threads,
            repeat: plan.repeat,
            quick: args.quick,
        },
        machine,
        ratios: results::ratios(&runs),
        verdicts: results::verdicts(&medians),
        medians,
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

/// The load generator's runtime, with Ctrl-C turned into [`load::interrupt`].
pub(crate) fn client_runtime(threads: usize) -> Result<Runtime> {
    // One client thread means a current-thread runtime: no cross-thread wake-ups, which on a
    // 2-core machine shared with the broker cost more than a second thread gains.
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = builder
        .thread_name("bench-client")
        .enable_all()
        .build()
        .context(|| "starting the tokio runtime".to_owned())?;
    // Ctrl-C ends the run through the load loops, so every guard (child processes, stores) is
    // dropped on the way out instead of being killed with us.
    runtime.spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            load::interrupt();
        }
    });
    Ok(runtime)
}

/// One pass over every scenario: baselines first, then one fresh broker per flush mode.
fn run_once(plan: &Plan, runtime: &Runtime, work: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if plan.runs(Group::Echo) {
        let echo = EchoServers::start(&plan.hosting, work)?;
        for &size in &plan.sizes {
            let producer = plan.producer(TOPIC, size);
            let frame = encode_frame(&producer.request(0))
                .map_err(|e| BenchError::Invalid(format!("encoding a request: {e}")))?;
            for &in_flight in &plan.in_flight {
                let scenario = Scenario::TcpEcho { size, in_flight };
                let row = measure(runtime, plan, scenario, echo.pid, |window| {
                    echo::tcp_load(&echo.tcp, frame.clone(), in_flight, window)
                })?;
                rows.push(row);
                let scenario = Scenario::RemotingEcho { size, in_flight };
                let row = measure(runtime, plan, scenario, echo.pid, |window| {
                    load::produce(&echo.remoting, producer.clone(), in_flight, window)
                })?;
                rows.push(row);
            }
        }
    }
    for &flush in &plan.flush {
        // Right before the SYNC_FLUSH broker, so the disk is measured as that broker finds it.
        if flush == Flush::SyncFlush && plan.runs(Group::Disk) {
            rows.extend(group_commits(plan, work)?);
        }
        if !(plan.runs(Group::Produce) || plan.runs(Group::E2e)) {
            continue;
        }
        check_interrupted()?;
        let broker = BrokerServer::start(&plan.hosting, work, flush)?;
        let pid = broker
            .pid
            .map_or_else(String::new, |p| format!(", pid {p}"));
        eprintln!("  broker {flush} at {}{pid}", broker.addr);
        runtime.block_on(async {
            let client = RemotingClient::new();
            load::create_topic(&client, &broker.addr, TOPIC, plan.queues).await?;
            load::create_topic(&client, &broker.addr, E2E_TOPIC, plan.queues).await?;
            client.close_all();
            Ok::<_, BenchError>(())
        })?;
        if plan.runs(Group::Produce) {
            for &size in &plan.sizes {
                let producer = plan.producer(TOPIC, size);
                for &in_flight in &plan.in_flight {
                    let scenario = Scenario::Produce {
                        flush,
                        size,
                        in_flight,
                    };
                    let row = measure(runtime, plan, scenario, broker.pid, |window| {
                        load::produce(&broker.addr, producer.clone(), in_flight, window)
                    })?;
                    rows.push(row);
                }
            }
        }
        if plan.runs(Group::E2e) {
            let producer = plan.producer(E2E_TOPIC, plan.e2e_size);
            let scenario = Scenario::EndToEnd {
                flush,
                size: plan.e2e_size,
            };
            let row = measure(runtime, plan, scenario, broker.pid, |window| {
                let producer = producer.clone();
                let addr = broker.addr.clone();
                async move { load::end_to_end(&addr, producer, plan.e2e_rate, window).await }
            })?;
            rows.push(row);
        }
        broker.stop()?;
    }
    Ok(rows)
}

/// The ideal group commit for every size and in-flight count: what SYNC_FLUSH with that many
/// sends in flight could reach if every fdatasync caught them all and cost nothing else.
fn group_commits(plan: &Plan, work: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let max_time = plan
        .duration
        .min(Duration::from_secs_f64(GROUP_COMMIT_SECONDS));
    for &size in &plan.sizes {
        let record_len = plan.producer(TOPIC, size).record_len()?;
        for &records in &plan.in_flight {
            check_interrupted()?;
            settle();
            let figures = raw::group_commit(work, record_len, records, u64::MAX, max_time)?;
            let row = Row {
                scenario: Scenario::RawGroupCommit { size, records },
                figures,
                cpu: Cpu::default(),
            };
            progress(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Runs one load for a warm-up plus the measured window and turns its tally into a row.
fn measure<F>(
    runtime: &Runtime,
    plan: &Plan,
    scenario: Scenario,
    server_pid: Option<u32>,
    load: impl FnOnce(Window) -> F,
) -> Result<Row>
where
    F: Future<Output = Result<Tally>>,
{
    check_interrupted()?;
    settle();
    let window = Window::after_warmup(plan.warmup, plan.duration);
    let cpu = cpu::sample_window(server_pid, window.start, window.end);
    let tally = runtime.block_on(load(window))?;
    let cpu = cpu.join().unwrap_or_default();
    if tally.messages == 0 {
        return Err(BenchError::Invalid(format!(
            "{}: nothing completed in the measured window",
            scenario.label()
        )));
    }
    let per_msg = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6 / tally.messages as f64);
    let row = Row {
        scenario,
        figures: Figures::new(
            tally.messages,
            tally.messages * scenario.size() as u64,
            window.duration(),
            tally.latency.percentiles(),
            None,
        ),
        cpu: Cpu {
            bench_us_per_msg: per_msg(cpu.bench),
            server_us_per_msg: per_msg(cpu.server),
            other_cores: cpu
                .other()
                .map(|d| d.as_secs_f64() / window.duration().as_secs_f64()),
        },
    };
    progress(&row);
    Ok(row)
}

pub(crate) fn check_interrupted() -> Result<()> {
    if interrupted() {
        Err(BenchError::Interrupted)
    } else {
        Ok(())
    }
}

/// Lets the previous scenario's dirty pages drain before the next starts, so one scenario's
/// writeback is not billed to the next.
pub(crate) fn settle() {
    rustix::fs::sync();
}

fn progress(row: &Row) {
    let f = &row.figures;
    let p = f.latency.map_or_else(String::new, |l| {
        format!(
            ", p50 {} p99 {} us",
            report::micros(l.p50_us),
            report::micros(l.p99_us)
        )
    });
    eprintln!(
        "  {:<50} {:>5} B: {:>9.0} msgs/s {:>7.1} MB/s{p}",
        row.scenario.label(),
        row.scenario.size(),
        f.msgs_per_s,
        f.mb_per_s
    );
}
