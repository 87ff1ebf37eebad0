//! Opening a store after a crash and checking everything the issue asks for:
//!
//! 1. the store knows whether the previous run crashed;
//! 2. the CommitLog, walked record by record from its start to its end, holds only complete,
//!    CRC-checked records, each exactly the deterministic message its key names, at the offset it
//!    claims: no torn or garbage record is visible, acknowledged or not;
//! 3. every queue, read from its min offset, has contiguous offsets and points at exactly the
//!    CommitLog records of that queue, in order;
//! 4. every acknowledged message of every run is at its acknowledged CommitLog offset with its
//!    queue offset, topic, queue and body (and, for a sample, found by its `UNIQ_KEY`);
//! 5. per writer, the messages in the log are a gap-free prefix of what it sent, reaching at most
//!    one past the last put that returned (one put can be in flight at the kill);
//! 6. appending continues where the log and each queue end.
//!
//! Every failure message names the message key and the offsets involved.

use std::collections::{BTreeMap, HashSet};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use tern_core::store::{
    BLANK_MAGIC, Entry, GetStatus, MessageStore, PutStatus, StoreConfig, decode_record,
    find_property, property,
};
use tern_tests::store_crash::{
    Ack, MessageKey, QUEUES_PER_TOPIC, Report, SEGMENT_SIZE, TEST_PROCESS_WRITER, TOPICS,
};

use crate::ledger::{Ledger, RunKind};

/// Room a record must leave in its segment for the end-of-segment marker (the store's
/// `END_OF_SEGMENT_MIN_BLANK`): a record that does not fit starts the next segment.
const END_MARKER_ROOM: u64 = 8;
/// Acknowledged messages looked up by `UNIQ_KEY` per verification.
const INDEX_SAMPLE: usize = 64;

/// A record found in the CommitLog (already checked against its key).
#[derive(Debug, Clone, Copy)]
struct FoundRecord {
    key: MessageKey,
    queue_offset: u64,
    physical_offset: u64,
}

/// What one verification saw, for the test log.
#[derive(Debug)]
pub struct Summary {
    pub records: usize,
    pub log_bytes: u64,
    /// Complete records in the log whose acknowledgement never arrived (in flight at the kill).
    pub unacknowledged: usize,
}

/// Opens the store, checks it (see the module docs), appends one message to every queue as
/// `run` of the test process, and shuts it down cleanly.
pub fn verify_store(
    config: &StoreConfig,
    ledger: &mut Ledger,
    run: u32,
    expect_crashed: bool,
    runtime: &tokio::runtime::Runtime,
    rng: &mut StdRng,
) -> Summary {
    let store = MessageStore::open(config.clone())
        .unwrap_or_else(|e| panic!("reopening the store failed: {e}"));
    let recovery = store.recovery_report().clone();
    // Printed first, so that it precedes any failure in the test's output.
    println!("  reopened: {recovery:?}");
    assert_eq!(
        recovery.previous_run_crashed, expect_crashed,
        "recovery report {recovery:?}: previous_run_crashed"
    );
    let log = read_log(&store);
    check_queues(&store, &log);
    check_acknowledged(&store, &log, ledger);
    check_index_sample(&store, ledger, rng);
    check_writer_sequences(&log, ledger);
    let summary = Summary {
        records: log.len(),
        log_bytes: store.max_physical_offset() - store.min_physical_offset(),
        unacknowledged: log.iter().filter(|r| !ledger.is_acked(r.key)).count(),
    };
    append_to_every_queue(&store, ledger, run, runtime);
    store
        .shutdown()
        .unwrap_or_else(|e| panic!("shutting down after verification failed: {e}"));
    summary
}

