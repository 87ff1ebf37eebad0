//! The pop journal: every change to the in-flight table, appended to the CommitLog as a message
//! of the system topic [`JOURNAL_TOPIC`], plus a periodic snapshot of the table.
//!
//! Why the CommitLog: a change is acknowledged only once its journal record is as durable as the
//! flush mode promises, and the store's recovery already guarantees that no torn record is
//! visible after a crash. On start the broker loads the snapshot (`config/popState.json`) and
//! replays the journal from the ConsumeQueue offset the snapshot names. Replay is idempotent, so a
//! snapshot taken while later events were still being appended is harmless.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{Message, MessageStore};

use super::table::{InFlight, QueueKey};

/// The system topic holding the journal (one queue). Not in the topic table: clients cannot
/// send to it or pull from it.
pub const JOURNAL_TOPIC: &str = "rmq_sys_pop_journal";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "camelCase")]
pub enum Event {
    /// Messages delivered (first time or again), and the queue's next never-delivered offset.
    Pop {
        #[serde(flatten)]
        key: QueueKey,
        next: u64,
        #[serde(rename = "m")]
        entries: Vec<(u64, InFlight)>,
    },
    /// A delivery was acknowledged.
    Ack {
        #[serde(flatten)]
        key: QueueKey,
        #[serde(rename = "o")]
        offset: u64,
    },
    /// Deliveries of one group and topic acknowledged together: (queue id, offset) each.
    AckMany {
        #[serde(rename = "g")]
        group: String,
        #[serde(rename = "t")]
        topic: String,
        #[serde(rename = "o")]
        acked: Vec<(i32, u64)>,
    },
    /// A delivery's invisibility changed; it has a new version.
    Change {
        #[serde(flatten)]
        key: QueueKey,
        #[serde(rename = "o")]
        offset: u64,
        #[serde(rename = "f")]
        entry: InFlight,
    },
    /// Entries leave without an ack: moved to the dead-letter queue, or their message is gone.
    Drop {
        #[serde(flatten)]
        key: QueueKey,
        #[serde(rename = "o")]
        offsets: Vec<u64>,
    },
    /// The group's position in the queue was set (offset reset).
    Reset {
        #[serde(flatten)]
        key: QueueKey,
        next: u64,
    },
}

impl Event {
    pub fn to_message(&self) -> Message {
        let body = serde_json::to_vec(self).expect("journal events always serialize");
        Message::new(JOURNAL_TOPIC, 0, Bytes::from(body))
    }

    pub fn decode(body: &[u8]) -> Result<Event, String> {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }
}

/// `config/popState.json`: the table as of journal offset `journal_offset` (every event below
/// that offset is reflected in it).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Snapshot {
    pub journal_offset: u64,
    pub last_version: i64,
    pub queues: Vec<SnapshotQueue>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotQueue {
    #[serde(flatten)]
    pub key: QueueKey,
    pub next: u64,
    #[serde(rename = "m")]
    pub entries: Vec<(u64, InFlight)>,
}

/// Most journal records read per store call during replay.
const REPLAY_CHUNK: usize = 1024;

/// Every journal event from `from` on, in order. A record that does not decode is a bug or
/// damage; it is reported, never skipped silently.
pub fn read_from(store: &MessageStore, from: u64) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    let min = store.min_offset(JOURNAL_TOPIC, 0);
    if from < min {
        // Retention removed journal records the snapshot did not cover (snapshots stopped being
        // written for longer than the retention time): their changes are lost.
        tracing::error!(
            from,
            min,
            "pop journal records between the snapshot and the oldest kept record are gone"
        );
    }
    let mut offset = from.max(min);
    let end = store.max_offset(JOURNAL_TOPIC, 0);
    while offset < end {
        let got = store.get_messages(JOURNAL_TOPIC, 0, offset, REPLAY_CHUNK, usize::MAX, None);
        if got.messages.is_empty() {
            return Err(format!(
                "journal offset {offset} unreadable ({:?}) before its end {end}",
                got.status
            ));
        }
        for selected in &got.messages {
            let message = selected.decode().ok_or_else(|| {
                format!(
                    "journal record at {} does not decode",
                    selected.queue_offset
                )
            })?;
            let event = Event::decode(&message.body)
                .map_err(|e| format!("journal record at {}: {e}", selected.queue_offset))?;
            events.push(event);
        }
        offset = got.next_begin_offset;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_in_a_compact_form() {
        let key = QueueKey {
            group: "g".into(),
            topic: "t".into(),
            queue_id: 2,
        };
        let pop = Event::Pop {
            key: key.clone(),
            next: 9,
            entries: vec![(
                8,
                InFlight {
                    version: 5,
                    deadline: 60_005,
                    reconsume_times: 1,
                },
            )],
        };
        let text = serde_json::to_string(&pop).unwrap();
        assert_eq!(
            text,
            r#"{"e":"pop","g":"g","t":"t","q":2,"next":9,"m":[[8,{"v":5,"d":60005,"r":1}]]}"#
        );
        assert_eq!(Event::decode(text.as_bytes()), Ok(pop));
        let ack = Event::Ack { key, offset: 8 };
        assert_eq!(
            Event::decode(&serde_json::to_vec(&ack).unwrap()),
            Ok(ack.clone())
        );
        assert!(Event::decode(b"{\"e\":\"nope\"}").is_err());
    }
}
