//! The CommitLog: one append-only log for every topic, split into fixed-size mapped segments.
//!
//! Appends are serialised by one mutex, held only to assign offsets and copy bytes; encoding
//! happens before. Where the bytes go depends on the flush mode:
//! - ASYNC_FLUSH copies them into the mapped segment at once (the producer is answered right
//!   after, so they must be in the page cache), TOTALSIZE last: a process killed mid-copy leaves a
//!   zero size at the record's start, which recovery reads as the end of the log;
//! - SYNC_FLUSH copies them into a write buffer that the group commit writes and syncs (see
//!   `write_buffer`), with the same "first four bytes last" rule per chunk.
//!
//! Two positions are published for readers:
//! - `written`: the end of the last complete record;
//! - `flushed`: how much of that is on disk.
//!
//! Under SYNC_FLUSH readers (and the dispatcher) only ever see up to `flushed`, so a consumer can
//! never receive a message that a crash could still take away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tracing::{info, warn};

use super::config::{FlushDiskType, StoreConfig};
use super::error::{IoContext, StoreError};
use super::mapped_file::{MappedFile, OffsetFiles, PAGE_SIZE, list_offset_files};
use super::message::now_millis;
use super::prefault::Prefaulter;
use super::record::{self, END_OF_SEGMENT_MIN_BLANK, EncodedRecord, Entry};
use super::segment_allocator::SegmentAllocator;
use super::write_buffer::{MAX_PENDING_BYTES, WriteBuffer};

/// Most messages one batch append may carry.
pub const MAX_BATCH_MESSAGES: usize = 65_536;

/// Where one appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedRecord {
    pub physical_offset: u64,
    pub size: u32,
    /// Position in its ConsumeQueue (0 for transaction halves, which take none).
    pub queue_offset: u64,
    pub store_timestamp: i64,
}

/// Next queue offset of every (topic, queue) that has received messages.
pub(crate) type QueueOffsets = HashMap<String, HashMap<i32, u64>>;

struct AppendState {
    /// The segment being written, `None` when the log is empty or the last one is full.
    current: Option<Arc<MappedFile>>,
    /// Log offset where the next record goes.
    next_offset: u64,
    queue_offsets: QueueOffsets,
    /// Store timestamps never go backwards in log order, even if the wall clock does; recovery's
    /// search by timestamp depends on it.
    last_store_timestamp: i64,
    /// Set by shutdown under the lock: no append may start after the final flush.
    closed: bool,
    /// SYNC_FLUSH: bytes appended but not yet written to their segment (see `write_buffer`).
    buffer: WriteBuffer,
}

/// What the group-commit flushers share.
#[derive(Default)]
struct CommitState {
    /// Segments holding written bytes that may not be synced yet.
    unsynced: Vec<Arc<MappedFile>>,
}

pub(crate) struct CommitLog {
    segment_size: u64,
    store_host: SocketAddr,
    max_message_size: u32,
    flush_disk_type: FlushDiskType,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    append: Mutex<AppendState>,
    allocator: SegmentAllocator,
    prefaulter: Prefaulter,
    written: AtomicU64,
    /// Store timestamp of the record ending at `written` (stored after `written`, see
    /// `flush_mapped`).
    written_timestamp: AtomicI64,
    flushed: AtomicU64,
    /// Store timestamp of the newest flushed record (the checkpoint's physicMsgTimestamp).
    flushed_timestamp: AtomicI64,
    /// Flushes that wrote something (for statistics: group commit shows as flushes ≪ appends).
    flush_count: AtomicU64,
    /// SYNC_FLUSH: serialises taking and writing pending chunks (see `commit_and_sync`).
    commit: Mutex<CommitState>,
    /// SYNC_FLUSH: end of the bytes handed to a committer; `written` beyond it still waits.
    taken: AtomicU64,
}

