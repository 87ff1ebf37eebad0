//! Committed consumer offsets (`topic@group` → queue → offset), in `config/consumerOffset.json`.
//!
//! Commits land in memory and are written every `offset_persist_interval_ms` and at shutdown,
//! as in RocketMQ: a crash may forget the last few seconds of commits, which replays those
//! messages (at-least-once), never skips any.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::error::BrokerError;
use super::json_file;

/// Most `topic@group` pairs tracked; commits for new pairs beyond it are refused.
pub const MAX_OFFSET_KEYS: usize = 1_000_000;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct OffsetFile {
    offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

pub struct ConsumerOffsets {
    path: PathBuf,
    table: Mutex<HashMap<String, BTreeMap<i32, i64>>>,
    dirty: AtomicBool,
}

fn key(topic: &str, group: &str) -> String {
    format!("{topic}@{group}")
}

impl ConsumerOffsets {
    pub fn load(store_root: &Path) -> Result<ConsumerOffsets, BrokerError> {
        let path = store_root.join("config").join("consumerOffset.json");
        let file: OffsetFile = json_file::load(&path)?.unwrap_or_default();
        Ok(ConsumerOffsets {
            path,
            table: Mutex::new(file.offset_table.into_iter().collect()),
            dirty: AtomicBool::new(false),
        })
    }

    pub fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let table = self.table.lock().expect("offset table lock");
        table
            .get(&key(topic, group))
            .and_then(|q| q.get(&queue_id))
            .copied()
    }

    /// Records a commit; `false` when the table is full.
    pub fn commit(&self, group: &str, topic: &str, queue_id: i32, offset: i64) -> bool {
        let mut table = self.table.lock().expect("offset table lock");
        let k = key(topic, group);
        if !table.contains_key(&k) && table.len() >= MAX_OFFSET_KEYS {
            return false;
        }
        table.entry(k).or_default().insert(queue_id, offset);
        self.dirty.store(true, Ordering::Release);
        true
    }

    /// Writes the table if anything changed since the last write.
    pub fn persist(&self) -> Result<(), BrokerError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = OffsetFile {
            offset_table: self
                .table
                .lock()
                .expect("offset table lock")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let result = json_file::store(&self.path, &snapshot);
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_survive_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let offsets = ConsumerOffsets::load(dir.path()).unwrap();
        assert_eq!(offsets.get("g", "t", 0), None);
        assert!(offsets.commit("g", "t", 0, 42));
        assert!(offsets.commit("g", "t", 3, 7));
        offsets.persist().unwrap();
        let reloaded = ConsumerOffsets::load(dir.path()).unwrap();
        assert_eq!(reloaded.get("g", "t", 0), Some(42));
        assert_eq!(reloaded.get("g", "t", 3), Some(7));
        let text = std::fs::read_to_string(dir.path().join("config/consumerOffset.json")).unwrap();
        assert!(text.contains("\"t@g\""), "{text}");
    }
}
