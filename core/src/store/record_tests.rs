//! Codec tests: a record laid out by hand from the reference table must decode, our encoder must
//! produce exactly those bytes, and arbitrary messages must survive a round trip.

use std::net::SocketAddr;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::store::message::{Message, Properties};

/// Builds the bytes of reference §2 field by field, independently of `encode`.
fn hand_encoded_v1() -> Vec<u8> {
    let body = b"hello";
    let topic = b"TopicTest";
    let props = b"TAGS\x01TagA\x02";
    let total = 91 + body.len() + topic.len() + props.len();
    let mut b = Vec::new();
    b.extend_from_slice(&(total as u32).to_be_bytes()); // 1 TOTALSIZE
    b.extend_from_slice(&0xDAA3_20A7u32.to_be_bytes()); // 2 MAGICCODE V1
    b.extend_from_slice(&(crc32fast::hash(body) & 0x7FFF_FFFF).to_be_bytes()); // 3 BODYCRC
    b.extend_from_slice(&3i32.to_be_bytes()); // 4 QUEUEID
    b.extend_from_slice(&7i32.to_be_bytes()); // 5 FLAG
    b.extend_from_slice(&42u64.to_be_bytes()); // 6 QUEUEOFFSET
    b.extend_from_slice(&4096u64.to_be_bytes()); // 7 PHYSICALOFFSET
    b.extend_from_slice(&0i32.to_be_bytes()); // 8 SYSFLAG
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // 9 BORNTIMESTAMP
    b.extend_from_slice(&[192, 168, 0, 1]); // 10 BORNHOST ip
    b.extend_from_slice(&5555u32.to_be_bytes()); //    BORNHOST port
    b.extend_from_slice(&1_700_000_000_123i64.to_be_bytes()); // 11 STORETIMESTAMP
    b.extend_from_slice(&[10, 0, 0, 2]); // 12 STOREHOST ip
    b.extend_from_slice(&10911u32.to_be_bytes()); //    STOREHOST port
    b.extend_from_slice(&2i32.to_be_bytes()); // 13 RECONSUMETIMES
    b.extend_from_slice(&0i64.to_be_bytes()); // 14 PREPARED TRANSACTION OFFSET
    b.extend_from_slice(&(body.len() as u32).to_be_bytes()); // 15 BODYLENGTH
    b.extend_from_slice(body);
    b.push(topic.len() as u8); // 16 TOPICLENGTH
    b.extend_from_slice(topic);
    b.extend_from_slice(&(props.len() as u16).to_be_bytes()); // 17 PROPERTIESLENGTH
    b.extend_from_slice(props);
    assert_eq!(b.len(), total);
    b
}

fn sample_message() -> Message {
    Message {
        topic: "TopicTest".into(),
        queue_id: 3,
        flag: 7,
        body: Bytes::from_static(b"hello"),
        properties: [("TAGS", "TagA")].into_iter().collect(),
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        born_host: "192.168.0.1:5555".parse().unwrap(),
        reconsume_times: 2,
        prepared_transaction_offset: 0,
    }
}

fn store_host() -> SocketAddr {
    "10.0.0.2:10911".parse().unwrap()
}

#[test]
fn hand_encoded_record_decodes() {
    let bytes = hand_encoded_v1();
    let Entry::Record(r) = decode(&bytes, true).unwrap() else {
        panic!("not a record")
    };
    assert_eq!(r.total_size as usize, bytes.len());
    assert_eq!(r.magic, MAGIC_V1);
    assert_eq!(r.queue_id, 3);
    assert_eq!(r.flag, 7);
    assert_eq!(r.queue_offset, 42);
    assert_eq!(r.physical_offset, 4096);
    assert_eq!(r.born_timestamp, 1_700_000_000_000);
    assert_eq!(r.born_host, "192.168.0.1:5555".parse().unwrap());
    assert_eq!(r.store_timestamp, 1_700_000_000_123);
    assert_eq!(r.store_host, store_host());
    assert_eq!(r.reconsume_times, 2);
    assert_eq!(r.body, b"hello");
    assert_eq!(r.topic, "TopicTest");
    assert_eq!(r.properties, "TAGS\u{1}TagA\u{2}");
}

#[test]
fn encoder_produces_the_hand_encoded_bytes() {
    let mut encoded = encode(&sample_message(), store_host(), 1024).unwrap();
    encoded.patch(42, 4096, 1_700_000_000_123);
    assert_eq!(encoded.bytes, hand_encoded_v1());
}

#[test]
fn fixed_overhead_is_91_bytes() {
    let msg = Message {
        body: Bytes::new(),
        properties: Properties::new(),
        ..sample_message()
    };
    let msg = Message {
        topic: "T".into(),
        ..msg
    };
    let encoded = encode(&msg, store_host(), 1024).unwrap();
    assert_eq!(encoded.len(), FIXED_OVERHEAD_V1_IPV4 + 1);
}

