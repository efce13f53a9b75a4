//! Real loopback servers standing in for a workspace's ports: an HTTP + WebSocket echo for
//! code-server (13337), a shell-like WebSocket peer and a real `/bin/sh` for the envagent
//! (26337), a TCP echo for the SSH proxy (12212). Each can be told to die mid-stream.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The message that makes a stand-in drop its connection without a close frame.
pub const DIE: &str = "die now";

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// code-server's stand-in: a WebSocket echo (subprotocol `coder-test` if offered); for plain
/// HTTP, `/raw` echoes the body byte for byte and any other path answers a JSON description
/// of the request (method, path, query, headers, body length); `/set-cookies` also tries to
/// set the platform's cookies (and one of its own).
pub async fn code_server() -> SocketAddr {
    let router = Router::new().fallback(|request: Request| async move {
        let (mut parts, body) = request.into_parts();
        if parts.headers.contains_key("upgrade") {
            return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                Ok(upgrade) => upgrade
                    .protocols(["coder-test"])
                    .max_message_size(64 * 1024 * 1024)
                    .on_upgrade(echo)
                    .into_response(),
                Err(rejection) => rejection.into_response(),
            };
        }
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        if parts.uri.path() == "/raw" {
            return bytes.into_response();
        }
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        let mut response = axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_len": bytes.len(),
        }))
        .into_response();
        let headers = response.headers_mut();
        headers.insert("x-upstream", axum::http::HeaderValue::from_static("code-server"));
        if parts.uri.path() == "/set-cookies" {
            for line in [
                "coder_session=planted; Path=/",
                "__Host-coder_csrf=planted; Path=/; Secure",
                "coder_workspace_session=planted; Path=/",
                "theme=light; Path=/",
            ] {
                headers.append("set-cookie", axum::http::HeaderValue::from_static(line));
            }
        }
        response
    });
    serve(router).await
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let die = matches!(&message, Message::Text(text) if text.as_str() == DIE);
        if die || matches!(message, Message::Close(_)) {
            return;
        }
        let data = matches!(message, Message::Text(_) | Message::Binary(_));
        if data && socket.send(message).await.is_err() {
            return;
        }
    }
}

/// The envagent's shell stand-in: greets with a prompt, then answers each line with
/// `you said: <line>`.
pub async fn shell() -> SocketAddr {
    let router = Router::new().fallback(|upgrade: WebSocketUpgrade, _headers: HeaderMap| async move {
        upgrade.on_upgrade(|socket: WebSocket| async move {
            let (mut tx, mut rx) = socket.split();
            if tx.send(Message::text("coder shell\r\n$ ")).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = rx.next().await {
                let reply = match message {
                    Message::Text(text) if text.as_str() == DIE => return,
                    Message::Text(text) => format!("you said: {text}"),
                    Message::Binary(bytes) => format!("you said {} bytes", bytes.len()),
                    Message::Close(_) => return,
                    _ => continue,
                };
                if tx.send(Message::text(reply)).await.is_err() {
                    return;
                }
            }
        })
    });
    serve(router).await
}

/// The envagent's shell as the workspace image's stand-in runs it: each WebSocket runs a real
/// `/bin/sh` with piped standard streams; text and binary messages go to its stdin, its stdout
/// and stderr come back as binary messages, and the socket closes when the shell exits.
pub async fn real_shell() -> SocketAddr {
    let router = Router::new().fallback(|upgrade: WebSocketUpgrade| async move {
        upgrade.on_upgrade(|socket: WebSocket| async move {
            let Ok(mut child) = tokio::process::Command::new("/bin/sh")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
            else {
                return;
            };
            let (Some(mut stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return;
            };
            let (output_tx, mut output) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
            for mut reader in [
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                Box::new(stderr),
            ] {
                let output_tx = output_tx.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    while let Ok(read @ 1..) = reader.read(&mut buffer).await {
                        if output_tx.send(buffer[..read].to_vec()).await.is_err() {
                            return;
                        }
                    }
                });
            }
            drop(output_tx);
            let (mut tx, mut rx) = socket.split();
            loop {
                tokio::select! {
                    chunk = output.recv() => match chunk {
                        Some(bytes) => if tx.send(Message::Binary(bytes.into())).await.is_err() { return },
                        None => break,
                    },
                    message = rx.next() => match message {
                        Some(Ok(Message::Text(text))) => {
                            if stdin.write_all(text.as_bytes()).await.is_err() { break }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            if stdin.write_all(&bytes).await.is_err() { break }
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                }
            }
            let _ = tx.send(Message::Close(None)).await;
        })
    });
    serve(router).await
}

/// The SSH proxy's stand-in: a TCP echo; a connection that receives [`DIE`] is reset.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if buffer[..n] == *DIE.as_bytes() {
                                // Reset rather than close: SO_LINGER 0.
                                let _ = stream.set_zero_linger();
                                return;
                            }
                            if stream.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A loopback port nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// The ingress's stand-in (what the chart's Ingress routes, on one loopback port): a workspace
/// host (`ws-<id>.<anything>`) and `/proxy/` go to the envproxy, everything else to the
/// dashboard. It reads each request head to choose, then splices the bytes (WebSockets too);
/// plain requests get `Connection: close`, so that every request is routed on its own.
pub fn ingress(listener: TcpListener, dashboard: SocketAddr, envproxy: SocketAddr) {
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match client.read(&mut byte).await {
                        Ok(1) if head.len() < 64 * 1024 => head.push(byte[0]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let mut lines = text.split("\r\n");
                let request_line = lines.next().unwrap_or_default().to_owned();
                let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
                let header = |name: &str| {
                    text.split("\r\n").skip(1).find_map(|line| {
                        let (key, value) = line.split_once(':')?;
                        key.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| value.trim().to_ascii_lowercase())
                    })
                };
                let host = header("host").unwrap_or_default();
                let upgrade = header("upgrade").is_some();
                let to_envproxy = host.starts_with("ws-") || path.starts_with("/proxy/");
                let backend = if to_envproxy { envproxy } else { dashboard };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let mut forwarded = format!("{request_line}\r\n");
                for line in lines.filter(|line| !line.is_empty()) {
                    let name = line
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase();
                    if !upgrade && (name == "connection" || name == "keep-alive") {
                        continue;
                    }
                    forwarded.push_str(line);
                    forwarded.push_str("\r\n");
                }
                if !upgrade {
                    forwarded.push_str("Connection: close\r\n");
                }
                forwarded.push_str("\r\n");
                if upstream.write_all(forwarded.as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
}