/// Walks the CommitLog from its first to its last byte. Every position must hold either a complete
/// record (checked with [`check_record`]) or an END marker reaching the end of its segment.
fn read_log(store: &MessageStore) -> Vec<FoundRecord> {
    let end = store.max_physical_offset();
    let mut position = store.min_physical_offset();
    let mut records = Vec::new();
    while position < end {
        let header = store.record_bytes(position, 8).unwrap_or_else(|| {
            panic!("CommitLog offset {position} is unreadable, below the log end {end}")
        });
        let total = u32::from_be_bytes(header[..4].try_into().expect("4 bytes"));
        let magic = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
        if magic == BLANK_MAGIC {
            let segment_end = segment_end(position);
            assert_eq!(
                position + u64::from(total),
                segment_end,
                "the END marker at CommitLog offset {position} does not reach its segment's end"
            );
            position = segment_end;
            continue;
        }
        let bytes = store.record_bytes(position, total).unwrap_or_else(|| {
            panic!(
                "the record at CommitLog offset {position} claims {total} bytes, which are \
                     not readable (log end {end}): a torn record is visible"
            )
        });
        records.push(check_record(
            &bytes,
            position,
            &format!("CommitLog offset {position}"),
        ));
        position += u64::from(total);
    }
    assert_eq!(position, end, "the last record runs past the log end");
    records
}

/// One past the last byte of the segment holding `position`.
fn segment_end(position: u64) -> u64 {
    (position / SEGMENT_SIZE + 1) * SEGMENT_SIZE
}

/// Decodes raw record bytes with the body CRC check and checks that they are exactly the message
/// their key names, stored at `physical_offset`. `what` says where they came from.
fn check_record(bytes: &[u8], physical_offset: u64, what: &str) -> FoundRecord {
    let view = match decode_record(bytes, true) {
        Ok(Entry::Record(view)) => view,
        Ok(Entry::Blank) => panic!("{what}: an END marker where a record should be"),
        Ok(Entry::Unwritten) => panic!("{what}: zeros where a record should be"),
        Err(e) => panic!("{what}: torn or corrupt record: {e}"),
    };
    assert_eq!(view.total_size as usize, bytes.len(), "{what}: record size");
    assert_eq!(
        view.physical_offset, physical_offset,
        "{what}: the record says it is stored elsewhere"
    );
    let uniq_key = find_property(view.properties, property::UNIQ_KEY);
    let key = check_content(view.topic, view.queue_id, view.body, uniq_key, what);
    FoundRecord {
        key,
        queue_offset: view.queue_offset,
        physical_offset,
    }
}

/// Checks topic, queue and body against what the `UNIQ_KEY` names; returns the key.
fn check_content(
    topic: &str,
    queue_id: i32,
    body: &[u8],
    uniq_key: Option<&str>,
    what: &str,
) -> MessageKey {
    let uniq_key = uniq_key.unwrap_or_else(|| panic!("{what}: the record has no UNIQ_KEY"));
    let key = MessageKey::from_uniq_key(uniq_key)
        .unwrap_or_else(|| panic!("{what}: UNIQ_KEY {uniq_key:?} is not a crash-test key"));
    assert_eq!(
        (topic, queue_id),
        (key.topic(), key.queue_id()),
        "{what} ({key}): topic and queue"
    );
    let expected = key.body();
    if body != expected.as_slice() {
        let first_difference = body
            .iter()
            .zip(&expected)
            .position(|(a, b)| a != b)
            .unwrap_or(body.len().min(expected.len()));
        panic!(
            "{what} ({key}): the body differs from the expected one ({} bytes found, {} \
             expected, first difference at byte {first_difference})",
            body.len(),
            expected.len()
        );
    }
    key
}

/// Reads every queue from its min offset and compares it with the CommitLog records of that queue.
fn check_queues(store: &MessageStore, log: &[FoundRecord]) {
    let mut per_queue: BTreeMap<(&str, i32), Vec<FoundRecord>> = BTreeMap::new();
    for record in log {
        per_queue
            .entry((record.key.topic(), record.key.queue_id()))
            .or_default()
            .push(*record);
    }
    for topic in TOPICS {
        let ids = store.queue_ids(topic);
        assert!(
            ids.iter().all(|id| (0..QUEUES_PER_TOPIC).contains(id)),
            "topic {topic} has queues {ids:?}; the test writes only 0..{QUEUES_PER_TOPIC}"
        );
        for queue in 0..QUEUES_PER_TOPIC {
            let records = per_queue.remove(&(topic, queue)).unwrap_or_default();
            check_queue(store, topic, queue, &records);
        }
    }
}

