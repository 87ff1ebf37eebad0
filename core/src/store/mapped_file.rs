//! A fixed-size, memory-mapped file with one writer and many readers.
//!
//! CommitLog segments, ConsumeQueue files and IndexFiles are all of this kind. The contract that
//! makes sharing one mapping between threads sound:
//!
//! - bytes below `wrote` are complete and never change again (until the file is destroyed or, during
//!   recovery, before any reader exists, truncated);
//! - exactly one writer appends at or above `wrote`, then publishes the new `wrote` with `Release`;
//! - readers load `wrote` with `Acquire` and only read below it.
//!
//! A reader keeps an `Arc<MappedFile>`, so a file deleted by retention stays mapped (and readable)
//! until the last reader lets go: Linux keeps an unlinked file's pages alive while mapped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::MmapRaw;
use rustix::fs::FallocateFlags;

use super::config::Preallocate;

/// Page size used for "dirty pages" accounting (the flush least-pages knobs).
pub(crate) const PAGE_SIZE: u64 = 4096;

pub(crate) struct MappedFile {
    path: PathBuf,
    /// Offset of the first byte of this file in its log (the number in the file name).
    base: u64,
    size: u64,
    file: File,
    map: MmapRaw,
    /// Bytes `[0, wrote)` are written and immutable.
    wrote: AtomicU64,
    /// Bytes `[0, flushed)` are on disk.
    flushed: AtomicU64,
    /// Set once the file is deleted; a deleted file is never flushed again.
    destroyed: AtomicBool,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("wrote", &self.wrote())
            .field("flushed", &self.flushed())
            .finish()
    }
}

/// File names are the first offset, 20 digits, zero-padded.
pub(crate) fn offset_file_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Parses a 20-digit offset file name; anything else is not one of ours.
pub(crate) fn parse_offset_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

impl MappedFile {
    /// Creates a new file of `size` bytes (see [`create_preallocated`]) and maps it.
    pub(crate) fn create(
        path: &Path,
        base: u64,
        size: u64,
        preallocate: Preallocate,
    ) -> io::Result<MappedFile> {
        let file = create_preallocated(path, size, preallocate)?;
        Self::map(path.to_owned(), base, size, file)
    }

