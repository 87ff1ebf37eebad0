//! Pre-allocation of the next CommitLog segment.
//!
//! Creating a segment means creating a file, reserving its blocks, fsyncing it and its directory
//! and mapping it: milliseconds that must not be spent while holding the append lock. As soon as a
//! segment becomes the current one, the next is built on a background thread; the roll then only
//! picks it up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tracing::{debug, warn};

use super::config::Preallocate;
use super::error::StoreError;
use super::mapped_file::{MappedFile, offset_file_name};

pub(crate) struct SegmentAllocator {
    dir: PathBuf,
    size: u64,
    preallocate: Preallocate,
    /// At most one segment is being prepared: the one after the current.
    pending: Mutex<Option<(u64, JoinHandle<std::io::Result<MappedFile>>)>>,
}

impl SegmentAllocator {
    pub(crate) fn new(dir: PathBuf, size: u64, preallocate: Preallocate) -> Self {
        SegmentAllocator {
            dir,
            size,
            preallocate,
            pending: Mutex::new(None),
        }
    }

    /// Starts building the segment that begins at `base`, unless it is already under way.
    pub(crate) fn prepare(&self, base: u64) {
        let mut pending = self.pending.lock().expect("allocator lock poisoned");
        if matches!(&*pending, Some((b, _)) if *b == base) {
            return;
        }
        if let Some((stale, handle)) = pending.take() {
            // A segment for another offset is no longer wanted (only after recovery truncated).
            discard(stale, handle);
        }
        let path = self.dir.join(offset_file_name(base));
        let (size, preallocate) = (self.size, self.preallocate);
        let spawned = std::thread::Builder::new()
            .name("tern-segment-alloc".into())
            .spawn(move || MappedFile::create(&path, base, size, preallocate));
        match spawned {
            Ok(handle) => *pending = Some((base, handle)),
            Err(e) => warn!(error = %e, "cannot start the segment pre-allocation thread"),
        }
    }

    /// The segment beginning at `base`: the pre-built one if ready or nearly so, otherwise built now.
    pub(crate) fn take(&self, base: u64) -> Result<Arc<MappedFile>, StoreError> {
        let prepared = {
            let mut pending = self.pending.lock().expect("allocator lock poisoned");
            match pending.take() {
                Some((b, handle)) if b == base => Some(handle),
                Some((stale, handle)) => {
                    discard(stale, handle);
                    None
                }
                None => None,
            }
        };
        let path = self.dir.join(offset_file_name(base));
        let file = match prepared {
            Some(handle) => match handle.join() {
                Ok(result) => result,
                Err(_) => Err(std::io::Error::other(
                    "segment pre-allocation thread panicked",
                )),
            },
            None => {
                debug!(
                    base,
                    "no pre-allocated segment; creating it in the append path"
                );
                MappedFile::create(&path, base, self.size, self.preallocate)
            }
        };
        file.map(Arc::new)
            .map_err(|source| StoreError::CreateSegment { path, source })
    }

    /// Waits for a pending allocation and keeps its file: on a clean shutdown the next segment is
    /// simply there at the next start (recovery deletes it if the log does not reach it).
    pub(crate) fn finish(&self) {
        let pending = self.pending.lock().expect("allocator lock poisoned").take();
        if let Some((_, handle)) = pending {
            let _ = handle.join();
        }
    }
}

fn discard(base: u64, handle: JoinHandle<std::io::Result<MappedFile>>) {
    if let Ok(Ok(file)) = handle.join()
        && let Err(e) = file.destroy()
    {
        warn!(base, error = %e, "cannot delete an unused pre-allocated segment");
    }
}
