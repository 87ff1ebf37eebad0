//! Keeps the pages just ahead of the CommitLog's write position faulted in.
//!
//! Appends copy into the mapping. The first touch of each page is a page fault, and the kernel
//! zero-fills the page (with readahead, megabytes at a time) before the copy can proceed: measured,
//! that was a quarter of the appender's CPU, all spent under the append lock. This thread faults
//! the next few megabytes in with `MADV_POPULATE_WRITE` while the appender works on the current
//! ones, so the zero-fill runs on another core and the append path only copies.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::debug;

use super::mapped_file::MappedFile;
use super::sleeper::Sleeper;

/// How far ahead of the write position pages are kept faulted in.
const WINDOW: u64 = 32 << 20;
/// Populate in steps of this size, so a new target is picked up quickly.
const STEP: u64 = 2 << 20;

struct Target {
    segment: Option<Arc<MappedFile>>,
    /// Populate the segment up to this relative position.
    want: u64,
    /// Populated up to here (relative to the segment).
    done: u64,
}

pub(crate) struct Prefaulter {
    target: Mutex<Target>,
    /// Log offset up to which population was last requested: the appender's cheap check.
    requested: AtomicU64,
    sleeper: Sleeper,
    /// Population is best effort: after the first failure (old kernel) it is not tried again.
    unsupported: AtomicBool,
}

impl Prefaulter {
    pub(crate) fn new() -> Prefaulter {
        Prefaulter {
            target: Mutex::new(Target {
                segment: None,
                want: 0,
                done: 0,
            }),
            requested: AtomicU64::new(0),
            sleeper: Sleeper::default(),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Called by the appender after writing up to log offset `position` in `segment`. Cheap unless
    /// the write position came within half a window of the populated range.
    pub(crate) fn advance(&self, segment: &Arc<MappedFile>, position: u64) {
        if position + WINDOW / 2 <= self.requested.load(Ordering::Relaxed)
            || self.unsupported.load(Ordering::Relaxed)
        {
            return;
        }
        let want_end = (position + WINDOW).min(segment.end());
        self.requested.store(want_end, Ordering::Relaxed);
        {
            let mut target = self.target.lock().expect("prefault lock poisoned");
            let same = target
                .segment
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, segment));
            if !same {
                target.segment = Some(segment.clone());
                target.done = position - segment.base();
            }
            target.want = want_end - segment.base();
        }
        self.sleeper.wake();
    }

    /// The prefault thread's body.
    pub(crate) fn run(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            let job = {
                let target = self.target.lock().expect("prefault lock poisoned");
                match &target.segment {
                    Some(segment) if target.done < target.want => {
                        let len = (target.want - target.done).min(STEP);
                        Some((segment.clone(), target.done, len))
                    }
                    _ => None,
                }
            };
            let Some((segment, from, len)) = job else {
                self.sleeper.sleep(Duration::from_millis(100), || {
                    let target = self.target.lock().expect("prefault lock poisoned");
                    target.segment.is_some() && target.done < target.want
                });
                continue;
            };
            if let Err(e) = segment.populate(from, len) {
                debug!(error = %e, "MADV_POPULATE_WRITE unavailable; appends fault pages in themselves");
                self.unsupported.store(true, Ordering::Relaxed);
                return;
            }
            let mut target = self.target.lock().expect("prefault lock poisoned");
            if target
                .segment
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &segment))
            {
                target.done = target.done.max(from + len);
            }
        }
    }
}
