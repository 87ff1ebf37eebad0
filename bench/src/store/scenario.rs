//! The store scenarios: open a [`MessageStore`] in a fresh directory, append from N concurrent
//! tokio tasks, and time it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tern_core::store::{FlushDiskType, MessageStore, Preallocate, PutStatus, StoreConfig};
use tokio::runtime::Runtime;

use crate::error::{BenchError, Context, Result};
use crate::stats::{Figures, Latency};
use crate::workload::Workload;

/// Store settings the command line may change; everything else is [`StoreConfig::default`], i.e.
/// what a broker runs with.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    pub segment_size: u64,
    pub preallocate: Preallocate,
}

/// How long and how much one scenario appends.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max_messages: u64,
    /// `None`: run until `max_messages`.
    pub max_time: Option<Duration>,
}

/// ASYNC_FLUSH with one appender appending `messages` messages, timed from the first put until
/// [`MessageStore::shutdown`] returns.
///
/// Shutdown is the end point because it is the one call that guarantees the bytes are durable:
/// it flushes the CommitLog, lets the dispatcher finish the ConsumeQueues and index, flushes
/// those and writes the checkpoint. Polling `flushed_physical_offset()` instead would measure the
/// periodic flusher's 500 ms tick (or its 10 s "thorough" interval for a tail of fewer than 4
/// pages) rather than the store. The shutdown part is reported separately as the final sync time.
pub fn async_flush(
    runtime: &Runtime,
    dir: &Path,
    workload: &Workload,
    messages: u64,
    settings: StoreSettings,
) -> Result<Figures> {
    let mut scratch = ScratchStore::open(dir, "async-1", FlushDiskType::AsyncFlush, settings)?;
    let store = scratch.take()?;
    let budget = Budget {
        max_messages: messages,
        max_time: None,
    };
    let start = Instant::now();
    let appended = run_appenders(runtime, &store, workload, 1, budget)?;
    let appended_at = Instant::now();
    close(store)?;
    let end = Instant::now();
    figures(workload, &appended, end - start, Some(end - appended_at))
}

/// SYNC_FLUSH with `appenders` concurrent tasks, each awaiting `put_message` in a loop, until the
/// budget is spent. Every put is durable when it returns, so the time ends with the last put;
/// shutdown is not timed.
pub fn sync_flush(
    runtime: &Runtime,
    dir: &Path,
    workload: &Workload,
    appenders: usize,
    budget: Budget,
    settings: StoreSettings,
) -> Result<Figures> {
    let name = format!("sync-{appenders}");
    let mut scratch = ScratchStore::open(dir, &name, FlushDiskType::SyncFlush, settings)?;
    let store = scratch.take()?;
    let start = Instant::now();
    let appended = run_appenders(runtime, &store, workload, appenders, budget)?;
    let elapsed = start.elapsed();
    close(store)?;
    figures(workload, &appended, elapsed, None)
}

/// What the appender tasks did together.
struct Appended {
    messages: u64,
    latency: Latency,
}

fn figures(
    workload: &Workload,
    appended: &Appended,
    elapsed: Duration,
    final_sync: Option<Duration>,
) -> Result<Figures> {
    let record_len = workload.record_len()? as u64;
    Ok(Figures::new(
        appended.messages,
        appended.messages * record_len,
        elapsed,
        appended.latency.percentiles(),
        final_sync,
    ))
}

/// Runs `appenders` tasks that share one message counter (so queues stay round-robin and keys
/// unique across tasks) and stop when the budget runs out. Each task times its own puts into its
/// own histogram; they are merged at the end.
fn run_appenders(
    runtime: &Runtime,
    store: &Arc<MessageStore>,
    workload: &Workload,
    appenders: usize,
    budget: Budget,
) -> Result<Appended> {
    let expected_len = workload.record_len()?;
    let next = Arc::new(AtomicU64::new(0));
    let deadline = budget.max_time.map(|t| Instant::now() + t);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders.max(1))
            .map(|_| {
                let store = store.clone();
                let workload = workload.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    let mut latency = Latency::new();
                    let mut messages = 0u64;
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= budget.max_messages {
                            break;
                        }
                        let message = workload.message(n);
                        let started = Instant::now();
                        let put = store
                            .put_message(message)
                            .await
                            .context(|| format!("appending message {n}"))?;
                        latency.record(started.elapsed());
                        check_put(put.status, put.record.size as usize, expected_len)?;
                        messages += 1;
                    }
                    Ok::<_, BenchError>(Appended { messages, latency })
                })
            })
            .collect();
        let mut total = Appended {
            messages: 0,
            latency: Latency::new(),
        };
        // Every task is awaited even after one failed, so none is left appending to a store that
        // is about to be closed and deleted; the first error is reported.
        let mut first_error = None;
        for task in tasks {
            let outcome = task
                .await
                .map_err(|e| BenchError::Invalid(format!("an appender task failed: {e}")))
                .and_then(|result| result);
            match outcome {
                Ok(appended) => {
                    total.messages += appended.messages;
                    total.latency.merge(&appended.latency);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(total), Err)
    })
}

/// A put that timed out waiting for its flush is not durable, and a record of an unexpected size
/// means the raw baselines wrote different bytes: either makes the comparison meaningless.
fn check_put(status: PutStatus, size: usize, expected: usize) -> Result<()> {
    if status != PutStatus::Ok {
        return Err(BenchError::Invalid(format!(
            "a put returned {status:?}: the disk did not keep up within sync_flush_timeout_ms"
        )));
    }
    if size != expected {
        return Err(BenchError::Invalid(format!(
            "the store wrote a {size}-byte record, the baselines assume {expected} bytes"
        )));
    }
    Ok(())
}

/// Shuts the store down, reporting errors. Every task holding a clone has finished by now.
fn close(store: Arc<MessageStore>) -> Result<()> {
    match Arc::try_unwrap(store) {
        Ok(store) => store
            .shutdown()
            .context(|| "shutting the store down".to_owned()),
        Err(_) => Err(BenchError::Invalid(
            "the store is still shared after the appenders finished".into(),
        )),
    }
}

/// A store in its own fresh directory, deleted when this is dropped (also on error), so a run
/// never leaves gigabytes behind and every scenario starts from an empty store.
struct ScratchStore {
    path: PathBuf,
    store: Option<Arc<MessageStore>>,
}

impl ScratchStore {
    fn open(
        dir: &Path,
        name: &str,
        flush_disk_type: FlushDiskType,
        settings: StoreSettings,
    ) -> Result<ScratchStore> {
        let path = dir.join(format!("store-{name}"));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .context(|| format!("removing a leftover {}", path.display()))?;
        }
        let config = StoreConfig {
            store_path: path.clone(),
            flush_disk_type,
            commit_log_segment_size: settings.segment_size,
            preallocate: settings.preallocate,
            ..StoreConfig::default()
        };
        // Deleted from here on, whatever happens next.
        let mut scratch = ScratchStore { path, store: None };
        let store = MessageStore::open(config)
            .context(|| format!("opening a store in {}", scratch.path.display()))?;
        scratch.store = Some(Arc::new(store));
        Ok(scratch)
    }

    /// Hands the store over (to be shut down by the caller, or closed by its `Drop` on an error
    /// path); the directory stays owned, and is deleted, by `self`, which must outlive it.
    fn take(&mut self) -> Result<Arc<MessageStore>> {
        self.store
            .take()
            .ok_or_else(|| BenchError::Invalid("the store is not open".into()))
    }
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        // Close before deleting (a no-op if the scenario already shut it down).
        self.store = None;
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
