//! ConsumeQueue: the per-(topic, queue) index into the CommitLog (reference §3).
//!
//! Entry `n` of a queue sits at byte `n * 20` of the queue's logical space, split into files of
//! `entries_per_file` entries named by their first logical byte offset. An entry is
//! `[commitLogOffset i64][size i32][tagsCode i64]`; `(0, i32::MAX, 0)` pads slots that hold no
//! message (a queue that starts mid-file).
//!
//! Only the dispatcher writes a queue (one writer), so entries below the published position are
//! immutable and readers need no lock. Dispatch is idempotent: an entry for a CommitLog position the
//! queue already covers is ignored, which is what makes replaying the log after a crash safe.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tracing::warn;

use super::config::Preallocate;
use super::error::{IoContext, StoreError};
use super::mapped_file::{MappedFile, OffsetFiles, list_offset_files, offset_file_name, sync_dir};

/// Size of one entry.
pub const ENTRY_SIZE: u64 = 20;
/// `size` of a padding entry.
const PADDING_SIZE: u32 = i32::MAX as u32;

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub physical_offset: u64,
    pub size: u32,
    pub tags_code: i64,
}

impl CqEntry {
    fn padding() -> CqEntry {
        CqEntry {
            physical_offset: 0,
            size: PADDING_SIZE,
            tags_code: 0,
        }
    }

    pub fn is_padding(&self) -> bool {
        self.size == PADDING_SIZE
    }

    fn encode(&self) -> [u8; ENTRY_SIZE as usize] {
        let mut b = [0u8; ENTRY_SIZE as usize];
        b[0..8].copy_from_slice(&self.physical_offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> CqEntry {
        CqEntry {
            physical_offset: u64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            size: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
            tags_code: i64::from_be_bytes(b[12..20].try_into().expect("8 bytes")),
        }
    }

    /// A real message entry: non-zero size that fits an i32, offset that fits an i64.
    fn is_message(&self) -> bool {
        self.size > 0 && self.size < PADDING_SIZE && self.physical_offset <= i64::MAX as u64
    }
}

pub(crate) struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    dir: PathBuf,
    file_size: u64,
    preallocate: Preallocate,
    files: RwLock<Vec<Arc<MappedFile>>>,
    /// Next queue offset: entries `[min_offset, max_offset)` exist.
    max_offset: AtomicU64,
    /// First entry whose message is still in the CommitLog.
    min_offset: AtomicU64,
    /// CommitLog offset one past the last message entry; dispatches below it are replays.
    max_physical_end: AtomicU64,
}

impl ConsumeQueue {
    fn new(
        topic: &str,
        queue_id: i32,
        dir: PathBuf,
        entries_per_file: u32,
        preallocate: Preallocate,
    ) -> Self {
        ConsumeQueue {
            topic: topic.to_owned(),
            queue_id,
            dir,
            file_size: u64::from(entries_per_file) * ENTRY_SIZE,
            preallocate,
            files: RwLock::new(Vec::new()),
            max_offset: AtomicU64::new(0),
            min_offset: AtomicU64::new(0),
            max_physical_end: AtomicU64::new(0),
        }
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn queue_id(&self) -> i32 {
        self.queue_id
    }

    pub(crate) fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    pub(crate) fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    pub(crate) fn max_physical_end(&self) -> u64 {
        self.max_physical_end.load(Ordering::Acquire)
    }

    /// Maps the queue's files; `Ok(false)` when they are unusable (wrong size, gap) and the queue
    /// must be rebuilt from the CommitLog.
    fn load(&self) -> Result<bool, StoreError> {
        let OffsetFiles { files, strangers } =
            list_offset_files(&self.dir).context(|| format!("listing {}", self.dir.display()))?;
        for stranger in strangers {
            warn!(path = %stranger.display(), "ignoring a file that is not a ConsumeQueue file");
        }
        let mut mapped: Vec<Arc<MappedFile>> = Vec::with_capacity(files.len());
        for (base, path) in files {
            let contiguous = mapped.last().is_none_or(|last| last.end() == base);
            if base % self.file_size != 0 || !contiguous {
                warn!(path = %path.display(), "ConsumeQueue files out of line; rebuilding the queue");
                return Ok(false);
            }
            match MappedFile::open(&path, base, self.file_size) {
                Ok(file) => {
                    // Until recovery says where the entries end, the whole file counts as written
                    // so it can be scanned; nobody else sees the queue before then.
                    file.reset_positions(file.size(), file.size());
                    mapped.push(Arc::new(file));
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "unusable ConsumeQueue file; rebuilding the queue");
                    return Ok(false);
                }
            }
        }
        *self.files.write().expect("cq lock poisoned") = mapped;
        Ok(true)
    }

