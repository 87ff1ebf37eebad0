//! Store configuration: every knob of reference §5–6 with RocketMQ's defaults.
//!
//! The broker reads this from `conf/broker.toml` (the `[store]` table), so field names are snake_case
//! versions of RocketMQ's and durations carry their unit in the name.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::StoreError;
use super::record;

/// When a producer's acknowledgement may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlushDiskType {
    /// Acknowledge once the record is in the page cache; a background thread flushes.
    AsyncFlush,
    /// Acknowledge only after an fsync covering the record (group commit). Readers never see
    /// records past the flushed offset.
    SyncFlush,
}

/// How a new CommitLog segment gets its disk blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preallocate {
    /// `fallocate`: blocks are reserved up front, so a full disk shows up as an error when the
    /// segment is created, never as a SIGBUS while writing through the mapping.
    Fallocate,
    /// Write zeros over the whole segment (slow to create, fastest to fsync into later).
    Zero,
    /// A sparse file (`set_len` only). Cheapest, but a full disk turns into SIGBUS on write: only
    /// for filesystems without `fallocate`.
    Sparse,
}

/// Message-store settings. `Default` gives RocketMQ's defaults with the store under `./data/store`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Root directory (`storePathRootDir`): holds `commitlog/`, `consumequeue/`, `index/`,
    /// `checkpoint`, `abort`, `lock` and `config/`.
    pub store_path: PathBuf,
    /// Size of each CommitLog segment file (`mappedFileSizeCommitLog`), 1 GiB.
    pub commit_log_segment_size: u64,
    /// Entries per ConsumeQueue file (300,000 × 20 B).
    pub consume_queue_entries_per_file: u32,
    /// Largest message body accepted (`maxMessageSize`), 4 MiB.
    pub max_message_size: u32,
    pub flush_disk_type: FlushDiskType,
    /// How long a SYNC_FLUSH writer waits for its fsync before it is told `FlushDiskTimeout`.
    pub sync_flush_timeout_ms: u64,
    pub flush_interval_commit_log_ms: u64,
    pub flush_commit_log_least_pages: u32,
    pub flush_commit_log_thorough_interval_ms: u64,
    pub flush_interval_consume_queue_ms: u64,
    pub flush_consume_queue_least_pages: u32,
    pub flush_consume_queue_thorough_interval_ms: u64,
    /// Build IndexFiles (query by key). RocketMQ's `messageIndexEnable`.
    pub message_index_enable: bool,
    /// Hash slots per IndexFile (5,000,000).
    pub index_hash_slot_count: u32,
    /// Entries per IndexFile (20,000,000).
    pub index_max_entries: u32,
    /// CommitLog segments whose newest message is older than this are deleted (72 h).
    pub file_reserved_time_secs: u64,
    /// Local hour of day at which expired files are deleted when the disk is not under pressure.
    pub delete_when_hour: u8,
    /// Above this disk-use ratio expired files are deleted at once, whatever the hour.
    pub disk_clean_ratio: f64,
    /// Above this ratio the oldest segments are deleted even if they have not expired.
    pub disk_clean_forcibly_ratio: f64,
    /// At or above this ratio appends are refused with [`StoreError::DiskFull`].
    pub disk_refuse_write_ratio: f64,
    /// How often retention and the disk guard run.
    pub retention_check_interval_ms: u64,
    /// Address recorded as STOREHOST in every record and in offset message ids.
    pub store_host: SocketAddr,
    pub preallocate: Preallocate,
    /// The 18 delay levels (`messageDelayLevel`); the ConsumeQueue of `SCHEDULE_TOPIC_XXXX` stores
    /// the delivery time computed from them as its tags code.
    pub message_delay_level: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            store_path: PathBuf::from("data/store"),
            commit_log_segment_size: 1 << 30,
            consume_queue_entries_per_file: 300_000,
            max_message_size: 4 * 1024 * 1024,
            flush_disk_type: FlushDiskType::AsyncFlush,
            sync_flush_timeout_ms: 5_000,
            flush_interval_commit_log_ms: 500,
            flush_commit_log_least_pages: 4,
            flush_commit_log_thorough_interval_ms: 10_000,
            flush_interval_consume_queue_ms: 1_000,
            flush_consume_queue_least_pages: 2,
            flush_consume_queue_thorough_interval_ms: 60_000,
            message_index_enable: true,
            index_hash_slot_count: 5_000_000,
            index_max_entries: 20_000_000,
            file_reserved_time_secs: 72 * 3600,
            delete_when_hour: 4,
            disk_clean_ratio: 0.75,
            disk_clean_forcibly_ratio: 0.85,
            disk_refuse_write_ratio: 0.90,
            retention_check_interval_ms: 10_000,
            store_host: SocketAddr::from((Ipv4Addr::LOCALHOST, 10911)),
            preallocate: Preallocate::Fallocate,
            message_delay_level: "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
                .to_owned(),
        }
    }
}

/// Upper bounds on the knobs, so a typo in a config file is an error rather than a 1 TiB mapping.
const MAX_SEGMENT_SIZE: u64 = 16 << 30;
const MAX_CQ_ENTRIES_PER_FILE: u32 = 10_000_000;
const MAX_INDEX_SLOTS: u32 = 50_000_000;
const MAX_INDEX_ENTRIES: u32 = 100_000_000;
/// RocketMQ clamps `maxMessageSize` the same way: the remoting frame limit is 16 MiB.
const MAX_MESSAGE_SIZE_LIMIT: u32 = 16 * 1024 * 1024;

