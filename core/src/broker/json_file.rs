//! Atomic JSON files under `<store>/config/`.
//!
//! A file is replaced by writing a sibling `.tmp`, fsyncing it, renaming it over the old one and
//! fsyncing the directory, so a crash leaves either the old or the new content, never a mix. The
//! previous content is kept as `.bak`, which is read when the main file is missing (RocketMQ's
//! ConfigManager does the same).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::BrokerError;

fn io(context: String) -> impl FnOnce(std::io::Error) -> BrokerError {
    move |source| BrokerError::Io { context, source }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes `value` to `path` atomically.
pub fn store<T: Serialize>(path: &Path, value: &T) -> Result<(), BrokerError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let text = serde_json::to_vec_pretty(value).expect("config tables always serialize");
    let tmp = sibling(path, ".tmp");
    {
        let mut file = File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        file.write_all(&text)
            .map_err(io(format!("write {}", tmp.display())))?;
        file.sync_all()
            .map_err(io(format!("fsync {}", tmp.display())))?;
    }
    if path.exists() {
        let bak = sibling(path, ".bak");
        fs::copy(path, &bak).map_err(io(format!("back up {}", path.display())))?;
    }
    fs::rename(&tmp, path).map_err(io(format!("rename {}", tmp.display())))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("fsync {}", dir.display())))?;
    Ok(())
}

/// Reads `path` (or its `.bak` when it is missing); `Ok(None)` when neither exists.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, BrokerError> {
    for candidate in [path.to_path_buf(), sibling(path, ".bak")] {
        match fs::read(&candidate) {
            Ok(bytes) => {
                return serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    BrokerError::CorruptConfigFile {
                        file: candidate.display().to_string(),
                        reason: e.to_string(),
                    }
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("read {}", candidate.display()))(e)),
        }
    }
    Ok(None)
}
