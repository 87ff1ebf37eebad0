//! The `lock` and `abort` files (reference §1).
//!
//! `lock` carries an exclusive `flock`: a second process opening the same store directory fails at
//! once instead of interleaving writes with the first. The kernel drops the lock when the process
//! dies, so a crash never leaves a stale lock behind.
//!
//! `abort` exists while the store is open and is removed by a clean shutdown; finding it at start-up
//! means the previous run crashed and recovery must replay from the checkpoint.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use super::error::{IoContext, StoreError};
use super::mapped_file::sync_dir;

pub(crate) struct StoreLock {
    _lock: File,
    root: PathBuf,
    abort_path: PathBuf,
    /// Whether `abort` was present when the store was opened.
    previous_run_crashed: bool,
}

impl StoreLock {
    /// Takes the lock and creates `abort`.
    pub(crate) fn acquire(root: &Path) -> Result<StoreLock, StoreError> {
        fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .context(|| format!("opening {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: root.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::io(
                    format!("locking {}", lock_path.display()),
                    e,
                ));
            }
        }
        let abort_path = root.join("abort");
        let previous_run_crashed = abort_path.exists();
        File::create(&abort_path)
            .and_then(|f| f.sync_all())
            .context(|| format!("creating {}", abort_path.display()))?;
        sync_dir(root).context(|| format!("syncing {}", root.display()))?;
        Ok(StoreLock {
            _lock: lock,
            root: root.to_owned(),
            abort_path,
            previous_run_crashed,
        })
    }

    pub(crate) fn previous_run_crashed(&self) -> bool {
        self.previous_run_crashed
    }

    /// Marks a clean shutdown. Call only after everything is flushed.
    pub(crate) fn remove_abort(&self) -> Result<(), StoreError> {
        fs::remove_file(&self.abort_path)
            .context(|| format!("removing {}", self.abort_path.display()))?;
        sync_dir(&self.root).context(|| format!("syncing {}", self.root.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_and_abort_marks_crashes() {
        let dir = tempfile::tempdir().unwrap();
        let first = StoreLock::acquire(dir.path()).unwrap();
        assert!(!first.previous_run_crashed());
        assert!(matches!(
            StoreLock::acquire(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        drop(first); // no clean shutdown: abort stays
        let second = StoreLock::acquire(dir.path()).unwrap();
        assert!(second.previous_run_crashed());
        second.remove_abort().unwrap();
        drop(second);
        assert!(
            !StoreLock::acquire(dir.path())
                .unwrap()
                .previous_run_crashed()
        );
    }
}