impl StoreConfig {
    /// A configuration for tests: small files so that rolling and "full" paths are exercised.
    pub fn for_tests(store_path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            store_path: store_path.into(),
            commit_log_segment_size: 256 * 1024,
            consume_queue_entries_per_file: 1_000,
            max_message_size: 64 * 1024,
            index_hash_slot_count: 1_024,
            index_max_entries: 4_096,
            preallocate: Preallocate::Sparse,
            ..StoreConfig::default()
        }
    }

    /// Checks every bound; the store refuses to open with an invalid configuration.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |msg: String| Err(StoreError::InvalidConfig(msg));
        if self.max_message_size == 0 || self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return bad(format!(
                "max_message_size must be in 1..={MAX_MESSAGE_SIZE_LIMIT}, got {}",
                self.max_message_size
            ));
        }
        let largest_record = record::max_record_size(self.max_message_size) as u64;
        let min_segment = largest_record + record::END_OF_SEGMENT_MIN_BLANK as u64;
        if self.commit_log_segment_size < min_segment
            || self.commit_log_segment_size > MAX_SEGMENT_SIZE
        {
            return bad(format!(
                "commit_log_segment_size must be in {min_segment}..={MAX_SEGMENT_SIZE} \
                 (the largest record allowed by max_message_size must fit), got {}",
                self.commit_log_segment_size
            ));
        }
        if self.consume_queue_entries_per_file == 0
            || self.consume_queue_entries_per_file > MAX_CQ_ENTRIES_PER_FILE
        {
            return bad(format!(
                "consume_queue_entries_per_file must be in 1..={MAX_CQ_ENTRIES_PER_FILE}"
            ));
        }
        if self.index_hash_slot_count == 0 || self.index_hash_slot_count > MAX_INDEX_SLOTS {
            return bad(format!(
                "index_hash_slot_count must be in 1..={MAX_INDEX_SLOTS}"
            ));
        }
        if self.index_max_entries < 2 || self.index_max_entries > MAX_INDEX_ENTRIES {
            return bad(format!(
                "index_max_entries must be in 2..={MAX_INDEX_ENTRIES}"
            ));
        }
        let ratios = [
            ("disk_clean_ratio", self.disk_clean_ratio),
            ("disk_clean_forcibly_ratio", self.disk_clean_forcibly_ratio),
            ("disk_refuse_write_ratio", self.disk_refuse_write_ratio),
        ];
        for (name, value) in ratios {
            if !(0.0..=1.0).contains(&value) {
                return bad(format!("{name} must be within 0.0..=1.0, got {value}"));
            }
        }
        if self.delete_when_hour > 23 {
            return bad(format!(
                "delete_when_hour must be 0..=23, got {}",
                self.delete_when_hour
            ));
        }
        for (name, value) in [
            ("sync_flush_timeout_ms", self.sync_flush_timeout_ms),
            (
                "flush_interval_commit_log_ms",
                self.flush_interval_commit_log_ms,
            ),
            (
                "flush_interval_consume_queue_ms",
                self.flush_interval_consume_queue_ms,
            ),
            (
                "retention_check_interval_ms",
                self.retention_check_interval_ms,
            ),
        ] {
            if value == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        self.delay_levels()?;
        Ok(())
    }

    /// The delay levels in milliseconds, level 1 first.
    pub fn delay_levels(&self) -> Result<Vec<u64>, StoreError> {
        parse_delay_levels(&self.message_delay_level)
    }

    pub(crate) fn sync_flush_timeout(&self) -> Duration {
        Duration::from_millis(self.sync_flush_timeout_ms)
    }
}

/// Parses `"1s 5s 10s 30s 1m …"` (units s, m, h, d).
fn parse_delay_levels(spec: &str) -> Result<Vec<u64>, StoreError> {
    /// RocketMQ allows at most this many levels in practice (a byte-sized queue id space is plenty).
    const MAX_LEVELS: usize = 64;
    let levels = spec
        .split_whitespace()
        .map(|token| {
            let split = token.len().saturating_sub(1);
            let (number, unit) = token.split_at(split);
            let factor = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(format!("delay level {token:?} has no unit s, m, h or d")),
            };
            let value: u64 = number
                .parse()
                .map_err(|_| format!("delay level {token:?} is not a number followed by a unit"))?;
            Ok(value * factor)
        })
        .collect::<Result<Vec<u64>, String>>()
        .map_err(StoreError::InvalidConfig)?;
    if levels.is_empty() || levels.len() > MAX_LEVELS {
        return Err(StoreError::InvalidConfig(format!(
            "message_delay_level must list 1..={MAX_LEVELS} levels"
        )));
    }
    Ok(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_rocketmq() {
        let config = StoreConfig::default();
        config.validate().unwrap();
        let levels = config.delay_levels().unwrap();
        assert_eq!(levels.len(), 18);
        assert_eq!(levels[0], 1_000);
        assert_eq!(levels[17], 2 * 3_600_000);
    }

    #[test]
    fn rejects_segment_smaller_than_largest_record() {
        let config = StoreConfig {
            commit_log_segment_size: 1024,
            ..StoreConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(StoreError::InvalidConfig(_))
        ));
    }

    #[test]
    fn rejects_bad_ratios_and_delay_levels() {
        let config = StoreConfig {
            disk_refuse_write_ratio: 1.5,
            ..StoreConfig::default()
        };
        assert!(config.validate().is_err());
        let config = StoreConfig {
            message_delay_level: "1s 5x".into(),
            ..StoreConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn test_config_is_valid() {
        StoreConfig::for_tests("/tmp/x").validate().unwrap();
    }
}
