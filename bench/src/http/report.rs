//! What `tern-bench http` measured: rows per scenario, medians over repeats, the gateway ÷ bare
//! server ratios and the target, printed as Markdown (and written as JSON).

use std::fmt::Write as _;

use serde::Serialize;

use crate::broker::{Cpu, micros};
use crate::stats::{Figures, Percentiles, median};
use crate::sysinfo::Machine;

/// The target: gateway produce requests/s ≥ this share of the bare server's, with
/// ASYNC_FLUSH, 1 KiB bodies and 64 connections.
pub const TARGET_RATIO: f64 = 0.40;
const TARGET_SIZE: usize = 1024;
const TARGET_CONNECTIONS: usize = 64;

/// Every measured scenario, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scenario {
    /// The produce load against the gateway.
    Produce { size: usize, connections: usize },
    /// Reading `messages` preloaded messages from the gateway's event stream.
    Sse { size: usize, messages: u64 },
    /// The produce load against the bare hyper server.
    Bare { size: usize, connections: usize },
}

impl Scenario {
    pub fn label(&self) -> String {
        match *self {
            Scenario::Produce { connections, .. } => {
                format!("gateway produce, {connections} connections")
            }
            Scenario::Sse { messages, .. } => format!("gateway SSE, {messages} messages"),
            Scenario::Bare { connections, .. } => {
                format!("bare hyper server, {connections} connections")
            }
        }
    }
}

/// One measured figure set. For produce loads `figures.messages` counts 2xx answers inside the
/// window and `bytes` their request bodies; for SSE, distinct messages received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub scenario: Scenario,
    pub figures: Figures,
    /// Non-2xx answers (warm-up included); any makes the run fail after the report.
    pub errors: u64,
    pub first_error: Option<String>,
    /// SSE: from the request to the first message event, in milliseconds.
    pub first_event_ms: Option<f64>,
    /// SSE: message events whose id had been seen already.
    pub duplicates: Option<u64>,
    pub cpu: Cpu,
}

/// The median of every figure of every scenario over the runs, in report order.
pub fn medians(runs: &[Vec<Row>]) -> Vec<Row> {
    let mut scenarios: Vec<Scenario> = runs.iter().flatten().map(|r| r.scenario).collect();
    scenarios.sort();
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
            let of = |f: fn(&Row) -> Option<f64>| median(same.iter().filter_map(|r| f(r)));
            Some(Row {
                scenario,
                figures: Figures::median(&figures)?,
                // Errors are summed, not medianed: one failed request in any run matters.
                errors: same.iter().map(|r| r.errors).sum(),
                first_error: same.iter().find_map(|r| r.first_error.clone()),
                first_event_ms: of(|r| r.first_event_ms),
                duplicates: same.iter().filter_map(|r| r.duplicates).max(),
                cpu: Cpu {
                    bench_us_per_msg: of(|r| r.cpu.bench_us_per_msg),
                    server_us_per_msg: of(|r| r.cpu.server_us_per_msg),
                    other_cores: of(|r| r.cpu.other_cores),
                },
            })
        })
        .collect()
}

/// Gateway ÷ bare server for one connection count: the median over the runs of the per-run
/// ratios, so each pairs two figures measured seconds apart in the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratio {
    pub size: usize,
    pub connections: usize,
    /// Gateway requests/s ÷ bare requests/s.
    pub requests_per_s: f64,
    /// Gateway p50 ÷ bare p50.
    pub p50: Option<f64>,
    /// Gateway p99 ÷ bare p99.
    pub p99: Option<f64>,
}

