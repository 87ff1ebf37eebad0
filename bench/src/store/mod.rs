//! `tern-bench store`: the storage-engine benchmark.
//!
//! For each body size it measures, in one run and on one filesystem:
//! - the raw baselines: the same record stream written with one `write(2)` per record, and with
//!   1 MiB writes, each followed by one `fsync`;
//! - the store under ASYNC_FLUSH with one appender (timed until shutdown has made it durable);
//! - the store under SYNC_FLUSH with 1, 16 and 64 concurrent appenders;
//!
//! and once per run the 4 KiB `write` + `fdatasync` baseline and, per body size, the ideal group
//! commit (64 records per `write` + `fdatasync`). With `--repeat N` all of that runs N
//! times and every figure is reported as its median: the machines this runs on are shared, and a
//! single run can be off by tens of percent.

mod report;
mod results;
mod scenario;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tern_core::store::Preallocate;

use crate::error::{BenchError, Context, Result};
use crate::raw;
use crate::stats::{Figures, MB};
use crate::workload::Workload;
use report::{Report, Settings};
use results::{Row, Scenario};
use scenario::{Budget, StoreSettings};

/// Defaults of a full run and of `--quick`.
const DEFAULT_TOTAL_MB: f64 = 512.0;
const DEFAULT_SYNC_SECONDS: f64 = 10.0;
const QUICK_TOTAL_MB: f64 = 2.0;
const QUICK_SYNC_SECONDS: f64 = 0.2;

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Directory to benchmark in. A fresh temporary directory is made inside it and removed at the
    /// end. It must be on the disk you mean to measure: /tmp is often tmpfs (memory).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Message body sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "128,1024,4096")]
    bodies: Vec<usize>,
    /// Megabytes (10^6 bytes) of message bodies per scenario: exactly this much for ASYNC_FLUSH
    /// and the raw baselines, at most this much for SYNC_FLUSH and fdatasync runs [default: 512;
    /// 2 with --quick].
    #[arg(long)]
    total_mb: Option<f64>,
    /// Time cap of each SYNC_FLUSH scenario and of the fdatasync baselines, in seconds [default:
    /// 10; 0.2 with --quick].
    #[arg(long)]
    sync_seconds: Option<f64>,
    /// Concurrent appenders of the SYNC_FLUSH scenarios.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    sync_appenders: Vec<usize>,
    /// Queues of the topic; messages go to them round-robin.
    #[arg(long, default_value_t = 8)]
    queues: u32,
    /// Run everything this many times and report the median of each figure.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A smoke run: tiny budgets, so the whole command takes seconds.
    #[arg(long)]
    quick: bool,
    /// CommitLog segment size in MiB.
    #[arg(long, default_value_t = 1024)]
    segment_mib: u64,
    /// How new CommitLog segments (and IndexFiles, ConsumeQueue files) get their blocks.
    #[arg(long, value_enum, default_value_t = PreallocateArg::Fallocate)]
    preallocate: PreallocateArg,
    /// Which scenario groups to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "raw,async,sync,fdatasync"
    )]
    scenarios: Vec<Group>,
    /// Also write every run's figures, the medians and the ratios to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Worker threads of the tokio runtime the appenders run on [default: one per CPU, as a
    /// broker would run].
    #[arg(long)]
    worker_threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PreallocateArg {
    Fallocate,
    Zero,
    Sparse,
}

impl From<PreallocateArg> for Preallocate {
    fn from(arg: PreallocateArg) -> Preallocate {
        match arg {
            PreallocateArg::Fallocate => Preallocate::Fallocate,
            PreallocateArg::Zero => Preallocate::Zero,
            PreallocateArg::Sparse => Preallocate::Sparse,
        }
    }
}

/// Scenario groups, for running part of the benchmark (e.g. while investigating one figure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Group {
    /// Both sequential-write baselines.
    Raw,
    /// Store under ASYNC_FLUSH, one appender.
    Async,
    /// Store under SYNC_FLUSH, once per --sync-appenders count.
    Sync,
    /// The 4 KiB write + fdatasync baseline and the ideal group commit (N records per
    /// write + fdatasync, N the largest --sync-appenders).
    Fdatasync,
}

/// The run's plan, with `--quick` resolved and every value checked.
struct Plan {
    bodies: Vec<usize>,
    total_bytes: u64,
    sync_time: Duration,
    sync_appenders: Vec<usize>,
    queues: u32,
    repeat: usize,
    store: StoreSettings,
    groups: Vec<Group>,
    worker_threads: Option<usize>,
}

impl Plan {
    fn from_args(args: &StoreArgs) -> Result<Plan> {
        let (total_mb, sync_seconds) = if args.quick {
            (QUICK_TOTAL_MB, QUICK_SYNC_SECONDS)
        } else {
            (DEFAULT_TOTAL_MB, DEFAULT_SYNC_SECONDS)
        };
        let total_mb = args.total_mb.unwrap_or(total_mb);
        let sync_seconds = args.sync_seconds.unwrap_or(sync_seconds);
        if !(total_mb.is_finite() && total_mb > 0.0) {
            return Err(BenchError::Args("--total-mb must be positive".into()));
        }
        if !(sync_seconds.is_finite() && sync_seconds >= 0.0) {
            return Err(BenchError::Args("--sync-seconds must be >= 0".into()));
        }
        if args.bodies.is_empty() || args.bodies.contains(&0) {
            return Err(BenchError::Args("--bodies must list positive sizes".into()));
        }
        if args.sync_appenders.contains(&0) {
            return Err(BenchError::Args("--sync-appenders must be positive".into()));
        }
        if args.repeat == 0 {
            return Err(BenchError::Args("--repeat must be at least 1".into()));
        }
        if args.worker_threads == Some(0) {
            return Err(BenchError::Args("--worker-threads must be positive".into()));
        }
        let segment_size = args
            .segment_mib
            .checked_mul(1 << 20)
            .ok_or_else(|| BenchError::Args("--segment-mib is too large".into()))?;
        Ok(Plan {
            bodies: args.bodies.clone(),
            total_bytes: (total_mb * MB) as u64,
            sync_time: Duration::from_secs_f64(sync_seconds),
            sync_appenders: args.sync_appenders.clone(),
            queues: args.queues,
            repeat: args.repeat,
            store: StoreSettings {
                segment_size,
                preallocate: args.preallocate.into(),
            },
            groups: args.scenarios.clone(),
            worker_threads: args.worker_threads,
        })
    }

