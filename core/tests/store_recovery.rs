//! Recovery from damaged directories, in process: garbage over the tail, a truncated last segment,
//! a missing ConsumeQueue directory, queues that run past the log, crash-mode replay. (Killing a
//! real writer mid-append is covered by `tests/tests/store_crash.rs`.)

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::*;
use tern_core::store::{GetStatus, MessageStore, PutResult, StoreConfig, StoreError};

/// Writes `count` messages over 3 queues, shuts down cleanly, returns the results.
fn fill(config: &StoreConfig, count: u64, len: usize) -> Vec<PutResult> {
    let store = MessageStore::open(config.clone()).unwrap();
    let rt = runtime();
    let results = (0..count)
        .map(|i| {
            rt.block_on(store.put_message(message("R", (i % 3) as i32, i, len)))
                .unwrap()
        })
        .collect();
    store.shutdown().unwrap();
    results
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::for_tests(dir.join("store"))
}

fn segment_path(config: &StoreConfig, offset: u64) -> PathBuf {
    let size = config.commit_log_segment_size;
    config
        .store_path
        .join("commitlog")
        .join(format!("{:020}", offset - offset % size))
}

/// Overwrites bytes at a CommitLog offset directly in the segment file.
fn scribble(config: &StoreConfig, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(config, offset))
        .unwrap();
    file.write_all_at(bytes, offset % config.commit_log_segment_size)
        .unwrap();
}

fn mark_crashed(config: &StoreConfig) {
    fs::write(config.store_path.join("abort"), b"").unwrap();
}

/// Checks that every message before `upto` (by index) is readable through its queue and intact,
/// and that nothing at or after it is.
fn assert_exactly_first(store: &MessageStore, results: &[PutResult], upto: usize, len: usize) {
    wait_dispatched(store);
    for queue in 0..3 {
        let expected: Vec<usize> = (0..upto).filter(|i| i % 3 == queue as usize).collect();
        assert_eq!(
            store.max_offset("R", queue),
            expected.len() as u64,
            "queue {queue}"
        );
        let got = store.get_messages("R", queue, 0, 1024, usize::MAX, None);
        assert_eq!(got.messages.len(), expected.len());
        for (m, &i) in got.messages.iter().zip(&expected) {
            let msg = m.decode().unwrap();
            assert_eq!(msg.physical_offset, results[i].record.physical_offset);
            assert_eq!(&msg.body[..], &body(i as u64, len)[..]);
        }
    }
}

/// After recovery the next append must land exactly at the end of the log, with the next queue
/// offset of its queue.
fn assert_appends_continue(store: &MessageStore, expected_end: u64) {
    let before = store.max_offset("R", 0);
    assert_eq!(store.max_physical_offset(), expected_end);
    let r = runtime()
        .block_on(store.put_message(message("R", 0, 9999, 10)))
        .unwrap();
    assert_eq!(r.record.physical_offset, expected_end);
    assert_eq!(r.record.queue_offset, before);
}

#[test]
fn garbage_over_the_last_record_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 300, 400);
    let last = &results[299].record;
    // Damage the body of the last record; its CRC no longer matches.
    scribble(
        &config,
        last.physical_offset + 150,
        b"garbage garbage garbage",
    );
    // And put garbage after the end of the log, where nothing was ever written.
    scribble(
        &config,
        last.physical_offset + u64::from(last.size) + 100,
        &[0xEE; 64],
    );

    let store = MessageStore::open(config.clone()).unwrap();
    assert_eq!(store.recovery_report().log_end, last.physical_offset);
    assert_exactly_first(&store, &results, 299, 400);
    assert_appends_continue(&store, last.physical_offset);
    drop(store);
    // The cut-off bytes are zero on disk: nothing stale can ever be read as a record again.
    let segment = fs::read(segment_path(&config, last.physical_offset)).unwrap();
    let from = (last.physical_offset % config.commit_log_segment_size) as usize;
    let appended_len = 91 + 1 + 10 + "UNIQ_KEY".len() + 2 + "uniq-9999".len();
    assert!(segment[from + appended_len..].iter().all(|&b| b == 0));
}

#[test]
fn garbage_in_a_crash_is_cut_off_and_later_records_do_not_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 600, 300);
    // A damaged record in the middle of the last segment; the valid records behind it must not
    // be resurrected later, even once new appends reach them.
    let victim = results
        .iter()
        .rposition(|r| r.record.physical_offset % config.commit_log_segment_size > 20_000)
        .unwrap()
        - 20;
    scribble(
        &config,
        results[victim].record.physical_offset + 4,
        &[0x00, 0x11, 0x22, 0x33],
    );
    mark_crashed(&config);

    let store = MessageStore::open(config.clone()).unwrap();
    let report = store.recovery_report().clone();
    assert!(report.previous_run_crashed);
    assert_eq!(report.log_end, results[victim].record.physical_offset);
    assert_exactly_first(&store, &results, victim, 300);
    // Append fewer, larger records than were lost, then restart cleanly twice.
    let rt = runtime();
    for i in 0..5 {
        rt.block_on(store.put_message(message("R", 0, 20_000 + i, 1000)))
            .unwrap();
    }
    let end = store.max_physical_offset();
    drop(store);
    let store = MessageStore::open(config.clone()).unwrap();
    assert_eq!(store.max_physical_offset(), end);
    let queue0_before = (0..victim).filter(|i| i % 3 == 0).count() as u64;
    assert_eq!(store.max_offset("R", 0), queue0_before + 5);
    assert_eq!(
        store.max_offset("R", 1),
        (0..victim).filter(|i| i % 3 == 1).count() as u64
    );
}