    /// Opens an existing file, which must be exactly `size` bytes.
    pub(crate) fn open(path: &Path, base: u64, size: u64) -> io::Result<MappedFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let actual = file.metadata()?.len();
        if actual != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is {actual} bytes, expected {size}", path.display()),
            ));
        }
        Self::map(path.to_owned(), base, size, file)
    }

    fn map(path: PathBuf, base: u64, size: u64, file: File) -> io::Result<MappedFile> {
        let map = MmapRaw::map_raw(&file)?;
        assert_eq!(
            map.len() as u64,
            size,
            "mapping length differs from the file length"
        );
        Ok(MappedFile {
            path,
            base,
            size,
            file,
            map,
            wrote: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            destroyed: AtomicBool::new(false),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Log offset one past this file's last byte.
    pub(crate) fn end(&self) -> u64 {
        self.base + self.size
    }

    pub(crate) fn wrote(&self) -> u64 {
        self.wrote.load(Ordering::Acquire)
    }

    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    /// The written bytes `[pos, pos + len)`, or `None` if any of them is not written yet.
    pub(crate) fn read(&self, pos: u64, len: usize) -> Option<&[u8]> {
        let end = pos.checked_add(len as u64)?;
        if end > self.wrote() {
            return None;
        }
        // SAFETY: `[pos, end)` is inside the mapping (end <= wrote <= size) and below `wrote`,
        // so no writer touches it any more; the mapping lives as long as `self`.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos as usize), len) })
    }

    /// All written bytes from `pos` on.
    pub(crate) fn read_from(&self, pos: u64) -> &[u8] {
        let wrote = self.wrote();
        let pos = pos.min(wrote);
        self.read(pos, (wrote - pos) as usize)
            .expect("range below wrote")
    }

    /// Copies `data` to `pos` without publishing it.
    ///
    /// # Safety
    /// The caller must be this file's only writer, and `pos` must be at or above `wrote` (readers
    /// never look there). `pos + data.len()` must not exceed the file size (checked).
    pub(crate) unsafe fn write(&self, pos: u64, data: &[u8]) {
        let end = pos + data.len() as u64;
        assert!(
            end <= self.size,
            "write past the end of {}",
            self.path.display()
        );
        debug_assert!(pos >= self.wrote(), "write below the published position");
        // SAFETY: in bounds (asserted) and, per the contract, no one else reads or writes there.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(pos as usize),
                data.len(),
            );
        }
    }

    /// Writes `data` at `pos` through the file (`pwrite`) instead of the mapping; the page cache
    /// keeps both views the same. Does not publish. Same single-writer contract as `write`.
    pub(crate) fn write_through(&self, pos: u64, data: &[u8]) -> io::Result<()> {
        assert!(
            pos + data.len() as u64 <= self.size,
            "write past the end of {}",
            self.path.display()
        );
        self.file.write_all_at(data, pos)
    }

    /// `fdatasync` of the whole file: everything published so far is on disk afterwards.
    pub(crate) fn sync_file(&self) -> io::Result<()> {
        let wrote = self.wrote();
        if !self.destroyed.load(Ordering::Acquire) {
            self.file.sync_data()?;
        }
        self.flushed.fetch_max(wrote, Ordering::AcqRel);
        Ok(())
    }

    /// Makes `[0, wrote)` visible to readers.
    pub(crate) fn publish(&self, wrote: u64) {
        debug_assert!(wrote <= self.size);
        debug_assert!(
            wrote >= self.wrote.load(Ordering::Relaxed),
            "published position moved back"
        );
        self.wrote.store(wrote, Ordering::Release);
    }

    /// Sets both positions; only recovery does this, before the file is shared.
    pub(crate) fn reset_positions(&self, wrote: u64, flushed: u64) {
        self.wrote.store(wrote, Ordering::Release);
        self.flushed.store(flushed, Ordering::Release);
    }

    /// Pages written but not yet flushed.
    pub(crate) fn dirty_pages(&self) -> u64 {
        self.wrote() / PAGE_SIZE - self.flushed() / PAGE_SIZE
    }

    /// Flushes everything published so far (`msync`, which on Linux writes and waits for the
    /// range like `fdatasync`) and returns the new flushed position.
    pub(crate) fn flush(&self) -> io::Result<u64> {
        let wrote = self.wrote();
        let flushed = self.flushed();
        if wrote > flushed && !self.destroyed.load(Ordering::Acquire) {
            self.map
                .flush_range(flushed as usize, (wrote - flushed) as usize)?;
            // Two flushers may race (the flush thread and shutdown): never move backwards.
            self.flushed.fetch_max(wrote, Ordering::AcqRel);
        }
        Ok(wrote)
    }

    /// Faults `[pos, pos + len)` in writable ahead of the writer (`MADV_POPULATE_WRITE`), so the
    /// appender's copy finds mapped pages instead of taking a page fault (and the kernel's zero
    /// fill of the new page) under the append lock. Content is not changed.
    pub(crate) fn populate(&self, pos: u64, len: u64) -> io::Result<()> {
        let end = (pos + len).min(self.size);
        if pos >= end {
            return Ok(());
        }
        self.map.advise_range(
            memmap2::Advice::PopulateWrite,
            pos as usize,
            (end - pos) as usize,
        )
    }

    /// Zeroes `[pos, size)` on disk and in the mapping, so bytes past a truncation point can never
    /// be mistaken for records later. Only for recovery, before the file is shared.
    pub(crate) fn zero_tail(&self, pos: u64) -> io::Result<()> {
        if pos >= self.size {
            return Ok(());
        }
        let len = self.size - pos;
        let keep = FallocateFlags::KEEP_SIZE;
        let zeroed = rustix::fs::fallocate(&self.file, FallocateFlags::ZERO_RANGE | keep, pos, len)
            .or_else(|_| {
                rustix::fs::fallocate(&self.file, FallocateFlags::PUNCH_HOLE | keep, pos, len)
            });
        if zeroed.is_err() {
            self.write_zeros_where_needed(pos)?;
        }
        self.file.sync_data()
    }

    /// The slow path of `zero_tail`: rewrite only the chunks that are not already zero.
    fn write_zeros_where_needed(&self, pos: u64) -> io::Result<()> {
        const CHUNK: u64 = 64 * 1024;
        let zeros = vec![0u8; CHUNK as usize];
        let mut at = pos;
        while at < self.size {
            let n = (self.size - at).min(CHUNK);
            // SAFETY: recovery-only, no concurrent writer; in bounds by construction.
            let current = unsafe {
                std::slice::from_raw_parts(self.map.as_ptr().add(at as usize), n as usize)
            };
            if current.iter().any(|&b| b != 0) {
                self.file.write_all_at(&zeros[..n as usize], at)?;
            }
            at += n;
        }
        Ok(())
    }

    /// Deletes the file. The mapping stays valid for readers still holding it.
    pub(crate) fn destroy(&self) -> io::Result<()> {
        self.destroyed.store(true, Ordering::Release);
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Creates a file of `size` bytes with its blocks reserved as `preallocate` says. It is built under
/// a temporary name and renamed into place, so a crash never leaves a half-created file under a
/// real name; file, rename and directory are fsynced before it is handed out.
pub(crate) fn create_preallocated(
    path: &Path,
    size: u64,
    preallocate: Preallocate,
) -> io::Result<File> {
    let tmp = path.with_extension("tmp");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let sized = match preallocate {
        Preallocate::Fallocate => {
            match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, size) {
                Err(rustix::io::Errno::OPNOTSUPP) => file.set_len(size),
                other => other.map_err(io::Error::from),
            }
        }
        Preallocate::Zero => write_zeros(&file, size),
        Preallocate::Sparse => file.set_len(size),
    };
    if let Err(e) = sized.and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(file)
}

fn write_zeros(file: &File, size: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut writer = file;
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        writer.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// fsyncs a directory so that file creations and renames in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A directory of offset-named files.
pub(crate) struct OffsetFiles {
    /// `(first offset, path)`, by offset.
    pub files: Vec<(u64, PathBuf)>,
    /// Entries whose names are not offsets; the caller decides whether that is an error.
    pub strangers: Vec<PathBuf>,
}

/// Lists `dir`'s offset-named files in order, removing leftover `.tmp` files from an interrupted
/// creation.
pub(crate) fn list_offset_files(dir: &Path) -> io::Result<OffsetFiles> {
    let mut files = Vec::new();
    let mut strangers = Vec::new();
    if !dir.exists() {
        return Ok(OffsetFiles { files, strangers });
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            fs::remove_file(&path)?;
            continue;
        }
        match parse_offset_file_name(&name) {
            Some(offset) if entry.file_type()?.is_file() => files.push((offset, path)),
            _ => strangers.push(path),
        }
    }
    files.sort_by_key(|(offset, _)| *offset);
    Ok(OffsetFiles { files, strangers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digits() {
        assert_eq!(offset_file_name(0), "00000000000000000000");
        assert_eq!(offset_file_name(1 << 30), "00000000001073741824");
        assert_eq!(
            parse_offset_file_name("00000000001073741824"),
            Some(1 << 30)
        );
        assert_eq!(parse_offset_file_name("0000000000107374182"), None);
        assert_eq!(parse_offset_file_name("0000000000107374182x"), None);
    }

    #[test]
    fn write_publish_read_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(offset_file_name(4096));
        let file = MappedFile::create(&path, 4096, 8192, Preallocate::Fallocate).unwrap();
        assert_eq!(file.end(), 4096 + 8192);
        assert!(
            file.read(0, 1).is_none(),
            "nothing is readable before publish"
        );
        unsafe { file.write(0, b"hello") };
        assert!(file.read(0, 5).is_none());
        file.publish(5);
        assert_eq!(file.read(0, 5), Some(&b"hello"[..]));
        assert_eq!(file.read_from(2), b"llo");
        assert_eq!(file.flush().unwrap(), 5);
        assert_eq!(file.flushed(), 5);
        drop(file);
        let reopened = MappedFile::open(&path, 4096, 8192).unwrap();
        reopened.reset_positions(5, 5);
        assert_eq!(reopened.read(0, 5), Some(&b"hello"[..]));
        assert!(
            MappedFile::open(&path, 4096, 4096).is_err(),
            "a wrong size is refused"
        );
    }

    #[test]
    fn zero_tail_clears_bytes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(offset_file_name(0));
        let file = MappedFile::create(&path, 0, 3 * PAGE_SIZE, Preallocate::Sparse).unwrap();
        let data = vec![0xAB; (2 * PAGE_SIZE) as usize];
        unsafe { file.write(0, &data) };
        file.publish(data.len() as u64);
        file.flush().unwrap();
        file.reset_positions(100, 100);
        file.zero_tail(100).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert!(bytes[..100].iter().all(|&b| b == 0xAB));
        assert!(bytes[100..].iter().all(|&b| b == 0));
    }

    #[test]
    fn listing_skips_tmp_and_reports_strangers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(offset_file_name(10)), b"").unwrap();
        fs::write(dir.path().join(offset_file_name(0)), b"").unwrap();
        fs::write(dir.path().join("00000000000000000020.tmp"), b"").unwrap();
        fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let OffsetFiles { files, strangers } = list_offset_files(dir.path()).unwrap();
        assert_eq!(
            files.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            vec![0, 10]
        );
        assert_eq!(strangers.len(), 1);
        assert!(!dir.path().join("00000000000000000020.tmp").exists());
    }
}