impl CommitLog {
    /// Maps the existing segments. Positions are only right after [`CommitLog::set_end`] (recovery).
    pub(crate) fn load(config: &StoreConfig) -> Result<CommitLog, StoreError> {
        let dir = config.store_path.join("commitlog");
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let size = config.commit_log_segment_size;
        let OffsetFiles { files, strangers } =
            list_offset_files(&dir).context(|| format!("listing {}", dir.display()))?;
        if let Some(stranger) = strangers.first() {
            return Err(StoreError::Corrupt(format!(
                "{} is not a CommitLog segment (names are 20-digit offsets)",
                stranger.display()
            )));
        }
        let mut segments = Vec::with_capacity(files.len());
        for (i, (base, path)) in files.iter().enumerate() {
            let (base, path) = (*base, path.clone());
            if base % size != 0 {
                return Err(StoreError::Corrupt(format!(
                    "{} does not start at a multiple of the segment size {size}",
                    path.display()
                )));
            }
            if let Some(prev) = segments.last().map(|s: &Arc<MappedFile>| s.end())
                && prev != base
            {
                return Err(StoreError::Corrupt(format!(
                    "CommitLog segments are not contiguous: {} follows a segment ending at {prev}",
                    path.display()
                )));
            }
            let actual = std::fs::metadata(&path)
                .context(|| format!("reading {}", path.display()))?
                .len();
            if actual != size {
                // A short segment with nothing but unused (pre-allocated) segments after it is a
                // torn tail (a crash or a cut copy): keep what is in it and let recovery find
                // where the records end. Anywhere else, or longer, it is not a segment of this
                // store's size, and guessing would lose data.
                let tail_is_unused = files[i + 1..].iter().all(|(_, p)| starts_with_zero_size(p));
                if actual < size && tail_is_unused {
                    warn!(path = %path.display(), actual, size, "CommitLog segment is short; extending it for recovery");
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .context(|| format!("opening {}", path.display()))?;
                    file.set_len(size)
                        .context(|| format!("extending {}", path.display()))?;
                    file.sync_all()
                        .context(|| format!("syncing {}", path.display()))?;
                } else {
                    return Err(StoreError::SegmentWrongSize {
                        path,
                        expected: size,
                        actual,
                    });
                }
            }
            let segment = MappedFile::open(&path, base, size)
                .context(|| format!("mapping {}", path.display()))?;
            // Until recovery finds the end of the log, every byte counts as written so it can be
            // scanned; nothing else sees the log before `set_end`.
            segment.reset_positions(size, size);
            segments.push(Arc::new(segment));
        }
        Ok(CommitLog {
            allocator: SegmentAllocator::new(dir, size, config.preallocate),
            segment_size: size,
            store_host: config.store_host,
            max_message_size: config.max_message_size,
            flush_disk_type: config.flush_disk_type,
            segments: RwLock::new(segments),
            append: Mutex::new(AppendState {
                current: None,
                next_offset: 0,
                queue_offsets: HashMap::new(),
                last_store_timestamp: 0,
                closed: false,
                buffer: WriteBuffer::default(),
            }),
            written: AtomicU64::new(0),
            written_timestamp: AtomicI64::new(0),
            flushed: AtomicU64::new(0),
            flushed_timestamp: AtomicI64::new(0),
            flush_count: AtomicU64::new(0),
            commit: Mutex::new(CommitState::default()),
            taken: AtomicU64::new(0),
            prefaulter: Prefaulter::new(),
        })
    }

    pub(crate) fn store_host(&self) -> SocketAddr {
        self.store_host
    }

    pub(crate) fn encode(
        &self,
        msg: &super::message::Message,
    ) -> Result<EncodedRecord, StoreError> {
        record::encode(msg, self.store_host, self.max_message_size)
    }

    /// A snapshot of the segment list.
    pub(crate) fn segments(&self) -> Vec<Arc<MappedFile>> {
        self.segments
            .read()
            .expect("segments lock poisoned")
            .clone()
    }

    /// The segment holding log offset `offset`.
    pub(crate) fn segment_for(&self, offset: u64) -> Option<Arc<MappedFile>> {
        let segments = self.segments.read().expect("segments lock poisoned");
        let first = segments.first()?.base();
        let index = offset.checked_sub(first)? / self.segment_size;
        segments.get(index as usize).cloned()
    }

