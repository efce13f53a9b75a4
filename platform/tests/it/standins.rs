//! Real loopback servers standing in for a workspace's ports: an HTTP + WebSocket echo for
//! code-server (13337), a shell-like WebSocket peer for the envagent (26337), a TCP echo for
//! the SSH proxy (12212). Each can be told to die mid-stream.

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
/// of the request (method, path, query, headers, body length).
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
        response
            .headers_mut()
            .insert("x-upstream", axum::http::HeaderValue::from_static("code-server"));
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
