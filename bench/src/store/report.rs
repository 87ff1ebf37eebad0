//! Printing results: Markdown tables (readable in a terminal and pasteable into BENCHMARKS.md)
//! and an optional JSON file for scripts.

use std::fmt::Write as _;

use serde::Serialize;

use super::results::{Ratio, Row, Scenario};
use crate::stats::{Figures, MB};
use crate::sysinfo::Machine;

/// The run's parameters as they were resolved (after `--quick`), for the report and the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub dir: String,
    pub bodies: Vec<usize>,
    pub total_mb: f64,
    pub sync_seconds: f64,
    pub sync_appenders: Vec<usize>,
    pub queues: u32,
    pub repeat: usize,
    pub segment_bytes: u64,
    pub preallocate: String,
    /// A `--quick` smoke run: its figures are dominated by fixed costs and mean nothing.
    pub quick: bool,
}

/// Everything a run produced.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    /// Every run's rows, in the order measured.
    pub runs: Vec<Vec<Row>>,
    /// The median of each figure over the runs.
    pub medians: Vec<Row>,
    pub ratios: Vec<Ratio>,
}

impl Report {
    /// The whole report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let runs = self.runs.len();
        let _ = writeln!(out, "## tern-bench store results");
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Machine: {} CPUs ({}), Linux {}; benchmark directory {} on {} ({}, mounted at {}).",
            m.cpus, m.cpu_model, m.kernel, s.dir, m.filesystem, m.device, m.mount_point
        );
        let _ = writeln!(
            out,
            "Store: segment {} MiB, preallocate {}, {} queues. Budget per scenario: {} MB of \
             bodies; SYNC_FLUSH and fdatasync runs also stop after {} s.",
            s.segment_bytes >> 20,
            s.preallocate,
            s.queues,
            s.total_mb,
            s.sync_seconds
        );
        let _ = writeln!(
            out,
            "Every figure is the median of {runs} run(s). MB = 10^6 bytes of CommitLog records \
             (headers included); the raw baselines write the same number of records of the same \
             size. Latencies are per put (per fdatasync for that baseline), in microseconds."
        );
        if s.quick {
            let _ = writeln!(
                out,
                "\n**--quick smoke run: the budgets are far too small for these figures to mean \
                 anything; they only show that every scenario runs.**"
            );
        }
        let _ = writeln!(out);
        let (store, raw): (Vec<&Row>, Vec<&Row>) = self.medians.iter().partition(|r| {
            matches!(
                r.scenario,
                Scenario::AsyncFlush | Scenario::SyncFlush { .. }
            )
        });
        let _ = writeln!(out, "### Store scenarios\n");
        table(&mut out, &store);
        let _ = writeln!(out, "\n### Raw baselines (same filesystem, same run)\n");
        table(&mut out, &raw);
        let _ = writeln!(out, "\n### Ratios (median of the per-run ratios)\n");
        ratio_table(&mut out, &self.ratios);
        let _ = writeln!(out, "\n### Targets\n");
        if s.quick {
            let _ = writeln!(out, "Not judged in a --quick run (see above).");
        } else {
            targets(&mut out, &self.ratios);
        }
        out
    }
}

fn table(out: &mut String, rows: &[&Row]) {
    let _ = writeln!(
        out,
        "| scenario | body B | record B | count | MB | seconds | msgs/s | MB/s | p50 us | p99 us | p99.9 us | final sync s |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let f: &Figures = &row.figures;
        let latency = |get: fn(&crate::stats::Percentiles) -> f64| {
            f.latency
                .map_or_else(|| "-".to_owned(), |l| micros(get(&l)))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.2} | {:.0} | {:.1} | {} | {} | {} | {} |",
            row.scenario.label(),
            row.body.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            row.record_len,
            f.messages,
            f.bytes as f64 / MB,
            f.seconds,
            f.msgs_per_s,
            f.mb_per_s,
            latency(|l| l.p50_us),
            latency(|l| l.p99_us),
            latency(|l| l.p999_us),
            f.final_sync_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.2}")),
        );
    }
}

/// Sub-microsecond appends need decimals; millisecond fsyncs do not.
fn micros(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

fn verdict(ratio: &Ratio) -> &'static str {
    match (ratio.judged && ratio.primary, ratio.met) {
        (true, true) => "PASS",
        (true, false) => "FAIL",
        (false, true) => "(meets; context only)",
        (false, false) => "(misses; context only)",
    }
}

fn ratio_table(out: &mut String, ratios: &[Ratio]) {
    let _ = writeln!(out, "| ratio | body B | value | target | verdict |");
    let _ = writeln!(out, "|---|--:|--:|--:|---|");
    for r in ratios {
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {} | {} |",
            r.description,
            r.body,
            r.value,
            r.target.describe(),
            verdict(r)
        );
    }
}

/// One line per target: its judged ratios and an overall verdict.
fn targets(out: &mut String, ratios: &[Ratio]) {
    let goals = [
        (
            "async_vs_raw_buffered",
            "1. ASYNC_FLUSH 1 KiB MB/s / raw 1 MiB writes + fsync at end MB/s",
        ),
        (
            "sync64_vs_raw_buffered",
            "2. SYNC_FLUSH 64 appenders MB/s / raw 1 MiB writes + fsync at end MB/s",
        ),
        (
            "sync1_p50_vs_raw_fdatasync_p50",
            "3. SYNC_FLUSH 1 appender p50 / raw 4 KiB fdatasync p50",
        ),
    ];
    for (id, name) in goals {
        let judged: Vec<&Ratio> = ratios.iter().filter(|r| r.id == id && r.judged).collect();
        let Some(first) = judged.first() else {
            let _ = writeln!(out, "- {name}: not measured in this run");
            continue;
        };
        let values: Vec<String> = judged
            .iter()
            .map(|r| format!("{} B: {:.3}", r.body, r.value))
            .collect();
        let all_met = judged.iter().all(|r| r.met);
        let _ = writeln!(
            out,
            "- {name} (target {}): {} -> **{}**",
            first.target.describe(),
            values.join(", "),
            if all_met { "PASS" } else { "FAIL" }
        );
    }
}
