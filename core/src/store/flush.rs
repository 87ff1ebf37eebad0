//! Getting the CommitLog onto disk: group commit for SYNC_FLUSH, a periodic flusher for
//! ASYNC_FLUSH.
//!
//! Group commit: an appender records the offset it needs flushed (a running maximum) and waits.
//! The flusher thread flushes everything written so far in one `msync`, publishes the new flushed
//! offset, and every waiter at or below it wakes. While one flush runs, new appenders pile up
//! behind it and share the next one, so 64 concurrent writers cost a handful of fsyncs, not 64.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::commit_log::CommitLog;
use super::health::Health;

/// The flusher's published state.
#[derive(Debug, Clone)]
struct Flushed {
    offset: u64,
    failure: Option<Arc<str>>,
}

/// How a wait for a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlushWait {
    Done,
    TimedOut,
    Failed(Arc<str>),
}

pub(crate) struct GroupCommit {
    requested: AtomicU64,
    state: watch::Sender<Flushed>,
    flusher: OnceLock<Thread>,
    /// Tests hold the flusher still to observe a flush timeout.
    #[cfg(test)]
    pub(crate) paused: AtomicBool,
}

impl GroupCommit {
    pub(crate) fn new(flushed: u64) -> GroupCommit {
        let (state, _) = watch::channel(Flushed {
            offset: flushed,
            failure: None,
        });
        GroupCommit {
            requested: AtomicU64::new(flushed),
            state,
            flusher: OnceLock::new(),
            #[cfg(test)]
            paused: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_flusher(&self, thread: Thread) {
        let _ = self.flusher.set(thread);
    }

    /// Asks for everything up to `offset` to be flushed.
    pub(crate) fn request(&self, offset: u64) {
        self.requested.fetch_max(offset, Ordering::AcqRel);
        if let Some(thread) = self.flusher.get() {
            thread.unpark();
        }
    }

    fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Waits until `offset` is flushed, the flusher fails, or `timeout` passes.
    pub(crate) async fn wait(&self, offset: u64, timeout: Duration) -> FlushWait {
        let mut rx = self.state.subscribe();
        let reached = rx.wait_for(|f| f.offset >= offset || f.failure.is_some());
        match tokio::time::timeout(timeout, reached).await {
            Ok(Ok(state)) => match &state.failure {
                Some(reason) if state.offset < offset => FlushWait::Failed(reason.clone()),
                _ => FlushWait::Done,
            },
            // The sender lives as long as the store; a closed channel means it is gone.
            Ok(Err(_)) => FlushWait::Failed("the store was dropped".into()),
            Err(_) => FlushWait::TimedOut,
        }
    }

    pub(crate) fn publish(&self, offset: u64) {
        self.state.send_modify(|f| f.offset = f.offset.max(offset));
    }

    fn fail(&self, reason: &str) {
        self.state.send_modify(|f| f.failure = Some(reason.into()));
    }
}

/// Flushes the log and publishes the result; an I/O error makes the store read-only.
fn flush_once(log: &CommitLog, group: &GroupCommit, health: &Health) -> bool {
    match log.flush() {
        Ok(flushed) => {
            group.publish(flushed);
            true
        }
        Err(e) => {
            let reason = format!("flushing the CommitLog failed: {e}");
            health.fail(reason.clone());
            group.fail(&reason);
            false
        }
    }
}

/// The SYNC_FLUSH flusher thread: flush whenever something is requested or written but unflushed;
/// otherwise sleep until an appender unparks us.
pub(crate) fn run_group_commit(
    log: &CommitLog,
    group: &GroupCommit,
    health: &Health,
    wake_dispatcher: &dyn Fn(),
    stop: &AtomicBool,
) {
    loop {
        #[cfg(test)]
        if group.paused.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(1));
            continue;
        }
        let pending = group.requested().max(log.written()) > log.flushed();
        if pending && health.failure().is_none() {
            if flush_once(log, group, health) {
                wake_dispatcher();
            }
            continue;
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// Knobs of the ASYNC_FLUSH flusher.
pub(crate) struct PeriodicFlush {
    pub interval: Duration,
    pub least_pages: u64,
    pub thorough_interval: Duration,
}

/// The ASYNC_FLUSH flusher thread: every `interval`, flush if at least `least_pages` are dirty, or
/// whatever is dirty once `thorough_interval` has passed since the last full flush.
pub(crate) fn run_periodic(
    log: &CommitLog,
    group: &GroupCommit,
    health: &Health,
    settings: &PeriodicFlush,
    stop: &AtomicBool,
) {
    let mut last_thorough = Instant::now();
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(settings.interval);
        let thorough = last_thorough.elapsed() >= settings.thorough_interval;
        let dirty = log.dirty_pages();
        if (thorough && log.written() > log.flushed()) || dirty >= settings.least_pages.max(1) {
            if thorough {
                last_thorough = Instant::now();
            }
            if health.failure().is_none() {
                flush_once(log, group, health);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_publish_time_out_or_fail() {
        let group = GroupCommit::new(100);
        assert_eq!(
            group.wait(100, Duration::from_millis(10)).await,
            FlushWait::Done
        );
        assert_eq!(
            group.wait(200, Duration::from_millis(20)).await,
            FlushWait::TimedOut
        );
        let waiter = group.wait(200, Duration::from_secs(10));
        let publisher = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            group.publish(250);
        };
        let (result, ()) = tokio::join!(waiter, publisher);
        assert_eq!(result, FlushWait::Done);
        group.fail("disk on fire");
        assert_eq!(
            group.wait(300, Duration::from_secs(10)).await,
            FlushWait::Failed("disk on fire".into())
        );
        assert_eq!(
            group.wait(250, Duration::from_secs(10)).await,
            FlushWait::Done,
            "already flushed"
        );
    }
}
