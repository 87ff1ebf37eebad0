//! Retention and the disk guard.

mod common;

use common::*;
use tern_core::store::{GetStatus, StoreError, now_millis};

#[test]
fn expired_segments_and_their_queue_and_index_files_are_deleted() {
    let (dir, store) = temp_store(|c| {
        c.file_reserved_time_secs = 3600;
        c.consume_queue_entries_per_file = 100;
        c.index_max_entries = 256;
    });
    fill_queue(&store, "Old", 0, 3000, 300);
    let segments = |d: &std::path::Path| {
        std::fs::read_dir(d.join("store/commitlog"))
            .unwrap()
            .count()
    };
    let before = segments(dir.path());
    assert!(before >= 4);

    // Nothing has expired yet.
    let report = store.run_retention(now_millis()).unwrap();
    assert_eq!(report.segments_deleted, 0);

    // Two hours later everything but the segment being written has expired.
    let report = store.run_retention(now_millis() + 2 * 3600 * 1000).unwrap();
    assert!(report.segments_deleted >= 3, "{report:?}");
    assert!(report.queue_files_deleted > 0, "{report:?}");
    assert!(report.index_files_deleted > 0, "{report:?}");
    let min_physical = store.min_physical_offset();
    assert!(min_physical > 0);
    assert!(store.message_at(0).is_none(), "deleted messages are gone");

    let min = store.min_offset("Old", 0);
    assert!(min > 0);
    let got = store.get_messages("Old", 0, 0, 10, 1 << 20, None);
    assert_eq!(
        (got.status, got.next_begin_offset),
        (GetStatus::OffsetTooSmall, min)
    );
    let got = store.get_messages("Old", 0, min, 10, 1 << 20, None);
    assert_eq!(got.status, GetStatus::Found);
    assert!(got.messages[0].physical_offset >= min_physical);
    assert_eq!(
        &got.messages[0].decode().unwrap().body[..],
        &body(min, 300)[..]
    );

    // Writing continues and a restart keeps the trimmed state.
    runtime()
        .block_on(store.put_message(message("Old", 0, 5000, 10)))
        .unwrap();
    let config = store.config().clone();
    drop(store);
    let store = tern_core::store::MessageStore::open(config).unwrap();
    assert_eq!(store.min_physical_offset(), min_physical);
    assert_eq!(store.max_offset("Old", 0), 3001);
    assert_eq!(store.min_offset("Old", 0), min);
}

#[test]
fn disk_pressure_deletes_unexpired_segments_forcibly() {
    let (_dir, store) = temp_store(|c| {
        c.disk_clean_ratio = 0.0;
        c.disk_clean_forcibly_ratio = 0.0;
    });
    fill_queue(&store, "P", 0, 2000, 300);
    let report = store.run_retention(now_millis()).unwrap();
    assert!(report.segments_deleted > 0, "{report:?}");
    assert!(store.min_physical_offset() > 0);
}

#[test]
fn writes_are_refused_when_the_disk_is_too_full() {
    let (_dir, store) = temp_store(|c| c.disk_refuse_write_ratio = 0.0);
    let rt = runtime();
    let err = rt
        .block_on(store.put_message(message("D", 0, 0, 10)))
        .unwrap_err();
    match err {
        StoreError::DiskFull {
            used_percent,
            limit_percent,
        } => {
            assert!(used_percent > 0.0);
            assert_eq!(limit_percent, 0.0);
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
    assert_eq!(store.max_physical_offset(), 0, "nothing was stored");
    assert!(store.disk_used_ratio() > 0.0);
}
