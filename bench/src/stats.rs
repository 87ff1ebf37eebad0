//! Latency histograms, throughput figures and medians over repeated runs.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One megabyte as printed: 10^6 bytes, as disk vendors and `dd` count, so MB/s figures compare
/// directly with device specifications.
pub const MB: f64 = 1_000_000.0;

/// A latency histogram.
///
/// Values are recorded in nanoseconds with three significant digits, i.e. at least microsecond
/// resolution for everything below a millisecond and 0.1 % relative precision above. Recording in
/// whole microseconds would print "0" or "1" for an ASYNC_FLUSH append, which usually takes less
/// than a microsecond; the figures are still printed in microseconds.
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // Auto-resizing: 64 appenders each keep one, so they start small and grow only as far as
        // the slowest observed value needs.
        let histogram = Histogram::new(3).expect("3 significant digits is a valid precision");
        Latency { histogram }
    }

    pub fn record(&mut self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        // `record` grows the auto-resizing histogram as needed (`saturating_record` would clamp
        // to its current, tiny, range instead); it can only fail beyond the largest value a
        // histogram can represent at all, where clamping is the best there is.
        if self.histogram.record(nanos.max(1)).is_err() {
            self.histogram.saturating_record(nanos);
        }
    }

    /// Adds every value of `other` (one histogram per appender task, merged at the end, so the
    /// tasks never contend on a shared one while measuring).
    pub fn merge(&mut self, other: &Latency) {
        // Both auto-resize, so adding cannot run out of range.
        let _ = self.histogram.add(&other.histogram);
    }

    /// p50/p99/p99.9 in microseconds, `None` if nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.histogram.is_empty() {
            return None;
        }
        let us = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1_000.0;
        Some(Percentiles {
            p50_us: us(0.50),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: self.histogram.max() as f64 / 1_000.0,
        })
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// The slowest value: one stall (a page fault storm, a descheduled thread) shows here first.
    pub max_us: f64,
}

/// What one scenario measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Messages (or records, or 4 KiB pages for the fdatasync baseline) written.
    pub messages: u64,
    /// Bytes that reached the file: for the store, CommitLog bytes (headers included), which is
    /// also exactly what the raw baselines write.
    pub bytes: u64,
    /// Measured wall time, including the final flush where there is one.
    pub seconds: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    /// Append (or fdatasync) latency; `None` where it is not measured per operation.
    pub latency: Option<Percentiles>,
    /// Part of `seconds` spent making the data durable after the last write (the final fsync, or
    /// the store's shutdown); `None` where every operation is durable when it returns.
    pub final_sync_seconds: Option<f64>,
}

impl Figures {
    pub fn new(
        messages: u64,
        bytes: u64,
        elapsed: Duration,
        latency: Option<Percentiles>,
        final_sync: Option<Duration>,
    ) -> Figures {
        // A zero duration would print infinities; a run that short is a nanosecond anyway.
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Figures {
            messages,
            bytes,
            seconds,
            msgs_per_s: messages as f64 / seconds,
            mb_per_s: bytes as f64 / MB / seconds,
            latency,
            final_sync_seconds: final_sync.map(|d| d.as_secs_f64()),
        }
    }

    /// The median of every figure separately over repeated runs of the same scenario. A median
    /// rather than a mean because the machine is shared: one run disturbed by a neighbour should
    /// not move the result.
    pub fn median(runs: &[&Figures]) -> Option<Figures> {
        let first = runs.first()?;
        let of = |f: &dyn Fn(&Figures) -> f64| median(runs.iter().map(|r| f(r)));
        let latency_of = |f: &dyn Fn(&Percentiles) -> f64| {
            median(runs.iter().filter_map(|r| r.latency.map(|l| f(&l))))
        };
        let latency = first.latency.and_then(|_| {
            Some(Percentiles {
                p50_us: latency_of(&|l| l.p50_us)?,
                p99_us: latency_of(&|l| l.p99_us)?,
                p999_us: latency_of(&|l| l.p999_us)?,
                max_us: latency_of(&|l| l.max_us)?,
            })
        });
        let final_sync: Vec<f64> = runs.iter().filter_map(|r| r.final_sync_seconds).collect();
        Some(Figures {
            messages: of(&|r| r.messages as f64)? as u64,
            bytes: of(&|r| r.bytes as f64)? as u64,
            seconds: of(&|r| r.seconds)?,
            msgs_per_s: of(&|r| r.msgs_per_s)?,
            mb_per_s: of(&|r| r.mb_per_s)?,
            latency,
            final_sync_seconds: median(final_sync),
        })
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([]), None);
    }

    #[test]
    fn latency_reports_microseconds() {
        let mut latency = Latency::new();
        for micros in 1..=1000u64 {
            latency.record(Duration::from_micros(micros));
        }
        let p = latency.percentiles().unwrap();
        assert!((p.p50_us - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_us - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max_us - 1000.0).abs() < 1.0, "{p:?}");
        assert_eq!(Latency::new().percentiles(), None);
    }

    #[test]
    fn figures_median_is_fieldwise() {
        let a = Figures::new(10, 1_000_000, Duration::from_secs(1), None, None);
        let b = Figures::new(30, 3_000_000, Duration::from_secs(1), None, None);
        let c = Figures::new(20, 2_000_000, Duration::from_secs(4), None, None);
        let m = Figures::median(&[&a, &b, &c]).unwrap();
        assert_eq!(m.messages, 20);
        assert_eq!(m.mb_per_s, 1.0);
        assert_eq!(m.seconds, 1.0);
    }
}