/// `records`: the CommitLog records of this queue, in log order.
fn check_queue(store: &MessageStore, topic: &str, queue: i32, records: &[FoundRecord]) {
    let name = format!("queue {topic}/{queue}");
    for (expected_offset, record) in records.iter().enumerate() {
        assert_eq!(
            record.queue_offset, expected_offset as u64,
            "{name}: the CommitLog holds {} at CommitLog offset {} with queue offset {}, but it is \
             the queue's message number {expected_offset}: a queue offset was skipped or reused",
            record.key, record.physical_offset, record.queue_offset
        );
    }
    let count = records.len() as u64;
    let min_offset = store.min_offset(topic, queue);
    assert_eq!(
        min_offset, 0,
        "{name}: the min offset is {min_offset}, but the CommitLog holds all {count} messages of \
         the queue from offset 0: the first {min_offset} are unreachable"
    );
    assert_eq!(
        store.max_offset(topic, queue),
        count,
        "{name}: max offset, compared with the {count} records of the queue in the CommitLog"
    );
    let mut offset = 0;
    while offset < count {
        let got = store.get_messages(topic, queue, offset, 64, 1 << 20, None);
        assert_eq!(
            got.status,
            GetStatus::Found,
            "{name}: reading from offset {offset} of {count}"
        );
        for message in &got.messages {
            assert_eq!(
                message.queue_offset, offset,
                "{name}: offset {offset} is missing from the queue (the read skipped to {})",
                message.queue_offset
            );
            let expected = records[offset as usize];
            assert_eq!(
                message.physical_offset, expected.physical_offset,
                "{name}: offset {offset} points at CommitLog offset {}, but {} is at {}",
                message.physical_offset, expected.key, expected.physical_offset
            );
            let what = format!("{name} offset {offset}");
            let found = check_record(&message.bytes, message.physical_offset, &what);
            assert_eq!(found.key, expected.key, "{what}");
            assert_eq!(
                found.queue_offset, offset,
                "{what}: queue offset in the record"
            );
            offset += 1;
        }
        assert_eq!(got.next_begin_offset, offset, "{name}: next begin offset");
    }
    if count > 0 {
        let past_end = store.get_messages(topic, queue, count, 1, 1 << 20, None);
        assert_eq!(
            past_end.status,
            GetStatus::OffsetOverflowOne,
            "{name}: reading at the end"
        );
    }
}

/// Every acknowledged message, looked up by its CommitLog offset.
fn check_acknowledged(store: &MessageStore, log: &[FoundRecord], ledger: &Ledger) {
    let record_starts: HashSet<u64> = log.iter().map(|r| r.physical_offset).collect();
    let log_end = store.max_physical_offset();
    for ack in ledger.acked() {
        let what = format!(
            "acknowledged {} (CommitLog offset {}, {}/{} offset {})",
            ack.key, ack.physical_offset, ack.topic, ack.queue_id, ack.queue_offset
        );
        let message = store.message_at(ack.physical_offset).unwrap_or_else(|| {
            panic!("{what} is lost: no record there (the log ends at {log_end})")
        });
        assert!(
            record_starts.contains(&ack.physical_offset),
            "{what}: not on the CommitLog's chain of records"
        );
        let key = check_content(
            &message.topic,
            message.queue_id,
            &message.body,
            message.unique_key(),
            &what,
        );
        assert_eq!(key, ack.key, "{what}: another message is stored there");
        assert_eq!(
            message.queue_offset, ack.queue_offset,
            "{what}: queue offset"
        );
        assert_eq!(message.store_size, ack.size, "{what}: record size");
    }
}

