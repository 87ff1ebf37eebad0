//! What the benchmark ran on: printed with every result, because a disk benchmark's numbers mean
//! nothing without the machine and, above all, the filesystem they were measured on.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// Filesystem type of the benchmark directory, as `/proc/mounts` names it (e.g. `ext4`).
    pub filesystem: String,
    /// The device or source mounted there (e.g. `/dev/vda`).
    pub device: String,
    pub mount_point: String,
}

impl Machine {
    /// Describes this machine and the filesystem holding `dir` (which must exist).
    pub fn describe(dir: &Path) -> Machine {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let (filesystem, device, mount_point) = mount_of(dir).unwrap_or_else(|| {
            let unknown = || "unknown".to_owned();
            (unknown(), unknown(), unknown())
        });
        Machine {
            cpus,
            cpu_model,
            kernel,
            filesystem,
            device,
            mount_point,
        }
    }

    /// Memory-backed filesystems make every "disk" figure a memory-copy figure.
    pub fn is_memory_backed(&self) -> bool {
        matches!(self.filesystem.as_str(), "tmpfs" | "ramfs")
    }
}

/// (type, device, mount point) of the mount holding `dir`: the longest mount point that is a
/// prefix of its canonical path.
fn mount_of(dir: &Path) -> Option<(String, String, String)> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let device = fields.next()?;
            let mount_point = unescape_mount(fields.next()?);
            let fs_type = fields.next()?;
            Some((fs_type.to_owned(), device.to_owned(), mount_point))
        })
        .filter(|(_, _, mount_point)| dir.starts_with(mount_point))
        .max_by_key(|(_, _, mount_point)| mount_point.len())
}

/// `/proc/mounts` writes spaces and a few other bytes as octal escapes (`\040`).
fn unescape_mount(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A fresh work directory under `dir` (created if needed), its canonical path (so reports name it
/// unambiguously) and the machine it is on. Warns when the directory is in memory, where `what`
/// would not be disk figures.
pub fn work_dir(
    dir: &Path,
    prefix: &str,
    what: &str,
) -> crate::error::Result<(tempfile::TempDir, std::path::PathBuf, Machine)> {
    use crate::error::Context;
    std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .context(|| format!("creating a directory in {}", dir.display()))?;
    let path = work
        .path()
        .canonicalize()
        .unwrap_or_else(|_| work.path().to_owned());
    let machine = Machine::describe(&path);
    if machine.is_memory_backed() {
        eprintln!(
            "warning: {} is on {}, i.e. in memory: {what} are not disk figures (use --dir)",
            path.display(),
            machine.filesystem
        );
    }
    Ok((work, path, machine))
}

/// Writes a report as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, report: &T) -> crate::error::Result<()> {
    use crate::error::Context;
    let file = std::fs::File::create(path).context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(std::io::BufWriter::new(file), report)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal_spaces() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/odd\\x"), "/odd\\x");
    }

    #[test]
    fn describes_the_current_directory() {
        let machine = Machine::describe(Path::new("."));
        assert!(machine.cpus >= 1);
        assert_ne!(machine.mount_point, "");
    }
}
