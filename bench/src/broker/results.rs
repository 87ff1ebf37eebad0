//! What a broker benchmark run produced: one row per scenario, medians over repeats, ratios to
//! the loopback and disk baselines, and the two throughput targets.

use serde::Serialize;

use super::Flush;
use crate::stats::{Figures, median};

/// Every measured scenario, in the order the report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scenario {
    /// The producer load against the broker.
    Produce {
        flush: Flush,
        size: usize,
        in_flight: usize,
    },
    /// Produce → long-poll pull latency at a fixed rate.
    EndToEnd { flush: Flush, size: usize },
    /// The same frames against the raw TCP echo server.
    TcpEcho { size: usize, in_flight: usize },
    /// The same load (same client) against the remoting echo server.
    RemotingEcho { size: usize, in_flight: usize },
    /// `records` broker-sized records per `write` + `fdatasync`, repeated: the ideal group
    /// commit of `records` in-flight SYNC_FLUSH sends.
    RawGroupCommit { size: usize, records: usize },
}

impl Scenario {
    pub fn label(&self) -> String {
        match *self {
            Scenario::Produce {
                flush, in_flight, ..
            } => format!("broker {flush}, {in_flight} in flight"),
            Scenario::EndToEnd { flush, .. } => format!("end-to-end {flush}"),
            Scenario::TcpEcho { in_flight, .. } => {
                format!("loopback TCP echo, {in_flight} in flight")
            }
            Scenario::RemotingEcho { in_flight, .. } => {
                format!("remoting echo, {in_flight} in flight")
            }
            Scenario::RawGroupCommit { records: 1, .. } => {
                "raw 1 record write + fdatasync, repeated".into()
            }
            Scenario::RawGroupCommit { records, .. } => {
                format!("raw {records} records per write + fdatasync, repeated")
            }
        }
    }

    pub fn size(&self) -> usize {
        match *self {
            Scenario::Produce { size, .. }
            | Scenario::EndToEnd { size, .. }
            | Scenario::TcpEcho { size, .. }
            | Scenario::RemotingEcho { size, .. }
            | Scenario::RawGroupCommit { size, .. } => size,
        }
    }

    pub fn is_baseline(&self) -> bool {
        matches!(
            self,
            Scenario::TcpEcho { .. }
                | Scenario::RemotingEcho { .. }
                | Scenario::RawGroupCommit { .. }
        )
    }
}

/// CPU time per message of each process (µs), where known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cpu {
    /// The benchmark process: the client, plus the broker with `--in-process`.
    pub bench_us_per_msg: Option<f64>,
    /// The server process (broker or echo server) when it is a child.
    pub server_us_per_msg: Option<f64>,
    /// CPU cores' worth of busy time outside both processes during the window: kernel threads
    /// (writeback, softirq) and, on a shared machine, other programs. High values flag a
    /// disturbed measurement.
    pub other_cores: Option<f64>,
}

/// One measured figure set. `figures.bytes` counts message bodies (what producers send).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub scenario: Scenario,
    pub figures: Figures,
    pub cpu: Cpu,
}

