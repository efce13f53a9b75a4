//! Prometheus metrics in the text exposition format, kept in memory: request counts by method,
//! route and status, and a request latency histogram.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The manager's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        {
            let mut requests = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP coder_http_requests_total HTTP requests handled, by method, route and status.\n",
        );
        out.push_str("# TYPE coder_http_requests_total counter\n");
        {
            let requests = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ((method, route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "coder_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                    route.replace('\\', "\\\\").replace('"', "\\\"")
                );
            }
        }
        out.push_str("# HELP coder_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE coder_http_request_duration_seconds histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "coder_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "coder_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "coder_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "coder_http_request_duration_seconds_count {count}");
        out
    }
}

/// Middleware (a route layer, so the route template is known) that observes every request in
/// `metrics` (its state).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
