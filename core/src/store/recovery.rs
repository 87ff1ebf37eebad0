//! Start-up recovery (reference §6): find where the CommitLog really ends, cut everything after it,
//! and replay the stretch of log the ConsumeQueues and the index may not cover.
//!
//! - Clean shutdown (no `abort`): the queues cover the log up to their largest entry; the scan
//!   starts in that segment.
//! - Crash: the checkpoint promises that everything stored before min(physic, logics) is on disk in
//!   the log and the queues; replay starts at the newest segment whose first record is at least
//!   3 s older than that.
//! - Either way the index resumes just past what its files cover (after a crash, files newer than
//!   the index checkpoint were dropped at load), and unusable queue files or a missing
//!   `consumequeue/` force a replay from the start of the log. `MessageStore::open` first resets
//!   the checkpoint's queue promise to 0, so a crash during that rebuild replays everything again.
//!
//! The scan checks every record (magic, lengths, body CRC, and that the record's own PHYSICALOFFSET
//! is where it sits) and stops at the first that fails: that is the end of the log.

use tracing::{info, warn};

use super::checkpoint::CheckpointValues;
use super::commit_log::CommitLog;
use super::consume_queue::ConsumeQueues;
use super::dispatcher::Dispatcher;
use super::error::StoreError;
use super::index_service::IndexService;
use super::mapped_file::MappedFile;
use super::record::{self, Entry};

/// How far before the checkpoint a crash replay starts, for clock skew between the writers of the
/// checkpoint fields (RocketMQ uses the same 3 s).
const CRASH_REPLAY_MARGIN_MS: i64 = 3_000;

/// What recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// `abort` was present: the previous run did not shut down cleanly.
    pub previous_run_crashed: bool,
    /// Some ConsumeQueue was missing or unusable and is rebuilt from the whole log.
    pub queues_rebuilt: bool,
    /// CommitLog offset where the CRC scan started.
    pub scanned_from: u64,
    /// Where the log ends: the first byte after the last valid record.
    pub log_end: u64,
    /// CommitLog offset from which records were dispatched again.
    pub replayed_from: u64,
    /// Records dispatched again (ConsumeQueue and index writes that were already there are skipped).
    pub replayed_records: u64,
}

pub(crate) struct RecoveryInput<'a> {
    pub log: &'a CommitLog,
    pub queues: &'a ConsumeQueues,
    pub index: &'a IndexService,
    pub dispatcher: &'a Dispatcher,
    pub checkpoint: CheckpointValues,
    pub crashed: bool,
    pub queues_dropped: bool,
}

pub(crate) fn recover(input: RecoveryInput<'_>) -> Result<RecoveryReport, StoreError> {
    let RecoveryInput {
        log,
        queues,
        index,
        dispatcher,
        checkpoint,
        crashed,
        queues_dropped,
    } = input;
    let segments = log.segments();
    let Some(first) = segments.first().map(|s| s.base()) else {
        log.set_end(0, checkpoint.physic_msg_timestamp)?;
        queues.recover(0, None)?;
        dispatcher.set_position(0, 0);
        log.set_queue_offsets(queues.queue_offsets());
        return Ok(RecoveryReport {
            previous_run_crashed: crashed,
            queues_rebuilt: queues_dropped,
            scanned_from: 0,
            log_end: 0,
            replayed_from: 0,
            replayed_records: 0,
        });
    };
    let last_end = segments.last().expect("not empty").end();

    let queues_from = if queues_dropped {
        first
    } else if crashed {
        crash_replay_start(&segments, &checkpoint)
    } else {
        queues.raw_max_physical_end()
    };
    let index_from = index.resume_offset(first).unwrap_or(u64::MAX);
    let replay_from = queues_from.min(index_from).clamp(first, last_end);
    let scan_segment = segments
        .iter()
        .rev()
        .find(|s| s.base() <= replay_from)
        .expect("replay_from is at or after the first segment");
    let scanned_from = scan_segment.base();

    let (log_end, last_timestamp) = scan(&segments, scanned_from);
    info!(
        crashed,
        scanned_from, log_end, replay_from, "CommitLog recovered"
    );
    let last_timestamp = last_timestamp.unwrap_or(checkpoint.physic_msg_timestamp);
    log.set_end(log_end, last_timestamp)?;
    queues.recover(log_end, crashed.then_some(queues_from))?;

    let replayed_from = replay_from.min(log_end).max(scanned_from);
    dispatcher.set_position(replayed_from, 0);
    let replayed_records = dispatcher.dispatch_until(log_end, false)?;
    dispatcher.set_position(log_end, last_timestamp);
    log.set_queue_offsets(queues.queue_offsets());
    // Retention may have removed the log under the oldest entries: they are not readable.
    queues.delete_below(log.min_offset())?;

    Ok(RecoveryReport {
        previous_run_crashed: crashed,
        queues_rebuilt: queues_dropped,
        scanned_from,
        log_end,
        replayed_from,
        replayed_records,
    })
}

/// The newest segment whose first record was stored at least 3 s before the checkpoint's
/// promises, or the first segment.
fn crash_replay_start(
    segments: &[std::sync::Arc<MappedFile>],
    checkpoint: &CheckpointValues,
) -> u64 {
    let promised = checkpoint
        .physic_msg_timestamp
        .min(checkpoint.logics_msg_timestamp);
    let limit = promised - CRASH_REPLAY_MARGIN_MS;
    for segment in segments.iter().rev() {
        if let Ok(Entry::Record(first)) = record::decode(segment.read_from(0), true)
            && first.physical_offset == segment.base()
            && first.store_timestamp <= limit
        {
            return segment.base();
        }
    }
    segments[0].base()
}

/// CRC-checked walk from `from` (a segment start) to the first invalid record. Returns the end of
/// the log and the store timestamp of its last record.
fn scan(segments: &[std::sync::Arc<MappedFile>], from: u64) -> (u64, Option<i64>) {
    let mut last_timestamp = None;
    let start = segments
        .iter()
        .position(|s| s.base() == from)
        .expect("scan starts at a segment");
    let mut position = from;
    for segment in &segments[start..] {
        if position != segment.base() {
            break; // the previous segment ended early: later segments are past the end
        }
        loop {
            let rel = position - segment.base();
            match record::decode(segment.read_from(rel), true) {
                Ok(Entry::Record(view)) if view.physical_offset == position => {
                    position += u64::from(view.total_size);
                    last_timestamp = Some(view.store_timestamp);
                }
                Ok(Entry::Record(view)) => {
                    warn!(
                        position,
                        claims = view.physical_offset,
                        "record is not where it says it is; end of log"
                    );
                    return (position, last_timestamp);
                }
                Ok(Entry::Blank) => {
                    position = segment.end();
                    break;
                }
                Ok(Entry::Unwritten) => return (position, last_timestamp),
                Err(e) => {
                    warn!(position, error = %e, "invalid record; end of log");
                    return (position, last_timestamp);
                }
            }
        }
    }
    (position, last_timestamp)
}
