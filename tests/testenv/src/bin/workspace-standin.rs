//! `workspace-standin`: the program of coder-testenv's workspace image, standing in for
//! code-server and the envagent of `codercom/enterprise-base` on their ports:
//!
//! - HTTP on `$STANDIN_HTTP_ADDR` (default `0.0.0.0:13337`, code-server): any path answers 200
//!   with a small HTML page that says `workspace stand-in` and names the path; a WebSocket
//!   upgrade there echoes every message.
//! - WebSocket on `$STANDIN_TERMINAL_ADDR` (default `0.0.0.0:26337`, the envagent shell): each
//!   connection runs `$STANDIN_SHELL` (default `/bin/sh`) with piped standard streams; the
//!   client's text and binary messages go to its stdin, its stdout and stderr come back as
//!   binary messages, and the socket closes when the shell exits.
//! - TCP on `$STANDIN_SSH_ADDR` (default `0.0.0.0:12212`, the envagent SSH proxy): echoes bytes.
//!
//! A WebSocket handshake that offers subprotocols is answered with the first one. Each
//! connection logs one line to stderr. SIGTERM and SIGINT stop the program (also as PID 1).

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The most a request head (request line and headers) may take.
const MAX_HEAD_BYTES: u64 = 16 * 1024;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a listener serves.
#[derive(Debug, Clone, Copy)]
enum Service {
    /// The code-server stand-in: a page, or an echoing WebSocket.
    Http,
    /// The envagent shell: a WebSocket to a shell.
    Terminal,
    /// The envagent SSH proxy stand-in: TCP echo.
    Echo,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Http => "http",
            Service::Terminal => "terminal",
            Service::Echo => "ssh-echo",
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("workspace-standin: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let http = bind("STANDIN_HTTP_ADDR", "0.0.0.0:13337").await?;
    let terminal = bind("STANDIN_TERMINAL_ADDR", "0.0.0.0:26337").await?;
    let ssh = bind("STANDIN_SSH_ADDR", "0.0.0.0:12212").await?;
    let shell = std::env::var("STANDIN_SHELL").unwrap_or_else(|_| "/bin/sh".to_owned());
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|error| format!("SIGTERM handler: {error}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|error| format!("SIGINT handler: {error}"))?;
    eprintln!(
        "workspace-standin: http on {}, terminal on {}, ssh echo on {}, shell {shell}",
        local(&http),
        local(&terminal),
        local(&ssh)
    );
    tokio::select! {
        () = serve(http, Service::Http, shell.clone()) => {}
        () = serve(terminal, Service::Terminal, shell.clone()) => {}
        () = serve(ssh, Service::Echo, shell) => {}
        _ = terminate.recv() => eprintln!("workspace-standin: SIGTERM, stopping"),
        _ = interrupt.recv() => eprintln!("workspace-standin: SIGINT, stopping"),
    }
    Ok(())
}

/// Binds the address in `variable`, or `default`.
async fn bind(variable: &str, default: &str) -> Result<TcpListener, String> {
    let address = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
    TcpListener::bind(&address)
        .await
        .map_err(|error| format!("binding {address} ({variable}): {error}"))
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_else(|error| format!("(unknown: {error})"))
}

/// Accepts connections for ever, each handled on its own task.
async fn serve(listener: TcpListener, service: Service, shell: String) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let shell = shell.clone();
                tokio::spawn(async move {
                    let outcome = match service {
                        Service::Http => http(stream, &shell, false).await,
                        Service::Terminal => http(stream, &shell, true).await,
                        Service::Echo => echo(stream).await,
                    };
                    let outcome = outcome.unwrap_or_else(|error| format!("failed: {error}"));
                    eprintln!("workspace-standin: {} {peer}: {outcome}", service.name());
                });
            }
            Err(error) => {
                // Out of file descriptors, say: wait instead of spinning.
                eprintln!("workspace-standin: {} accept: {error}", service.name());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// TCP echo until the client closes its side.
async fn echo(mut stream: TcpStream) -> Result<String, String> {
    let (mut reader, mut writer) = stream.split();
    let bytes = tokio::io::copy(&mut reader, &mut writer)
        .await
        .map_err(|error| format!("echo: {error}"))?;
    Ok(format!("echoed {bytes} bytes"))
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    /// Header names in lower case, with their trimmed values.
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Whether a header's comma-separated tokens include `token` (case-insensitive).
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key == name)
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    fn is_websocket(&self) -> bool {
        self.has_token("connection", "upgrade") && self.has_token("upgrade", "websocket")
    }
}

/// Reads a request head (up to the empty line), within [`MAX_HEAD_BYTES`].
async fn read_head<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Result<Head, String> {
    let mut limited = reader.take(MAX_HEAD_BYTES);
    let mut line = String::new();
    let read = limited
        .read_line(&mut line)
        .await
        .map_err(|error| format!("reading the request: {error}"))?;
    if read == 0 {
        return Err("closed before sending a request".to_owned());
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed request line {:?}", line.trim_end()));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        let read = limited
            .read_line(&mut line)
            .await
            .map_err(|error| format!("reading the request headers: {error}"))?;
        if read == 0 || !line.ends_with('\n') {
            return Err("the request head is truncated or too long".to_owned());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let Some((name, value)) = trimmed.split_once(':') else {
            return Err(format!("malformed header line {trimmed:?}"));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Head {
        method,
        target,
        headers,
    })
}

/// One HTTP request: a WebSocket (echo on the HTTP port, a shell on the terminal port) or, on
/// the HTTP port, the page. The connection closes after a plain response.
async fn http(stream: TcpStream, shell: &str, terminal: bool) -> Result<String, String> {
    let _ = stream.set_nodelay(true);
    let mut stream = BufReader::new(stream);
    let head = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| "no request head in time".to_owned())??;
    let summary = format!("{} {}", head.method, head.target);
    if head.is_websocket() {
        let Some(key) = head.header("sec-websocket-key") else {
            bad_request(&mut stream, "missing Sec-WebSocket-Key\n").await?;
            return Ok(format!("{summary}: 400 (no Sec-WebSocket-Key)"));
        };
        let protocol = head
            .header("sec-websocket-protocol")
            .and_then(|offered| offered.split(',').next())
            .map(str::trim)
            .filter(|protocol| !protocol.is_empty());
        let mut response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            derive_accept_key(key.as_bytes())
        );
        if let Some(protocol) = protocol {
            response.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
        }
        response.push_str("\r\n");
        write_all(&mut stream, response.as_bytes()).await?;
        let socket = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
        let outcome = if terminal {
            run_shell(socket, shell).await?
        } else {
            echo_messages(socket).await?
        };
        return Ok(format!("{summary}: WebSocket, {outcome}"));
    }
    if terminal {
        bad_request(&mut stream, "this port serves the terminal WebSocket\n").await?;
        return Ok(format!("{summary}: 400 (not a WebSocket)"));
    }
    let path = escape_html(&head.target);
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>workspace stand-in</title></head>\n<body><h1>workspace stand-in</h1>\n<p>coder-testenv's stand-in for code-server. Path: <code>{path}</code></p></body></html>\n"
    );
    let body = if head.method == "HEAD" { "" } else { page.as_str() };
    respond_sized(
        &mut stream,
        "200 OK",
        "text/html; charset=utf-8",
        body,
        page.len(),
    )
    .await?;
    Ok(format!("{summary}: 200"))
}

