//! Prometheus metrics, rendered as text at `GET /metrics`.
//!
//! A handful of fixed series does not warrant a metrics framework: counters are atomics, and the
//! per-route series live in a map keyed by the route *pattern* (`/v1/topics/{topic}/messages`),
//! never the concrete path, so a client cannot grow it (unmatched paths share one key).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Route keys kept at most (the router has a few dozen patterns).
const MAX_ROUTES: usize = 256;
/// Error kinds kept at most.
const MAX_ERROR_KINDS: usize = 256;

#[derive(Default)]
struct RouteStats {
    /// Per bucket (and +Inf last): requests at or below its bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
    by_status: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
    pub produced_messages: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed_messages: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub acked_messages: AtomicU64,
    pub sse_streams: AtomicI64,
    broker_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, route: &str, method: &'static str, status: u16, latency: Duration) {
        let stats = self.route(route);
        let secs = latency.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        stats.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        stats
            .sum_micros
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
        stats.count.fetch_add(1, Ordering::Relaxed);
        *stats
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method, status))
            .or_default() += 1;
    }

    pub fn produced(&self, messages: u64, bytes: u64) {
        self.produced_messages
            .fetch_add(messages, Ordering::Relaxed);
        self.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn consumed(&self, messages: u64, bytes: u64) {
        self.consumed_messages
            .fetch_add(messages, Ordering::Relaxed);
        self.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a failed broker call by the error's slug (`broker-timeout`, ...).
    pub fn broker_error(&self, kind: &'static str) {
        let mut errors = self.broker_errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < MAX_ERROR_KINDS || errors.contains_key(kind) {
            *errors.entry(kind).or_default() += 1;
        }
    }

    fn route(&self, route: &str) -> Arc<RouteStats> {
        if let Some(stats) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(route)
        {
            return stats.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        let key = if routes.len() < MAX_ROUTES {
            route
        } else {
            "other"
        };
        routes.entry(key.to_string()).or_default().clone()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let routes: BTreeMap<String, Arc<RouteStats>> = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.push_str(
            "# HELP tern_gateway_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE tern_gateway_requests_total counter\n");
        for (route, stats) in &routes {
            let statuses = stats.by_status.lock().unwrap_or_else(|e| e.into_inner());
            for ((method, status), n) in statuses.iter() {
                let _ = writeln!(
                    out,
                    "tern_gateway_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP tern_gateway_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE tern_gateway_request_duration_seconds histogram\n");
        for (route, stats) in &routes {
            let route = escape(route);
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += stats.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "tern_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += stats.buckets[BUCKETS.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "tern_gateway_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "tern_gateway_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "tern_gateway_request_duration_seconds_count{{route=\"{route}\"}} {}",
                stats.count.load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "tern_gateway_produced_messages_total",
                "Messages stored through the gateway.",
                &self.produced_messages,
            ),
            (
                "tern_gateway_produced_bytes_total",
                "Body bytes of the messages stored.",
                &self.produced_bytes,
            ),
            (
                "tern_gateway_consumed_messages_total",
                "Messages delivered (pull, receive, SSE).",
                &self.consumed_messages,
            ),
            (
                "tern_gateway_consumed_bytes_total",
                "Body bytes of the messages delivered.",
                &self.consumed_bytes,
            ),
            (
                "tern_gateway_acked_messages_total",
                "Receipts acknowledged.",
                &self.acked_messages,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tern_gateway_sse_streams Open SSE streams.\n# TYPE tern_gateway_sse_streams gauge\ntern_gateway_sse_streams {}",
            self.sse_streams.load(Ordering::Relaxed)
        );
        out.push_str("# HELP tern_gateway_broker_errors_total Failed broker calls by kind.\n");
        out.push_str("# TYPE tern_gateway_broker_errors_total counter\n");
        for (kind, n) in self
            .broker_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "tern_gateway_broker_errors_total{{kind=\"{kind}\"}} {n}"
            );
        }
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.observe(
            "/v1/topics/{topic}/messages",
            "POST",
            200,
            Duration::from_millis(2),
        );
        m.observe(
            "/v1/topics/{topic}/messages",
            "POST",
            413,
            Duration::from_secs(60),
        );
        m.produced(1, 10);
        m.broker_error("broker-timeout");
        let text = m.render();
        assert!(text.contains(
            "tern_gateway_requests_total{route=\"/v1/topics/{topic}/messages\",method=\"POST\",status=\"200\"} 1"
        ));
        assert!(text.contains("le=\"0.0025\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("tern_gateway_produced_bytes_total 10"));
        assert!(text.contains("tern_gateway_broker_errors_total{kind=\"broker-timeout\"} 1"));
    }

    #[test]
    fn route_keys_are_bounded() {
        let m = Metrics::default();
        for i in 0..1000 {
            m.observe(&format!("/r{i}"), "GET", 200, Duration::ZERO);
        }
        assert!(m.routes.read().unwrap().len() <= MAX_ROUTES + 1);
    }
}
