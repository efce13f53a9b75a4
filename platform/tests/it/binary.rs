//! The `coder-service` binary itself: flags and environment, JSON logs with request ids, the
//! generated admin password logged once, and a refusal to serve an unmigrated database.

use std::process::Stdio;
use std::time::Duration;

use coder_testenv::{KubeApiServer, Postgres};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::harness::eventually;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test]
async fn the_manager_binary_logs_json_with_request_ids() {
    let postgres = Postgres::start().await.expect("start PostgreSQL");
    let url = postgres.create_database("coder").await.expect("database");
    let kube = KubeApiServer::start().await.expect("start kube-apiserver");

    // Without migrations and without --migrate it refuses to start.
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
        .args(["manager", "--listen", "127.0.0.1:0"])
        .env("CODER_PG_URL", &url)
        .env("KUBECONFIG", kube.kubeconfig_path())
        .output()
        .await
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("coder-service migrate"));

    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
        .args(["manager", "--migrate", "--namespace", "default"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("CODER_PG_URL", &url)
        .env("KUBECONFIG", kube.kubeconfig_path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the manager");
    let stdout = child.stdout.take().expect("stdout");
    let lines = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<String>::new()));
    let reader = tokio::spawn({
        let lines = lines.clone();
        async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                lines.lock().await.push(line);
            }
        }
    });

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually("the manager to listen", Duration::from_secs(30), || async {
        let response = http
            .get(format!("{base}/healthz"))
            .header("x-request-id", "test-request-42")
            .send()
            .await;
        response.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    let (status, body) = {
        let response = http.get(format!("{base}/readyz")).send().await.expect("readyz");
        (response.status(), response.text().await.expect("body"))
    };
    assert!(status.is_success(), "{body}");

    child.start_kill().expect("stop the manager");
    let _ = child.wait().await;
    let _ = reader.await;
    let lines = lines.lock().await.clone();
    let logs: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}")))
        .collect();
    // Without an admin password file no password is generated, so none is ever logged; the
    // log says what to do instead.
    assert!(
        logs.iter().all(|log| log["fields"]["password"].is_null()),
        "a password in the log: {lines:#?}"
    );
    assert!(
        logs.iter().any(|log| log["fields"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("CODER_ADMIN_PASSWORD_FILE"))),
        "no log line says how to create the first admin: {lines:#?}"
    );
    assert!(
        logs.iter()
            .any(|log| log["span"]["request_id"] == "test-request-42"),
        "no log line carries the request id: {lines:#?}"
    );
}
