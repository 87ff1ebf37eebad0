//! Append and read through the public API: offsets, rolling, restart, limits, filters.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use tern_core::java_hash;
use tern_core::store::{
    Arrival, ArrivalListener, FlushDiskType, GetStatus, Message, MessageStore, StoreConfig,
    StoreError, sys_flag,
};

/// Reads a whole queue from `from` with `get_messages`, 64 at a time.
fn read_queue(
    store: &MessageStore,
    topic: &str,
    queue: i32,
    from: u64,
) -> Vec<tern_core::store::StoredMessage> {
    let mut offset = from;
    let mut out = Vec::new();
    loop {
        let got = store.get_messages(topic, queue, offset, 64, 1 << 20, None);
        match got.status {
            GetStatus::Found => {}
            GetStatus::OffsetOverflowOne => return out,
            other => panic!("unexpected {other:?} at {offset}"),
        }
        out.extend(got.messages.iter().map(|m| m.decode().unwrap()));
        offset = got.next_begin_offset;
    }
}

#[test]
fn put_then_get_in_order_across_segment_rolls() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    for i in 0..2000u64 {
        let queue = (i % 2) as i32;
        let result = rt
            .block_on(store.put_message(message("TopicA", queue, i, 300)))
            .unwrap();
        assert_eq!(result.record.queue_offset, i / 2);
    }
    assert!(
        store.max_physical_offset() > 2 * 256 * 1024,
        "several segments were used"
    );
    wait_dispatched(&store);
    for queue in 0..2 {
        assert_eq!(store.max_offset("TopicA", queue), 1000);
        assert_eq!(store.min_offset("TopicA", queue), 0);
        let messages = read_queue(&store, "TopicA", queue, 0);
        assert_eq!(messages.len(), 1000);
        for (n, msg) in messages.iter().enumerate() {
            let i = n as u64 * 2 + queue as u64;
            assert_eq!(msg.queue_offset, n as u64);
            assert_eq!(&msg.body[..], &body(i, 300)[..]);
            assert_eq!(msg.topic, "TopicA");
            assert_eq!(msg.unique_key(), Some(format!("uniq-{i}").as_str()));
        }
    }
    let names: Vec<String> = std::fs::read_dir(store.config().store_path.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() >= 3, "rolled into several segment files");
    assert!(
        names.contains(&"00000000000000262144".to_owned()),
        "second segment named by its offset: {names:?}"
    );
    store.shutdown().unwrap();
}

#[test]
fn segment_end_is_marked_blank_and_records_never_straddle() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    let segment = store.config().commit_log_segment_size;
    let mut last_end = 0;
    for i in 0..1200u64 {
        // Odd sizes so the end of a segment is reached at an arbitrary remaining size.
        let r = rt
            .block_on(store.put_message(message("T", 0, i, 100 + (i as usize * 37) % 900)))
            .unwrap();
        let start = r.record.physical_offset;
        let end = start + u64::from(r.record.size);
        assert_eq!(
            start / segment,
            (end - 1) / segment,
            "record {i} straddles a segment boundary"
        );
        if start != last_end {
            // A jump is only allowed to the start of the next segment, past a BLANK filler.
            assert_eq!(start % segment, 0);
            assert!(start - last_end >= 8, "room for the BLANK marker was kept");
            let marker = std::fs::read(
                store
                    .config()
                    .store_path
                    .join("commitlog")
                    .join(format!("{:020}", last_end - last_end % segment)),
            )
            .unwrap();
            let at = (last_end % segment) as usize;
            assert_eq!(
                &marker[at..at + 4],
                &((segment - last_end % segment) as u32).to_be_bytes()
            );
            assert_eq!(&marker[at + 4..at + 8], &0xCBD4_3194u32.to_be_bytes());
        }
        last_end = end;
    }
    wait_dispatched(&store);
    assert_eq!(read_queue(&store, "T", 0, 0).len(), 1200);
}

#[test]
fn clean_restart_keeps_everything_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::for_tests(dir.path().join("store"));
    let rt = runtime();
    let (end, last_id) = {
        let store = MessageStore::open(config.clone()).unwrap();
        let mut last = None;
        for i in 0..500u64 {
            last = Some(
                rt.block_on(store.put_message(message("T", (i % 3) as i32, i, 700)))
                    .unwrap(),
            );
        }
        let end = store.max_physical_offset();
        store.shutdown().unwrap();
        (end, last.unwrap().offset_message_id())
    };
    assert!(
        !dir.path().join("store/abort").exists(),
        "clean shutdown removes abort"
    );
    let store = MessageStore::open(config).unwrap();
    let report = store.recovery_report();
    assert!(!report.previous_run_crashed);
    assert_eq!(report.log_end, end);
    assert_eq!(store.max_physical_offset(), end);
    assert_eq!(
        store.message_by_offset_id(&last_id).unwrap().body,
        body(499, 700)
    );
    for queue in 0..3 {
        let expected = (0..500).filter(|i| i % 3 == queue as u64).count() as u64;
        assert_eq!(store.max_offset("T", queue), expected);
    }
    let next = rt
        .block_on(store.put_message(message("T", 1, 1000, 10)))
        .unwrap();
    assert_eq!(next.record.physical_offset, end);
    assert_eq!(next.record.queue_offset, 167);
    wait_dispatched(&store);
    assert_eq!(read_queue(&store, "T", 1, 0).len(), 168);
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let (dir, store) = temp_store(|_| {});
    let again = MessageStore::open(StoreConfig::for_tests(dir.path().join("store")));
    assert!(
        matches!(again, Err(StoreError::Locked { .. })),
        "got {again:?}"
    );
    drop(store);
    assert!(MessageStore::open(StoreConfig::for_tests(dir.path().join("store"))).is_ok());
}

