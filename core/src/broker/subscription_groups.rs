//! Consumer group settings (RocketMQ's SubscriptionGroupConfig), persisted in
//! `config/subscriptionGroup.json`.
//!
//! A group that was never configured gets RocketMQ's defaults (16 retries, not FIFO), as
//! RocketMQ does with `autoCreateSubscriptionGroup`; it is not written to the file, so a typo in a
//! consumer does not leave a permanent entry behind. Changes are written before they are
//! acknowledged, like topic changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::protocol::body::{DataVersion, SubscriptionGroupConfig, SubscriptionGroupWrapper};
use crate::store::now_millis;

use super::error::BrokerError;
use super::json_file;

/// Most configured groups one broker holds.
pub const MAX_SUBSCRIPTION_GROUPS: usize = 100_000;
/// Most deliveries after the first a group may allow before the dead-letter queue.
pub const MAX_RETRY_TIMES: i32 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupConfigError {
    #[error("retryMaxTimes must be 0..={MAX_RETRY_TIMES}, got {0}")]
    InvalidRetryMaxTimes(i32),
    #[error("the broker already holds {MAX_SUBSCRIPTION_GROUPS} configured groups")]
    TooManyGroups,
    #[error("subscription group table could not be saved: {0}")]
    Persist(String),
}

struct Table {
    groups: BTreeMap<String, SubscriptionGroupConfig>,
    version: DataVersion,
}

pub struct SubscriptionGroups {
    path: PathBuf,
    table: Mutex<Table>,
}

impl SubscriptionGroups {
    pub fn load(store_root: &Path) -> Result<SubscriptionGroups, BrokerError> {
        let path = store_root.join("config").join("subscriptionGroup.json");
        let wrapper: SubscriptionGroupWrapper = json_file::load(&path)?.unwrap_or_default();
        Ok(SubscriptionGroups {
            path,
            table: Mutex::new(Table {
                groups: wrapper.subscription_group_table,
                version: wrapper.data_version,
            }),
        })
    }

    /// The group's settings, or the defaults for a group never configured.
    pub fn get(&self, group: &str) -> SubscriptionGroupConfig {
        let table = self.table.lock().expect("group table lock");
        table
            .groups
            .get(group)
            .cloned()
            .unwrap_or_else(|| SubscriptionGroupConfig::new(group))
    }

    /// Creates or replaces a group's settings and writes the file before returning. Blocking
    /// (fsync): call it off the request thread.
    pub fn upsert(&self, config: SubscriptionGroupConfig) -> Result<(), GroupConfigError> {
        if !(0..=MAX_RETRY_TIMES).contains(&config.retry_max_times) {
            return Err(GroupConfigError::InvalidRetryMaxTimes(
                config.retry_max_times,
            ));
        }
        let mut table = self.table.lock().expect("group table lock");
        if !table.groups.contains_key(&config.group_name)
            && table.groups.len() >= MAX_SUBSCRIPTION_GROUPS
        {
            return Err(GroupConfigError::TooManyGroups);
        }
        let previous = table
            .groups
            .insert(config.group_name.clone(), config.clone());
        if let Err(e) = self.persist_locked(&mut table) {
            match previous {
                Some(old) => table.groups.insert(old.group_name.clone(), old),
                None => table.groups.remove(&config.group_name),
            };
            return Err(GroupConfigError::Persist(e.to_string()));
        }
        Ok(())
    }

    /// Forgets a group's settings (it falls back to the defaults); `false` when it had none.
    pub fn delete(&self, group: &str) -> Result<bool, GroupConfigError> {
        let mut table = self.table.lock().expect("group table lock");
        let Some(old) = table.groups.remove(group) else {
            return Ok(false);
        };
        if let Err(e) = self.persist_locked(&mut table) {
            table.groups.insert(group.to_string(), old);
            return Err(GroupConfigError::Persist(e.to_string()));
        }
        Ok(true)
    }

    pub fn wrapper(&self) -> SubscriptionGroupWrapper {
        let table = self.table.lock().expect("group table lock");
        SubscriptionGroupWrapper {
            subscription_group_table: table.groups.clone(),
            data_version: table.version.clone(),
        }
    }

    fn persist_locked(&self, table: &mut Table) -> Result<(), BrokerError> {
        table.version = DataVersion {
            timestamp: now_millis(),
            counter: table.version.counter + 1,
        };
        json_file::store(
            &self.path,
            &SubscriptionGroupWrapper {
                subscription_group_table: table.groups.clone(),
                data_version: table.version.clone(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_groups_get_defaults_and_changes_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let groups = SubscriptionGroups::load(dir.path()).unwrap();
        let g = groups.get("g");
        assert_eq!((g.retry_max_times, g.consume_message_orderly), (16, false));
        let mut fifo = SubscriptionGroupConfig::new("fifo");
        fifo.consume_message_orderly = true;
        fifo.retry_max_times = 3;
        groups.upsert(fifo.clone()).unwrap();
        let reloaded = SubscriptionGroups::load(dir.path()).unwrap();
        assert_eq!(reloaded.get("fifo"), fifo);
        assert!(reloaded.delete("fifo").unwrap());
        assert!(!reloaded.delete("fifo").unwrap());
        assert_eq!(reloaded.get("fifo").retry_max_times, 16);
        let mut bad = SubscriptionGroupConfig::new("bad");
        bad.retry_max_times = -1;
        assert_eq!(
            groups.upsert(bad),
            Err(GroupConfigError::InvalidRetryMaxTimes(-1))
        );
    }
}
