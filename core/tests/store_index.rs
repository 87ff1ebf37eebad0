//! Query by key through the IndexFiles: every keyed message in the time range comes back, hash
//! collisions are re-checked, files roll when full, and the index survives restarts.

mod common;

use std::collections::BTreeSet;

use common::*;
use tern_core::store::{MessageStore, StoreConfig, now_millis};

fn keyed(i: u64, keys: &str) -> tern_core::store::Message {
    message("Idx", (i % 4) as i32, i, 64).with_property("KEYS", keys)
}

#[test]
fn every_message_with_a_key_is_found_despite_collisions_and_rolls() {
    // 4 hash slots force collisions everywhere; 128 entries per file force several files.
    let (dir, store) = temp_store(|c| {
        c.index_hash_slot_count = 4;
        c.index_max_entries = 128;
    });
    let rt = runtime();
    let begin = now_millis();
    for i in 0..600u64 {
        // Each message has its UNIQ_KEY, a per-message key and a shared group key.
        let keys = format!("order-{i} group-{}", i % 10);
        rt.block_on(store.put_message(keyed(i, &keys))).unwrap();
    }
    let end = now_millis();
    wait_dispatched(&store);
    let index_files = std::fs::read_dir(dir.path().join("store/index"))
        .unwrap()
        .count();
    assert!(
        index_files >= 10,
        "600 messages × 3 keys roll 128-entry files: {index_files}"
    );

    for i in [0u64, 1, 299, 599] {
        let found = store.query_by_key("Idx", &format!("order-{i}"), 32, begin, end);
        assert_eq!(found.len(), 1, "order-{i}");
        assert_eq!(&found[0].body[..], &body(i, 64)[..]);
        let by_uniq = store.query_by_key("Idx", &format!("uniq-{i}"), 32, begin, end);
        assert_eq!(by_uniq.len(), 1);
    }
    let group: BTreeSet<u64> = store
        .query_by_key("Idx", "group-3", 1000, begin, end)
        .iter()
        .map(|m| m.queue_offset * 4 + m.queue_id as u64)
        .collect();
    let expected: BTreeSet<u64> = (0..600).filter(|i| i % 10 == 3).collect();
    assert_eq!(
        group, expected,
        "every message of the group key, no collision leaks in"
    );
    assert!(
        store
            .query_by_key("Other", "group-3", 1000, begin, end)
            .is_empty(),
        "topic scoped"
    );
    assert!(
        store
            .query_by_key("Idx", "order-", 1000, begin, end)
            .is_empty(),
        "exact key match"
    );
    assert_eq!(
        store.query_by_key("Idx", "group-3", 7, begin, end).len(),
        7,
        "max bounds the result"
    );
    let newest_first = store.query_by_key("Idx", "group-3", 1000, begin, end);
    assert!(
        newest_first
            .windows(2)
            .all(|w| w[0].physical_offset > w[1].physical_offset)
    );
}

#[test]
fn time_range_is_exact_to_the_millisecond() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    let mut stamps = Vec::new();
    for i in 0..30u64 {
        let r = rt.block_on(store.put_message(keyed(i, "k"))).unwrap();
        stamps.push(r.record.store_timestamp);
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
    wait_dispatched(&store);
    let (from, to) = (stamps[10], stamps[20]);
    let found = store.query_by_key("Idx", "k", 100, from, to);
    let expected = stamps.iter().filter(|&&t| t >= from && t <= to).count();
    assert_eq!(found.len(), expected);
    assert!(
        found
            .iter()
            .all(|m| m.store_timestamp >= from && m.store_timestamp <= to)
    );
}

#[test]
fn index_survives_clean_and_crash_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::for_tests(dir.path().join("store"));
    config.index_max_entries = 100;
    let rt = runtime();
    {
        let store = MessageStore::open(config.clone()).unwrap();
        for i in 0..250u64 {
            rt.block_on(store.put_message(keyed(i, &format!("key-{i}"))))
                .unwrap();
        }
    }
    for crash in [false, true, true] {
        if crash {
            std::fs::write(config.store_path.join("abort"), b"").unwrap();
        }
        let store = MessageStore::open(config.clone()).unwrap();
        wait_dispatched(&store);
        for i in (0..250u64).step_by(7) {
            let found = store.query_by_key("Idx", &format!("key-{i}"), 10, 0, i64::MAX);
            assert_eq!(found.len(), 1, "key-{i} after restart (crash: {crash})");
        }
    }
}

#[test]
fn idempotency_keys_are_indexed_apart_from_user_keys() {
    use tern_core::store::{SCHEDULE_TOPIC, property};
    // 4 slots: every key collides, so the re-checks on the record do the real work.
    let (_dir, store) = temp_store(|c| c.index_hash_slot_count = 4);
    let rt = runtime();
    let plain = message("Idem", 0, 1, 32).with_property(property::IDEMPOTENCY_KEY, "k-1");
    let parked = tern_core::store::Message::new(SCHEDULE_TOPIC, 2, body(2, 32))
        .with_property(property::IDEMPOTENCY_KEY, "k-2")
        .with_property(property::REAL_TOPIC, "Idem")
        .with_property(property::DELAY, "1");
    let other = message("Other", 0, 3, 32).with_property(property::IDEMPOTENCY_KEY, "k-1");
    for m in [plain, parked, other] {
        rt.block_on(store.put_message(m)).unwrap();
    }
    wait_dispatched(&store);
    let now = now_millis();
    let find = |topic: &str, key: &str| {
        store
            .find_by_idempotency_key(topic, key, now - 60_000, now + 1000, true)
            .unwrap()
    };
    let found = find("Idem", "k-1").expect("plain message found");
    assert_eq!((found.topic.as_str(), found.queue_id), ("Idem", 0));
    let found = find("Idem", "k-2").expect("found under the topic the producer named");
    assert_eq!(found.topic, SCHEDULE_TOPIC);
    assert_eq!(find("Other", "k-1").unwrap().topic, "Other");
    assert!(find("Idem", "k-3").is_none());
    assert!(find(SCHEDULE_TOPIC, "k-2").is_none());
    // A user's query by key never sees idempotency entries, nor the other way round.
    assert!(
        store
            .query_by_key("Idem", "k-1", 10, 0, now + 1000)
            .is_empty()
    );
    assert!(find("Idem", "uniq-1").is_none());
    // Outside the time range: nothing.
    assert!(
        store
            .find_by_idempotency_key("Idem", "k-1", now + 5_000, now + 10_000, false)
            .unwrap()
            .is_none()
    );
}
