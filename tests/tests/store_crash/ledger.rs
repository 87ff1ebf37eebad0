//! The ledger: everything the store has promised, across every run of the scenario.
//!
//! Acknowledgements accumulate over all iterations because a recovery must never take back what an
//! earlier one kept: a message acknowledged by the first child must still be there after the
//! twentieth crash.

use std::collections::{BTreeMap, HashMap};

use tern_tests::store_crash::{Ack, MessageKey, Report};

/// Who wrote the messages of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A `store_crash_writer` child with this many writer tasks (ids `0..writers`).
    Child { writers: u32 },
    /// The test process, appending after a recovery (writer id `TEST_PROCESS_WRITER`).
    TestProcess,
}

#[derive(Default)]
pub struct Ledger {
    runs: BTreeMap<u32, RunKind>,
    acked: BTreeMap<MessageKey, Ack>,
    /// Who was acknowledged at each CommitLog offset.
    by_physical_offset: HashMap<u64, MessageKey>,
    /// Who was acknowledged at each (topic, queue, queue offset).
    by_queue_offset: HashMap<(String, i32, u64), MessageKey>,
    /// Highest sequence number whose put returned (acknowledged or timed out), per (run, writer).
    completed: HashMap<(u32, u32), u64>,
    timeouts: u64,
}

impl Ledger {
    pub fn start_run(&mut self, run: u32, kind: RunKind) {
        let previous = self.runs.insert(run, kind);
        assert!(previous.is_none(), "run {run} started twice");
    }

    pub fn run_kind(&self, run: u32) -> Option<RunKind> {
        self.runs.get(&run).copied()
    }

    /// Notes one report. Panics if an acknowledgement contradicts an earlier one: two
    /// acknowledged messages at the same CommitLog or queue offset mean the first was lost and its
    /// place reused.
    pub fn record(&mut self, report: &Report) {
        match report {
            Report::Ready { .. } => {}
            Report::Timeout(key) => {
                self.complete(*key);
                self.timeouts += 1;
            }
            Report::Ack(ack) => self.record_ack(ack),
        }
    }

    fn record_ack(&mut self, ack: &Ack) {
        let key = ack.key;
        assert!(
            self.runs.contains_key(&key.run),
            "acknowledgement for {key}, of a run that never started"
        );
        assert_eq!(
            (ack.topic.as_str(), ack.queue_id),
            (key.topic(), key.queue_id()),
            "{key} was acknowledged for the wrong queue"
        );
        if let Some(earlier) = self.by_physical_offset.insert(ack.physical_offset, key) {
            panic!(
                "{key} was acknowledged at CommitLog offset {}, where {earlier} had been \
                 acknowledged before: the earlier message was lost and its place reused",
                ack.physical_offset
            );
        }
        let slot = (ack.topic.clone(), ack.queue_id, ack.queue_offset);
        if let Some(earlier) = self.by_queue_offset.insert(slot, key) {
            panic!(
                "{key} was acknowledged at {}/{} queue offset {}, which {earlier} had been \
                 given before: the earlier message was lost or its offset handed out twice",
                ack.topic, ack.queue_id, ack.queue_offset
            );
        }
        let previous = self.acked.insert(key, ack.clone());
        assert!(previous.is_none(), "{key} was acknowledged twice");
        self.complete(key);
    }

    fn complete(&mut self, key: MessageKey) {
        let highest = self.completed.entry((key.run, key.writer)).or_default();
        *highest = (*highest).max(key.seq);
    }

    /// Every acknowledged message, in key order.
    pub fn acked(&self) -> impl Iterator<Item = &Ack> {
        self.acked.values()
    }

    pub fn is_acked(&self, key: MessageKey) -> bool {
        self.acked.contains_key(&key)
    }

    pub fn acked_count(&self) -> usize {
        self.acked.len()
    }

    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }

    /// Highest sequence number of `writer` in `run` whose put returned, if any did.
    pub fn highest_completed(&self, run: u32, writer: u32) -> Option<u64> {
        self.completed.get(&(run, writer)).copied()
    }
}
