//! Connecting to a workspace's port: a WebSocket handshake (code-server, the envagent shell) or
//! a raw TCP connection (the envagent SSH proxy), each with a connect timeout.

use std::time::Duration;

use axum::http::HeaderMap;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

use super::side::{FrameSink, FrameStream, upstream_tcp, upstream_websocket};

/// How long connecting to a workspace may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Read and write buffer size of each WebSocket (the library's default, 128 KiB, would cost an
/// idle connection a quarter of a megabyte per side).
pub const IO_BUFFER_BYTES: usize = 8 * 1024;

/// The write buffer's hard limit: one whole message plus the buffer (the library requires it to
/// exceed the buffer size, and a message must fit).
pub fn max_write_buffer(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_add(2 * IO_BUFFER_BYTES)
}

/// Headers the WebSocket library writes itself, never copied from the client's handshake.
const HANDSHAKE_HEADERS: [&str; 8] = [
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "content-length",
];

/// A connected workspace port.
pub struct Upstream {
    /// Its frames.
    pub side: (FrameStream, FrameSink),
    /// The subprotocol the workspace chose, to answer the client with.
    pub protocol: Option<HeaderValue>,
}

/// Opens a TCP connection to `address`.
pub async fn tcp(address: &str) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|error| format!("connecting to {address}: {error}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A raw TCP stream to `address`, relayed as binary messages.
pub async fn connect_tcp(address: &str) -> Result<Upstream, String> {
    Ok(Upstream {
        side: upstream_tcp(tcp(address).await?),
        protocol: None,
    })
}

/// A WebSocket to `ws://address{path_and_query}`, with the client's end-to-end headers
/// (already stripped of hop-by-hop headers and Coder credentials).
pub async fn connect_websocket(
    address: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    max_message_bytes: usize,
) -> Result<Upstream, String> {
    let stream = tcp(address).await?;
    let mut request = format!("ws://{address}{path_and_query}")
        .into_client_request()
        .map_err(|error| format!("invalid workspace address {address}: {error}"))?;
    for (name, value) in headers {
        if !HANDSHAKE_HEADERS.contains(&name.as_str()) {
            request.headers_mut().append(name.clone(), value.clone());
        }
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(IO_BUFFER_BYTES)
        .write_buffer_size(IO_BUFFER_BYTES)
        .max_write_buffer_size(max_write_buffer(max_message_bytes))
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let handshake = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
    let (socket, response) = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("the WebSocket handshake with {address} timed out"))?
        .map_err(|error| match error {
            tungstenite::Error::Http(response) => {
                format!("the workspace refused the WebSocket ({})", response.status())
            }
            other => format!("WebSocket handshake with {address}: {other}"),
        })?;
    Ok(Upstream {
        protocol: response.headers().get("sec-websocket-protocol").cloned(),
        side: upstream_websocket(socket),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_buffer_limit_exceeds_the_buffer_even_for_tiny_messages() {
        // The library panics at the handshake otherwise.
        for limit in [0, 1, IO_BUFFER_BYTES, 16 << 20, usize::MAX] {
            assert!(max_write_buffer(limit) > IO_BUFFER_BYTES);
        }
    }
}
