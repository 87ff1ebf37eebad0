//! `tern-bench http`: the HTTP gateway's produce rate and latency, and its SSE delivery rate,
//! next to a bare hyper server measured in the same run (the HTTP ceiling of this machine).
//!
//! Per run:
//! - **bare**: a bare hyper HTTP/1.1 server (this executable's hidden `http-echo-server`, a child
//!   process with as many runtime threads as the gateway gets) answering `200 {}` to every
//!   request; the produce load below against it, per connection count;
//! - **produce**: a fresh `tern-gateway --local` child (its embedded broker uses ASYNC_FLUSH and
//!   a data directory under `--dir`), or the gateway at `--gateway-url`; its topic created with
//!   `PUT /v1/topics/{topic}`, then the same load: N keep-alive connections, each POSTing a
//!   1 KiB body to `/v1/topics/{topic}/messages` back to back, for a warm-up and a measured
//!   window;
//! - **sse**: M messages produced the same way into a topic of their own, then one
//!   `GET /v1/groups/{group}/topics/{topic}/events?ack=auto&maxInFlight=K` from a fresh group,
//!   read until M distinct `message` events arrived: messages/s and the time to the first.
//!
//! The load generator is one runtime in this process (`--client-threads`, 2 by default) and
//! shares the machine's cores with the server, as in the other benchmarks; "gateway ÷ bare" is
//! the figure that carries between machines, and `--repeat N` reports medians.

mod load;
mod report;
mod server;
mod sse;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use tokio::runtime::Runtime;

use crate::broker::{
    Cpu, CpuMark, Window, check_interrupted, client_runtime, micros, sample_window, settle,
};
use crate::error::{BenchError, Result};
use crate::stats::Figures;
use crate::workload::pseudo_random_bytes;
use load::{Endpoint, ProduceLoad, TopicCreation};
use report::{Report, Row, Scenario, Settings};
pub use server::{EchoServerArgs, run_echo_server};
use server::{GatewayHosting, Server};

const TOPIC: &str = "BenchHttpTopic";

/// Time budgets of a full run and of `--quick`.
const DEFAULT_DURATION: f64 = 10.0;
const DEFAULT_WARMUP: f64 = 1.0;
const QUICK_DURATION: f64 = 2.0;
const QUICK_WARMUP: f64 = 0.5;
const DEFAULT_SSE_MESSAGES: u64 = 100_000;
const QUICK_SSE_MESSAGES: u64 = 20_000;
/// Longest the SSE preload may take.
const PRELOAD_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Drive this already running gateway (http://host:port) instead of starting one. Its flush
    /// mode is whatever it was configured with; nothing is started or cleaned up on its side.
    #[arg(long, value_name = "URL", conflicts_with = "gateway_bin")]
    gateway_url: Option<String>,
    /// The `tern-gateway` executable, started as `tern-gateway --local` with a fresh data
    /// directory [default: next to tern-bench].
    #[arg(long, value_name = "PATH")]
    gateway_bin: Option<PathBuf>,
    /// Measure only the bare hyper server (the baseline); no gateway is needed. The same as
    /// `--scenarios bare`.
    #[arg(long, conflicts_with_all = ["gateway_url", "gateway_bin", "scenarios"])]
    baseline_only: bool,
    /// Which scenario groups to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bare,produce,sse"
    )]
    scenarios: Vec<Group>,
    /// Keep-alive connections of the produce load, one request in flight on each.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    connections: Vec<usize>,
    /// Request body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Measured seconds per produce scenario [default: 10; 2 with --quick].
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up seconds before each measurement (connects, warms both sides up) [default: 1; 0.5
    /// with --quick].
    #[arg(long)]
    warmup: Option<f64>,
    /// Messages produced, then read back over SSE [default: 100000; 20000 with --quick].
    #[arg(long)]
    sse_messages: Option<u64>,
    /// The event stream's `maxInFlight`: unacknowledged messages the gateway may have out.
    #[arg(long, default_value_t = 1024)]
    sse_max_in_flight: u32,
    /// Longest the SSE reader waits for all messages, in seconds.
    #[arg(long, default_value_t = 60.0)]
    sse_timeout: f64,
    /// Queues of the benchmark topics (`PUT /v1/topics/{topic}` with `{"queues":N}`).
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// Worker threads of the bare server's runtime [default: one per CPU, like the gateway's
    /// multi-thread runtime].
    #[arg(long)]
    server_threads: Option<usize>,
    /// Worker threads of the load generator's runtime [default: 2; 1 means a current-thread
    /// runtime].
    #[arg(long)]
    client_threads: Option<usize>,
    /// Sent as `Authorization: Bearer <TOKEN>` with every request (for a gateway that checks
    /// JWTs).
    #[arg(long, value_name = "TOKEN")]
    bearer_token: Option<String>,
    /// Run everything this many times and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A smoke run: short windows and fewer SSE messages, so the command takes seconds.
    #[arg(long)]
    quick: bool,
    /// Directory for the gateway's data and the servers' logs: a fresh temporary directory is
    /// made in it and removed at the end [default: the system temporary directory, outside any
    /// checkout].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write every run's figures, the medians, ratios and the verdict to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Scenario groups, for running part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// The bare hyper server baseline.
    Bare,
    /// The produce load against the gateway.
    Produce,
    /// SSE delivery from the gateway.
    Sse,
}