    /// Counts the entries of the valid prefix: padding, or messages that end at or before
    /// `log_end` and (after a crash) start before `cut`. Returns the logical byte offset one past
    /// the prefix and the CommitLog end of its last message.
    ///
    /// The prefix property makes a binary search enough: entries are written in order into fresh
    /// (zeroed) files, so after a clean shutdown valid entries are followed only by zeros, and
    /// after a crash everything stored before the checkpoint (`cut`) is on disk and everything
    /// after it points at or past `cut` or is zero.
    fn valid_prefix(files: &[Arc<MappedFile>], log_end: u64, cut: Option<u64>) -> (u64, u64) {
        let Some(first) = files.first() else {
            return (0, 0);
        };
        let file_size = first.size();
        let entry_at = |i: u64| {
            let logical = first.base() + i * ENTRY_SIZE;
            let file = &files[((logical - first.base()) / file_size) as usize];
            read_raw_entry(file, logical - file.base())
        };
        let valid = |e: &CqEntry| {
            e.is_padding()
                || (e.is_message()
                    && e.physical_offset + u64::from(e.size) <= log_end
                    && cut.is_none_or(|c| e.physical_offset < c))
        };
        let total = (files.last().expect("not empty").end() - first.base()) / ENTRY_SIZE;
        let (mut lo, mut hi) = (0u64, total); // first invalid entry is in [lo, hi]
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if valid(&entry_at(mid)) {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        let mut physical_end = 0;
        let mut i = lo;
        while i > 0 {
            i -= 1;
            let e = entry_at(i);
            if e.is_message() {
                physical_end = e.physical_offset + u64::from(e.size);
                break;
            }
        }
        (first.base() + lo * ENTRY_SIZE, physical_end)
    }

    /// CommitLog position covered by the raw files (before recovery sets positions).
    fn raw_physical_end(&self) -> u64 {
        let files = self.files.read().expect("cq lock poisoned");
        Self::valid_prefix(&files, u64::MAX, None).1
    }

    /// Keeps the valid prefix (see `valid_prefix`), zeroes and deletes the rest, and sets the
    /// queue's positions. Runs before the queue is shared.
    pub(crate) fn recover(&self, log_end: u64, cut: Option<u64>) -> Result<(), StoreError> {
        let mut files = self.files.write().expect("cq lock poisoned");
        let Some(first) = files.first().cloned() else {
            return Ok(());
        };
        let (end, last_physical_end) = Self::valid_prefix(&files, log_end, cut);
        while let Some(last) = files
            .last()
            .filter(|f| f.base() >= end && f.base() > first.base())
            .cloned()
        {
            last.destroy()
                .context(|| format!("deleting {}", last.path().display()))?;
            files.pop();
        }
        for file in files.iter() {
            if file.end() <= end {
                file.reset_positions(file.size(), file.size());
            } else {
                let pos = end - file.base();
                file.zero_tail(pos)
                    .context(|| format!("truncating {}", file.path().display()))?;
                file.reset_positions(pos, pos);
            }
        }
        drop(files);
        let max_offset = end / ENTRY_SIZE;
        self.max_offset.store(max_offset, Ordering::Release);
        self.max_physical_end
            .store(last_physical_end, Ordering::Release);
        // The first message entry (skipping padding) is the minimum.
        let mut min = first.base() / ENTRY_SIZE;
        while min < max_offset && self.entry(min).is_some_and(|e| e.is_padding()) {
            min += 1;
        }
        self.min_offset.store(min, Ordering::Release);
        Ok(())
    }

    /// Writes the entry for `queue_offset` unless the queue already covers that CommitLog position.
    /// Only the dispatcher calls this.
    pub(crate) fn put(&self, queue_offset: u64, entry: CqEntry) -> Result<(), StoreError> {
        if entry.physical_offset + u64::from(entry.size) <= self.max_physical_end() {
            return Ok(()); // replay of something already indexed
        }
        let next = self.max_offset();
        if queue_offset < next {
            warn!(topic = %self.topic, queue = self.queue_id, queue_offset, next,
                "ConsumeQueue already holds this queue offset for an earlier message; ignoring");
            return Ok(());
        }
        if queue_offset > next {
            if self.files.read().expect("cq lock poisoned").is_empty() {
                // The queue starts mid-way: its earlier messages are gone from the CommitLog
                // (retention) and its files were rebuilt. `file_for_write` pads the first file.
                self.min_offset.store(queue_offset, Ordering::Release);
            } else {
                warn!(topic = %self.topic, queue = self.queue_id, queue_offset, next,
                    "gap in ConsumeQueue; padding");
                for offset in next..queue_offset {
                    self.write_entry(offset, CqEntry::padding())?;
                }
            }
        }
        self.write_entry(queue_offset, entry)?;
        self.max_physical_end.store(
            entry.physical_offset + u64::from(entry.size),
            Ordering::Release,
        );
        Ok(())
    }

    fn write_entry(&self, queue_offset: u64, entry: CqEntry) -> Result<(), StoreError> {
        let logical = queue_offset * ENTRY_SIZE;
        let file = self.file_for_write(logical)?;
        let pos = logical - file.base();
        // SAFETY: the dispatcher is the only writer and `pos` is the first unpublished byte.
        unsafe { file.write(pos, &entry.encode()) };
        file.publish(pos + ENTRY_SIZE);
        self.max_offset.store(queue_offset + 1, Ordering::Release);
        Ok(())
    }

    fn file_for_write(&self, logical: u64) -> Result<Arc<MappedFile>, StoreError> {
        let base = logical - logical % self.file_size;
        {
            let files = self.files.read().expect("cq lock poisoned");
            if let Some(last) = files.last().filter(|f| f.base() == base) {
                return Ok(last.clone());
            }
        }
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir).context(|| format!("creating {}", self.dir.display()))?;
            // A new queue directory must survive a power cut like the files in it will.
            for dir in self.dir.ancestors().skip(1).take(2) {
                sync_dir(dir).context(|| format!("syncing {}", dir.display()))?;
            }
        }
        let path = self.dir.join(offset_file_name(base));
        let file = MappedFile::create(&path, base, self.file_size, self.preallocate)
            .map(Arc::new)
            .context(|| format!("creating {}", path.display()))?;
        if base > 0 && self.files.read().expect("cq lock poisoned").is_empty() {
            // Slots before the first entry of a queue that starts mid-file are padding.
            let start = logical - base;
            let padding = CqEntry::padding().encode();
            let mut pos = 0;
            while pos < start {
                // SAFETY: a brand-new file nobody else has seen yet.
                unsafe { file.write(pos, &padding) };
                pos += ENTRY_SIZE;
            }
            file.publish(start);
        }
        self.files
            .write()
            .expect("cq lock poisoned")
            .push(file.clone());
        Ok(file)
    }