pub fn ratios(runs: &[Vec<Row>]) -> Vec<Ratio> {
    let mut pairs: Vec<(usize, usize)> = runs
        .iter()
        .flatten()
        .filter_map(|r| match r.scenario {
            Scenario::Produce { size, connections } => Some((size, connections)),
            _ => None,
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .filter_map(|(size, connections)| {
            let per_run = |value: fn(&Figures) -> Option<f64>| {
                median(runs.iter().filter_map(|run| {
                    let find = |scenario: Scenario| run.iter().find(|r| r.scenario == scenario);
                    let gateway = value(&find(Scenario::Produce { size, connections })?.figures)?;
                    let bare = value(&find(Scenario::Bare { size, connections })?.figures)?;
                    (bare > 0.0).then(|| gateway / bare)
                }))
            };
            Some(Ratio {
                size,
                connections,
                requests_per_s: per_run(|f| Some(f.msgs_per_s))?,
                p50: per_run(|f| f.latency.map(|l| l.p50_us)),
                p99: per_run(|f| f.latency.map(|l| l.p99_us)),
            })
        })
        .collect()
}

/// The target, judged on the median ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: Option<f64>,
    /// `None`: not measured in this run.
    pub met: Option<bool>,
}

pub fn verdict(ratios: &[Ratio]) -> Verdict {
    let measured = ratios
        .iter()
        .find(|r| r.size == TARGET_SIZE && r.connections == TARGET_CONNECTIONS)
        .map(|r| r.requests_per_s);
    Verdict {
        target: format!(
            "gateway produce >= {:.0} % of the bare server's requests/s (ASYNC_FLUSH, \
             {TARGET_SIZE} B, {TARGET_CONNECTIONS} connections)",
            TARGET_RATIO * 100.0
        ),
        measured,
        met: measured.map(|m| m >= TARGET_RATIO),
    }
}

/// The run's parameters as resolved (after `--quick`), for the report and the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// How the gateway was reached ("child process ...", "external at ...", "not run").
    pub gateway: String,
    /// The scenario groups run (`bare`, `produce`, `sse`).
    pub scenarios: Vec<String>,
    pub bare_server_threads: usize,
    pub dir: String,
    pub connections: Vec<usize>,
    pub size: usize,
    pub queues: u32,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    pub sse_messages: u64,
    pub sse_max_in_flight: u32,
    pub sse_timeout_seconds: f64,
    pub client_threads: usize,
    pub repeat: usize,
    /// A `--quick` smoke run: too short for its figures to mean much.
    pub quick: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    /// Every run's rows, in the order measured.
    pub runs: Vec<Vec<Row>>,
    pub medians: Vec<Row>,
    pub ratios: Vec<Ratio>,
    pub verdict: Verdict,
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let (m, s) = (&self.machine, &self.settings);
        let _ = writeln!(out, "## tern-bench http results\n");
        let _ = writeln!(
            out,
            "Machine: {} CPUs ({}), Linux {}; work directory {} on {}. Gateway: {}. Bare server: \
             child process, hyper HTTP/1.1, {} runtime threads, 200 `{{}}` to every request.",
            m.cpus, m.cpu_model, m.kernel, s.dir, m.filesystem, s.gateway, s.bare_server_threads
        );
        let _ = write!(
            out,
            "Load: N keep-alive HTTP/1.1 connections, each POSTing a {} B body \
             (application/octet-stream) to /v1/topics/<topic>/messages and awaiting the whole \
             response before the next; {} s warm-up, then {} s measured; load generator runtime \
             {} threads, sharing the machine with the server.",
            s.size, s.warmup_seconds, s.duration_seconds, s.client_threads,
        );
        if s.scenarios.iter().any(|g| g == "sse") {
            let _ = write!(
                out,
                " SSE: {} messages produced the same way into a topic of their own ({} queues), \
                 then one GET .../events?ack=auto&maxInFlight={} of a fresh group, read until all \
                 arrived (at most {} s).",
                s.sse_messages, s.queues, s.sse_max_in_flight, s.sse_timeout_seconds
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Every figure is the median of {} run(s). req/s counts 2xx answers; MB = 10^6 bytes \
             of request bodies. Latency per request (send to last response byte), in \
             microseconds. CPU: microseconds of CPU time per request (per message for SSE) of \
             the benchmark process and of the server process (utime + stime); \"other CPU \
             cores\": machine busy time outside both, in cores.",
            self.runs.len()
        );
        if s.quick {
            let _ = writeln!(
                out,
                "\n**--quick smoke run: too short for these figures to mean much; they show that \
                 every scenario runs.**"
            );
        }
        let part = |f: fn(&Scenario) -> bool| -> Vec<&Row> {
            self.medians.iter().filter(|r| f(&r.scenario)).collect()
        };
        let produce = part(|s| matches!(s, Scenario::Produce { .. }));
        let sse = part(|s| matches!(s, Scenario::Sse { .. }));
        let bare = part(|s| matches!(s, Scenario::Bare { .. }));
        if !produce.is_empty() {
            let _ = writeln!(out, "\n### Gateway: produce\n");
            table(&mut out, &produce);
        }
        if !sse.is_empty() {
            let _ = writeln!(out, "\n### Gateway: SSE delivery\n");
            sse_table(&mut out, &sse);
        }
        let _ = writeln!(
            out,
            "\n### Baseline: bare hyper server (same machine, same run)\n"
        );
        table(&mut out, &bare);
        let _ = writeln!(out, "\n### Ratios (median of the per-run ratios)\n");
        if self.ratios.is_empty() {
            let _ = writeln!(
                out,
                "No ratio: the gateway and the bare server were not both run."
            );
        } else {
            let _ = writeln!(
                out,
                "| body B | connections | gateway / bare req/s | gateway / bare p50 | gateway / \
                 bare p99 |"
            );
            let _ = writeln!(out, "|--:|--:|--:|--:|--:|");
            let ratio = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
            for r in &self.ratios {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {} | {} |",
                    r.size,
                    r.connections,
                    r.requests_per_s,
                    ratio(r.p50),
                    ratio(r.p99)
                );
            }
        }
        let _ = writeln!(out, "\n### Target\n");
        let v = &self.verdict;
        let verdict = match (s.quick, v.met) {
            (true, _) => "not judged in a --quick run",
            (false, Some(true)) => "**PASS**",
            (false, Some(false)) => "**FAIL**",
            (false, None) => "not measured",
        };
        let measured = v
            .measured
            .map_or_else(String::new, |m| format!("{m:.3} -> "));
        let _ = writeln!(out, "- {}: {measured}{verdict}", v.target);
        let failed: Vec<&Row> = self.medians.iter().filter(|r| r.errors > 0).collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\n### Errors\n");
            for row in failed {
                let _ = writeln!(
                    out,
                    "- {}: **{} non-2xx answers** over all runs; first: {}",
                    row.scenario.label(),
                    row.errors,
                    row.first_error.as_deref().unwrap_or("?")
                );
            }
        }
        out
    }
}

