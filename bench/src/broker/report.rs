//! Printing results: Markdown tables (readable in a terminal, pasteable into BENCHMARKS.md) and an
//! optional JSON file for scripts.

use std::fmt::Write as _;

use serde::Serialize;

use super::results::{Ratio, Row, Scenario, Verdict, ratio_headers};
use crate::stats::Percentiles;
use crate::sysinfo::Machine;

/// The run's parameters as resolved (after `--quick`), for the report and the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// "child process", "in process" or "external <addr>".
    pub broker: String,
    pub dir: String,
    pub flush: Vec<String>,
    pub sizes: Vec<usize>,
    pub in_flight: Vec<usize>,
    pub header: String,
    pub queues: u32,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    pub e2e_rate: f64,
    pub e2e_size: usize,
    pub client_threads: usize,
    pub repeat: usize,
    /// A `--quick` smoke run: far too short for its figures to mean anything.
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
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let (m, s) = (&self.machine, &self.settings);
        let _ = writeln!(out, "## tern-bench broker results\n");
        let _ = writeln!(
            out,
            "Machine: {} CPUs ({}), Linux {}; stores in {} on {} ({}). Broker: {}.",
            m.cpus, m.cpu_model, m.kernel, s.dir, m.filesystem, m.device, s.broker
        );
        let _ = writeln!(
            out,
            "Load: SEND_MESSAGE_V2 ({} header) to a topic of {} queues (round-robin), N tasks \
             each send-await-send over one connection; {} s warm-up, then {} s measured; client \
             runtime {} threads. End-to-end: {} msgs/s of {} B, consumer long-polling every queue.",
            s.header,
            s.queues,
            s.warmup_seconds,
            s.duration_seconds,
            s.client_threads,
            s.e2e_rate,
            s.e2e_size
        );
        let _ = writeln!(
            out,
            "Every figure is the median of {} run(s). MB = 10^6 bytes of message bodies \
             (records for the group-commit baseline). Latency per request (per write + \
             fdatasync for that baseline), in microseconds. CPU: microseconds of CPU time per \
             message of the benchmark process (client; broker too when in process) and of the \
             server process; \"other CPU cores\": machine busy time outside both (kernel threads, \
             other programs), in cores, where above ~0.3 the figures are suspect.",
            self.runs.len()
        );
        if s.quick {
            let _ = writeln!(
                out,
                "\n**--quick smoke run: far too short for these figures to mean anything; they \
                 only show that every scenario runs.**"
            );
        }
        let (baselines, broker): (Vec<&Row>, Vec<&Row>) =
            self.medians.iter().partition(|r| r.scenario.is_baseline());
        let (e2e, produce): (Vec<&Row>, Vec<&Row>) = broker
            .into_iter()
            .partition(|r| matches!(r.scenario, Scenario::EndToEnd { .. }));
        let _ = writeln!(out, "\n### Broker: producer\n");
        table(&mut out, &produce);
        let _ = writeln!(
            out,
            "\n### Broker: end-to-end (produce -> long-poll pull)\n"
        );
        table(&mut out, &e2e);
        let _ = writeln!(out, "\n### Baselines (same machine, same run)\n");
        table(&mut out, &baselines);
        let _ = writeln!(out, "\n### Ratios (median of the per-run ratios)\n");
        ratio_table(&mut out, &self.ratios);
        let _ = writeln!(out, "\n### Targets\n");
        if s.quick {
            let _ = writeln!(out, "Not judged in a --quick run (see above).");
        } else {
            for v in &self.verdicts {
                let measured: Vec<String> = v
                    .measured
                    .iter()
                    .map(|(size, msgs)| format!("{size} B: {msgs:.0} msgs/s"))
                    .collect();
                let verdict = match v.met {
                    Some(true) => "**PASS**",
                    Some(false) => "**FAIL**",
                    None => "not measured",
                };
                let _ = writeln!(out, "- {}: {} -> {verdict}", v.target, measured.join(", "));
            }
        }
        out
    }
}

fn table(out: &mut String, rows: &[&Row]) {
    let _ = writeln!(
        out,
        "| scenario | body B | count | msgs/s | MB/s | p50 us | p99 us | p99.9 us | max us | \
         CPU us/msg bench | CPU us/msg server | other CPU cores |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let f = &row.figures;
        let latency = |get: fn(&Percentiles) -> f64| {
            f.latency
                .map_or_else(|| "-".to_owned(), |l| micros(get(&l)))
        };
        let cpu = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            row.scenario.label(),
            row.scenario.size(),
            f.messages,
            f.msgs_per_s,
            f.mb_per_s,
            latency(|l| l.p50_us),
            latency(|l| l.p99_us),
            latency(|l| l.p999_us),
            latency(|l| l.max_us),
            cpu(row.cpu.bench_us_per_msg),
            cpu(row.cpu.server_us_per_msg),
            cpu(row.cpu.other_cores),
        );
    }
}

/// Sub-10 µs figures need decimals; millisecond ones do not.
pub fn micros(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// One row per (size, in flight), one column per ratio.
fn ratio_table(out: &mut String, ratios: &[Ratio]) {
    let headers = ratio_headers();
    let present: Vec<_> = headers
        .iter()
        .filter(|(id, _)| ratios.iter().any(|r| r.id == *id))
        .collect();
    if present.is_empty() {
        let _ = writeln!(out, "No ratio: its scenarios were not all run.");
        return;
    }
    let names: Vec<&str> = present.iter().map(|(_, h)| *h).collect();
    let _ = writeln!(out, "| body B | in flight | {} |", names.join(" | "));
    let _ = writeln!(out, "|--:|--:|{}", "--:|".repeat(present.len()));
    let mut pairs: Vec<(usize, usize)> = ratios.iter().map(|r| (r.size, r.in_flight)).collect();
    pairs.dedup();
    for (size, in_flight) in pairs {
        let cells: Vec<String> = present
            .iter()
            .map(|(id, _)| {
                ratios
                    .iter()
                    .find(|r| r.id == *id && r.size == size && r.in_flight == in_flight)
                    .map_or_else(|| "-".to_owned(), |r| format!("{:.3}", r.value))
            })
            .collect();
        let _ = writeln!(out, "| {size} | {in_flight} | {} |", cells.join(" | "));
    }
}
