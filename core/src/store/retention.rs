//! Retention and the disk guard (reference §6).
//!
//! A CommitLog segment expires when its newest message is older than the reserved time. We know
//! that without reading the segment: store timestamps never decrease along the log, so the first
//! record of the *next* segment bounds every record of this one. Expired segments are deleted at
//! the configured hour, or at once when disk use passes the clean ratio; past the forcible ratio
//! the oldest segments go even if they have not expired. Past the refuse ratio appends fail with
//! [`super::StoreError::DiskFull`] until space comes back.

use std::io;
use std::path::Path;

use tracing::warn;

use super::commit_log::CommitLog;
use super::consume_queue::ConsumeQueues;
use super::error::StoreError;
use super::health::Health;
use super::index_service::IndexService;

/// Segments one pass deletes at most, so a pass never holds up the disk for long.
const MAX_SEGMENTS_PER_PASS: usize = 10;

/// When files may be deleted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetentionPolicy {
    pub reserved_ms: i64,
    pub clean_ratio: f64,
    pub forcibly_ratio: f64,
}

/// What one retention pass saw and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionReport {
    pub disk_used_ratio: f64,
    pub segments_deleted: usize,
    pub queue_files_deleted: usize,
    pub index_files_deleted: usize,
}

/// Fraction of the filesystem holding `path` in use, as `df` shows it: used blocks over used
/// plus those available to us. Blocks reserved for root (or withheld by a quota) count neither
/// way, so the ratio reaches 1 exactly when our writes start failing, however large the reserve.
pub(crate) fn disk_used_ratio(path: &Path) -> io::Result<f64> {
    let stat = rustix::fs::statvfs(path)?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree);
    let usable = used.saturating_add(stat.f_bavail);
    if usable == 0 {
        return Ok(0.0);
    }
    Ok(used as f64 / usable as f64)
}

/// Measures the disk and updates the write guard.
pub(crate) fn check_disk(root: &Path, health: &Health) -> f64 {
    match disk_used_ratio(root) {
        Ok(ratio) => {
            health.set_disk_used(ratio);
            ratio
        }
        Err(e) => {
            warn!(error = %e, "cannot measure disk use; keeping the previous verdict");
            health.disk_used_ratio()
        }
    }
}

pub(crate) struct RetentionInput<'a> {
    pub root: &'a Path,
    pub policy: RetentionPolicy,
    pub log: &'a CommitLog,
    pub queues: &'a ConsumeQueues,
    pub index: &'a IndexService,
    pub health: &'a Health,
    /// Nothing at or past this CommitLog offset may go: the dispatcher has not indexed it yet.
    pub safe_end: u64,
    pub now_ms: i64,
    /// True at the configured delete hour, or when asked to delete expired files now.
    pub time_to_delete: bool,
}

/// One retention pass.
pub(crate) fn run_pass(input: RetentionInput<'_>) -> Result<RetentionReport, StoreError> {
    let ratio = check_disk(input.root, input.health);
    let policy = input.policy;
    let forcibly = ratio >= policy.forcibly_ratio;
    let mut report = RetentionReport {
        disk_used_ratio: ratio,
        ..RetentionReport::default()
    };
    if input.time_to_delete || ratio >= policy.clean_ratio {
        if forcibly {
            warn!(
                used = ratio,
                "disk nearly full: deleting the oldest CommitLog segments even if not expired"
            );
        }
        report.segments_deleted =
            input
                .log
                .delete_oldest(MAX_SEGMENTS_PER_PASS, input.safe_end, |_, next_first| {
                    forcibly || next_first.is_some_and(|t| input.now_ms - t >= policy.reserved_ms)
                })?;
    }
    let min = input.log.min_offset();
    report.queue_files_deleted = input.queues.delete_below(min)?;
    report.index_files_deleted = input.index.delete_below(min)?;
    if report.segments_deleted > 0 {
        // Deleting may have brought disk use back under the limit.
        check_disk(input.root, input.health);
    }
    Ok(report)
}