/// The run's plan, with `--quick` resolved and every value checked.
#[derive(Debug)]
struct Plan {
    /// `None` when no gateway scenario runs.
    gateway: Option<GatewayHosting>,
    groups: Vec<Group>,
    connections: Vec<usize>,
    size: usize,
    duration: Duration,
    warmup: Duration,
    sse_messages: u64,
    sse_max_in_flight: u32,
    sse_timeout: Duration,
    queues: u32,
    server_threads: usize,
    client_threads: usize,
    bearer_token: Option<String>,
    repeat: usize,
    dir: PathBuf,
}

impl Plan {
    fn from_args(args: &HttpArgs) -> Result<Plan> {
        Plan::resolve(args, server::default_gateway_bin)
    }

    /// `default_bin` finds the gateway when neither --gateway-bin nor --gateway-url names one
    /// (a parameter so tests need no binary).
    fn resolve(args: &HttpArgs, default_bin: impl FnOnce() -> Result<PathBuf>) -> Result<Plan> {
        let bad = |m: &str| Err(BenchError::Args(m.to_owned()));
        let (duration, warmup, sse_messages) = if args.quick {
            (QUICK_DURATION, QUICK_WARMUP, QUICK_SSE_MESSAGES)
        } else {
            (DEFAULT_DURATION, DEFAULT_WARMUP, DEFAULT_SSE_MESSAGES)
        };
        let duration = args.duration.unwrap_or(duration);
        let warmup = args.warmup.unwrap_or(warmup);
        let sse_messages = args.sse_messages.unwrap_or(sse_messages);
        if !(duration.is_finite() && duration > 0.0 && duration <= 3600.0) {
            return bad("--duration must be in (0, 3600] seconds");
        }
        if !(warmup.is_finite() && (0.0..=3600.0).contains(&warmup)) {
            return bad("--warmup must be in [0, 3600] seconds");
        }
        if args.connections.is_empty() || args.connections.iter().any(|&n| n == 0 || n > 4096) {
            return bad("--connections must list counts in 1..=4096");
        }
        if args.size == 0 || args.size > 4 << 20 {
            return bad("--size must be in 1..=4194304");
        }
        if !(1..=100_000_000).contains(&sse_messages) {
            return bad("--sse-messages must be in 1..=100000000");
        }
        if !(1..=65_536).contains(&args.sse_max_in_flight) {
            return bad("--sse-max-in-flight must be in 1..=65536");
        }
        if !(args.sse_timeout.is_finite() && args.sse_timeout > 0.0 && args.sse_timeout <= 3600.0) {
            return bad("--sse-timeout must be in (0, 3600] seconds");
        }
        if !(1..=1024).contains(&args.queues) {
            return bad("--queues must be in 1..=1024");
        }
        if args.server_threads == Some(0) || args.client_threads == Some(0) {
            return bad("--server-threads and --client-threads must be positive");
        }
        if args.repeat == 0 {
            return bad("--repeat must be at least 1");
        }
        let groups = if args.baseline_only {
            vec![Group::Bare]
        } else {
            args.scenarios.clone()
        };
        if groups.is_empty() {
            return bad("--scenarios must name at least one group");
        }
        let needs_gateway = groups
            .iter()
            .any(|g| matches!(g, Group::Produce | Group::Sse));
        let gateway = match (&args.gateway_url, &args.gateway_bin) {
            _ if !needs_gateway => None,
            (Some(url), _) => Some(GatewayHosting::External {
                url: url.clone(),
                addr: server::parse_gateway_url(url)?,
            }),
            (None, Some(bin)) => Some(GatewayHosting::Child { bin: bin.clone() }),
            (None, None) => Some(GatewayHosting::Child {
                bin: default_bin()?,
            }),
        };
        let mut connections = args.connections.clone();
        connections.sort_unstable();
        connections.dedup();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Plan {
            gateway,
            groups,
            connections,
            size: args.size,
            duration: Duration::from_secs_f64(duration),
            warmup: Duration::from_secs_f64(warmup),
            sse_messages,
            sse_max_in_flight: args.sse_max_in_flight,
            sse_timeout: Duration::from_secs_f64(args.sse_timeout),
            queues: args.queues,
            server_threads: args.server_threads.unwrap_or(cpus),
            client_threads: args.client_threads.unwrap_or(2),
            bearer_token: args.bearer_token.clone(),
            repeat: args.repeat,
            dir: args.dir.clone().unwrap_or_else(std::env::temp_dir),
        })
    }

    fn runs(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }

    fn endpoint(&self, addr: &str) -> Result<Arc<Endpoint>> {
        Ok(Arc::new(Endpoint::new(addr, self.bearer_token.as_deref())?))
    }
}