    /// Offset of the oldest byte still kept.
    pub(crate) fn min_offset(&self) -> u64 {
        let segments = self.segments.read().expect("segments lock poisoned");
        segments
            .first()
            .map_or_else(|| self.written(), |s| s.base())
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    pub(crate) fn flushed_timestamp(&self) -> i64 {
        self.flushed_timestamp.load(Ordering::Acquire)
    }

    /// How far readers may look: everything written (ASYNC_FLUSH) or only what is on disk
    /// (SYNC_FLUSH).
    pub(crate) fn visible(&self) -> u64 {
        match self.flush_disk_type {
            FlushDiskType::AsyncFlush => self.written(),
            FlushDiskType::SyncFlush => self.flushed(),
        }
    }

    pub(crate) fn flush_count(&self) -> u64 {
        self.flush_count.load(Ordering::Relaxed)
    }

    pub(crate) fn dirty_pages(&self) -> u64 {
        self.written() / PAGE_SIZE - self.flushed() / PAGE_SIZE
    }

    /// Appends records, all or none: a batch that does not fit the rest of the current segment
    /// starts a new one first, so no error can strike half-way through.
    pub(crate) fn append(
        &self,
        records: &mut [EncodedRecord],
    ) -> Result<Vec<AppendedRecord>, StoreError> {
        if records.is_empty() || records.len() > MAX_BATCH_MESSAGES {
            return Err(StoreError::InvalidBatch {
                len: records.len(),
                max: MAX_BATCH_MESSAGES,
            });
        }
        let batch_len: u64 = records.iter().map(|r| r.len() as u64).sum();
        let room = self.segment_size - END_OF_SEGMENT_MIN_BLANK as u64;
        if batch_len > room {
            return Err(StoreError::BatchTooLarge {
                size: batch_len,
                max: room,
            });
        }

        let mut state = self.append.lock().expect("append lock poisoned");
        if state.closed {
            return Err(StoreError::ShuttingDown);
        }
        let pending = state.buffer.len();
        if pending + batch_len as usize > MAX_PENDING_BYTES {
            return Err(StoreError::FlushBacklog {
                pending,
                max: MAX_PENDING_BYTES,
            });
        }
        let segment = self.segment_with_room(&mut state, batch_len)?;
        let mut out = Vec::with_capacity(records.len());
        let mut timestamp = state.last_store_timestamp;
        for rec in records.iter_mut() {
            timestamp = timestamp.max(now_millis());
            let queue_offset = if rec.takes_queue_offset() {
                let queues = match state.queue_offsets.get_mut(&rec.topic) {
                    Some(queues) => queues,
                    None => state.queue_offsets.entry(rec.topic.clone()).or_default(),
                };
                let next = queues.entry(rec.queue_id).or_insert(0);
                let assigned = *next;
                *next += 1;
                assigned
            } else {
                0
            };
            let offset = state.next_offset;
            rec.patch(queue_offset, offset, timestamp);
            let pos = offset - segment.base();
            self.put_bytes(&mut state, &segment, pos, &rec.bytes, false);
            state.next_offset += rec.len() as u64;
            out.push(AppendedRecord {
                physical_offset: offset,
                size: rec.len() as u32,
                queue_offset,
                store_timestamp: timestamp,
            });
        }
        state.last_store_timestamp = timestamp;
        if self.flush_disk_type == FlushDiskType::AsyncFlush {
            self.prefaulter.advance(&segment, state.next_offset);
        }
        // `written` before its timestamp: see `flush` for why the order matters.
        self.written.store(state.next_offset, Ordering::Release);
        self.written_timestamp.store(timestamp, Ordering::Release);
        Ok(out)
    }

    /// The current segment if `len` bytes plus an end marker fit; otherwise ends it with a BLANK
    /// marker and moves to the next one.
    fn segment_with_room(
        &self,
        state: &mut MutexGuard<'_, AppendState>,
        len: u64,
    ) -> Result<Arc<MappedFile>, StoreError> {
        if let Some(current) = &state.current {
            let pos = state.next_offset - current.base();
            let remaining = current.size() - pos;
            if len + END_OF_SEGMENT_MIN_BLANK as u64 <= remaining {
                return Ok(current.clone());
            }
            // Invariant: a record is only placed when 8 bytes stay free, so a marker always fits.
            assert!(
                remaining >= END_OF_SEGMENT_MIN_BLANK as u64,
                "segment tail too small"
            );
            let marker = record::blank_marker(remaining as u32);
            let current = current.clone();
            self.put_bytes(state, &current, pos, &marker, true);
            state.next_offset = current.end();
        }
        let base = state.next_offset;
        let next = self.allocator.take(base)?;
        self.segments
            .write()
            .expect("segments lock poisoned")
            .push(next.clone());
        self.allocator.prepare(base + self.segment_size);
        state.current = Some(next.clone());
        Ok(next)
    }

    /// Places a record (or, with `seals`, the end-of-segment marker, which stands for the rest of
    /// the segment) at `pos` of `segment`. ASYNC_FLUSH copies it into the mapping at once: the
    /// producer is answered next and the bytes must survive the process. SYNC_FLUSH queues it for
    /// the group commit, which answers the producer only after the fsync.
    fn put_bytes(
        &self,
        state: &mut AppendState,
        segment: &Arc<MappedFile>,
        pos: u64,
        bytes: &[u8],
        seals: bool,
    ) {
        match self.flush_disk_type {
            FlushDiskType::AsyncFlush => {
                // SAFETY: we hold the append lock, the only writer, and `pos` is the first
                // unpublished byte. TOTALSIZE goes last: until it lands, the record reads as
                // unwritten space.
                unsafe {
                    segment.write(pos + 4, &bytes[4..]);
                    fence(Ordering::Release);
                    segment.write(pos, &bytes[..4]);
                }
                let end = if seals {
                    segment.size()
                } else {
                    pos + bytes.len() as u64
                };
                segment.publish(end);
            }
            FlushDiskType::SyncFlush => state.buffer.push(segment, pos, bytes, seals),
        }
    }

    /// Bytes `[offset, offset + len)` if they are visible, without copying.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Option<Bytes> {
        if offset.checked_add(len as u64)? > self.visible() {
            return None;
        }
        let segment = self.segment_for(offset)?;
        let pos = offset - segment.base();
        segment.read(pos, len)?;
        Some(Bytes::from_owner(SegmentSlice {
            segment,
            pos: pos as usize,
            len,
        }))
    }