    /// The entry at `queue_offset`, if it exists.
    pub(crate) fn entry(&self, queue_offset: u64) -> Option<CqEntry> {
        let logical = queue_offset.checked_mul(ENTRY_SIZE)?;
        let file = self.file_for_read(logical)?;
        let bytes = file.read(logical - file.base(), ENTRY_SIZE as usize)?;
        Some(CqEntry::decode(bytes))
    }

    /// Up to `max` consecutive entries from `queue_offset` (fewer at a file boundary or the end).
    pub(crate) fn entries(&self, queue_offset: u64, max: usize) -> Vec<CqEntry> {
        let Some(logical) = queue_offset.checked_mul(ENTRY_SIZE) else {
            return Vec::new();
        };
        let Some(file) = self.file_for_read(logical) else {
            return Vec::new();
        };
        let bytes = file.read_from(logical - file.base());
        bytes
            .chunks_exact(ENTRY_SIZE as usize)
            .take(max)
            .map(CqEntry::decode)
            .collect()
    }

    fn file_for_read(&self, logical: u64) -> Option<Arc<MappedFile>> {
        let files = self.files.read().expect("cq lock poisoned");
        let first = files.first()?.base();
        let index = logical.checked_sub(first)? / self.file_size;
        files.get(index as usize).cloned()
    }