/// Runs the HTTP benchmark and prints the report; fails after the report if any request got a
/// non-2xx answer.
pub fn run(args: HttpArgs) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    let (work, work_path, machine) =
        crate::sysinfo::work_dir(&plan.dir, "tern-bench-http-", "the gateway's figures")?;
    let runtime = client_runtime(plan.client_threads)?;
    eprintln!(
        "tern-bench http: {} CPUs, work directory {} ({})",
        machine.cpus,
        work_path.display(),
        machine.filesystem
    );
    let body = Bytes::from(pseudo_random_bytes(plan.size));
    let mut runs = Vec::with_capacity(plan.repeat);
    for repeat in 1..=plan.repeat {
        eprintln!("run {repeat}/{}", plan.repeat);
        runs.push(run_once(&plan, &runtime, &work_path, &body, repeat)?);
    }
    let medians = report::medians(&runs);
    let ratios = report::ratios(&runs);
    let report = Report {
        settings: Settings {
            gateway: match &plan.gateway {
                None => "not run".into(),
                Some(GatewayHosting::Child { bin }) => format!(
                    "child process {} --local (ASYNC_FLUSH, one runtime worker per CPU)",
                    bin.display()
                ),
                Some(GatewayHosting::External { url, .. }) => format!("external at {url}"),
            },
            scenarios: plan
                .groups
                .iter()
                .filter_map(|g| g.to_possible_value().map(|v| v.get_name().to_owned()))
                .collect(),
            bare_server_threads: plan.server_threads,
            dir: work_path.display().to_string(),
            connections: plan.connections.clone(),
            size: plan.size,
            queues: plan.queues,
            warmup_seconds: plan.warmup.as_secs_f64(),
            duration_seconds: plan.duration.as_secs_f64(),
            sse_messages: plan.sse_messages,
            sse_max_in_flight: plan.sse_max_in_flight,
            sse_timeout_seconds: plan.sse_timeout.as_secs_f64(),
            client_threads: plan.client_threads,
            repeat: plan.repeat,
            quick: args.quick,
        },
        machine,
        verdict: report::verdict(&ratios),
        ratios,
        medians,
        runs,
    };
    print!("{}", report.to_markdown());
    if let Some(path) = &args.json {
        crate::sysinfo::write_json(path, &report)?;
    }
    drop(runtime);
    work.close().map_err(|source| BenchError::Io {
        context: "removing the benchmark directory".to_owned(),
        source,
    })?;
    let errors: u64 = report.medians.iter().map(|r| r.errors).sum();
    if errors > 0 {
        return Err(BenchError::Invalid(format!(
            "{errors} requests were answered with a non-2xx status (see the report)"
        )));
    }
    Ok(())
}

