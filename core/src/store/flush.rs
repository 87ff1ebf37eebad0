//! Getting the CommitLog onto disk: group commit for SYNC_FLUSH, a periodic flusher for
//! ASYNC_FLUSH.
//!
//! Group commit: an appender records the offset it needs flushed (a running maximum) and waits.
//! The flusher thread flushes everything written so far in one `msync`, publishes the new flushed
//! offset, and every waiter at or below it wakes. While one flush runs, new appenders pile up
//! behind it and share the next one, so 64 concurrent writers cost a handful of fsyncs, not 64.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::commit_log::CommitLog;
use super::health::Health;
use super::sleeper::Sleeper;

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

/// Group-commit flusher threads. Two keep the disk busy: while one waits in `fdatasync`, the
/// other can already write and sync the records that arrived meanwhile, so appenders woken by one
/// flush are not held for a whole extra flush cycle.
pub(crate) const GROUP_COMMIT_FLUSHERS: usize = 2;

pub(crate) struct GroupCommit {
    state: watch::Sender<Flushed>,
    flushers: [Sleeper; GROUP_COMMIT_FLUSHERS],
    /// Tests hold the flushers still to observe a flush timeout.
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
            state,
            flushers: Default::default(),
            #[cfg(test)]
            paused: AtomicBool::new(false),
        }
    }

    /// Tells the flushers that appended bytes wait (call after appending).
    pub(crate) fn request(&self) {
        for flusher in &self.flushers {
            flusher.wake();
        }
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

/// Group-commit flusher `index` (SYNC_FLUSH): whenever appended bytes wait, write them and
/// `fdatasync`; otherwise sleep until an appender wakes us.
pub(crate) fn run_group_commit(
    index: usize,
    log: &CommitLog,
    group: &GroupCommit,
    health: &Health,
    wake_dispatcher: &dyn Fn(),
    stop: &AtomicBool,
) {
    let sleeper = &group.flushers[index];
    loop {
        #[cfg(test)]
        if group.paused.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
            std::thread::park_timeout(Duration::from_millis(1));
            continue;
        }
        if log.has_uncommitted() && health.failure().is_none() {
            if flush_once(log, group, health) {
                wake_dispatcher();
            }
            continue;
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        sleeper.sleep(Duration::from_millis(100), || log.has_uncommitted());
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
