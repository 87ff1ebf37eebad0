//! Append and read through the public API: offsets, rolling, restart, limits.

mod common;

use common::*;
use tern_core::store::{GetStatus, Message, MessageStore, StoreError};

#[test]
fn put_then_get_in_order_across_segment_rolls() {
    let (_dir, store) = temp_store(|_| {});
    let rt = runtime();
    let mut ends = Vec::new();
    for i in 0..2000u64 {
        let queue = (i % 2) as i32;
        let result = rt
            .block_on(store.put_message(message("TopicA", queue, i, 300)))
            .unwrap();
        assert_eq!(result.record.queue_offset, i / 2);
        ends.push(result.record.physical_offset);
    }
    assert!(
        store.max_physical_offset() > 2 * 256 * 1024,
        "several segments were used"
    );
    wait_dispatched(&store);
    for queue in 0..2 {
        assert_eq!(store.max_offset("TopicA", queue), 1000);
        let mut offset = 0;
        let mut seen = 0;
        loop {
            let got = store.get_messages("TopicA", queue, offset, 64, 1 << 20, None);
            if got.status == GetStatus::OffsetOverflowOne {
                break;
            }
            assert_eq!(got.status, GetStatus::Found);
            for m in &got.messages {
                let msg = m.decode().unwrap();
                let i = seen * 2 + queue as u64;
                assert_eq!(msg.queue_offset, seen);
                assert_eq!(&msg.body[..], &body(i, 300)[..]);
                seen += 1;
            }
            offset = got.next_begin_offset;
        }
        assert_eq!(seen, 1000);
    }
    let files = std::fs::read_dir(store.config().store_path.join("commitlog"))
        .unwrap()
        .count();
    assert!(files >= 3, "rolled into several segment files");
    store.shutdown().unwrap();
}
