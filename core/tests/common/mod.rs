//! Helpers shared by the store's integration tests.

#![allow(dead_code)]

pub mod broker;

use std::time::{Duration, Instant};

use tern_core::store::{Message, MessageStore, StoreConfig};

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn temp_store(configure: impl FnOnce(&mut StoreConfig)) -> (tempfile::TempDir, MessageStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::for_tests(dir.path().join("store"));
    configure(&mut config);
    let store = MessageStore::open(config).unwrap();
    (dir, store)
}

/// Waits until the dispatcher has caught up with everything appended.
pub fn wait_dispatched(store: &MessageStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.dispatched_physical_offset() < store.max_physical_offset() {
        assert!(Instant::now() < deadline, "dispatch did not catch up");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A deterministic body for message `i` of `len` bytes.
pub fn body(i: u64, len: usize) -> Vec<u8> {
    let mut b = format!("message-{i}-").into_bytes();
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while b.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.push(b'a' + (x % 26) as u8);
    }
    b.truncate(len);
    b
}

pub fn message(topic: &str, queue: i32, i: u64, len: usize) -> Message {
    Message::new(topic, queue, body(i, len)).with_property("UNIQ_KEY", format!("uniq-{i}"))
}

/// Appends `count` messages (`message(topic, queue, i, len)`) and waits for dispatch.
pub fn fill_queue(store: &MessageStore, topic: &str, queue: i32, count: u64, len: usize) {
    let rt = runtime();
    for i in 0..count {
        rt.block_on(store.put_message(message(topic, queue, i, len)))
            .unwrap();
    }
    wait_dispatched(store);
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