    pub(crate) fn dirty_pages(&self) -> u64 {
        let files = self.files.read().expect("cq lock poisoned");
        files.iter().rev().take(2).map(|f| f.dirty_pages()).sum()
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let files: Vec<Arc<MappedFile>> = {
            let files = self.files.read().expect("cq lock poisoned");
            files
                .iter()
                .filter(|f| f.flushed() < f.wrote())
                .cloned()
                .collect()
        };
        for file in files {
            file.flush()
                .context(|| format!("flushing {}", file.path().display()))?;
        }
        Ok(())
    }

    /// Retention: deletes files whose every entry points below `min_physical`, never the last one,
    /// and moves `min_offset` to the first entry still in the log.
    pub(crate) fn delete_below(&self, min_physical: u64) -> Result<usize, StoreError> {
        let doomed: Vec<Arc<MappedFile>> = {
            let mut files = self.files.write().expect("cq lock poisoned");
            let mut count = 0;
            while count + 1 < files.len() {
                let file = &files[count];
                let last = read_raw_entry(file, file.size() - ENTRY_SIZE);
                if !(last.is_message()
                    && last.physical_offset + u64::from(last.size) <= min_physical)
                {
                    break;
                }
                count += 1;
            }
            files.drain(..count).collect()
        };
        for file in &doomed {
            file.destroy()
                .context(|| format!("deleting {}", file.path().display()))?;
        }
        let mut min = self.min_offset().max(self.first_file_offset());
        let max = self.max_offset();
        while min < max {
            match self.entry(min) {
                Some(e) if e.is_padding() || e.physical_offset < min_physical => min += 1,
                _ => break,
            }
        }
        self.min_offset.store(min, Ordering::Release);
        Ok(doomed.len())
    }

    fn first_file_offset(&self) -> u64 {
        let files = self.files.read().expect("cq lock poisoned");
        files.first().map_or(0, |f| f.base() / ENTRY_SIZE)
    }
}

/// Reads an entry of a file whose positions cover it (recovery publishes whole files at load).
fn read_raw_entry(file: &MappedFile, pos: u64) -> CqEntry {
    let bytes = file
        .read(pos, ENTRY_SIZE as usize)
        .expect("entry inside the published range");
    CqEntry::decode(bytes)
}

/// What [`ConsumeQueues::load`] found.
pub(crate) struct QueueLoad {
    pub queues: ConsumeQueues,
    pub unusable: Vec<PathBuf>,
    pub root_missing: bool,
}

/// All ConsumeQueues of a store, by topic then queue id.
pub(crate) struct ConsumeQueues {
    dir: PathBuf,
    entries_per_file: u32,
    preallocate: Preallocate,
    queues: RwLock<HashMap<String, HashMap<i32, Arc<ConsumeQueue>>>>,
}

