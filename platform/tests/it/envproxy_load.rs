//! Figures for the envproxy, measured on the real binary (`coder-service envproxy` as its own
//! process, so that its resident memory is its own): 1,000 concurrent idle WebSockets, and
//! WebSocket echo latency and throughput through the proxy versus straight to the workspace.
//! It prints the figures; it asserts behaviour and a generous memory bound, never timings.

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
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
        .args(["envproxy", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--manager-url", &env.base])
        .arg("--envproxy-token-file")
        .arg(env.envproxy_token_file.path())
        .args(["--workspace-address", &format!("{workspace}:13337={ide}")])
        .args(["--max-connections-per-user", "5000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start coder-service envproxy");
    let pid = child.id().expect("pid");
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
    let url = format!("ws://127.0.0.1:{port}/proxy/workspaces/{workspace}/ide/");
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