/// A random sample of acknowledged messages must be found by their `UNIQ_KEY` (the IndexFiles are
/// rebuilt by recovery too).
fn check_index_sample(store: &MessageStore, ledger: &Ledger, rng: &mut StdRng) {
    let acked: Vec<&Ack> = ledger.acked().collect();
    for ack in acked.choose_multiple(rng, INDEX_SAMPLE) {
        let found = store.query_by_key(&ack.topic, &ack.key.uniq_key(), 8, 0, i64::MAX);
        let offsets: Vec<u64> = found.iter().map(|m| m.physical_offset).collect();
        assert_eq!(
            offsets,
            [ack.physical_offset],
            "query by UNIQ_KEY for acknowledged {} (CommitLog offset {})",
            ack.key,
            ack.physical_offset
        );
    }
}

/// Each writer appends its messages one at a time, in sequence. So its messages in the log must be
/// sequence numbers `0..n` without gap or duplicate, and `n` can exceed the last sequence number
/// whose put returned by at most one more (the put in flight when the child was killed).
fn check_writer_sequences(log: &[FoundRecord], ledger: &Ledger) {
    let mut per_writer: BTreeMap<(u32, u32), Vec<u64>> = BTreeMap::new();
    for record in log {
        per_writer
            .entry((record.key.run, record.key.writer))
            .or_default()
            .push(record.key.seq);
    }
    for ((run, writer), mut seqs) in per_writer {
        let name = format!("run {run} writer {writer}");
        match ledger.run_kind(run) {
            Some(RunKind::Child { writers }) => {
                assert!(writer < writers, "{name}: the child had {writers} writers")
            }
            Some(RunKind::TestProcess) => assert_eq!(writer, TEST_PROCESS_WRITER, "{name}"),
            None => panic!("{name}: messages of a run that never happened"),
        }
        seqs.sort_unstable();
        if let Some(gap) = seqs.iter().enumerate().find(|&(i, &seq)| seq != i as u64) {
            panic!(
                "{name}: the log holds {} of its messages, but sequence number {} is followed by \
                 {}: a message is missing or stored twice",
                seqs.len(),
                gap.0,
                gap.1
            );
        }
        let returned = ledger.highest_completed(run, writer);
        let allowed = returned.map_or(1, |seq| seq + 2);
        assert!(
            seqs.len() as u64 <= allowed,
            "{name}: the log holds {} messages, but the last put that returned was {returned:?} \
             and only one more can have been in flight",
            seqs.len()
        );
    }
}

/// Appends one message to every queue as `run` of the test process, checking that each lands at
/// its queue's max offset and at the end of the log (or at the start of the next segment when it
/// does not fit in the current one). The appends are acknowledged: they go into the ledger.
fn append_to_every_queue(
    store: &MessageStore,
    ledger: &mut Ledger,
    run: u32,
    runtime: &tokio::runtime::Runtime,
) {
    ledger.start_run(run, RunKind::TestProcess);
    let queues = TOPICS.len() as u64 * QUEUES_PER_TOPIC as u64;
    for seq in 0..queues {
        let key = MessageKey {
            run,
            writer: TEST_PROCESS_WRITER,
            seq,
        };
        let (topic, queue) = (key.topic(), key.queue_id());
        let next_queue_offset = store.max_offset(topic, queue);
        let log_end = store.max_physical_offset();
        let result = runtime
            .block_on(store.put_message(key.message()))
            .unwrap_or_else(|e| panic!("appending {key} after recovery failed: {e}"));
        let record = result.record;
        assert_eq!(result.status, PutStatus::Ok, "appending {key}");
        assert_eq!(
            record.queue_offset, next_queue_offset,
            "appending {key} to {topic}/{queue}: queue offset, compared with the queue's max offset"
        );
        let fits = log_end + u64::from(record.size) + END_MARKER_ROOM <= segment_end(log_end);
        let expected_position = if fits { log_end } else { segment_end(log_end) };
        assert_eq!(
            record.physical_offset, expected_position,
            "appending {key} ({} bytes): CommitLog offset, compared with the log end {log_end}",
            record.size
        );
        ledger.record(&Report::Ack(Ack {
            key,
            topic: topic.to_owned(),
            queue_id: queue,
            queue_offset: record.queue_offset,
            physical_offset: record.physical_offset,
            size: record.size,
        }));
    }
}
