//! Whether the store may take writes: not after an I/O failure, not while the disk is too full.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tracing::error;

use super::error::StoreError;

pub(crate) struct Health {
    /// Set once by the first failed flush or write; the store is read-only from then on, because
    /// after a failed fsync the page cache may no longer match the disk.
    failure: OnceLock<String>,
    disk_full: AtomicBool,
    /// Last measured disk-use ratio (f64 bits).
    disk_used: AtomicU64,
    refuse_ratio: f64,
}

impl Health {
    pub(crate) fn new(refuse_ratio: f64) -> Health {
        Health {
            failure: OnceLock::new(),
            disk_full: AtomicBool::new(false),
            disk_used: AtomicU64::new(0f64.to_bits()),
            refuse_ratio,
        }
    }

    /// `Ok` if an append may proceed.
    pub(crate) fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.failure.get() {
            return Err(StoreError::WriteFailed(reason.clone()));
        }
        if self.disk_full.load(Ordering::Acquire) {
            return Err(StoreError::DiskFull {
                used_percent: self.disk_used_ratio() * 100.0,
                limit_percent: self.refuse_ratio * 100.0,
            });
        }
        Ok(())
    }

    pub(crate) fn fail(&self, reason: String) {
        if self.failure.set(reason.clone()).is_ok() {
            error!(%reason, "store I/O failure: refusing all further writes");
        }
    }

    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Records a disk measurement; writes are refused at or above the configured ratio.
    pub(crate) fn set_disk_used(&self, ratio: f64) {
        self.disk_used.store(ratio.to_bits(), Ordering::Release);
        self.disk_full
            .store(ratio >= self.refuse_ratio, Ordering::Release);
    }

    pub(crate) fn disk_used_ratio(&self) -> f64 {
        f64::from_bits(self.disk_used.load(Ordering::Acquire))
    }
}