    fn runs(&self, group: Group) -> bool {
        self.groups.contains(&group)
    }

    /// Messages per scenario for `body`-byte bodies (at least one).
    fn messages(&self, body: usize) -> u64 {
        (self.total_bytes / body as u64).max(1)
    }
}

/// Runs the store benchmark and prints the report.
pub fn run(args: StoreArgs) -> Result<()> {
    let plan = Plan::from_args(&args)?;
    let (work, work_path, machine) =
        crate::sysinfo::work_dir(&args.dir, "tern-bench-", "these figures")?;
    eprintln!(
        "tern-bench store: {} CPUs, {} at {} ({})",
        machine.cpus,
        machine.filesystem,
        work_path.display(),
        machine.device
    );
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = plan.worker_threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context(|| "starting the tokio runtime".to_owned())?;

    let mut runs = Vec::with_capacity(plan.repeat);
    for repeat in 1..=plan.repeat {
        eprintln!("run {repeat}/{}", plan.repeat);
        runs.push(run_once(&plan, &runtime, &work_path)?);
    }
    let report = Report {
        settings: Settings {
            dir: work_path.display().to_string(),
            bodies: plan.bodies.clone(),
            total_mb: plan.total_bytes as f64 / MB,
            sync_seconds: plan.sync_time.as_secs_f64(),
            sync_appenders: plan.sync_appenders.clone(),
            queues: plan.queues,
            repeat: plan.repeat,
            segment_bytes: plan.store.segment_size,
            preallocate: format!("{:?}", plan.store.preallocate),
            quick: args.quick,
        },
        machine,
        medians: results::medians(&runs),
        ratios: results::ratios(&runs),
        runs,
    };
    print!("{}", report.to_markdown());
    if let Some(path) = &args.json {
        crate::sysinfo::write_json(path, &report)?;
    }
    work.close()
        .context(|| "removing the benchmark directory".to_owned())?;
    Ok(())
}

/// One pass over every scenario.
fn run_once(plan: &Plan, runtime: &tokio::runtime::Runtime, dir: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &body in &plan.bodies {
        let workload = Workload::new(body, plan.queues)?;
        let record_len = workload.record_len()?;
        let messages = plan.messages(body);
        let mut measure = |scenario: Scenario, f: &mut dyn FnMut() -> Result<Figures>| {
            settle();
            let figures = f()?;
            progress(&scenario, Some(body), &figures);
            rows.push(Row {
                scenario,
                body: Some(body),
                record_len,
                figures,
            });
            Ok::<_, BenchError>(())
        };
        if plan.runs(Group::Raw) {
            measure(Scenario::RawWritePerRecord, &mut || {
                raw::write_per_record(dir, record_len, messages)
            })?;
            measure(Scenario::RawWriteBuffered, &mut || {
                raw::write_buffered(dir, record_len, messages)
            })?;
        }
        if plan.runs(Group::Async) {
            measure(Scenario::AsyncFlush, &mut || {
                scenario::async_flush(runtime, dir, &workload, messages, plan.store)
            })?;
        }
        if plan.runs(Group::Sync) {
            for &appenders in &plan.sync_appenders {
                let budget = Budget {
                    max_messages: messages,
                    max_time: Some(plan.sync_time),
                };
                measure(Scenario::SyncFlush { appenders }, &mut || {
                    scenario::sync_flush(runtime, dir, &workload, appenders, budget, plan.store)
                })?;
            }
        }
        // The ideal group commit of the largest appender count, next to the store's figures.
        let largest_group = plan.sync_appenders.iter().max().copied();
        if let Some(batch) = largest_group.filter(|_| plan.runs(Group::Fdatasync)) {
            measure(Scenario::RawGroupCommit { records: batch }, &mut || {
                raw::group_commit(dir, record_len, batch, plan.total_bytes, plan.sync_time)
            })?;
        }
    }
    if plan.runs(Group::Fdatasync) {
        settle();
        let figures = raw::fdatasync_per_page(dir, plan.total_bytes, plan.sync_time)?;
        progress(&Scenario::RawFdatasync, None, &figures);
        rows.push(Row {
            scenario: Scenario::RawFdatasync,
            body: None,
            record_len: raw::SYNC_UNIT,
            figures,
        });
    }
    Ok(rows)
}

/// Lets the previous scenario's leftovers (journal commits, writeback of deleted files) drain
/// before the next starts, so one scenario's I/O is not billed to the next.
fn settle() {
    rustix::fs::sync();
}

fn progress(scenario: &Scenario, body: Option<usize>, f: &Figures) {
    let body = body.map_or_else(|| "-".to_owned(), |b| format!("{b} B"));
    let p50 = f
        .latency
        .map_or_else(String::new, |l| format!(", p50 {:.1} us", l.p50_us));
    eprintln!(
        "  {:<45} {:>7}: {:>10.0} msgs/s {:>8.1} MB/s{p50}",
        scenario.label(),
        body,
        f.msgs_per_s,
        f.mb_per_s
    );
}