#[test]
fn zero_size_marks_a_torn_record_as_the_end() {
    // The appender writes TOTALSIZE last; a kill mid-copy leaves it zero.
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 50, 100);
    scribble(&config, results[49].record.physical_offset, &[0, 0, 0, 0]);
    mark_crashed(&config);
    let store = MessageStore::open(config).unwrap();
    assert_eq!(
        store.recovery_report().log_end,
        results[49].record.physical_offset
    );
    assert_exactly_first(&store, &results, 49, 100);
}

#[test]
fn truncated_last_segment_is_recovered_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 1500, 400);
    let size = config.commit_log_segment_size;
    let last_segment_start = results.last().unwrap().record.physical_offset / size * size;
    assert!(last_segment_start > 0, "needs more than one segment");
    // Cut the last segment file in the middle of a record.
    let victim = results
        .iter()
        .position(|r| r.record.physical_offset > last_segment_start + 10_000)
        .unwrap();
    let cut = results[victim].record.physical_offset + 37 - last_segment_start;
    let path = segment_path(&config, last_segment_start);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let store = MessageStore::open(config.clone()).unwrap();
    assert_eq!(
        store.recovery_report().log_end,
        results[victim].record.physical_offset
    );
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        size,
        "the segment is full-size again"
    );
    assert_exactly_first(&store, &results, victim, 400);
    assert_appends_continue(&store, results[victim].record.physical_offset);
}

#[test]
fn a_middle_segment_of_the_wrong_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    fill(&config, 1500, 400);
    let first = segment_path(&config, 0);
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(1000)
        .unwrap();
    match MessageStore::open(config) {
        Err(StoreError::SegmentWrongSize {
            path,
            expected,
            actual,
        }) => {
            assert_eq!(path, first);
            assert_eq!((expected, actual), (256 * 1024, 1000));
        }
        other => panic!("expected SegmentWrongSize, got {other:?}"),
    }
}

#[test]
fn missing_consume_queue_directory_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 900, 300);
    fs::remove_dir_all(config.store_path.join("consumequeue")).unwrap();
    let store = MessageStore::open(config).unwrap();
    assert_eq!(store.recovery_report().replayed_from, 0);
    assert_exactly_first(&store, &results, 900, 300);
    let end = results[899].record.physical_offset + u64::from(results[899].record.size);
    assert_appends_continue(&store, end);
}

#[test]
fn unusable_queue_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 300, 100);
    let queue_file = config
        .store_path
        .join("consumequeue/R/1/00000000000000000000");
    OpenOptions::new()
        .write(true)
        .open(&queue_file)
        .unwrap()
        .set_len(77)
        .unwrap();
    let store = MessageStore::open(config).unwrap();
    assert!(store.recovery_report().queues_rebuilt);
    assert_exactly_first(&store, &results, 300, 100);
}

#[test]
fn queues_pointing_past_the_log_are_cut_back() {
    // Like a crash under ASYNC_FLUSH where queue pages reached the disk but the log's did not.
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 400, 200);
    let keep = 370;
    let from = results[keep].record.physical_offset;
    let last = results.last().unwrap().record;
    let end = last.physical_offset + u64::from(last.size);
    let size = config.commit_log_segment_size;
    // Zero the log from `from` to the end (within the last segment; earlier segments are full).
    assert_eq!(
        from / size,
        (end - 1) / size,
        "test expects the cut within one segment"
    );
    scribble(&config, from, &vec![0u8; (end - from) as usize]);
    mark_crashed(&config);

    let store = MessageStore::open(config).unwrap();
    assert_eq!(store.recovery_report().log_end, from);
    assert_exactly_first(&store, &results, keep, 200);
    assert_appends_continue(&store, from);
}

#[test]
fn crash_replay_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let results = fill(&config, 1000, 250);
    for _ in 0..2 {
        mark_crashed(&config);
        let store = MessageStore::open(config.clone()).unwrap();
        let report = store.recovery_report().clone();
        assert!(report.previous_run_crashed);
        assert!(
            report.replayed_records > 0,
            "a crash replays from before the checkpoint: {report:?}"
        );
        assert_exactly_first(&store, &results, 1000, 250);
        let uniq = store.query_by_key("R", "uniq-777", 10, 0, i64::MAX);
        assert_eq!(
            uniq.len(),
            1,
            "index entries are neither lost nor duplicated"
        );
        drop(store);
    }
    let store = MessageStore::open(config).unwrap();
    assert!(!store.recovery_report().previous_run_crashed);
    let got = store.get_messages("R", 2, 0, 1024, usize::MAX, None);
    assert_eq!(got.status, GetStatus::Found);
}
