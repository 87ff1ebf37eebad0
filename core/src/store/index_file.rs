//! IndexFile: a hash index from message keys to CommitLog offsets (reference §4).
//!
//! Layout: a 40-byte header, `slot_count` hash slots of 4 bytes, then `max_entries` entries of 20
//! bytes. A slot holds the number of the newest entry whose key hashes there; each entry points to
//! the previous one of its chain, so a lookup walks newest to oldest. Entry 0 is never used: 0 in a
//! slot or a `prev` field means "none".
//!
//! Unlike the CommitLog, slots and the header are rewritten in place, so an IndexFile is not shared
//! lock-free: the owner ([`super::index_service::IndexService`]) wraps the files in a lock and the
//! borrow checker does the rest (`put` takes `&mut self`, `select` takes `&self`).

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use super::config::Preallocate;
use super::mapped_file::create_preallocated;
use crate::java_hash::{abs_hash, string_hash_parts};

const HEADER_SIZE: usize = 40;
const SLOT_SIZE: usize = 4;
const ENTRY_SIZE: usize = 20;
/// 0 marks an empty slot or the end of a chain.
const NO_ENTRY: u32 = 0;

/// The 40-byte header, cached in memory and written through on every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IndexHeader {
    pub begin_timestamp: i64,
    pub end_timestamp: i64,
    pub begin_phy_offset: u64,
    pub end_phy_offset: u64,
    pub hash_slot_count: u32,
    /// Number of the next entry; starts at 1.
    pub index_count: u32,
}