/// One pass: the bare server first, then a fresh gateway for produce and SSE.
fn run_once(
    plan: &Plan,
    runtime: &Runtime,
    work: &Path,
    body: &Bytes,
    repeat: usize,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if plan.runs(Group::Bare) {
        check_interrupted()?;
        let bare = Server::bare(plan.server_threads, work)?;
        eprintln!(
            "  bare server at {}, pid {}",
            bare.addr,
            bare.pid.unwrap_or(0)
        );
        // The very requests the gateway gets, headers included.
        let endpoint = plan.endpoint(&bare.addr)?;
        let uri = load::uri(&format!("/v1/topics/{TOPIC}/messages"))?;
        for &connections in &plan.connections {
            let load = ProduceLoad {
                endpoint: endpoint.clone(),
                uri: uri.clone(),
                body: body.clone(),
                connections,
            };
            let scenario = Scenario::Bare {
                size: plan.size,
                connections,
            };
            rows.push(measure(runtime, plan, scenario, bare.pid, &load)?);
        }
    }
    let Some(hosting) = &plan.gateway else {
        return Ok(rows);
    };
    check_interrupted()?;
    let gateway = Server::gateway(hosting, work)?;
    let pid = gateway
        .pid
        .map_or_else(String::new, |p| format!(", pid {p}"));
    eprintln!("  gateway at {}{pid}", gateway.addr);
    let endpoint = plan.endpoint(&gateway.addr)?;
    if plan.runs(Group::Produce) {
        create_topic(runtime, &endpoint, TOPIC, plan.queues)?;
        for &connections in &plan.connections {
            let load = ProduceLoad {
                endpoint: endpoint.clone(),
                uri: load::uri(&format!("/v1/topics/{TOPIC}/messages"))?,
                body: body.clone(),
                connections,
            };
            let scenario = Scenario::Produce {
                size: plan.size,
                connections,
            };
            rows.push(measure(runtime, plan, scenario, gateway.pid, &load)?);
        }
    }
    if plan.runs(Group::Sse) {
        if rows.iter().any(|r| r.errors > 0) {
            // The preload would fail on the first of them, and the report would be lost.
            eprintln!("  SSE skipped: the gateway answered produce requests with errors");
        } else {
            let row = measure_sse(runtime, plan, &endpoint, gateway.pid, body, repeat)?;
            rows.push(row);
        }
    }
    Ok(rows)
}

/// `PUT /v1/topics/{topic}`; says so when the gateway has no such endpoint (its first produce
/// then creates the topic).
fn create_topic(runtime: &Runtime, endpoint: &Endpoint, topic: &str, queues: u32) -> Result<()> {
    match runtime.block_on(load::create_topic(endpoint, topic, queues))? {
        TopicCreation::Created | TopicCreation::Existed => {}
        TopicCreation::Unsupported(status) => eprintln!(
            "  PUT /v1/topics/{topic} answered {status}: relying on auto-creation by the first \
             produce"
        ),
    }
    Ok(())
}

/// Runs the produce load for a warm-up plus the measured window and turns it into a row.
fn measure(
    runtime: &Runtime,
    plan: &Plan,
    scenario: Scenario,
    server_pid: Option<u32>,
    load: &ProduceLoad,
) -> Result<Row> {
    check_interrupted()?;
    settle();
    let window = Window::after_warmup(plan.warmup, plan.duration);
    let cpu = sample_window(server_pid, window.start, window.end);
    let outcome = runtime.block_on(load.run(window, None))?;
    let cpu = cpu.join().unwrap_or_default();
    let requests = outcome.tally.messages;
    if requests == 0 && outcome.errors == 0 {
        return Err(BenchError::Invalid(format!(
            "{}: nothing completed in the measured window",
            scenario.label()
        )));
    }
    let per_request =
        |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6 / requests.max(1) as f64);
    let row = Row {
        scenario,
        figures: Figures::new(
            requests,
            requests * plan.size as u64,
            window.duration(),
            outcome.tally.latency.percentiles(),
            None,
        ),
        errors: outcome.errors,
        first_error: outcome.first_error,
        first_event_ms: None,
        duplicates: None,
        cpu: Cpu {
            bench_us_per_msg: per_request(cpu.bench),
            server_us_per_msg: per_request(cpu.server),
            other_cores: cpu
                .other()
                .map(|d| d.as_secs_f64() / window.duration().as_secs_f64()),
        },
    };
    progress(&row);
    Ok(row)
}