#[test]
fn invalid_messages_are_refused_and_store_nothing() {
    let (_dir, store) = temp_store(|c| c.max_message_size = 1024);
    let rt = runtime();
    type Expectation = fn(&StoreError) -> bool;
    let cases: Vec<(Message, Expectation)> = vec![
        (Message::new("T", 0, vec![0u8; 1025]), |e| {
            matches!(
                e,
                StoreError::BodyTooLarge {
                    size: 1025,
                    max: 1024
                }
            )
        }),
        (Message::new("t".repeat(128), 0, "x"), |e| {
            matches!(e, StoreError::TopicTooLong { .. })
        }),
        (Message::new("", 0, "x"), |e| {
            matches!(e, StoreError::TopicEmpty)
        }),
        (Message::new("a/b", 0, "x"), |e| {
            matches!(e, StoreError::TopicInvalidChars { .. })
        }),
        (Message::new("T", -1, "x"), |e| {
            matches!(e, StoreError::InvalidQueueId(-1))
        }),
        (
            Message::new("T", 0, "x").with_property("bad\u{1}key", "v"),
            |e| matches!(e, StoreError::InvalidProperty { .. }),
        ),
        (
            Message::new("T", 0, "x").with_property("k", "v".repeat(33_000)),
            |e| matches!(e, StoreError::PropertiesTooLarge { .. }),
        ),
    ];
    for (msg, expected) in cases {
        let err = rt.block_on(store.put_message(msg)).unwrap_err();
        assert!(expected(&err), "unexpected error {err:?}");
        assert!(err.is_message_invalid());
    }
    assert!(matches!(
        rt.block_on(store.put_messages(&[])),
        Err(StoreError::InvalidBatch { len: 0, .. })
    ));
    assert_eq!(store.max_physical_offset(), 0, "nothing was stored");
}

#[test]
fn batch_is_contiguous_and_too_large_batch_is_refused() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    rt.block_on(store.put_message(message("B", 0, 0, 10)))
        .unwrap();
    let batch: Vec<Message> = (1..=50).map(|i| message("B", 0, i, 200)).collect();
    let result = rt.block_on(store.put_messages(&batch)).unwrap();
    assert_eq!(result.records.len(), 50);
    for (n, pair) in result.records.windows(2).enumerate() {
        assert_eq!(pair[0].queue_offset + 1, pair[1].queue_offset);
        assert_eq!(
            pair[0].physical_offset + u64::from(pair[0].size),
            pair[1].physical_offset,
            "record {n}"
        );
    }
    assert_eq!(result.records[0].queue_offset, 1);
    // 256 KiB segments: a batch of ~300 KiB cannot fit any segment.
    let huge: Vec<Message> = (0..30).map(|i| message("B", 0, i, 10_000)).collect();
    let err = rt.block_on(store.put_messages(&huge)).unwrap_err();
    assert!(matches!(err, StoreError::BatchTooLarge { .. }), "{err:?}");
    wait_dispatched(&store);
    assert_eq!(store.max_offset("B", 0), 51);
}

#[test]
fn tag_filter_uses_tags_code() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    for i in 0..30u64 {
        let tag = ["TagA", "TagB", "TagC"][i as usize % 3];
        rt.block_on(store.put_message(message("F", 0, i, 50).with_property("TAGS", tag)))
            .unwrap();
    }
    wait_dispatched(&store);
    let tag_b = i64::from(java_hash::string_hash("TagB"));
    let keep = move |code: i64| code == tag_b;
    let got = store.get_messages("F", 0, 0, 100, 1 << 20, Some(&keep));
    assert_eq!(got.status, GetStatus::Found);
    assert_eq!(got.messages.len(), 10);
    assert!(got.messages.iter().all(|m| m.tags_code == tag_b));
    assert!(
        got.messages
            .iter()
            .all(|m| m.decode().unwrap().properties.get("TAGS") == Some("TagB"))
    );
    assert_eq!(got.next_begin_offset, 30);
    let none = |_: i64| false;
    let got = store.get_messages("F", 0, 0, 100, 1 << 20, Some(&none));
    assert_eq!(got.status, GetStatus::NoMatchedMessage);
    assert_eq!(
        got.next_begin_offset, 30,
        "filtered entries are skipped, not re-read"
    );
}