    /// Decodes the record at `offset` if it is visible.
    pub(crate) fn read_record(&self, offset: u64) -> Option<record::StoredMessage> {
        if offset >= self.visible() {
            return None;
        }
        let segment = self.segment_for(offset)?;
        let pos = offset - segment.base();
        match record::decode(segment.read_from(pos), false) {
            Ok(Entry::Record(view)) if view.physical_offset == offset => {
                Some(view.to_stored_message())
            }
            _ => None,
        }
    }

    /// Reads STORETIMESTAMP of the record at `offset` (binary search by time needs only that).
    pub(crate) fn store_timestamp_at(&self, offset: u64) -> Option<i64> {
        let head = self.read(offset, record::pos::SYS_FLAG + 4)?;
        let sys = i32::from_be_bytes(head[record::pos::SYS_FLAG..][..4].try_into().ok()?);
        let at = record::store_timestamp_pos(sys);
        let bytes = self.read(offset + at as u64, 8)?;
        Some(i64::from_be_bytes(bytes[..8].try_into().ok()?))
    }

    /// Flushes everything written so far; returns the new flushed offset.
    pub(crate) fn flush(&self) -> std::io::Result<u64> {
        match self.flush_disk_type {
            FlushDiskType::AsyncFlush => self.flush_mapped(),
            FlushDiskType::SyncFlush => self.commit_and_sync(),
        }
    }