/// Produces `plan.sse_messages` into a topic of this run's own, then reads them back over SSE
/// with a fresh consumer group.
fn measure_sse(
    runtime: &Runtime,
    plan: &Plan,
    endpoint: &Arc<Endpoint>,
    server_pid: Option<u32>,
    body: &Bytes,
    repeat: usize,
) -> Result<Row> {
    check_interrupted()?;
    // Unique per run, so that an external gateway's earlier runs are not read back.
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let suffix = format!("{:x}{stamp:x}{repeat}", std::process::id());
    let topic = format!("BenchHttpSse{suffix}");
    let group = format!("BenchHttpSseGroup{suffix}");
    create_topic(runtime, endpoint, &topic, plan.queues)?;
    let preload = ProduceLoad {
        endpoint: endpoint.clone(),
        uri: load::uri(&format!("/v1/topics/{topic}/messages"))?,
        body: body.clone(),
        connections: plan.connections.last().copied().unwrap_or(64),
    };
    let started = Instant::now();
    let window = Window {
        start: started,
        end: started + PRELOAD_LIMIT,
    };
    let outcome = runtime.block_on(preload.run(window, Some(plan.sse_messages)))?;
    let produced = outcome.tally.messages;
    if let Some(first) = outcome.first_error {
        return Err(BenchError::Invalid(format!(
            "SSE preload: {} non-2xx answers; first: {first}",
            outcome.errors
        )));
    }
    if produced < plan.sse_messages {
        return Err(BenchError::Invalid(format!(
            "SSE preload: only {produced} of {} messages were produced within {PRELOAD_LIMIT:?}",
            plan.sse_messages
        )));
    }
    eprintln!(
        "  preloaded {produced} messages into {topic} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    settle();
    let path = format!(
        "/v1/groups/{group}/topics/{topic}/events?ack=auto&maxInFlight={}",
        plan.sse_max_in_flight
    );
    let cpu = CpuMark::now(server_pid);
    let delivery = runtime
        .block_on(sse::receive(endpoint, &path, produced, plan.sse_timeout))
        .map_err(|e| match e {
            BenchError::Invalid(why) => BenchError::Invalid(format!(
                "{why} (a gateway that starts new groups at the end of the topic delivers none \
                 of the preloaded messages)"
            )),
            other => other,
        })?;
    let cpu = cpu.since();
    let per_message = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e6 / produced as f64);
    let row = Row {
        scenario: Scenario::Sse {
            size: plan.size,
            messages: produced,
        },
        figures: Figures::new(
            delivery.received,
            delivery.received * plan.size as u64,
            delivery.elapsed,
            None,
            None,
        ),
        errors: 0,
        first_error: None,
        first_event_ms: delivery.first_event.map(|d| d.as_secs_f64() * 1e3),
        duplicates: Some(delivery.duplicates),
        cpu: Cpu {
            bench_us_per_msg: per_message(cpu.bench),
            server_us_per_msg: per_message(cpu.server),
            other_cores: cpu
                .other()
                .map(|d| d.as_secs_f64() / delivery.elapsed.as_secs_f64().max(1e-9)),
        },
    };
    progress(&row);
    Ok(row)
}

fn progress(row: &Row) {
    let f = &row.figures;
    let p = f.latency.map_or_else(String::new, |l| {
        format!(", p50 {} p99 {} us", micros(l.p50_us), micros(l.p99_us))
    });
    let first = row
        .first_event_ms
        .map_or_else(String::new, |ms| format!(", first after {ms:.1} ms"));
    let errors = if row.errors > 0 {
        format!(", {} ERRORS", row.errors)
    } else {
        String::new()
    };
    eprintln!(
        "  {:<45} {:>9.0} /s{p}{first}{errors}",
        row.scenario.label(),
        f.msgs_per_s
    );
}

#[cfg(test)]
mod tests;
