//! The set of IndexFiles: which keys a message adds, when a new file starts, how a query walks the
//! files, and how far the index covers the CommitLog (where a restart must resume indexing).

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{Local, TimeZone};
use tracing::{info, warn};

use super::config::{Preallocate, StoreConfig};
use super::error::{IoContext, StoreError};
use super::index_file::IndexFile;
use super::message::{IDEMPOTENCY_INDEX_TOPIC, property, sys_flag};

/// Names are the creation time, `yyyyMMddHHmmssSSS`.
const NAME_LEN: usize = 17;

struct Files {
    list: Vec<IndexFile>,
    /// The last CommitLog offset dispatched into the index; dispatches at or below are replays.
    covered: Option<u64>,
}

pub(crate) struct IndexService {
    dir: PathBuf,
    enabled: bool,
    slot_count: u32,
    max_entries: u32,
    preallocate: Preallocate,
    files: RwLock<Files>,
    /// End timestamp of the newest IndexFile known to be entirely on disk: the checkpoint's
    /// `indexMsgTimestamp`.
    flushed_timestamp: AtomicI64,
}

/// What indexing one message needs to know.
pub(crate) struct IndexRequest<'a> {
    pub topic: &'a str,
    pub physical_offset: u64,
    pub store_timestamp: i64,
    pub sys_flag: i32,
    pub unique_key: Option<&'a str>,
    pub keys: Option<&'a str>,
    /// `(producer topic, idempotency key)`, indexed under [`IDEMPOTENCY_INDEX_TOPIC`].
    pub idempotency: Option<(&'a str, &'a str)>,
}