/// The median of every figure of every scenario over the runs, in report order.
pub fn medians(runs: &[Vec<Row>]) -> Vec<Row> {
    let mut scenarios: Vec<Scenario> = runs.iter().flatten().map(|r| r.scenario).collect();
    scenarios.sort_by_key(|s| (s.size(), *s));
    scenarios.dedup();
    scenarios
        .into_iter()
        .filter_map(|scenario| {
            let same: Vec<&Row> = runs
                .iter()
                .flatten()
                .filter(|r| r.scenario == scenario)
                .collect();
            let figures: Vec<&Figures> = same.iter().map(|r| &r.figures).collect();
            Some(Row {
                scenario,
                figures: Figures::median(&figures)?,
                cpu: Cpu {
                    bench_us_per_msg: median(same.iter().filter_map(|r| r.cpu.bench_us_per_msg)),
                    server_us_per_msg: median(same.iter().filter_map(|r| r.cpu.server_us_per_msg)),
                    other_cores: median(same.iter().filter_map(|r| r.cpu.other_cores)),
                },
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    MsgsPerS,
    P50,
}

/// One ratio between two scenarios of the same size and in-flight count.
struct RatioDef {
    id: &'static str,
    header: &'static str,
    numerator: fn(usize, usize) -> Scenario,
    denominator: fn(usize, usize) -> Scenario,
    field: Field,
}

/// The ratios, as report columns. Echo ratios say how much of the loopback exchange's rate the
/// broker keeps (the rest is the broker's own work, or the stack's); the group-commit ratios how
/// much of the disk's ideal SYNC_FLUSH rate and latency the whole path reaches.
const RATIOS: &[RatioDef] = &[
    RatioDef {
        id: "remoting_echo_vs_tcp_echo",
        header: "remoting echo / TCP echo",
        numerator: |size, in_flight| Scenario::RemotingEcho { size, in_flight },
        denominator: |size, in_flight| Scenario::TcpEcho { size, in_flight },
        field: Field::MsgsPerS,
    },
    RatioDef {
        id: "async_vs_tcp_echo",
        header: "ASYNC / TCP echo",
        numerator: |size, in_flight| Scenario::Produce {
            flush: Flush::AsyncFlush,
            size,
            in_flight,
        },
        denominator: |size, in_flight| Scenario::TcpEcho { size, in_flight },
        field: Field::MsgsPerS,
    },
    RatioDef {
        id: "async_vs_remoting_echo",
        header: "ASYNC / remoting echo",
        numerator: |size, in_flight| Scenario::Produce {
            flush: Flush::AsyncFlush,
            size,
            in_flight,
        },
        denominator: |size, in_flight| Scenario::RemotingEcho { size, in_flight },
        field: Field::MsgsPerS,
    },
    RatioDef {
        id: "sync_vs_remoting_echo",
        header: "SYNC / remoting echo",
        numerator: |size, in_flight| Scenario::Produce {
            flush: Flush::SyncFlush,
            size,
            in_flight,
        },
        denominator: |size, in_flight| Scenario::RemotingEcho { size, in_flight },
        field: Field::MsgsPerS,
    },
    RatioDef {
        id: "sync_vs_group_commit",
        header: "SYNC / ideal group commit",
        numerator: |size, in_flight| Scenario::Produce {
            flush: Flush::SyncFlush,
            size,
            in_flight,
        },
        denominator: |size, records| Scenario::RawGroupCommit { size, records },
        field: Field::MsgsPerS,
    },
    RatioDef {
        id: "sync_p50_vs_group_commit_p50",
        header: "SYNC p50 / group commit p50",
        numerator: |size, in_flight| Scenario::Produce {
            flush: Flush::SyncFlush,
            size,
            in_flight,
        },
        denominator: |size, records| Scenario::RawGroupCommit { size, records },
        field: Field::P50,
    },
];

/// A ratio for one (size, in-flight) pair: the median over the runs of the per-run ratios, so
/// each pairs two figures measured minutes apart in the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    pub id: &'static str,
    pub header: &'static str,
    pub size: usize,
    pub in_flight: usize,
    pub value: f64,
}

pub fn ratios(runs: &[Vec<Row>]) -> Vec<Ratio> {
    let mut pairs: Vec<(usize, usize)> = runs
        .iter()
        .flatten()
        .filter_map(|r| match r.scenario {
            Scenario::Produce {
                size, in_flight, ..
            }
            | Scenario::TcpEcho { size, in_flight }
            | Scenario::RemotingEcho { size, in_flight } => Some((size, in_flight)),
            _ => None,
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = Vec::new();
    for &(size, in_flight) in &pairs {
        for def in RATIOS {
            let value = |figures: &Figures| match def.field {
                Field::MsgsPerS => Some(figures.msgs_per_s),
                Field::P50 => figures.latency.map(|l| l.p50_us),
            };
            let per_run = runs.iter().filter_map(|run| {
                let find = |scenario: Scenario| run.iter().find(|r| r.scenario == scenario);
                let num = value(&find((def.numerator)(size, in_flight))?.figures)?;
                let den = value(&find((def.denominator)(size, in_flight))?.figures)?;
                (den > 0.0).then(|| num / den)
            });
            if let Some(value) = median(per_run) {
                out.push(Ratio {
                    id: def.id,
                    header: def.header,
                    size,
                    in_flight,
                    value,
                });
            }
        }
    }
    out
}

/// Every ratio column, in report order.
pub fn ratio_headers() -> Vec<(&'static str, &'static str)> {
    RATIOS.iter().map(|d| (d.id, d.header)).collect()
}

/// One of the targets, judged on the medians.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub target: String,
    /// (body size, measured msgs/s) for every size the target covers that was measured.
    pub measured: Vec<(usize, f64)>,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

/// ASYNC_FLUSH, 128 B, 64 in flight ≥ 100,000 msgs/s; SYNC_FLUSH, 64 in flight ≥ 15,000 msgs/s
/// (the issue names no size for the latter, so every measured size must meet it).
pub fn verdicts(medians: &[Row]) -> Vec<Verdict> {
    let judge = |target: &str, flush: Flush, sizes: Option<usize>, goal: f64| {
        let measured: Vec<(usize, f64)> = medians
            .iter()
            .filter_map(|r| match r.scenario {
                Scenario::Produce {
                    flush: f,
                    size,
                    in_flight: 64,
                } if f == flush && sizes.is_none_or(|s| s == size) => {
                    Some((size, r.figures.msgs_per_s))
                }
                _ => None,
            })
            .collect();
        let met = (!measured.is_empty()).then(|| measured.iter().all(|&(_, v)| v >= goal));
        Verdict {
            target: target.to_owned(),
            measured,
            met,
        }
    };
    vec![
        judge(
            "ASYNC_FLUSH, 128 B, 64 in flight: >= 100,000 msgs/s",
            Flush::AsyncFlush,
            Some(128),
            100_000.0,
        ),
        judge(
            "SYNC_FLUSH, 64 in flight: >= 15,000 msgs/s (every size)",
            Flush::SyncFlush,
            None,
            15_000.0,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::stats::Percentiles;

    fn row(scenario: Scenario, msgs: u64, p50: f64) -> Row {
        let latency = Percentiles {
            p50_us: p50,
            p99_us: p50,
            p999_us: p50,
            max_us: p50,
        };
        Row {
            scenario,
            figures: Figures::new(
                msgs,
                msgs * 128,
                Duration::from_secs(1),
                Some(latency),
                None,
            ),
            cpu: Cpu::default(),
        }
    }

    fn run(async_msgs: u64, echo_msgs: u64) -> Vec<Row> {
        vec![
            row(
                Scenario::RemotingEcho {
                    size: 128,
                    in_flight: 64,
                },
                echo_msgs,
                10.0,
            ),
            row(
                Scenario::Produce {
                    flush: Flush::AsyncFlush,
                    size: 128,
                    in_flight: 64,
                },
                async_msgs,
                20.0,
            ),
        ]
    }

    #[test]
    fn ratios_are_medians_of_per_run_ratios() {
        let runs = vec![run(50, 100), run(90, 100), run(60, 200)];
        let ratios = ratios(&runs);
        let r = ratios
            .iter()
            .find(|r| r.id == "async_vs_remoting_echo")
            .unwrap();
        // Per run 0.5, 0.9, 0.3: median 0.5.
        assert!((r.value - 0.5).abs() < 1e-9, "{r:?}");
        assert!(!ratios.iter().any(|r| r.id.starts_with("sync")));
    }

    #[test]
    fn verdicts_judge_medians() {
        let medians = medians(&[run(120_000, 200_000), run(80_000, 200_000), run(110_000, 1)]);
        let verdicts = verdicts(&medians);
        assert_eq!(verdicts[0].measured, vec![(128, 110_000.0)]);
        assert_eq!(verdicts[0].met, Some(true));
        assert_eq!(verdicts[1].met, None);
    }
}