#[test]
fn ipv6_hosts_set_flags_and_move_the_store_timestamp() {
    let msg = Message {
        born_host: "[2001:db8::1]:7".parse().unwrap(),
        ..sample_message()
    };
    let host: SocketAddr = "[::1]:10911".parse().unwrap();
    let mut encoded = encode(&msg, host, 1024).unwrap();
    encoded.patch(1, 2, 3);
    assert_eq!(encoded.len(), hand_encoded_v1().len() + 24);
    assert_eq!(store_timestamp_pos(encoded.sys_flag), 68);
    let Entry::Record(r) = decode(&encoded.bytes, true).unwrap() else {
        panic!()
    };
    assert_eq!(r.sys_flag & 0x30, 0x30);
    assert_eq!(r.born_host, msg.born_host);
    assert_eq!(r.store_host, host);
    assert_eq!(r.store_timestamp, 3);
}

#[test]
fn long_retry_topic_uses_v2() {
    let topic = format!("%RETRY%{}", "g".repeat(200));
    let msg = Message {
        topic: topic.clone(),
        ..sample_message()
    };
    let encoded = encode(&msg, store_host(), 1024).unwrap();
    assert_eq!(&encoded.bytes[4..8], &MAGIC_V2.to_be_bytes());
    let Entry::Record(r) = decode(&encoded.bytes, true).unwrap() else {
        panic!()
    };
    assert_eq!(r.topic, topic);
}

#[test]
fn limits_are_enforced_with_named_errors() {
    let host = store_host();
    let big = Message {
        body: Bytes::from(vec![0u8; 1025]),
        ..sample_message()
    };
    assert!(matches!(
        encode(&big, host, 1024),
        Err(StoreError::BodyTooLarge { size: 1025, .. })
    ));
    let long = Message {
        topic: "t".repeat(128),
        ..sample_message()
    };
    assert!(matches!(
        encode(&long, host, 1024),
        Err(StoreError::TopicTooLong { len: 128, max: 127 })
    ));
    let long_retry = Message {
        topic: format!("%DLQ%{}", "g".repeat(251)),
        ..sample_message()
    };
    assert!(matches!(
        encode(&long_retry, host, 1024),
        Err(StoreError::TopicTooLong { max: 255, .. })
    ));
    let empty = Message {
        topic: String::new(),
        ..sample_message()
    };
    assert!(matches!(
        encode(&empty, host, 1024),
        Err(StoreError::TopicEmpty)
    ));
    let props = Message {
        properties: [("k", "v".repeat(40_000))].into_iter().collect(),
        ..sample_message()
    };
    assert!(matches!(
        encode(&props, host, 1024),
        Err(StoreError::PropertiesTooLarge { .. })
    ));
    let traversal = Message {
        topic: "../etc".into(),
        ..sample_message()
    };
    assert!(matches!(
        encode(&traversal, host, 1024),
        Err(StoreError::TopicInvalidChars { .. })
    ));
    let queue = Message {
        queue_id: -1,
        ..sample_message()
    };
    assert!(matches!(
        encode(&queue, host, 1024),
        Err(StoreError::InvalidQueueId(-1))
    ));
}

#[test]
fn blank_marker_and_unwritten_space() {
    let mut segment_tail = vec![0u8; 64];
    segment_tail[..8].copy_from_slice(&blank_marker(64));
    assert!(matches!(decode(&segment_tail, true), Ok(Entry::Blank)));
    // A marker whose size does not reach the end of the segment is damage, not an end.
    assert!(matches!(
        decode(&segment_tail[..32], true),
        Err(RecordError::BadBlank { .. })
    ));
    assert!(matches!(decode(&[0u8; 64], true), Ok(Entry::Unwritten)));
    assert!(matches!(decode(&[0u8; 5], true), Ok(Entry::Unwritten)));
    assert!(matches!(
        decode(&[1u8; 5], true),
        Err(RecordError::Truncated)
    ));
}