async fn bad_request<S: AsyncWrite + Unpin>(stream: &mut S, message: &str) -> Result<(), String> {
    respond_sized(stream, "400 Bad Request", "text/plain", message, message.len()).await
}

/// Writes a response whose `Content-Length` is `length` (that of the body a GET would get).
async fn respond_sized<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    content_type: &str,
    body: &str,
    length: usize,
) -> Result<(), String> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
    );
    write_all(stream, response.as_bytes()).await?;
    stream
        .shutdown()
        .await
        .map_err(|error| format!("closing: {error}"))
}

async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), String> {
    stream
        .write_all(bytes)
        .await
        .map_err(|error| format!("writing the response: {error}"))?;
    stream
        .flush()
        .await
        .map_err(|error| format!("writing the response: {error}"))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Echoes text and binary messages until the client closes.
async fn echo_messages<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: WebSocketStream<S>,
) -> Result<String, String> {
    let mut count = 0u64;
    while let Some(message) = socket.next().await {
        let message = message.map_err(|error| format!("after {count} messages: {error}"))?;
        if message.is_text() || message.is_binary() {
            count += 1;
            socket
                .send(message)
                .await
                .map_err(|error| format!("echoing message {count}: {error}"))?;
        }
    }
    Ok(format!("echoed {count} messages"))
}

/// Runs the shell for one terminal WebSocket until the shell's output ends or the client leaves.
async fn run_shell<S: AsyncRead + AsyncWrite + Unpin>(
    socket: WebSocketStream<S>,
    shell: &str,
) -> Result<String, String> {
    let mut child = Command::new(shell)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("starting {shell}: {error}"))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the shell's standard streams are not piped".to_owned());
    };
    let (output_tx, mut output) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(pump(stdout, output_tx.clone()));
    tokio::spawn(pump(stderr, output_tx));
    let (input, mut input_rx) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        while let Some(bytes) = input_rx.recv().await {
            if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
    });

    let (mut sink, mut stream) = socket.split();
    let ended = loop {
        tokio::select! {
            chunk = output.recv() => match chunk {
                Some(bytes) => sink
                    .send(Message::binary(bytes))
                    .await
                    .map_err(|error| format!("sending shell output: {error}"))?,
                None => break "the shell's output ended",
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let _ = input.send(text.as_bytes().to_vec()).await;
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let _ = input.send(bytes.to_vec()).await;
                }
                Some(Ok(Message::Close(_))) | None => break "the client closed",
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(format!("reading from the client: {error}")),
            },
        }
    };
    drop(input);
    let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => {
            let _ = child.kill().await;
            "killed".to_owned()
        }
    };
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
    Ok(format!("{ended}, shell {status}"))
}

/// Forwards what `reader` yields to `output` until it ends.
async fn pump<R: AsyncRead + Unpin>(mut reader: R, output: mpsc::Sender<Vec<u8>>) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if output.send(buffer[..read].to_vec()).await.is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_head_is_parsed_with_lower_case_header_names() {
        let request: &[u8] = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let head = read_head(&mut BufReader::new(request)).await.expect("head");
        assert_eq!((head.method.as_str(), head.target.as_str()), ("GET", "/a?b=1"));
        assert_eq!(head.header("host"), Some("x"));
        assert!(head.is_websocket());
    }

    #[tokio::test]
    async fn a_head_without_its_end_is_refused() {
        let request: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
        assert!(read_head(&mut BufReader::new(request)).await.is_err());
    }

    #[test]
    fn the_page_escapes_the_path() {
        assert_eq!(
            escape_html("/<a href=\"x\">&'"),
            "/&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