    /// ASYNC_FLUSH: `msync` what was copied into the mappings.
    ///
    /// The timestamp is loaded before the offset: the appender stores them in the opposite order,
    /// so the timestamp we see belongs to a record at or below the offset we then see, and the
    /// checkpoint never claims more than is on disk.
    fn flush_mapped(&self) -> std::io::Result<u64> {
        let timestamp = self.written_timestamp.load(Ordering::Acquire);
        let target = self.written();
        let flushed = self.flushed();
        if target > flushed {
            for segment in self.segments_between(flushed, target) {
                segment.flush()?;
            }
            self.flushed.fetch_max(target, Ordering::AcqRel);
            self.flush_count.fetch_add(1, Ordering::Relaxed);
        }
        self.flushed_timestamp
            .fetch_max(timestamp, Ordering::AcqRel);
        Ok(self.flushed())
    }

    /// SYNC_FLUSH: appended bytes wait for a committer.
    pub(crate) fn has_uncommitted(&self) -> bool {
        self.written() > self.taken.load(Ordering::Acquire)
    }

    /// SYNC_FLUSH, the group commit: write every pending chunk into its segment, then
    /// `fdatasync` every segment that may hold unsynced bytes, then publish the flushed offset.
    ///
    /// Several threads may run this at once. Taking and writing chunks happens under the commit
    /// lock, so writes land in log order; the syncs run outside it, so one thread can write the
    /// next group while another waits for the disk. A sync that starts after a write completed
    /// covers it, and every thread syncs all segments with possibly unsynced bytes, so when a
    /// thread's syncs return, everything up to the end it took is on disk.
    fn commit_and_sync(&self) -> std::io::Result<u64> {
        let (end, timestamp, to_sync) = {
            let mut commit = self.commit.lock().expect("commit lock poisoned");
            let (chunks, end, timestamp) = {
                let mut state = self.append.lock().expect("append lock poisoned");
                (
                    state.buffer.take(),
                    state.next_offset,
                    state.last_store_timestamp,
                )
            };
            self.taken.fetch_max(end, Ordering::AcqRel);
            if chunks.is_empty() && commit.unsynced.is_empty() {
                return Ok(self.flushed());
            }
            for chunk in &chunks {
                chunk.commit()?;
                if !commit
                    .unsynced
                    .iter()
                    .any(|s| Arc::ptr_eq(s, chunk.segment()))
                {
                    commit.unsynced.push(chunk.segment().clone());
                }
            }
            // A segment that is full now gets no more writes: once this sync returns, it never
            // needs another.
            let to_sync: Vec<(Arc<MappedFile>, bool)> = commit
                .unsynced
                .iter()
                .map(|s| (s.clone(), s.wrote() == s.size()))
                .collect();
            (end, timestamp, to_sync)
        };
        for (segment, _) in &to_sync {
            segment.sync_file()?;
        }
        {
            let mut commit = self.commit.lock().expect("commit lock poisoned");
            commit.unsynced.retain(|s| {
                !to_sync
                    .iter()
                    .any(|(synced, sealed)| *sealed && Arc::ptr_eq(s, synced))
            });
        }
        self.flushed.fetch_max(end, Ordering::AcqRel);
        self.flushed_timestamp
            .fetch_max(timestamp, Ordering::AcqRel);
        self.flush_count.fetch_add(1, Ordering::Relaxed);
        Ok(self.flushed())
    }

    fn segments_between(&self, from: u64, to: u64) -> Vec<Arc<MappedFile>> {
        let segments = self.segments.read().expect("segments lock poisoned");
        segments
            .iter()
            .filter(|s| s.end() > from && s.base() < to)
            .cloned()
            .collect()
    }