#[test]
fn damage_is_detected() {
    let good = hand_encoded_v1();
    // A flipped body bit fails the CRC (only when asked to check it).
    let mut flipped = good.clone();
    let body_at = good.len() - (5 + 1 + 9 + 2 + 10);
    flipped[body_at] ^= 1;
    assert!(matches!(
        decode(&flipped, true),
        Err(RecordError::CrcMismatch { .. })
    ));
    assert!(decode(&flipped, false).is_ok());
    // Cut short: the size announces more than there is.
    assert!(matches!(
        decode(&good[..good.len() - 1], true),
        Err(RecordError::Truncated)
    ));
    // Wrong magic.
    let mut magic = good.clone();
    magic[4] = 0;
    assert!(matches!(
        decode(&magic, true),
        Err(RecordError::BadMagic(_))
    ));
    // A body length that overruns TOTALSIZE.
    let mut overrun = good.clone();
    let len_at = 84;
    overrun[len_at..len_at + 4].copy_from_slice(&1000u32.to_be_bytes());
    assert!(matches!(
        decode(&overrun, true),
        Err(RecordError::LengthMismatch)
    ));
    // A TOTALSIZE smaller than any record.
    let mut tiny = good;
    tiny[..4].copy_from_slice(&20u32.to_be_bytes());
    assert!(matches!(
        decode(&tiny, true),
        Err(RecordError::BadTotalSize(20))
    ));
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    let name = "[A-Za-z0-9_%|-]{1,127}";
    let props = prop::collection::vec(("[A-Za-z_]{1,12}", "[^\u{1}\u{2}]{0,40}"), 0..6);
    (
        (
            name,
            0..=65535i32,
            any::<i32>(),
            prop::collection::vec(any::<u8>(), 0..2048),
        ),
        (
            props,
            any::<i32>(),
            any::<i64>(),
            arb_addr(),
            any::<i32>(),
            any::<i64>(),
        ),
    )
        .prop_map(
            |((topic, queue_id, flag, body), (props, sys, born, host, reconsume, prep))| Message {
                topic,
                queue_id,
                flag,
                body: Bytes::from(body),
                properties: props.into_iter().collect(),
                sys_flag: sys & !0x30,
                born_timestamp: born,
                born_host: host,
                reconsume_times: reconsume,
                prepared_transaction_offset: prep,
            },
        )
}

proptest! {
    #[test]
    fn round_trip(msg in arb_message(), store in arb_addr(), qo in any::<u64>(), po in any::<u64>(), ts in any::<i64>()) {
        let mut encoded = encode(&msg, store, 4096).unwrap();
        encoded.patch(qo, po, ts);
        let Entry::Record(r) = decode(&encoded.bytes, true).unwrap() else { panic!("not a record") };
        let stored = r.to_stored_message();
        prop_assert_eq!(stored.store_size as usize, encoded.len());
        prop_assert_eq!(&stored.topic, &msg.topic);
        prop_assert_eq!(stored.queue_id, msg.queue_id);
        prop_assert_eq!(stored.flag, msg.flag);
        prop_assert_eq!(stored.queue_offset, qo);
        prop_assert_eq!(stored.physical_offset, po);
        prop_assert_eq!(stored.store_timestamp, ts);
        prop_assert_eq!(stored.born_timestamp, msg.born_timestamp);
        prop_assert_eq!(stored.born_host, msg.born_host);
        prop_assert_eq!(stored.store_host, store);
        prop_assert_eq!(stored.reconsume_times, msg.reconsume_times);
        prop_assert_eq!(stored.prepared_transaction_offset, msg.prepared_transaction_offset);
        prop_assert_eq!(&stored.body, &msg.body);
        prop_assert_eq!(&stored.properties, &msg.properties);
        prop_assert_eq!(stored.sys_flag & !0x30, msg.sys_flag);
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, true);
    }

    /// Damage to any single byte of a valid record is either rejected or decodes to a record with
    /// the same size (a changed field value), never something longer or a panic.
    #[test]
    fn single_byte_damage(msg in arb_message(), at in any::<prop::sample::Index>(), xor in 1u8..) {
        let mut encoded = encode(&msg, store_host(), 4096).unwrap();
        encoded.patch(1, 2, 3);
        let mut bytes = encoded.bytes.clone();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(Entry::Record(r)) = decode(&bytes, true) {
            prop_assert!(r.total_size as usize <= bytes.len());
        }
    }
}

#[test]
fn for_delivery_splices_reconsume_times_and_properties() {
    let bytes = hand_encoded_v1();
    let out = for_delivery(&bytes, 5, &[("POP_CK", "0 1 2 3 0 b 3 42")]).unwrap();
    let Entry::Record(r) = decode(&out, true).unwrap() else {
        panic!("not a record")
    };
    assert_eq!(r.total_size as usize, out.len());
    assert_eq!(r.reconsume_times, 5);
    assert_eq!(r.queue_offset, 42);
    assert_eq!(r.body, b"hello");
    assert_eq!(r.topic, "TopicTest");
    assert_eq!(
        r.properties,
        "TAGS\u{1}TagA\u{2}POP_CK\u{1}0 1 2 3 0 b 3 42\u{2}"
    );
    // The original is untouched and anything not a record is refused, not panicked on.
    assert!(decode(&bytes, true).is_ok());
    assert!(for_delivery(&bytes[..bytes.len() - 1], 0, &[]).is_err());
    assert!(for_delivery(&[0u8; 8], 0, &[]).is_err());
}