impl ConsumeQueues {
    /// Maps every queue found on disk. Returns the set and the queue directories that are unusable
    /// (wrong-size or out-of-line files): the caller must make the rebuild durable, delete them and
    /// replay the whole CommitLog. `root_missing` tells that `consumequeue/` itself is gone.
    pub(crate) fn load(
        store_path: &Path,
        entries_per_file: u32,
        preallocate: Preallocate,
    ) -> Result<QueueLoad, StoreError> {
        let dir = store_path.join("consumequeue");
        let set = ConsumeQueues {
            dir: dir.clone(),
            entries_per_file,
            preallocate,
            queues: RwLock::new(HashMap::new()),
        };
        let mut unusable = Vec::new();
        if !dir.exists() {
            return Ok(QueueLoad {
                queues: set,
                unusable,
                root_missing: true,
            });
        }
        let read = |p: &Path| fs::read_dir(p).context(|| format!("listing {}", p.display()));
        for topic_entry in read(&dir)? {
            let topic_entry = topic_entry.context(|| format!("listing {}", dir.display()))?;
            let topic = topic_entry.file_name().to_string_lossy().into_owned();
            let topic_dir = topic_entry.path();
            if !topic_dir.is_dir() {
                continue;
            }
            for queue_entry in read(&topic_dir)? {
                let queue_entry =
                    queue_entry.context(|| format!("listing {}", topic_dir.display()))?;
                let queue_dir = queue_entry.path();
                let name = queue_entry.file_name().to_string_lossy().into_owned();
                let Ok(queue_id) = name.parse::<i32>() else {
                    warn!(path = %queue_dir.display(), "ignoring a directory that is not a queue id");
                    continue;
                };
                let queue = ConsumeQueue::new(
                    &topic,
                    queue_id,
                    queue_dir.clone(),
                    entries_per_file,
                    preallocate,
                );
                if !queue.load()? {
                    unusable.push(queue_dir);
                    continue;
                }
                set.queues
                    .write()
                    .expect("cq table poisoned")
                    .entry(topic.clone())
                    .or_default()
                    .insert(queue_id, Arc::new(queue));
            }
        }
        Ok(QueueLoad {
            queues: set,
            unusable,
            root_missing: false,
        })
    }

    pub(crate) fn get(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        let queues = self.queues.read().expect("cq table poisoned");
        queues.get(topic)?.get(&queue_id).cloned()
    }

    pub(crate) fn get_or_create(&self, topic: &str, queue_id: i32) -> Arc<ConsumeQueue> {
        if let Some(queue) = self.get(topic, queue_id) {
            return queue;
        }
        let mut queues = self.queues.write().expect("cq table poisoned");
        let by_id = queues.entry(topic.to_owned()).or_default();
        by_id
            .entry(queue_id)
            .or_insert_with(|| {
                let dir = self.dir.join(topic).join(queue_id.to_string());
                Arc::new(ConsumeQueue::new(
                    topic,
                    queue_id,
                    dir,
                    self.entries_per_file,
                    self.preallocate,
                ))
            })
            .clone()
    }

    pub(crate) fn all(&self) -> Vec<Arc<ConsumeQueue>> {
        let queues = self.queues.read().expect("cq table poisoned");
        queues.values().flat_map(|q| q.values().cloned()).collect()
    }

    /// Largest CommitLog position covered according to the raw files, before recovery sets
    /// positions: where a clean restart resumes dispatch.
    pub(crate) fn raw_max_physical_end(&self) -> u64 {
        self.all()
            .iter()
            .map(|q| q.raw_physical_end())
            .max()
            .unwrap_or(0)
    }

    /// Recovers every queue against the log end; after a crash, also cuts entries at or past
    /// `cut` (replay re-creates them).
    pub(crate) fn recover(&self, log_end: u64, cut: Option<u64>) -> Result<(), StoreError> {
        for queue in self.all() {
            queue.recover(log_end, cut)?;
        }
        Ok(())
    }

    /// Next queue offset per queue, for the appender.
    pub(crate) fn queue_offsets(&self) -> super::commit_log::QueueOffsets {
        let mut out: super::commit_log::QueueOffsets = HashMap::new();
        for queue in self.all() {
            out.entry(queue.topic.clone())
                .or_default()
                .insert(queue.queue_id, queue.max_offset());
        }
        out
    }

    /// Flushes queues with at least `least_pages` dirty pages (0: every dirty queue).
    pub(crate) fn flush(&self, least_pages: u32) -> Result<(), StoreError> {
        for queue in self.all() {
            let dirty = queue.dirty_pages();
            if least_pages == 0 || dirty >= u64::from(least_pages) {
                queue.flush()?;
            }
        }
        Ok(())
    }

    pub(crate) fn delete_below(&self, min_physical: u64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for queue in self.all() {
            deleted += queue.delete_below(min_physical)?;
        }
        Ok(deleted)
    }
}