impl IndexHeader {
    fn read(b: &[u8]) -> IndexHeader {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        IndexHeader {
            begin_timestamp: i64_at(0),
            end_timestamp: i64_at(8),
            begin_phy_offset: i64_at(16) as u64,
            end_phy_offset: i64_at(24) as u64,
            hash_slot_count: u32_at(32),
            index_count: u32_at(36).max(1),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        b[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        b[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        b[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        b[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        b[36..40].copy_from_slice(&self.index_count.to_be_bytes());
    }

    /// True once any entry was put.
    pub(crate) fn has_entries(&self) -> bool {
        self.index_count > 1
    }
}

pub(crate) struct IndexFile {
    path: PathBuf,
    map: MmapMut,
    slot_count: u32,
    max_entries: u32,
    header: IndexHeader,
}

/// Bytes an IndexFile of these dimensions occupies.
pub(crate) fn file_size(slot_count: u32, max_entries: u32) -> u64 {
    HEADER_SIZE as u64
        + u64::from(slot_count) * SLOT_SIZE as u64
        + u64::from(max_entries) * ENTRY_SIZE as u64
}

/// `abs(javaHashCode(topic + "#" + key))`, with `i32::MIN` mapped to 0, without building the
/// string (this runs for every key of every message).
pub(crate) fn key_hash(topic: &str, key: &str) -> u32 {
    abs_hash(string_hash_parts(&[topic, "#", key]))
}

impl IndexFile {
    pub(crate) fn create(
        path: &Path,
        slot_count: u32,
        max_entries: u32,
        preallocate: Preallocate,
    ) -> io::Result<IndexFile> {
        let file = create_preallocated(path, file_size(slot_count, max_entries), preallocate)?;
        let mut index = Self::map(path, file, slot_count, max_entries)?;
        index.header = IndexHeader {
            index_count: 1,
            ..IndexHeader::default()
        };
        index.header.write(&mut index.map[..HEADER_SIZE]);
        Ok(index)
    }

    pub(crate) fn open(path: &Path, slot_count: u32, max_entries: u32) -> io::Result<IndexFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let actual = file.metadata()?.len();
        let expected = file_size(slot_count, max_entries);
        if actual != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {actual} bytes; an IndexFile of this configuration is {expected}",
                    path.display()
                ),
            ));
        }
        let mut index = Self::map(path, file, slot_count, max_entries)?;
        index.header = IndexHeader::read(&index.map[..HEADER_SIZE]);
        if index.header.index_count > max_entries {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} claims {} entries, more than it can hold",
                    path.display(),
                    index.header.index_count
                ),
            ));
        }
        Ok(index)
    }

    fn map(path: &Path, file: File, slot_count: u32, max_entries: u32) -> io::Result<IndexFile> {
        // SAFETY: the store's lock file guarantees no other process maps this file; within the
        // process only the IndexService touches it, behind its RwLock.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(IndexFile {
            path: path.to_owned(),
            map,
            slot_count,
            max_entries,
            header: IndexHeader::default(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn header(&self) -> &IndexHeader {
        &self.header
    }

    pub(crate) fn is_full(&self) -> bool {
        self.header.index_count >= self.max_entries
    }

    fn slot_pos(&self, hash: u32) -> usize {
        HEADER_SIZE + (hash % self.slot_count) as usize * SLOT_SIZE
    }

    fn entry_pos(&self, number: u32) -> usize {
        HEADER_SIZE + self.slot_count as usize * SLOT_SIZE + number as usize * ENTRY_SIZE
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.map[at..at + 4].try_into().expect("4 bytes"))
    }

    /// Adds `topic#key → physical_offset`. Returns false (and changes nothing) when full.
    pub(crate) fn put(
        &mut self,
        topic: &str,
        key: &str,
        physical_offset: u64,
        store_timestamp: i64,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let hash = key_hash(topic, key);
        let slot_pos = self.slot_pos(hash);
        let mut prev = self.u32_at(slot_pos);
        if prev >= self.header.index_count {
            prev = NO_ENTRY; // damaged or stale: start a fresh chain
        }
        if self.header.begin_timestamp <= 0 {
            // The first message dispatched into this file starts its clock (keyed or not, see
            // `note`): every entry's time is whole seconds after it.
            self.header.begin_timestamp = store_timestamp;
            self.header.begin_phy_offset = physical_offset;
        }
        let time_diff = ((store_timestamp - self.header.begin_timestamp) / 1000)
            .clamp(0, i64::from(i32::MAX)) as i32;
        let number = self.header.index_count;
        let at = self.entry_pos(number);
        let entry = &mut self.map[at..at + ENTRY_SIZE];
        entry[0..4].copy_from_slice(&hash.to_be_bytes());
        entry[4..12].copy_from_slice(&physical_offset.to_be_bytes());
        entry[12..16].copy_from_slice(&time_diff.to_be_bytes());
        entry[16..20].copy_from_slice(&prev.to_be_bytes());
        self.map[slot_pos..slot_pos + 4].copy_from_slice(&number.to_be_bytes());

        if prev == NO_ENTRY {
            self.header.hash_slot_count += 1;
        }
        self.header.index_count += 1;
        self.note(physical_offset, store_timestamp);
        true
    }

    /// Records that dispatch reached `physical_offset`, even for a message without keys, so a
    /// restart knows how far this file already covers the log.
    pub(crate) fn note(&mut self, physical_offset: u64, store_timestamp: i64) {
        if self.header.begin_timestamp <= 0 {
            self.header.begin_timestamp = store_timestamp;
            self.header.begin_phy_offset = physical_offset;
        }
        self.header.end_phy_offset = self.header.end_phy_offset.max(physical_offset);
        self.header.end_timestamp = self.header.end_timestamp.max(store_timestamp);
        self.header.write(&mut self.map[..HEADER_SIZE]);
    }

    /// Calls `visit` with the CommitLog offset of each entry whose hash matches `topic#key` and
    /// which was stored within `[begin, end]` (ms, at the index's one-second precision), newest
    /// first, until it answers `Break`. Hash collisions are included: callers re-check the key.
    pub(crate) fn select(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(u64) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let count = self.header.index_count;
        if count <= 1 {
            return ControlFlow::Continue(());
        }
        let hash = key_hash(topic, key);
        let mut number = self.u32_at(self.slot_pos(hash));
        // Chains only point backwards (`prev < number`), so this terminates even on damage.
        while number != NO_ENTRY && number < count {
            let at = self.entry_pos(number);
            let e = &self.map[at..at + ENTRY_SIZE];
            let entry_hash = u32::from_be_bytes(e[0..4].try_into().expect("4 bytes"));
            let offset = u64::from_be_bytes(e[4..12].try_into().expect("8 bytes"));
            let time_diff = i32::from_be_bytes(e[12..16].try_into().expect("4 bytes"));
            let prev = u32::from_be_bytes(e[16..20].try_into().expect("4 bytes"));
            if time_diff < 0 {
                break;
            }
            let time = self.header.begin_timestamp + i64::from(time_diff) * 1000;
            if entry_hash == hash && (begin..=end).contains(&time) {
                visit(offset)?;
            }
            if time < begin || prev >= number {
                break;
            }
            number = prev;
        }
        ControlFlow::Continue(())
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        self.map.flush()
    }

    pub(crate) fn destroy(self) -> io::Result<()> {
        let path = self.path.clone();
        drop(self);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_file(dir: &Path, slots: u32, entries: u32) -> IndexFile {
        IndexFile::create(
            &dir.join("20240101000000000"),
            slots,
            entries,
            Preallocate::Sparse,
        )
        .unwrap()
    }

    #[test]
    fn layout_matches_the_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = new_file(dir.path(), 8, 16);
        assert_eq!(file_size(8, 16), 40 + 8 * 4 + 16 * 20);
        let ts = 1_700_000_000_000;
        assert!(file.put("T", "k", 4096, ts + 2500));
        file.flush().unwrap();
        let bytes = std::fs::read(file.path()).unwrap();
        let hash = key_hash("T", "k");
        // Header: begin/end timestamps and offsets, one slot used, next entry number 2.
        assert_eq!(&bytes[0..8], &(ts + 2500).to_be_bytes());
        assert_eq!(&bytes[16..24], &4096u64.to_be_bytes());
        assert_eq!(&bytes[32..36], &1u32.to_be_bytes());
        assert_eq!(&bytes[36..40], &2u32.to_be_bytes());
        // The slot of the key holds entry number 1.
        let slot = 40 + (hash % 8) as usize * 4;
        assert_eq!(&bytes[slot..slot + 4], &1u32.to_be_bytes());
        // Entry 1: hash, offset, time diff 0 (first entry), prev 0.
        let e = 40 + 8 * 4 + 20;
        assert_eq!(&bytes[e..e + 4], &hash.to_be_bytes());
        assert_eq!(&bytes[e + 4..e + 12], &4096u64.to_be_bytes());
        assert_eq!(&bytes[e + 12..e + 16], &0i32.to_be_bytes());
        assert_eq!(&bytes[e + 16..e + 20], &0u32.to_be_bytes());
    }

    fn select_all(file: &IndexFile, key: &str, begin: i64, end: i64, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        let _ = file.select("T", key, begin, end, &mut |offset| {
            out.push(offset);
            if out.len() >= max {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        out
    }

    #[test]
    fn chains_collisions_and_time_filter() {
        let dir = tempfile::tempdir().unwrap();
        // One slot: every key collides, so selection must filter by hash and time.
        let mut file = new_file(dir.path(), 1, 64);
        let t0 = 1_700_000_000_000;
        for i in 0..10u64 {
            let key = if i % 2 == 0 { "even" } else { "odd" };
            assert!(file.put("T", key, i * 100, t0 + i as i64 * 1000));
        }
        assert_eq!(
            select_all(&file, "even", t0, t0 + 100_000, 100),
            vec![800, 600, 400, 200, 0]
        );
        assert_eq!(
            select_all(&file, "odd", t0 + 3000, t0 + 7000, 100),
            vec![700, 500, 300]
        );
        assert_eq!(
            select_all(&file, "even", t0, t0 + 100_000, 2),
            vec![800, 600],
            "visit can stop the walk"
        );
        let mut other = Vec::new();
        let _ = file.select("Other", "even", t0, t0 + 100_000, &mut |o| {
            other.push(o);
            ControlFlow::Continue(())
        });
        assert!(other.is_empty(), "the topic is part of the key");
    }

    #[test]
    fn times_count_from_the_first_dispatched_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = new_file(dir.path(), 8, 16);
        let t0 = 1_700_000_000_000;
        file.note(10, t0); // a message without keys starts the file's clock
        assert!(file.put("T", "k", 20, t0 + 5_500));
        assert_eq!(file.header().begin_timestamp, t0);
        // Stored 5.5 s after t0: found in [t0 + 5000, t0 + 5500], not before.
        assert_eq!(select_all(&file, "k", t0 + 5_000, t0 + 5_500, 10), vec![20]);
        assert!(select_all(&file, "k", t0 + 6_000, t0 + 9_000, 10).is_empty());
    }

    #[test]
    fn full_file_refuses_and_reopens_with_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = new_file(dir.path(), 4, 3);
        assert!(file.put("T", "a", 1, 1000));
        assert!(file.put("T", "b", 2, 2000));
        assert!(file.is_full(), "entries 1 and 2 used; entry 0 is reserved");
        assert!(!file.put("T", "c", 3, 3000));
        let header = *file.header();
        let path = file.path().to_owned();
        file.flush().unwrap();
        drop(file);
        let reopened = IndexFile::open(&path, 4, 3).unwrap();
        assert_eq!(*reopened.header(), header);
        assert!(
            IndexFile::open(&path, 4, 4).is_err(),
            "a different configuration is refused"
        );
    }
}
