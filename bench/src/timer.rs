//! `tern-bench timer`: timer messages under a backlog.
//!
//! 1. **Delivery lag.** A broker is loaded with `--lag-backlog` timers due in an hour, then a
//!    stream of short timers (due `--stream-delay-ms` after their send, `--stream-rate` per
//!    second for `--stream-secs`) is sent while a consumer long-polls their topic. For each
//!    stream message: consume time − due time (the due time travels in the body). p50/p99/max.
//! 2. **Produce under a backlog.** Two brokers: one with no timers, one filled up to
//!    `--produce-backlog` pending timers (due in an hour). Ordinary 128-byte sends, `--in-flight`
//!    at once over one connection, alternately against each for `--duration` seconds (which one
//!    goes first alternates too), `--repeat` times (after a 1 s warm-up on each); medians and the
//!    median of the per-run ratios backlog / none (each pairs two runs seconds apart).
//!
//! Both brokers are `tern-broker` children (ASYNC_FLUSH) unless `--in-process`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use tern_core::protocol::codes::{request, response};
use tern_core::protocol::headers::{
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader, pull_sys_flag,
};
use tern_core::protocol::{RemotingClient, RemotingCommand};
use tern_core::store::{Entry, decode_record, now_millis};
use tokio::sync::Mutex;

use crate::broker::{BrokerServer, Flush, Hosting, create_topic, default_broker_bin};
use crate::error::{BenchError, Context, Result};
use crate::stats::{Latency, median};

const BACKLOG_TOPIC: &str = "TimerBacklog";
const STREAM_TOPIC: &str = "TimerStream";
const PRODUCE_TOPIC: &str = "TimerProduce";
const QUEUES: u32 = 8;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct TimerArgs {
    /// Run the brokers inside this process instead of as `tern-broker` children.
    #[arg(long)]
    in_process: bool,
    /// The `tern-broker` executable [default: next to tern-bench].
    #[arg(long)]
    broker_bin: Option<PathBuf>,
    /// Directory for the stores (a fresh temporary directory is made in it and removed).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Pending timers (due in an hour) behind the lag measurement.
    #[arg(long, default_value_t = 100_000)]
    lag_backlog: u64,
    /// Short timers per second in the lag measurement.
    #[arg(long, default_value_t = 500)]
    stream_rate: u64,
    /// Seconds the short-timer stream lasts.
    #[arg(long, default_value_t = 6)]
    stream_secs: u64,
    /// How far after its send each short timer is due.
    #[arg(long, default_value_t = 2_000)]
    stream_delay_ms: i64,
    /// Pending timers on the loaded broker of the produce comparison.
    #[arg(long, default_value_t = 1_000_000)]
    produce_backlog: u64,
    /// Measured seconds per produce run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Produce runs per broker (alternating); medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Sends in flight.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
}

