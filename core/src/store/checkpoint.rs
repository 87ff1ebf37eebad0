//! The `checkpoint` file: one 4 KiB page holding five big-endian i64 (reference §1):
//! physicMsgTimestamp, logicsMsgTimestamp, indexMsgTimestamp, masterFlushedOffset, confirmPhyOffset.
//!
//! Each timestamp is a promise: every record stored at or before it is on disk in that structure.
//! After a crash, recovery replays the CommitLog from a segment older than the smallest promise.
//! The page is rewritten whole with `pwrite` and fdatasync'd; the fields sit in its first sector,
//! which disks write atomically.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use super::error::{IoContext, StoreError};

const PAGE: usize = 4096;

/// The checkpoint's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointValues {
    pub physic_msg_timestamp: i64,
    pub logics_msg_timestamp: i64,
    pub index_msg_timestamp: i64,
    pub master_flushed_offset: i64,
    pub confirm_phy_offset: i64,
}

impl CheckpointValues {
    fn encode(&self) -> [u8; PAGE] {
        let mut page = [0u8; PAGE];
        let fields = [
            self.physic_msg_timestamp,
            self.logics_msg_timestamp,
            self.index_msg_timestamp,
            self.master_flushed_offset,
            self.confirm_phy_offset,
        ];
        for (i, value) in fields.iter().enumerate() {
            page[i * 8..i * 8 + 8].copy_from_slice(&value.to_be_bytes());
        }
        page
    }

    fn decode(page: &[u8]) -> CheckpointValues {
        let at = |i: usize| i64::from_be_bytes(page[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        CheckpointValues {
            physic_msg_timestamp: at(0),
            logics_msg_timestamp: at(1),
            index_msg_timestamp: at(2),
            master_flushed_offset: at(3),
            confirm_phy_offset: at(4),
        }
    }
}

pub(crate) struct Checkpoint {
    file: File,
    values: Mutex<CheckpointValues>,
}

impl Checkpoint {
    /// Opens (or creates, zeroed) the checkpoint file.
    pub(crate) fn open(path: &Path) -> Result<Checkpoint, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .context(|| format!("opening {}", path.display()))?;
        let mut page = [0u8; PAGE];
        let len = file
            .metadata()
            .context(|| format!("reading {}", path.display()))?
            .len();
        if len > 0 {
            let n = (len as usize).min(PAGE);
            file.read_exact_at(&mut page[..n], 0)
                .context(|| format!("reading {}", path.display()))?;
        }
        Ok(Checkpoint {
            file,
            values: Mutex::new(CheckpointValues::decode(&page)),
        })
    }

    pub(crate) fn values(&self) -> CheckpointValues {
        *self.values.lock().expect("checkpoint lock poisoned")
    }

    /// Applies `change` and writes the page to disk.
    pub(crate) fn update(
        &self,
        change: impl FnOnce(&mut CheckpointValues),
    ) -> Result<(), StoreError> {
        let mut values = self.values.lock().expect("checkpoint lock poisoned");
        change(&mut values);
        self.file
            .write_all_at(&values.encode(), 0)
            .context(|| "writing the checkpoint".into())?;
        self.file
            .sync_data()
            .context(|| "syncing the checkpoint".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint");
        let checkpoint = Checkpoint::open(&path).unwrap();
        assert_eq!(checkpoint.values(), CheckpointValues::default());
        checkpoint
            .update(|v| {
                v.physic_msg_timestamp = 1;
                v.logics_msg_timestamp = 2;
                v.index_msg_timestamp = 3;
                v.master_flushed_offset = 4;
                v.confirm_phy_offset = 5;
            })
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096);
        for (i, expected) in (1i64..=5).enumerate() {
            assert_eq!(&bytes[i * 8..i * 8 + 8], &expected.to_be_bytes());
        }
        assert_eq!(
            Checkpoint::open(&path)
                .unwrap()
                .values()
                .index_msg_timestamp,
            3
        );
    }
}
