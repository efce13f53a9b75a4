//! `coder-service probe`: tries a TCP connection to each `HOST:PORT` once and prints one JSON
//! line per target (`{"probe":"ADDR:PORT","open":BOOL,"detail":"..."}`), then
//! `{"probe_done":N}`. `coder-install check` runs it in a short-lived pod made from the platform
//! image (which holds nothing but this binary) and reads the lines from the pod's log: it is how
//! the check sees what a pod with given labels can reach inside the cluster.

use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpStream;

/// What one connection attempt found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeLine {
    /// The target as given (`HOST:PORT`).
    pub probe: String,
    /// Whether the connection opened.
    pub open: bool,
    /// Why not (refused, timed out, no route), or empty.
    pub detail: String,
}

/// Tries `target` once, giving up after `timeout` (a dropped packet is "closed" too).
pub async fn try_connect(target: &str, timeout: Duration) -> ProbeLine {
    let (open, detail) = match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
        Ok(Ok(_)) => (true, String::new()),
        Ok(Err(error)) => (false, error.to_string()),
        Err(_) => (false, format!("no answer within {} s", timeout.as_secs())),
    };
    ProbeLine {
        probe: target.to_owned(),
        open,
        detail,
    }
}

/// Tries every target in order and prints the lines on stdout.
pub async fn run(targets: &[String], timeout: Duration) -> Result<(), serde_json::Error> {
    for target in targets {
        let line = try_connect(target, timeout).await;
        println!("{}", serde_json::to_string(&line)?);
    }
    println!("{}", serde_json::json!({ "probe_done": targets.len() }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listening_port_is_open_and_a_closed_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let open = listener.local_addr().expect("address").to_string();
        let line = try_connect(&open, Duration::from_secs(2)).await;
        assert!(line.open, "{line:?}");
        drop(listener);
        let line = try_connect(&open, Duration::from_secs(2)).await;
        assert!(!line.open, "{line:?}");
        assert!(!line.detail.is_empty());
    }
}
