//! Load benchmark of the manager (not a timed test): starts PostgreSQL from `coder-testenv`
//! and a manager on a free loopback port, logs in, then sends authenticated API requests
//! (`GET /api/v0/users/me`, `/api/v0/workspaces`, `/api/v0/api-keys` in turn) and prints the
//! latency percentiles. Target: p99 under 50 ms.
//!
//! `BENCH_REQUESTS` (default 1000) and `BENCH_CONCURRENCY` (default 8) tune it; run with
//! `scripts/bench-manager.sh` or `cargo benches -p coder-service --bench manager`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coder_service::cli::ManagerArgs;
use coder_service::manager::Manager;
use coder_testenv::Postgres;
use tokio::sync::Mutex;

const PATHS: [&str; 3] = ["/api/v0/users/me", "/api/v0/workspaces", "/api/v0/api-keys"];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests = env_number("BENCH_REQUESTS", 1000);
    let concurrency = env_number("BENCH_CONCURRENCY", 8).max(1);

    let postgres = Postgres::start().await?;
    let url = postgres.create_database("coder").await?;
    let password_file = tempfile::NamedTempFile::new()?;
    std::fs::write(password_file.path(), "bench-admin-password")?;
    let mut args = ManagerArgs::for_database(url);
    args.admin_password_file = Some(password_file.path().to_owned());
    let manager = Manager::start(args.into(), None).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(manager.serve(listener, async move {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/auth/basic/login"))
        .json(&serde_json::json!({ "email": "admin@coder.local", "password": "bench-admin-password" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["session_token"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!token.is_empty(), "login returned no token: {login}");

    // Warm up connections and the pool.
    for path in PATHS {
        http.get(format!("{base}{path}"))
            .header("Session-Token", &token)
            .send()
            .await?
            .error_for_status()?;
    }

    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, base, token, latencies, next) = (
            http.clone(),
            base.clone(),
            token.clone(),
            latencies.clone(),
            next.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= requests {
                    return Ok::<(), anyhow::Error>(());
                }
                let path = PATHS[n % PATHS.len()];
                let sent = Instant::now();
                let response = http
                    .get(format!("{base}{path}"))
                    .header("Session-Token", &token)
                    .send()
                    .await?;
                let status = response.status();
                response.bytes().await?;
                let elapsed = sent.elapsed();
                anyhow::ensure!(status.is_success(), "{path} answered {status}");
                latencies.lock().await.push(elapsed);
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let wall = started.elapsed();
    let mut latencies = latencies.lock().await.clone();
    latencies.sort_unstable();
    let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
    println!(
        "manager bench: {} authenticated requests, concurrency {concurrency}, {:.0} req/s",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 50 ms: {})",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        if p99 < Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        }
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