impl IndexService {
    /// Opens the IndexFiles. After a crash, files that changed after the last index checkpoint may
    /// be partly on disk: they are deleted and rebuilt by replaying the CommitLog.
    pub(crate) fn load(
        config: &StoreConfig,
        checkpoint_timestamp: i64,
        abnormal: bool,
    ) -> Result<IndexService, StoreError> {
        let dir = config.store_path.join("index");
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                fs::remove_file(entry.path()).context(|| format!("removing {name}"))?;
            } else if name.len() == NAME_LEN && name.bytes().all(|b| b.is_ascii_digit()) {
                names.push((name, entry.path()));
            } else {
                warn!(path = %entry.path().display(), "ignoring a file that is not an IndexFile");
            }
        }
        names.sort();
        let (slots, entries) = (config.index_hash_slot_count, config.index_max_entries);
        let mut list: Vec<IndexFile> = Vec::new();
        let mut damaged = false;
        for (_, path) in names {
            if damaged {
                fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
                continue;
            }
            match IndexFile::open(&path, slots, entries) {
                Ok(file) => list.push(file),
                Err(e) => {
                    // Derived data: drop it and everything newer, the CommitLog rebuilds them.
                    warn!(path = %path.display(), error = %e, "unusable IndexFile; rebuilding");
                    fs::remove_file(&path).context(|| format!("removing {}", path.display()))?;
                    damaged = true;
                }
            }
        }
        if abnormal {
            while let Some(last) = list.last() {
                if last.header().end_timestamp <= checkpoint_timestamp {
                    break;
                }
                let file = list.pop().expect("last exists");
                info!(path = %file.path().display(), "IndexFile newer than the index checkpoint; rebuilding it");
                let path = file.path().to_owned();
                file.destroy()
                    .context(|| format!("removing {}", path.display()))?;
            }
        }
        let covered = list
            .iter()
            .rev()
            .find(|f| f.header().begin_timestamp > 0)
            .map(|f| f.header().end_phy_offset);
        Ok(IndexService {
            dir,
            enabled: config.message_index_enable,
            slot_count: slots,
            max_entries: entries,
            preallocate: config.preallocate,
            files: RwLock::new(Files { list, covered }),
            flushed_timestamp: AtomicI64::new(checkpoint_timestamp),
        })
    }

    /// Where replay must start so the index misses nothing: just past what it covers, or the
    /// start of the log if it covers nothing. `None` when indexing is off.
    pub(crate) fn resume_offset(&self, log_min: u64) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let files = self.files.read().expect("index lock poisoned");
        Some(files.covered.map_or(log_min, |c| c.max(log_min)))
    }

    pub(crate) fn flushed_timestamp(&self) -> i64 {
        self.flushed_timestamp.load(Ordering::Acquire)
    }

    /// Indexes `UNIQ_KEY` and every `KEYS` token of one message. Only the dispatcher calls this.
    pub(crate) fn dispatch(&self, req: &IndexRequest<'_>) -> Result<(), StoreError> {
        if !self.enabled
            || sys_flag::transaction_type(req.sys_flag) == sys_flag::TRANSACTION_ROLLBACK_TYPE
        {
            return Ok(());
        }
        let mut files = self.files.write().expect("index lock poisoned");
        if files.covered.is_some_and(|c| req.physical_offset <= c) {
            return Ok(()); // replay
        }
        let keys = req
            .keys
            .into_iter()
            .flat_map(|k| k.split(property::KEY_SEPARATOR));
        for key in req
            .unique_key
            .into_iter()
            .chain(keys)
            .filter(|k| !k.is_empty())
        {
            self.put(&mut files.list, req.topic, key, req)?;
        }
        if let Some((topic, key)) = req.idempotency {
            let key = idempotency_index_key(topic, key);
            self.put(&mut files.list, IDEMPOTENCY_INDEX_TOPIC, &key, req)?;
        }
        let current = self.current_file(&mut files.list)?;
        current.note(req.physical_offset, req.store_timestamp);
        files.covered = Some(req.physical_offset);
        Ok(())
    }

    fn put(
        &self,
        list: &mut Vec<IndexFile>,
        topic: &str,
        key: &str,
        req: &IndexRequest<'_>,
    ) -> Result<(), StoreError> {
        let current = self.current_file(list)?;
        if !current.put(topic, key, req.physical_offset, req.store_timestamp) {
            let fresh = self.roll(list)?;
            let stored = fresh.put(topic, key, req.physical_offset, req.store_timestamp);
            debug_assert!(stored, "a fresh IndexFile has room");
        }
        Ok(())
    }

    fn current_file<'a>(
        &self,
        list: &'a mut Vec<IndexFile>,
    ) -> Result<&'a mut IndexFile, StoreError> {
        if list.last().is_none_or(|f| f.is_full()) {
            return self.roll(list);
        }
        Ok(list.last_mut().expect("checked above"))
    }

    /// Flushes the full file (its end becomes the index checkpoint) and starts a new one.
    fn roll<'a>(&self, list: &'a mut Vec<IndexFile>) -> Result<&'a mut IndexFile, StoreError> {
        if let Some(full) = list.last() {
            full.flush()
                .context(|| format!("flushing {}", full.path().display()))?;
            self.flushed_timestamp
                .store(full.header().end_timestamp, Ordering::Release);
        }
        let path = self.next_path(list.last().map(|f| f.path()));
        let file = IndexFile::create(&path, self.slot_count, self.max_entries, self.preallocate)
            .context(|| format!("creating {}", path.display()))?;
        list.push(file);
        Ok(list.last_mut().expect("just pushed"))
    }

    /// A name from the clock, strictly after the newest existing one.
    fn next_path(&self, newest: Option<&Path>) -> PathBuf {
        let mut millis = super::message::now_millis();
        let name_of = |ms: i64| {
            Local.timestamp_millis_opt(ms).single().map_or_else(
                || format!("{ms:017}"),
                |t| t.format("%Y%m%d%H%M%S%3f").to_string(),
            )
        };
        let newest = newest
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let mut name = name_of(millis);
        while newest.as_deref().is_some_and(|n| name.as_str() <= n) {
            millis += 1;
            name = name_of(millis);
        }
        self.dir.join(name)
    }

    /// Calls `visit` with the CommitLog offset of every indexed message of `topic` stored within
    /// `[begin, end]` whose key hashes like `key`, newest file first, until it answers `Break`.
    /// Callers must re-check the key and the exact timestamp on the message.
    pub(crate) fn query(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) {
        let files = self.files.read().expect("index lock poisoned");
        Self::walk(&files, topic, key, begin, end, visit);
    }

    /// [`Self::query`] without waiting for the index lock: `None` when the dispatcher holds it
    /// (it does while it creates a new IndexFile, which can take a while), so that a caller on
    /// a request thread can move the query elsewhere instead of stalling.
    pub(crate) fn try_query(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> Option<()> {
        let files = match self.files.try_read() {
            Ok(files) => files,
            Err(std::sync::TryLockError::WouldBlock) => return None,
            Err(std::sync::TryLockError::Poisoned(_)) => panic!("index lock poisoned"),
        };
        Self::walk(&files, topic, key, begin, end, visit);
        Some(())
    }

    fn walk(
        files: &Files,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) {
        // Entries keep whole seconds since the file's start: widen by one second.
        let begin = begin.saturating_sub(1000);
        for file in files.list.iter().rev() {
            let h = file.header();
            if !h.has_entries() || h.begin_timestamp > end || h.end_timestamp < begin {
                continue;
            }
            if file.select(topic, key, begin, end, visit).is_break() {
                return;
            }
        }
    }

    /// Flushes every file (clean shutdown): the whole index becomes the checkpoint.
    pub(crate) fn flush_all(&self) -> Result<(), StoreError> {
        let files = self.files.read().expect("index lock poisoned");
        for file in &files.list {
            file.flush()
                .context(|| format!("flushing {}", file.path().display()))?;
        }
        if let Some(last) = files.list.last() {
            self.flushed_timestamp
                .store(last.header().end_timestamp, Ordering::Release);
        }
        Ok(())
    }

    /// Retention: deletes files whose every entry points below `min_physical` (never the newest).
    pub(crate) fn delete_below(&self, min_physical: u64) -> Result<usize, StoreError> {
        let mut files = self.files.write().expect("index lock poisoned");
        let mut deleted = 0;
        while files.list.len() > 1 && files.list[0].header().end_phy_offset < min_physical {
            let file = files.list.remove(0);
            let path = file.path().to_owned();
            info!(path = %path.display(), "retention: deleting IndexFile");
            file.destroy()
                .context(|| format!("deleting {}", path.display()))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// The index key of an idempotency key: `<producer topic>#<key>` under
/// [`IDEMPOTENCY_INDEX_TOPIC`]. Topic names cannot contain `#`, so the split is unambiguous.
pub(crate) fn idempotency_index_key(topic: &str, key: &str) -> String {
    let mut out = String::with_capacity(topic.len() + 1 + key.len());
    out.push_str(topic);
    out.push('#');
    out.push_str(key);
    out
}
