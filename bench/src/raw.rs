//! Raw-hardware baselines: what plain system calls achieve on the same filesystem, measured in the
//! same run as the store so both see the same (shared, noisy) disk.
//!
//! The store's figures only mean something next to these: "300 MB/s" is excellent on one disk and
//! poor on another, while "0.8 of what `write` + `fsync` can do here" travels between machines.
//! Every baseline writes a fresh file in the benchmark directory, is timed from the first write to
//! the return of its last sync (file creation excluded, as store opening is), and deletes the file
//! afterwards.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Context, Result};
use crate::stats::{Figures, Latency};
use crate::workload::pseudo_random_bytes;

/// Chunk size of the buffered sequential baseline.
pub const BUFFERED_CHUNK: usize = 1 << 20;
/// Unit of the fdatasync baseline: one page, the smallest durable write.
pub const SYNC_UNIT: usize = 4096;

/// A scratch file that is deleted when dropped, so an error half-way leaves nothing behind.
struct ScratchFile {
    path: PathBuf,
    file: File,
}

impl ScratchFile {
    fn create(dir: &Path, name: &str) -> Result<ScratchFile> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        Ok(ScratchFile { path, file })
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The end of both sequential baselines: one `fsync`, then the figures with the fsync's share.
fn fsync_and_measure(
    scratch: &ScratchFile,
    start: Instant,
    record_len: usize,
    count: u64,
) -> Result<Figures> {
    let synced = Instant::now();
    scratch
        .file
        .sync_all()
        .context(|| format!("fsync of {}", scratch.path.display()))?;
    let end = Instant::now();
    Ok(Figures::new(
        count,
        count * record_len as u64,
        end - start,
        None,
        Some(end - synced),
    ))
}

/// `count` records of `record_len` bytes, each with its own `write(2)`, then one `fsync`: what a
/// store that writes each message with a system call instead of copying into a mapping would cost.
pub fn write_per_record(dir: &Path, record_len: usize, count: u64) -> Result<Figures> {
    let mut scratch = ScratchFile::create(dir, "raw-write-per-record")?;
    let record = pseudo_random_bytes(record_len);
    let path = scratch.path.clone();
    let start = Instant::now();
    for _ in 0..count {
        scratch
            .file
            .write_all(&record)
            .context(|| format!("writing {}", path.display()))?;
    }
    fsync_and_measure(&scratch, start, record_len, count)
}

/// The same byte stream as [`write_per_record`], gathered into [`BUFFERED_CHUNK`]-sized writes (as
/// a `BufWriter` would) and then one `fsync`: the filesystem's sequential-write ceiling.
pub fn write_buffered(dir: &Path, record_len: usize, count: u64) -> Result<Figures> {
    let mut scratch = ScratchFile::create(dir, "raw-write-buffered")?;
    let record = pseudo_random_bytes(record_len);
    let path = scratch.path.clone();
    let mut buffer: Vec<u8> = Vec::with_capacity(BUFFERED_CHUNK);
    let start = Instant::now();
    for _ in 0..count {
        let mut rest = record.as_slice();
        // Records are copied in, as a buffered writer does; a record may straddle two chunks, so
        // every write(2) except the last is exactly one chunk.
        while !rest.is_empty() {
            let take = rest.len().min(BUFFERED_CHUNK - buffer.len());
            buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if buffer.len() == BUFFERED_CHUNK {
                scratch
                    .file
                    .write_all(&buffer)
                    .context(|| format!("writing {}", path.display()))?;
                buffer.clear();
            }
        }
    }
    scratch
        .file
        .write_all(&buffer)
        .context(|| format!("writing {}", path.display()))?;
    fsync_and_measure(&scratch, start, record_len, count)
}

/// Appends [`SYNC_UNIT`] bytes and `fdatasync`s, again and again, until `max_bytes` are written or
/// `max_time` has passed: the cost of one durable small write, the floor under SYNC_FLUSH latency.
/// The latency recorded is that of the `fdatasync` call alone.
pub fn fdatasync_per_page(dir: &Path, max_bytes: u64, max_time: Duration) -> Result<Figures> {
    let scratch = ScratchFile::create(dir, "raw-fdatasync")?;
    let page = pseudo_random_bytes(SYNC_UNIT);
    let mut latency = Latency::new();
    let mut offset = 0u64;
    let mut pages = 0u64;
    let start = Instant::now();
    // At least one page, so even a zero time budget measures something.
    while pages == 0 || (offset < max_bytes && start.elapsed() < max_time) {
        scratch
            .file
            .write_all_at(&page, offset)
            .context(|| format!("writing {}", scratch.path.display()))?;
        let before = Instant::now();
        scratch
            .file
            .sync_data()
            .context(|| format!("fdatasync of {}", scratch.path.display()))?;
        latency.record(before.elapsed());
        offset += SYNC_UNIT as u64;
        pages += 1;
    }
    Ok(Figures::new(
        pages,
        offset,
        start.elapsed(),
        latency.percentiles(),
        None,
    ))
}

/// The ideal group commit: `batch` records written with one `write(2)`, then one `fdatasync`,
/// repeated until `max_bytes` or `max_time`. It is what SYNC_FLUSH with `batch` appenders could do
/// if every group commit caught every appender and cost nothing but the system calls, so it is the
/// practical ceiling of a store that flushes one group at a time. The latency recorded is that of
/// a whole commit (write + fdatasync).
pub fn group_commit(
    dir: &Path,
    record_len: usize,
    batch: usize,
    max_bytes: u64,
    max_time: Duration,
) -> Result<Figures> {
    let scratch = ScratchFile::create(dir, "raw-group-commit")?;
    let record = pseudo_random_bytes(record_len);
    let chunk: Vec<u8> = record.repeat(batch.max(1));
    let mut latency = Latency::new();
    let mut offset = 0u64;
    let mut records = 0u64;
    let start = Instant::now();
    while records == 0 || (offset < max_bytes && start.elapsed() < max_time) {
        let before = Instant::now();
        scratch
            .file
            .write_all_at(&chunk, offset)
            .context(|| format!("writing {}", scratch.path.display()))?;
        scratch
            .file
            .sync_data()
            .context(|| format!("fdatasync of {}", scratch.path.display()))?;
        latency.record(before.elapsed());
        offset += chunk.len() as u64;
        records += batch.max(1) as u64;
    }
    Ok(Figures::new(
        records,
        offset,
        start.elapsed(),
        latency.percentiles(),
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_write_the_requested_bytes_and_clean_up() {
        // Correctness only, so any filesystem will do (/tmp may be tmpfs).
        let dir = tempfile::tempdir().unwrap();
        let per_record = write_per_record(dir.path(), 300, 100).unwrap();
        assert_eq!(per_record.bytes, 30_000);
        assert_eq!(per_record.messages, 100);
        let buffered = write_buffered(dir.path(), 300_000, 5).unwrap();
        assert_eq!(buffered.bytes, 1_500_000);
        let sync = fdatasync_per_page(dir.path(), 3 * 4096, Duration::from_secs(5)).unwrap();
        assert_eq!(sync.bytes, 3 * 4096);
        assert!(sync.latency.is_some());
        let group = group_commit(dir.path(), 100, 64, 1, Duration::ZERO).unwrap();
        assert_eq!((group.messages, group.bytes), (64, 6400));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
