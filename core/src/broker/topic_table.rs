//! The broker's topics: queue counts and permissions, persisted in `config/topics.json`.
//!
//! The file has RocketMQ's layout (`topicConfigTable` + `dataVersion`), the same JSON the broker
//! registers with NameServers. Every change bumps the data version and is written before it is
//! acknowledged, so a topic that a client was told exists survives a crash.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::protocol::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper};
use crate::protocol::codes::perm;
use crate::store::{MAX_TOPIC_LEN, now_millis};

use super::config::MAX_QUEUES_PER_TOPIC;
use super::error::BrokerError;
use super::json_file;

/// Most topics one broker holds.
pub const MAX_TOPICS: usize = 100_000;

/// Why a topic cannot be created or updated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic name `{0}` must be 1..=127 characters of [A-Za-z0-9%|_-]")]
    InvalidName(String),
    #[error("queue counts must be 1..={MAX_QUEUES_PER_TOPIC} (read {read}, write {write})")]
    InvalidQueueCount { read: i32, write: i32 },
    #[error("perm {0} is not a combination of READ 4, WRITE 2, INHERIT 1")]
    InvalidPerm(i32),
    #[error("the broker already holds {MAX_TOPICS} topics")]
    TooManyTopics,
    #[error("topic table could not be saved: {0}")]
    Persist(String),
}

/// Names the store accepts and RocketMQ allows (`%` for retry/DLQ prefixes and namespaces, `|`).
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

struct Table {
    topics: BTreeMap<String, TopicConfig>,
    version: DataVersion,
}

pub struct TopicTable {
    path: PathBuf,
    table: Mutex<Table>,
}

impl TopicTable {
    /// Loads `config/topics.json` under the store root, or starts empty.
    pub fn load(store_root: &std::path::Path) -> Result<TopicTable, BrokerError> {
        let path = store_root.join("config").join("topics.json");
        let wrapper: TopicConfigSerializeWrapper = json_file::load(&path)?.unwrap_or_default();
        let table = Table {
            topics: wrapper.topic_config_table,
            version: wrapper.data_version,
        };
        Ok(TopicTable {
            path,
            table: Mutex::new(table),
        })
    }

    pub fn get(&self, topic: &str) -> Option<TopicConfig> {
        self.table
            .lock()
            .expect("topic table lock")
            .topics
            .get(topic)
            .cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        self.table
            .lock()
            .expect("topic table lock")
            .topics
            .contains_key(topic)
    }

    /// Creates or replaces a topic; `Ok(true)` when something changed.
    pub fn upsert(&self, config: TopicConfig) -> Result<bool, TopicError> {
        validate(&config)?;
        let mut table = self.table.lock().expect("topic table lock");
        if table.topics.get(&config.topic_name) == Some(&config) {
            return Ok(false);
        }
        if !table.topics.contains_key(&config.topic_name) && table.topics.len() >= MAX_TOPICS {
            return Err(TopicError::TooManyTopics);
        }
        let previous = table
            .topics
            .insert(config.topic_name.clone(), config.clone());
        bump(&mut table.version);
        if let Err(e) = self.persist(&table) {
            // Undo, so that memory never claims what the disk does not hold.
            match previous {
                Some(old) => table.topics.insert(config.topic_name.clone(), old),
                None => table.topics.remove(&config.topic_name),
            };
            return Err(TopicError::Persist(e.to_string()));
        }
        Ok(true)
    }

    /// Creates `config` unless a topic of that name exists; returns the topic's config.
    pub fn create_if_absent(&self, config: TopicConfig) -> Result<(TopicConfig, bool), TopicError> {
        if let Some(existing) = self.get(&config.topic_name) {
            return Ok((existing, false));
        }
        self.upsert(config.clone())?;
        Ok((self.get(&config.topic_name).unwrap_or(config), true))
    }

    /// Removes a topic; `Ok(true)` when it existed.
    pub fn remove(&self, topic: &str) -> Result<bool, TopicError> {
        let mut table = self.table.lock().expect("topic table lock");
        let Some(old) = table.topics.remove(topic) else {
            return Ok(false);
        };
        bump(&mut table.version);
        if let Err(e) = self.persist(&table) {
            table.topics.insert(topic.to_string(), old);
            return Err(TopicError::Persist(e.to_string()));
        }
        Ok(true)
    }

    /// Everything, as registered with NameServers.
    pub fn snapshot(&self) -> TopicConfigSerializeWrapper {
        let table = self.table.lock().expect("topic table lock");
        TopicConfigSerializeWrapper {
            topic_config_table: table.topics.clone(),
            data_version: table.version.clone(),
        }
    }

    fn persist(&self, table: &Table) -> Result<(), BrokerError> {
        let wrapper = TopicConfigSerializeWrapper {
            topic_config_table: table.topics.clone(),
            data_version: table.version.clone(),
        };
        json_file::store(&self.path, &wrapper)
    }
}

fn bump(version: &mut DataVersion) {
    version.timestamp = now_millis();
    version.counter += 1;
}

fn validate(config: &TopicConfig) -> Result<(), TopicError> {
    if !valid_topic_name(&config.topic_name) {
        return Err(TopicError::InvalidName(
            config.topic_name.chars().take(200).collect(),
        ));
    }
    let range = 1..=MAX_QUEUES_PER_TOPIC;
    if !range.contains(&config.read_queue_nums) || !range.contains(&config.write_queue_nums) {
        return Err(TopicError::InvalidQueueCount {
            read: config.read_queue_nums,
            write: config.write_queue_nums,
        });
    }
    if config.perm & !(perm::READ | perm::WRITE | perm::INHERIT) != 0 || config.perm < 0 {
        return Err(TopicError::InvalidPerm(config.perm));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let table = TopicTable::load(dir.path()).unwrap();
        assert!(table.upsert(TopicConfig::new("orders", 4, 6)).unwrap());
        assert!(!table.upsert(TopicConfig::new("orders", 4, 6)).unwrap());
        assert!(table.upsert(TopicConfig::new("orders", 8, 6)).unwrap());
        let version = table.snapshot().data_version;
        drop(table);
        let table = TopicTable::load(dir.path()).unwrap();
        assert_eq!(table.get("orders").unwrap().write_queue_nums, 8);
        assert_eq!(table.snapshot().data_version, version);
    }

    #[test]
    fn rejects_bad_topics() {
        let dir = tempfile::tempdir().unwrap();
        let table = TopicTable::load(dir.path()).unwrap();
        assert!(matches!(
            table.upsert(TopicConfig::new("a b", 1, 6)),
            Err(TopicError::InvalidName(_))
        ));
        assert!(matches!(
            table.upsert(TopicConfig::new("x".repeat(128), 1, 6)),
            Err(TopicError::InvalidName(_))
        ));
        assert!(matches!(
            table.upsert(TopicConfig::new("t", 0, 6)),
            Err(TopicError::InvalidQueueCount { .. })
        ));
        assert!(matches!(
            table.upsert(TopicConfig::new("t", 1, 9)),
            Err(TopicError::InvalidPerm(9))
        ));
        assert!(table.snapshot().topic_config_table.is_empty());
    }
}