#[test]
fn get_status_for_offsets_out_of_range() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    assert_eq!(
        store.get_messages("Nope", 0, 0, 10, 1024, None).status,
        GetStatus::NoMatchedLogicQueue
    );
    for i in 0..5 {
        rt.block_on(store.put_message(message("R", 0, i, 10)))
            .unwrap();
    }
    wait_dispatched(&store);
    let at_end = store.get_messages("R", 0, 5, 10, 1024, None);
    assert_eq!(
        (at_end.status, at_end.next_begin_offset),
        (GetStatus::OffsetOverflowOne, 5)
    );
    let beyond = store.get_messages("R", 0, 99, 10, 1024, None);
    assert_eq!(
        (beyond.status, beyond.next_begin_offset),
        (GetStatus::OffsetOverflowBadly, 0)
    );
    // max_bytes bounds the batch but one message always comes back.
    let small = store.get_messages("R", 0, 0, 10, 1, None);
    assert_eq!(small.messages.len(), 1);
    assert_eq!(small.next_begin_offset, 1);
    assert_eq!((small.min_offset, small.max_offset), (0, 5));
}

#[test]
fn offset_by_time_finds_first_message_at_or_after() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    let mut stamps = Vec::new();
    for i in 0..20u64 {
        let r = rt
            .block_on(store.put_message(message("S", 0, i, 10)))
            .unwrap();
        stamps.push(r.record.store_timestamp);
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    wait_dispatched(&store);
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "store timestamps never decrease"
    );
    for (i, ts) in stamps.iter().enumerate() {
        let expected = stamps.iter().position(|t| t >= ts).unwrap() as u64;
        assert_eq!(store.offset_by_time("S", 0, *ts), expected, "message {i}");
    }
    assert_eq!(store.offset_by_time("S", 0, 0), 0);
    assert_eq!(store.offset_by_time("S", 0, stamps[19] + 1), 20);
}

#[test]
fn transaction_halves_take_no_queue_offset() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    let mut prepared = message("X", 0, 1, 10);
    prepared.sys_flag = sys_flag::TRANSACTION_PREPARED_TYPE;
    let r = rt.block_on(store.put_message(prepared)).unwrap();
    assert_eq!(r.record.queue_offset, 0);
    let plain = rt
        .block_on(store.put_message(message("X", 0, 2, 10)))
        .unwrap();
    assert_eq!(
        plain.record.queue_offset, 0,
        "the prepared half did not consume offset 0"
    );
    wait_dispatched(&store);
    assert_eq!(store.max_offset("X", 0), 1);
    assert_eq!(
        store.message_at(r.record.physical_offset).unwrap().sys_flag & 0xC,
        sys_flag::TRANSACTION_PREPARED_TYPE
    );
}

#[test]
fn arrival_listener_hears_each_consumable_message() {
    struct Recorder(Mutex<Vec<(String, i32, u64)>>);
    impl ArrivalListener for Recorder {
        fn on_arrival(&self, a: &Arrival<'_>) {
            self.0
                .lock()
                .unwrap()
                .push((a.topic.to_owned(), a.queue_id, a.queue_offset));
        }
    }
    let (_dir, store) = temp_store(|c| c.flush_disk_type = FlushDiskType::SyncFlush);
    let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
    assert!(store.set_arrival_listener(recorder.clone()));
    let rt = runtime();
    for i in 0..10 {
        rt.block_on(store.put_message(message("L", (i % 2) as i32, i, 10)))
            .unwrap();
    }
    wait_dispatched(&store);
    let heard = recorder.0.lock().unwrap().clone();
    assert_eq!(heard.len(), 10);
    assert!(heard.contains(&("L".to_owned(), 1, 4)));
}

#[test]
fn sync_flush_readers_never_see_unflushed_records() {
    let (_dir, store) = temp_store(|c| c.flush_disk_type = FlushDiskType::SyncFlush);
    let store = Arc::new(store);
    let rt = runtime();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let store = store.clone();
            rt.spawn(async move {
                for i in 0..100u64 {
                    let r = store
                        .put_message(message("Y", (w % 4) as i32, w * 1000 + i, 500))
                        .await
                        .unwrap();
                    assert!(
                        store.flushed_physical_offset()
                            >= r.record.physical_offset + u64::from(r.record.size)
                    );
                }
            })
        })
        .collect();
    // While writers run, everything a reader gets must already be flushed.
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut checked = 0;
            while checked < 1600 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "messages never became visible"
                );
                checked = 0;
                for q in 0..4 {
                    let got = store.get_messages("Y", q, 0, 1024, usize::MAX, None);
                    let flushed = store.flushed_physical_offset();
                    for m in &got.messages {
                        assert!(m.physical_offset + m.bytes.len() as u64 <= flushed);
                    }
                    checked += got.messages.len();
                }
            }
        })
    };
    rt.block_on(async {
        for w in writers {
            w.await.unwrap();
        }
    });
    reader.join().unwrap();
}
