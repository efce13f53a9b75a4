//! The envproxy's Prometheus metrics (text format, in memory): open WebSocket sessions, the
//! memory they reserve against the budget, how sessions ended, refusals by code, and proxied
//! HTTP requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The gauges read at render time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// WebSocket sessions open now.
    pub open_sessions: usize,
    /// The memory they have reserved.
    pub reserved_bytes: usize,
    /// `--memory-budget`.
    pub budget_bytes: usize,
}

/// The counters.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions_started: AtomicU64,
    sessions_ended: Mutex<BTreeMap<&'static str, u64>>,
    refused: Mutex<BTreeMap<&'static str, u64>>,
    http_requests: AtomicU64,
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    let mut map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    *map.entry(key).or_default() += 1;
}

impl Metrics {
    /// A WebSocket session started.
    pub fn session_started(&self) {
        self.sessions_started.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket session ended (`end` is the relay's end label).
    pub fn session_ended(&self, end: &'static str) {
        bump(&self.sessions_ended, end);
    }

    /// A request was refused with this error code.
    pub fn refused(&self, code: &'static str) {
        bump(&self.refused, code);
    }

    /// A plain HTTP request was passed to a workspace.
    pub fn http_request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the gauges.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "coder_envproxy_websocket_sessions_open",
                "WebSocket sessions open now.",
                gauges.open_sessions,
            ),
            (
                "coder_envproxy_reserved_bytes",
                "Memory reserved by the open sessions (their worst case).",
                gauges.reserved_bytes,
            ),
            (
                "coder_envproxy_memory_budget_bytes",
                "The memory the sessions may reserve in all.",
                gauges.budget_bytes,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP coder_envproxy_websocket_sessions_started_total WebSocket sessions relayed."
        );
        let _ = writeln!(
            out,
            "# TYPE coder_envproxy_websocket_sessions_started_total counter"
        );
        let started = self.sessions_started.load(Ordering::Relaxed);
        let _ = writeln!(out, "coder_envproxy_websocket_sessions_started_total {started}");
        let sections = [
            (
                "coder_envproxy_websocket_sessions_ended_total",
                "end",
                "WebSocket sessions ended, by how.",
                &self.sessions_ended,
            ),
            (
                "coder_envproxy_refused_total",
                "code",
                "Requests refused, by error code.",
                &self.refused,
            ),
        ];
        for (name, label, help, map) in sections {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (key, count) in map.iter() {
                let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {count}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP coder_envproxy_http_requests_total Plain HTTP requests passed to workspaces."
        );
        let _ = writeln!(out, "# TYPE coder_envproxy_http_requests_total counter");
        let http = self.http_requests.load(Ordering::Relaxed);
        let _ = writeln!(out, "coder_envproxy_http_requests_total {http}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.session_started();
        metrics.session_ended("idle");
        metrics.refused("forbidden");
        metrics.refused("forbidden");
        let gauges = Gauges {
            open_sessions: 3,
            reserved_bytes: 10,
            budget_bytes: 20,
        };
        let text = metrics.render(&gauges);
        assert!(text.contains("coder_envproxy_websocket_sessions_open 3\n"));
        assert!(text.contains("coder_envproxy_reserved_bytes 10\n"));
        assert!(text.contains("coder_envproxy_memory_budget_bytes 20\n"));
        assert!(text.contains("coder_envproxy_websocket_sessions_ended_total{end=\"idle\"} 1\n"));
        assert!(text.contains("coder_envproxy_refused_total{code=\"forbidden\"} 2\n"));
    }
}