fn cpu(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn table(out: &mut String, rows: &[&Row]) {
    let _ = writeln!(
        out,
        "| scenario | body B | requests | req/s | MB/s | p50 us | p99 us | p99.9 us | max us | \
         errors | CPU us/req bench | CPU us/req server | other CPU cores |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let f = &row.figures;
        let latency = |get: fn(&Percentiles) -> f64| {
            f.latency
                .map_or_else(|| "-".to_owned(), |l| micros(get(&l)))
        };
        let size = match row.scenario {
            Scenario::Produce { size, .. }
            | Scenario::Bare { size, .. }
            | Scenario::Sse { size, .. } => size,
        };
        let _ = writeln!(
            out,
            "| {} | {size} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario.label(),
            f.messages,
            f.msgs_per_s,
            f.mb_per_s,
            latency(|l| l.p50_us),
            latency(|l| l.p99_us),
            latency(|l| l.p999_us),
            latency(|l| l.max_us),
            row.errors,
            cpu(row.cpu.bench_us_per_msg),
            cpu(row.cpu.server_us_per_msg),
            cpu(row.cpu.other_cores),
        );
    }
}

fn sse_table(out: &mut String, rows: &[&Row]) {
    let _ = writeln!(
        out,
        "| scenario | messages | seconds | msgs/s | first message ms | duplicates | CPU us/msg \
         bench | CPU us/msg server | other CPU cores |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let f = &row.figures;
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
            row.scenario.label(),
            f.messages,
            f.seconds,
            f.msgs_per_s,
            row.first_event_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}")),
            row.duplicates.unwrap_or(0),
            cpu(row.cpu.bench_us_per_msg),
            cpu(row.cpu.server_us_per_msg),
            cpu(row.cpu.other_cores),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn row(scenario: Scenario, requests: u64, p50: f64, errors: u64) -> Row {
        let latency = Percentiles {
            p50_us: p50,
            p99_us: p50 * 2.0,
            p999_us: p50 * 3.0,
            max_us: p50 * 4.0,
        };
        Row {
            scenario,
            figures: Figures::new(
                requests,
                requests * 1024,
                Duration::from_secs(1),
                Some(latency),
                None,
            ),
            errors,
            first_error: (errors > 0).then(|| "503 Service Unavailable: busy".to_owned()),
            first_event_ms: None,
            duplicates: None,
            cpu: Cpu::default(),
        }
    }

    fn run(gateway: u64, bare: u64, errors: u64) -> Vec<Row> {
        let (size, connections) = (1024, 64);
        vec![
            row(Scenario::Bare { size, connections }, bare, 100.0, 0),
            row(
                Scenario::Produce { size, connections },
                gateway,
                400.0,
                errors,
            ),
        ]
    }

    #[test]
    fn ratios_are_medians_of_per_run_ratios() {
        let runs = vec![run(40, 100, 0), run(90, 100, 0), run(60, 200, 0)];
        let ratios = ratios(&runs);
        assert_eq!(ratios.len(), 1);
        // Per run 0.4, 0.9, 0.3: median 0.4.
        assert!((ratios[0].requests_per_s - 0.4).abs() < 1e-9, "{ratios:?}");
        assert_eq!(ratios[0].p50, Some(4.0));
        let verdict = verdict(&ratios);
        assert_eq!(verdict.met, Some(true));
        assert_eq!(super::verdict(&[]).met, None);
    }

    #[test]
    fn medians_sum_errors_and_the_report_shows_them() {
        let runs = vec![run(40, 100, 0), run(50, 100, 3)];
        let medians = medians(&runs);
        let gateway = medians
            .iter()
            .find(|r| matches!(r.scenario, Scenario::Produce { .. }))
            .unwrap();
        assert_eq!(gateway.errors, 3);
        assert_eq!(gateway.figures.messages, 45);
        let report = Report {
            machine: Machine::describe(std::path::Path::new(".")),
            settings: Settings {
                gateway: "external at http://x:1".into(),
                scenarios: vec!["bare".into(), "produce".into()],
                bare_server_threads: 2,
                dir: ".".into(),
                connections: vec![64],
                size: 1024,
                queues: 8,
                warmup_seconds: 1.0,
                duration_seconds: 10.0,
                sse_messages: 100_000,
                sse_max_in_flight: 1024,
                sse_timeout_seconds: 60.0,
                client_threads: 2,
                repeat: 2,
                quick: false,
            },
            ratios: ratios(&runs),
            verdict: verdict(&ratios(&runs)),
            medians,
            runs,
        };
        let text = report.to_markdown();
        assert!(text.contains("### Gateway: produce"), "{text}");
        assert!(text.contains("| 1024 | 64 | 0.450 |"), "{text}");
        assert!(text.contains("**PASS**"), "{text}");
        assert!(text.contains("**3 non-2xx answers**"), "{text}");
        assert!(!text.contains("SSE delivery"), "{text}");
    }
}
