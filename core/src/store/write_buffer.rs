//! Records waiting for the group commit (SYNC_FLUSH only).
//!
//! Under SYNC_FLUSH no producer is answered before its record is on disk, so the record does not
//! need to reach the page cache before the flusher runs. Appenders therefore only copy their bytes
//! into this buffer under the append lock (no page fault, no system call), and the flusher writes
//! everything pending with one `pwrite` per segment touched and one `fdatasync`: the group commit
//! in its plain form. Measured against copying through the mapping and `msync`, this roughly
//! doubles SYNC_FLUSH throughput, because `msync` write-protects every flushed page again and
//! each re-protection costs a TLB shootdown plus a fault on the next write.
//!
//! Each chunk is written in two steps, its first four bytes last: the first record's TOTALSIZE
//! stays zero until the whole chunk is in the page cache, so a process killed mid-`pwrite` leaves
//! nothing that recovery could mistake for records (same rule as the mapped path, invariant 2).

use std::io;
use std::sync::Arc;

use super::mapped_file::MappedFile;

/// Pending bytes above which appends are refused until the flusher catches up (only reachable
/// with `WAIT=false` producers outpacing the disk: waiting producers are bounded by themselves).
pub(crate) const MAX_PENDING_BYTES: usize = 64 << 20;

/// Contiguous bytes for one segment, starting at a record boundary.
pub(crate) struct PendingChunk {
    segment: Arc<MappedFile>,
    pos: u64,
    bytes: Vec<u8>,
    /// The chunk ends with the end-of-segment marker, which stands for the rest of the segment.
    seals: bool,
}

impl PendingChunk {
    /// Writes the chunk into its segment's page cache, first four bytes last, and publishes it to
    /// readers of the mapping.
    pub(crate) fn commit(&self) -> io::Result<()> {
        self.segment.write_through(self.pos + 4, &self.bytes[4..])?;
        self.segment.write_through(self.pos, &self.bytes[..4])?;
        let end = if self.seals {
            self.segment.size()
        } else {
            self.pos + self.bytes.len() as u64
        };
        self.segment.publish(end);
        Ok(())
    }

    pub(crate) fn segment(&self) -> &Arc<MappedFile> {
        &self.segment
    }
}

#[derive(Default)]
pub(crate) struct WriteBuffer {
    chunks: Vec<PendingChunk>,
    len: usize,
}

impl WriteBuffer {
    /// Queues `bytes` for `segment` at `pos`, extending the last chunk when contiguous. `seals`
    /// says the bytes are the end-of-segment marker.
    pub(crate) fn push(&mut self, segment: &Arc<MappedFile>, pos: u64, bytes: &[u8], seals: bool) {
        self.len += bytes.len();
        if let Some(last) = self.chunks.last_mut()
            && Arc::ptr_eq(&last.segment, segment)
            && last.pos + last.bytes.len() as u64 == pos
            && !last.seals
        {
            last.bytes.extend_from_slice(bytes);
            last.seals = seals;
            return;
        }
        self.chunks.push(PendingChunk {
            segment: segment.clone(),
            pos,
            bytes: bytes.to_vec(),
            seals,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Everything pending, oldest first; the buffer is empty afterwards.
    pub(crate) fn take(&mut self) -> Vec<PendingChunk> {
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }
}
