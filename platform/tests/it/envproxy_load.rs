//! Figures for the envproxy, measured on the real binary (`coder-service envproxy` as its own
//! process, so that its resident memory is its own): 1,000 concurrent idle WebSockets, and
//! WebSocket echo latency and throughput through the proxy versus straight to the workspace.
//! It prints the figures; it asserts behaviour and a generous memory bound, never timings.
//! And a bounded load that holds the memory budget: sessions beyond it are refused with 503,
//! the reserved memory never exceeds it, and the process's growth stays within it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::envproxy::{connect, running_workspace};
use crate::harness::Env;
use crate::standins;

const CONNECTIONS: usize = 1_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// Resident memory of a process, in KiB (from /proc).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn echo_latency(socket: &mut Socket, rounds: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let text = format!("latency probe {i:08}");
        let started = Instant::now();
        socket.send(Message::text(text.clone())).await.expect("send");
        loop {
            match socket.next().await.expect("open").expect("message") {
                Message::Text(reply) if reply.as_str() == text => break,
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    samples
}

/// Sends `total` bytes in 64 KiB binary messages while reading the echoes; MiB/s.
async fn echo_throughput(socket: Socket, total: usize) -> f64 {
    let chunk = vec![0x5au8; 64 * 1024];
    let messages = total / chunk.len();
    let (mut tx, mut rx) = socket.split();
    let started = Instant::now();
    let writer = async {
        for _ in 0..messages {
            tx.send(Message::binary(chunk.clone())).await.expect("send");
        }
    };
    let reader = async {
        let mut received = 0;
        while received < messages * chunk.len() {
            if let Message::Binary(bytes) = rx.next().await.expect("open").expect("message") {
                received += bytes.len();
            }
        }
    };
    tokio::join!(writer, reader);
    (messages * chunk.len()) as f64 / (1024.0 * 1024.0) / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envproxy_holds_1000_idle_websockets_and_prints_memory_latency_and_throughput() {
    let env = Env::with_kubernetes().await;
    let (_, member) = env.create_member("load@example.com").await;
    let workspace = running_workspace(&env, &member, "load").await;
    let ide = standins::code_server().await;
    let (mut child, base) = spawn_envproxy(
        &env,
        &workspace,
        ide,
        &[
            "--max-connections-per-user",
            "5000",
            "--max-connections",
            "2000",
            // 1,003 sessions of 64 KiB messages reserve about 345 MiB of the budget.
            "--max-message-bytes",
            "64Ki",
            "--memory-budget",
            "1Gi",
        ],
    )
    .await;
    let pid = child.id().expect("pid");
    let url = format!(
        "{}/proxy/workspaces/{workspace}/ide/",
        base.replacen("http://", "ws://", 1)
    );
    let auth = [("Session-Token", member.as_str())];

    // Warm up (allocator arenas, caches), then measure the baseline.
    let mut warm = connect(&url, &auth).await.expect("warm-up");
    let _ = echo_latency(&mut warm, 50).await;
    let baseline = rss_kib(pid);

    let mut sockets = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS / 100 {
        let batch = futures::future::join_all((0..100).map(|_| connect(&url, &auth))).await;
        sockets.extend(batch.into_iter().map(|socket| socket.expect("upgraded")));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_kib(pid);
    // They are idle, not dead: a sample still echoes.
    for socket in sockets.iter_mut().step_by(97) {
        socket.send(Message::text("still there?")).await.expect("send");
        loop {
            match socket.next().await.expect("open").expect("message") {
                Message::Text(reply) => {
                    assert_eq!(reply.as_str(), "still there?");
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let per_connection = (loaded.saturating_sub(baseline)) as f64 / CONNECTIONS as f64;
    for mut socket in sockets {
        let _ = socket.close(None).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    println!(
        "envproxy memory: baseline {} KiB; {CONNECTIONS} idle WebSockets (client and workspace side each) {} KiB \
         = {per_connection:.1} KiB per proxied connection; after closing them {} KiB",
        baseline, loaded, after
    );
    // Generous: each connection holds two 8 KiB-buffered WebSockets; a regression to the
    // library's 128 KiB default buffers would exceed it.
    assert!(
        per_connection < 200.0,
        "{per_connection:.1} KiB per idle connection"
    );

    // Latency and throughput: straight to the stand-in code-server, then through the proxy.
    let direct_url = format!("ws://{ide}/");
    let mut direct = connect(&direct_url, &[]).await.expect("direct");
    let direct_latency = echo_latency(&mut direct, 2_000).await;
    let mut proxied = connect(&url, &auth).await.expect("proxied");
    let proxied_latency = echo_latency(&mut proxied, 2_000).await;
    let (d50, d99) = (
        percentile(&direct_latency, 0.5),
        percentile(&direct_latency, 0.99),
    );
    let (p50, p99) = (
        percentile(&proxied_latency, 0.5),
        percentile(&proxied_latency, 0.99),
    );
    println!(
        "echo round trip (2,000 x 32 B): direct p50 {d50:?} p99 {d99:?}; through envproxy p50 {p50:?} p99 {p99:?}; \
         added p50 {:?}",
        p50.saturating_sub(d50)
    );
    let total = 128 * 1024 * 1024;
    let direct_rate = echo_throughput(connect(&direct_url, &[]).await.expect("direct"), total).await;
    let proxied_rate = echo_throughput(connect(&url, &auth).await.expect("proxied"), total).await;
    println!(
        "echo throughput (128 MiB in 64 KiB messages, both directions): direct {direct_rate:.0} MiB/s; \
         through envproxy {proxied_rate:.0} MiB/s (debug build of the proxy, 2 shared cores)"
    );
    let _ = child.kill().await;
}

/// The envproxy's `/metrics` value of `name`.
async fn metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Starts the real `coder-service envproxy` with `extra` flags; (child, base URL).
async fn spawn_envproxy(
    env: &Env,
    workspace: &str,
    ide: std::net::SocketAddr,
    extra: &[&str],
) -> (tokio::process::Child, String) {
    let port = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
        .args(["envproxy", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--manager-url", &env.base])
        .arg("--envproxy-token-file")
        .arg(env.envproxy_token_file.path())
        .args(["--workspace-address", &format!("{workspace}:13337={ide}")])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start coder-service envproxy");
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(ready) = reqwest::get(format!("{base}/readyz")).await
            && ready.status() == StatusCode::OK
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "envproxy not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envproxy_load_holds_the_memory_budget_and_refuses_excess_connections_with_503() {
    const MESSAGE: usize = 256 * 1024;
    const BUDGET: usize = 9 * 1024 * 1024;
    let env = Env::with_kubernetes().await;
    let (_, member) = env.create_member("load@example.com").await;
    let workspace = running_workspace(&env, &member, "load").await;
    let ide = standins::code_server().await;
    // Each session reserves about 4 x 256 KiB + buffers (1,120 KiB): 8 fit in 9 MiB.
    let (mut child, base) = spawn_envproxy(
        &env,
        &workspace,
        ide,
        &["--max-message-bytes", "256Ki", "--memory-budget", "9Mi"],
    )
    .await;
    let pid = child.id().expect("pid");
    let url = format!(
        "ws://127.0.0.1:{}/proxy/workspaces/{workspace}/ide/",
        base.rsplit(':').next().expect("port")
    );
    let budget = metric(&base, "coder_envproxy_memory_budget_bytes").await;
    assert_eq!(budget, BUDGET as u64);

    // Warm up, then the baseline.
    let warm = connect(&url, &[("Session-Token", member.as_str())])
        .await
        .expect("warm-up");
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);

    // One member (and the admin) ask for 12 sessions: 8 are admitted, the others refused with
    // a clear 503 before anything is upgraded.
    let users = [member.as_str(), env.admin_token.as_str()];
    let mut admitted = Vec::new();
    let mut refused = 0;
    for i in 0..12 {
        match connect(&url, &[("Session-Token", users[i % 2])]).await {
            Ok(socket) => admitted.push(socket),
            Err(status) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                refused += 1;
            }
        }
    }
    assert_eq!((admitted.len(), refused), (8, 4));
    let refusal = reqwest::Client::new()
        .get(url.replacen("ws://", "http://", 1))
        .header("Session-Token", &member)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("refused upgrade");
    assert_eq!(refusal.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refusal.headers()["retry-after"], "10");
    let body: serde_json::Value = refusal.json().await.expect("json");
    assert_eq!(body["error"]["code"], "proxy_at_capacity", "{body}");

    // Every admitted session pushes full-size messages both ways and never reads: the proxy
    // fills each direction to its one message while the reserved memory stays in the budget.
    let writers: Vec<_> = admitted
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            tokio::spawn(async move {
                let (mut tx, rx) = socket.split();
                let message = vec![i as u8; MESSAGE];
                for _ in 0..64 {
                    if tx.send(Message::binary(message.clone())).await.is_err() {
                        break;
                    }
                }
                (tx, rx)
            })
        })
        .collect();
    let mut peak_rss = 0;
    let mut peak_reserved = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak_rss = peak_rss.max(rss_kib(pid));
        let reserved = metric(&base, "coder_envproxy_reserved_bytes").await;
        assert!(reserved <= budget, "reserved {reserved} > budget {budget}");
        peak_reserved = peak_reserved.max(reserved);
    }
    let growth_kib = peak_rss.saturating_sub(baseline);
    println!(
        "memory budget {} KiB: 8 sessions reserve {} KiB; stalled at full-size messages both ways \
         the envproxy's RSS grew {growth_kib} KiB (baseline {baseline} KiB, peak {peak_rss} KiB)",
        budget / 1024,
        peak_reserved / 1024
    );
    assert!(peak_reserved > 0 && peak_reserved <= budget);
    // What the process really holds stays within the budget (with room for the allocator).
    assert!(
        growth_kib * 1024 <= budget + 4 * 1024 * 1024,
        "RSS grew {growth_kib} KiB for a {} KiB budget",
        budget / 1024
    );

    // Ending sessions gives their reservation back: a new one is admitted.
    for writer in writers {
        writer.abort();
        let _ = writer.await;
    }
    let admitted_again =
        crate::harness::eventually("a session to fit again", Duration::from_secs(20), || async {
            connect(&url, &[("Session-Token", member.as_str())]).await.ok()
        })
        .await;
    drop(admitted_again);
    let _ = child.kill().await;
}
