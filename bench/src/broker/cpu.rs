//! CPU time of the two processes during a measurement window.
//!
//! On a 2-core machine the load generator and the broker compete for the same cores, so
//! throughput alone cannot say which side is the bottleneck or what an optimization bought. CPU
//! microseconds per message, per process, can: it is the broker's cost per message independent of
//! how much CPU the client happened to leave it. The machine-wide busy time is sampled too: what
//! neither process used (kernel threads such as writeback, other programs on a shared machine)
//! tells a quiet measurement from a disturbed one.

use std::time::{Duration, Instant};

/// User + system CPU time consumed so far by process `pid` (`None`: this process), from
/// `/proc/<pid>/stat`; `None` if it cannot be read.
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields are counted from the
    // last ')'. utime and stime are fields 14 and 15, i.e. the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    if ticks == 0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// Busy CPU time of the whole machine so far (all CPUs: user, nice, system, irq, softirq and
/// steal from `/proc/stat`).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    let hz = rustix::param::clock_ticks_per_second();
    (hz > 0).then(|| Duration::from_secs_f64(busy as f64 / hz as f64))
}

/// CPU used inside a window by this process, the server process (if there is one) and the
/// whole machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub bench: Option<Duration>,
    pub server: Option<Duration>,
    pub machine: Option<Duration>,
}

impl CpuUse {
    /// Machine busy time that neither process accounts for.
    pub fn other(&self) -> Option<Duration> {
        let ours = self.bench? + self.server.unwrap_or_default();
        Some(self.machine?.saturating_sub(ours))
    }
}

#[derive(Clone, Copy)]
struct Sample {
    bench: Option<Duration>,
    server: Option<Duration>,
    machine: Option<Duration>,
}

fn sample(server: Option<u32>) -> Sample {
    Sample {
        bench: cpu_time(None),
        server: server.and_then(|p| cpu_time(Some(p))),
        machine: machine_busy(),
    }
}

/// CPU counters taken when a measurement starts; [`CpuMark::since`] gives the use since then.
/// For measurements whose end is not known in advance (a fixed amount of work).
#[derive(Clone, Copy)]
pub struct CpuMark {
    server: Option<u32>,
    before: Sample,
}

impl CpuMark {
    pub fn now(server: Option<u32>) -> CpuMark {
        CpuMark {
            server,
            before: sample(server),
        }
    }

    pub fn since(&self) -> CpuUse {
        use_between(&self.before, &sample(self.server))
    }
}

fn use_between(before: &Sample, after: &Sample) -> CpuUse {
    let diff = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    CpuUse {
        bench: diff(before.bench, after.bench),
        server: diff(before.server, after.server),
        machine: diff(before.machine, after.machine),
    }
}

/// Samples both processes when the window opens and when it closes. Runs on its own OS thread
/// so that sampling never waits for (or delays) the load's tasks.
pub fn sample_window(
    server: Option<u32>,
    start: Instant,
    end: Instant,
) -> std::thread::JoinHandle<CpuUse> {
    std::thread::spawn(move || {
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
        let before = sample(server);
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        use_between(&before, &sample(server))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_time(None).is_some());
        assert!(cpu_time(Some(std::process::id())).is_some());
        assert!(machine_busy().is_some_and(|busy| busy > Duration::ZERO));
    }
}