    /// Recovery's verdict: the log ends at `end`. Zeroes whatever lies beyond in its segment,
    /// deletes later segments and sets every position. Runs before the log is shared.
    pub(crate) fn set_end(&self, end: u64, last_timestamp: i64) -> Result<(), StoreError> {
        let mut segments = self.segments.write().expect("segments lock poisoned");
        while let Some(last) = segments.last().filter(|s| s.base() > end).cloned() {
            info!(path = %last.path().display(), "deleting CommitLog segment past the end of the log");
            last.destroy()
                .context(|| format!("deleting {}", last.path().display()))?;
            segments.pop();
        }
        for segment in segments.iter() {
            if segment.end() <= end {
                segment.reset_positions(segment.size(), segment.size());
            } else {
                let pos = end - segment.base();
                segment
                    .zero_tail(pos)
                    .context(|| format!("truncating {}", segment.path().display()))?;
                segment.reset_positions(pos, pos);
            }
        }
        let current = segments.last().filter(|s| s.end() > end).cloned();
        let mut state = self.append.lock().expect("append lock poisoned");
        state.next_offset = end;
        state.current = current;
        state.last_store_timestamp = last_timestamp;
        self.written.store(end, Ordering::Release);
        self.written_timestamp
            .store(last_timestamp, Ordering::Release);
        self.flushed.store(end, Ordering::Release);
        self.flushed_timestamp
            .store(last_timestamp, Ordering::Release);
        self.taken.store(end, Ordering::Release);
        Ok(())
    }

    /// Installs the queue offsets recovery rebuilt.
    pub(crate) fn set_queue_offsets(&self, offsets: QueueOffsets) {
        self.append
            .lock()
            .expect("append lock poisoned")
            .queue_offsets = offsets;
    }

    /// Deletes the oldest segments chosen by `expired` (given each segment and the first store
    /// timestamp of the segment after it), never the last one nor any not yet below `safe_end`
    /// (dispatched and flushed). Returns how many were deleted.
    pub(crate) fn delete_oldest(
        &self,
        max_files: usize,
        safe_end: u64,
        mut expired: impl FnMut(&MappedFile, Option<i64>) -> bool,
    ) -> Result<usize, StoreError> {
        let candidates = self.segments();
        let mut doomed = 0;
        for window in candidates.windows(2) {
            if doomed == max_files {
                break;
            }
            let (segment, next) = (&window[0], &window[1]);
            if segment.end() > safe_end {
                break;
            }
            let next_first_timestamp = self.store_timestamp_at(next.base());
            if !expired(segment, next_first_timestamp) {
                break;
            }
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(0);
        }
        let removed: Vec<Arc<MappedFile>> = {
            let mut segments = self.segments.write().expect("segments lock poisoned");
            segments.drain(..doomed).collect()
        };
        for segment in removed {
            info!(path = %segment.path().display(), "retention: deleting CommitLog segment");
            segment
                .destroy()
                .context(|| format!("deleting {}", segment.path().display()))?;
        }
        Ok(doomed)
    }

    /// The prefault thread's body (see [`Prefaulter`]).
    pub(crate) fn run_prefaulter(&self, stop: &std::sync::atomic::AtomicBool) {
        self.prefaulter.run(stop)
    }

    /// Refuses every later append; waits for one in progress to finish.
    pub(crate) fn close(&self) {
        self.append.lock().expect("append lock poisoned").closed = true;
    }

    /// Starts building the segment after the current one (after recovery).
    pub(crate) fn prepare_next_segment(&self) {
        let state = self.append.lock().expect("append lock poisoned");
        let next = match &state.current {
            Some(current) => current.end(),
            None => state.next_offset,
        };
        self.allocator.prepare(next);
    }

    /// Waits for a background segment allocation so no thread outlives the store.
    pub(crate) fn finish_allocation(&self) {
        self.allocator.finish();
    }
}

/// True if the file's first record slot is empty (TOTALSIZE zero or not even there): a segment
/// that was pre-allocated but never written.
fn starts_with_zero_size(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 4];
    match std::fs::File::open(path).and_then(|f| f.read_at(&mut head, 0)) {
        Ok(n) => head[..n].iter().all(|&b| b == 0),
        Err(_) => false,
    }
}

/// Keeps a segment mapped while a reader holds bytes of it (see [`Bytes::from_owner`]).
struct SegmentSlice {
    segment: Arc<MappedFile>,
    pos: usize,
    len: usize,
}

impl AsRef<[u8]> for SegmentSlice {
    fn as_ref(&self) -> &[u8] {
        self.segment
            .read(self.pos as u64, self.len)
            .expect("slice was checked when it was made")
    }
}