pub fn run(args: TimerArgs) -> Result<()> {
    if args.repeat == 0 || args.in_flight == 0 || args.duration <= 0.0 {
        return Err(BenchError::Args(
            "--repeat, --in-flight and --duration must be positive".into(),
        ));
    }
    let hosting = if args.in_process {
        Hosting::InProcess
    } else {
        Hosting::Child {
            broker_bin: match &args.broker_bin {
                Some(bin) => bin.clone(),
                None => default_broker_bin()?,
            },
        }
    };
    std::fs::create_dir_all(&args.dir).context(|| format!("creating {}", args.dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("tern-bench-timer-")
        .tempdir_in(&args.dir)
        .context(|| format!("creating a directory in {}", args.dir.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context(|| "starting the client runtime".to_owned())?;

    let loaded = BrokerServer::start(&hosting, work.path(), Flush::AsyncFlush)?;
    let empty = BrokerServer::start(&hosting, work.path(), Flush::AsyncFlush)?;
    let client = Arc::new(RemotingClient::new());
    runtime.block_on(async {
        for topic in [BACKLOG_TOPIC, STREAM_TOPIC, PRODUCE_TOPIC] {
            create_topic(&client, &loaded.addr, topic, QUEUES).await?;
            create_topic(&client, &empty.addr, topic, QUEUES).await?;
        }
        println!(
            "timer benchmark: backlog {} for the lag, {} for produce; {} in flight",
            args.lag_backlog, args.produce_backlog, args.in_flight
        );

        let started = Instant::now();
        let rate = fill_backlog(&client, &loaded.addr, args.lag_backlog, args.in_flight).await?;
        println!(
            "filled {} pending timers in {:.1} s ({rate:.0} timer sends/s)",
            args.lag_backlog,
            started.elapsed().as_secs_f64()
        );
        let lag = delivery_lag(&client, &loaded.addr, &args).await?;
        println!(
            "delivery lag with {} pending: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} timers)",
            args.lag_backlog, lag.0, lag.1, lag.2, lag.3
        );

        let more = args.produce_backlog.saturating_sub(args.lag_backlog);
        let started = Instant::now();
        let rate = fill_backlog(&client, &loaded.addr, more, args.in_flight).await?;
        println!(
            "filled {more} more pending timers in {:.1} s ({rate:.0} timer sends/s)",
            started.elapsed().as_secs_f64()
        );
        // Let the timer service ingest the backlog before measuring.
        tokio::time::sleep(Duration::from_secs(2)).await;

        if let (Some(a), Some(b)) = (rss_mib(empty.pid), rss_mib(loaded.pid)) {
            println!(
                "broker anonymous RSS: {a:.0} MiB with no timers, {b:.0} MiB with {} pending",
                args.produce_backlog
            );
        }
        // Warm-up (connections, page faults of fresh CommitLog segments), not counted.
        produce(&client, &empty.addr, args.in_flight, 1.0).await?;
        produce(&client, &loaded.addr, args.in_flight, 1.0).await?;
        let (mut none, mut backlog, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.repeat {
            // Alternate which broker goes first, so drift on the shared machine does not
            // always favour the same one.
            let (a, b) = if run % 2 == 0 {
                let a = produce(&client, &empty.addr, args.in_flight, args.duration).await?;
                let b = produce(&client, &loaded.addr, args.in_flight, args.duration).await?;
                (a, b)
            } else {
                let b = produce(&client, &loaded.addr, args.in_flight, args.duration).await?;
                let a = produce(&client, &empty.addr, args.in_flight, args.duration).await?;
                (a, b)
            };
            println!(
                "run {}: produce {a:.0} msgs/s with no timers, {b:.0} msgs/s with {} pending (ratio {:.2})",
                run + 1,
                args.produce_backlog,
                b / a
            );
            ratios.push(b / a);
            none.push(a);
            backlog.push(b);
        }
        let (none, backlog) = (
            median(none).unwrap_or(0.0),
            median(backlog).unwrap_or(0.0),
        );
        println!(
            "median produce: {none:.0} msgs/s with no timers, {backlog:.0} msgs/s with {} pending; \
             median of the per-run ratios {:.2}",
            args.produce_backlog,
            median(ratios).unwrap_or(0.0)
        );
        Ok::<(), BenchError>(())
    })?;
    loaded.stop()?;
    empty.stop()?;
    Ok(())
}

/// Anonymous resident memory (heap, not the mapped store files) of a child broker, MiB.
fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn send_command(topic: &str, queue_id: i32, properties: String, body: Vec<u8>) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "timer-bench".into(),
        topic: topic.into(),
        queue_id,
        born_timestamp: now_millis(),
        properties: Some(properties),
        ..Default::default()
    };
    let mut command = RemotingCommand::request(request::SEND_MESSAGE_V2).with_body(body);
    header.write_v2(&mut command.ext_fields);
    command
}

async fn send_ok(client: &RemotingClient, addr: &str, command: RemotingCommand) -> Result<()> {
    let resp = client
        .invoke(addr, command, CALL_TIMEOUT)
        .await
        .context(|| format!("sending to {addr}"))?;
    if resp.code != response::SUCCESS {
        return Err(BenchError::Invalid(format!(
            "a send was answered with code {} ({})",
            resp.code,
            resp.remark.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Sends `count` timers due in an hour, `in_flight` at a time; returns sends per second.
async fn fill_backlog(
    client: &Arc<RemotingClient>,
    addr: &str,
    count: u64,
    in_flight: usize,
) -> Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let (client, addr, next) = (client.clone(), addr.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<(), BenchError>(());
                }
                let due = now_millis() + 3_600_000 + (i % 600_000) as i64;
                let props = format!("TIMER_DELIVER_MS\u{1}{due}\u{2}");
                let command = send_command(BACKLOG_TOPIC, (i % 8) as i32, props, vec![b'b'; 128]);
                send_ok(&client, &addr, command).await?;
            }
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Invalid(format!("sender panicked: {e}")))??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Sends the short-timer stream and consumes it; returns (p50 ms, p99 ms, max ms, count).
async fn delivery_lag(
    client: &Arc<RemotingClient>,
    addr: &str,
    args: &TimerArgs,
) -> Result<(f64, f64, f64, u64)> {
    let total = args.stream_rate * args.stream_secs;
    let lags = Arc::new(Mutex::new(Latency::new()));
    let received = Arc::new(AtomicU64::new(0));
    let mut pullers = Vec::new();
    for queue in 0..QUEUES as i32 {
        let (client, addr) = (client.clone(), addr.to_owned());
        let (lags, received) = (lags.clone(), received.clone());
        pullers.push(tokio::spawn(async move {
            let mut offset = 0;
            while received.load(Ordering::Relaxed) < total {
                let (next, dues) = pull(&client, &addr, queue, offset).await?;
                let now = now_millis();
                let mut lags = lags.lock().await;
                for due in &dues {
                    // Early deliveries would be negative: recorded as 0, and counted below.
                    let lag = (now - due).max(0) as u64;
                    lags.record(Duration::from_millis(lag));
                    if now < *due {
                        return Err(BenchError::Invalid(format!(
                            "a timer arrived {} ms before it was due",
                            due - now
                        )));
                    }
                }
                received.fetch_add(dues.len() as u64, Ordering::Relaxed);
                offset = next;
            }
            Ok::<(), BenchError>(())
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / args.stream_rate.max(1) as f64);
    let mut tick = tokio::time::interval(interval);
    for i in 0..total {
        tick.tick().await;
        let due = now_millis() + args.stream_delay_ms;
        let props = format!("TIMER_DELIVER_MS\u{1}{due}\u{2}");
        let command = send_command(
            STREAM_TOPIC,
            (i % QUEUES as u64) as i32,
            props,
            due.to_be_bytes().to_vec(),
        );
        let (client, addr) = (client.clone(), addr.to_owned());
        tokio::spawn(async move { send_ok(&client, &addr, command).await });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < total {
        if Instant::now() > deadline {
            return Err(BenchError::Invalid(format!(
                "only {} of {total} short timers arrived",
                received.load(Ordering::Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for puller in pullers {
        puller
            .await
            .map_err(|e| BenchError::Invalid(format!("puller panicked: {e}")))??;
    }
    let lags = lags.lock().await;
    let p = lags
        .percentiles()
        .ok_or_else(|| BenchError::Invalid("no lag recorded".into()))?;
    Ok((p.p50_us / 1e3, p.p99_us / 1e3, p.max_us / 1e3, total))
}

/// One long poll of the stream topic; returns the next offset and the due times received.
async fn pull(
    client: &RemotingClient,
    addr: &str,
    queue_id: i32,
    offset: i64,
) -> Result<(i64, Vec<i64>)> {
    let header = PullMessageRequestHeader {
        consumer_group: "timer-bench".into(),
        topic: STREAM_TOPIC.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: pull_sys_flag::SUSPEND,
        commit_offset: 0,
        suspend_timeout_millis: 1_000,
        subscription: None,
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let command = RemotingCommand::request_with(request::PULL_MESSAGE, &header);
    let resp = client
        .invoke(addr, command, CALL_TIMEOUT)
        .await
        .context(|| format!("pulling from {addr}"))?;
    let next = resp
        .header::<PullMessageResponseHeader>()
        .map(|h| h.next_begin_offset)
        .unwrap_or(offset);
    let mut dues = Vec::new();
    if resp.code == response::SUCCESS {
        let mut rest = &resp.body[..];
        while let Ok(Entry::Record(view)) = decode_record(rest, false) {
            if let Ok(bytes) = <[u8; 8]>::try_from(&view.body[..view.body.len().min(8)]) {
                dues.push(i64::from_be_bytes(bytes));
            }
            rest = &rest[view.total_size as usize..];
            if rest.is_empty() {
                break;
            }
        }
    }
    Ok((next, dues))
}

/// Ordinary 128-byte sends for `seconds`, `in_flight` at once; returns messages per second.
async fn produce(
    client: &Arc<RemotingClient>,
    addr: &str,
    in_flight: usize,
    seconds: f64,
) -> Result<f64> {
    let sent = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let (client, addr, sent) = (client.clone(), addr.to_owned(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t as u64;
            while Instant::now() < end {
                let command = send_command(
                    PRODUCE_TOPIC,
                    (i % QUEUES as u64) as i32,
                    String::new(),
                    vec![b'p'; 128],
                );
                send_ok(&client, &addr, command).await?;
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<(), BenchError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Invalid(format!("producer panicked: {e}")))??;
    }
    Ok(sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
