//! The envproxy against a real manager (PostgreSQL, kube-apiserver) and real stand-in workspace
//! servers on loopback: bytes round-trip byte-exact on every route, the authorisation rules,
//! upstream faults, slow headers, limits, idle timeout and the drain.

use std::net::SocketAddr;
use std::time::Duration;

use coder_service::cli::EnvproxyArgs;
use coder_service::envproxy::Envproxy;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{Env, eventually};
use crate::standins::{self, DIE};

const IMAGE: &str = "codercom/enterprise-base:ubuntu";
const WAIT: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A manager with a running workspace owned by a member, its stand-in servers, and an envproxy.
pub struct ProxyEnv {
    pub env: Env,
    pub member: String,
    pub workspace: String,
    pub proxy: String,
    shutdown: Option<oneshot::Sender<()>>,
    pub stopped: Option<oneshot::Receiver<()>>,
}

/// Creates a workspace for `token` and drives it to `ON` (simulated readiness: no kubelet).
pub async fn running_workspace(env: &Env, token: &str, name: &str) -> String {
    let (status, workspace) = env
        .post(
            "/api/v0/workspaces",
            token,
            json!({ "name": name, "image": IMAGE }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{workspace}");
    let id = workspace["id"].as_str().expect("id").to_owned();
    let client = env.kube_client().await;
    coder_testenv::mark_deployment_available(&client, "default", &format!("ws-{id}"))
        .await
        .expect("simulate readiness");
    eventually("the workspace to be ON", WAIT, || async {
        let (_, workspace) = env.get(&format!("/api/v0/workspaces/{id}"), token).await;
        (workspace["state"] == "ON").then_some(())
    })
    .await;
    id
}

impl ProxyEnv {
    pub async fn start(tweak: impl FnOnce(&mut EnvproxyArgs)) -> Self {
        let env = Env::with_kubernetes().await;
        let (_, member) = env.create_member("dev@example.com").await;
        let workspace = running_workspace(&env, &member, "dev").await;
        let (ide, shell, ssh) = (
            standins::code_server().await,
            standins::shell().await,
            standins::tcp_echo().await,
        );
        let addresses = vec![
            format!("{workspace}:13337={ide}"),
            format!("{workspace}:26337={shell}"),
            format!("{workspace}:12212={ssh}"),
        ];
        let mut args = EnvproxyArgs::for_manager(&env.base);
        args.envproxy_token_file = Some(env.envproxy_token_file.path().to_owned());
        args.workspace_addresses = addresses;
        args.auth_cache_ttl = Duration::from_millis(500);
        tweak(&mut args);
        let (proxy, shutdown, stopped) = start_proxy(args).await;
        Self {
            env,
            member,
            workspace,
            proxy,
            shutdown: Some(shutdown),
            stopped: Some(stopped),
        }
    }

    pub fn url(&self, route: &str) -> String {
        format!("{}/proxy/workspaces/{}/{route}", self.proxy, self.workspace)
    }

    pub fn ws_url(&self, route: &str) -> String {
        self.url(route).replacen("http://", "ws://", 1)
    }

    /// Starts the drain (as SIGTERM does).
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Serves an envproxy on a free loopback port: (base URL, shutdown trigger, stopped signal).
pub async fn start_proxy(args: EnvproxyArgs) -> (String, oneshot::Sender<()>, oneshot::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    start_proxy_on(listener, args).await
}

/// [`start_proxy`] on a listener bound already (when the port goes into the arguments).
pub async fn start_proxy_on(
    listener: tokio::net::TcpListener,
    args: EnvproxyArgs,
) -> (String, oneshot::Sender<()>, oneshot::Receiver<()>) {
    let proxy = Envproxy::new(args.into()).expect("configure the envproxy");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (shutdown, signal) = oneshot::channel::<()>();
    let (done, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        proxy
            .serve(listener, async move {
                let _ = signal.await;
            })
            .await;
        let _ = done.send(());
    });
    (base, shutdown, stopped)
}

/// Opens a WebSocket with extra headers; `Err` holds the refused handshake's status.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, StatusCode> {
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            Err(StatusCode::from_u16(response.status().as_u16()).expect("status"))
        }
        Err(other) => panic!("connecting to {url}: {other}"),
    }
}

/// The next data or close message (pings are answered by the library and skipped).
async fn next(socket: &mut Socket) -> Message {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time")
            .expect("the stream continues")
            .expect("a valid message");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

/// Waits for the close frame and returns its code and reason.
async fn close_frame(socket: &mut Socket) -> (u16, String) {
    loop {
        match next(socket).await {
            Message::Close(Some(frame)) => return (u16::from(frame.code), frame.reason.to_string()),
            Message::Close(None) => return (1005, String::new()),
            _ => {}
        }
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn envproxy_routes_pass_http_websocket_and_tcp_bytes_exactly() {
    let proxy = ProxyEnv::start(|_| {}).await;
    let auth = [("Session-Token", proxy.member.as_str())];
    let http = reqwest::Client::new();

    // Plain HTTP: path and query kept, hop-by-hop and Coder credentials dropped, other cookies kept.
    let response = http
        .get(proxy.url("ide/static/a%20b.js?x=1&y=%2F"))
        .header("Session-Token", &proxy.member)
        .header("Connection", "x-hop")
        .header("x-hop", "secret")
        .header("Cookie", "coder_session=abc; theme=dark")
        .header("x-end-to-end", "kept")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "code-server");
    let echoed: Value = response.json().await.expect("json");
    assert_eq!(echoed["method"], "GET");
    assert_eq!(echoed["path"], "/static/a%20b.js");
    assert_eq!(echoed["query"], "x=1&y=%2F");
    let headers = &echoed["headers"];
    assert_eq!(headers["x-end-to-end"], "kept");
    assert_eq!(headers["cookie"], "theme=dark");
    assert!(headers.get("session-token").is_none(), "{headers}");
    assert!(headers.get("x-hop").is_none(), "{headers}");
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert!(
        headers["x-forwarded-host"]
            .as_str()
            .is_some_and(|h| h.starts_with("127.0.0.1:"))
    );

    // A 3 MiB body streams there and back unchanged.
    let upload = random_bytes(3 * 1024 * 1024, 1);
    let response = http
        .post(proxy.url("ide/raw"))
        .bearer_auth(&proxy.member)
        .body(upload.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.expect("body") == upload, "body differs");

    // `/ide` redirects to `/ide/` (code-server's relative links need the slash).
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = no_redirect
        .get(proxy.url("ide?folder=/home"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert!(
        response.headers()["location"]
            .to_str()
            .expect("location")
            .ends_with("/ide/?folder=/home")
    );

    // IDE WebSocket: subprotocol negotiated with code-server, text and binary echoed.
    let mut ide = connect(
        &proxy.ws_url("ide/stable-abc?reconnectionToken=1"),
        &[auth[0], ("Sec-WebSocket-Protocol", "coder-test")],
    )
    .await
    .expect("upgraded");
    ide.send(Message::text("hello, code-server")).await.expect("send");
    assert_eq!(next(&mut ide).await, Message::text("hello, code-server"));
    let payload = random_bytes(1024 * 1024, 2);
    ide.send(Message::binary(payload.clone())).await.expect("send");
    assert_eq!(next(&mut ide).await, Message::binary(payload));
    ide.close(None).await.expect("close");

    // Terminal: the shell's greeting, then its answers.
    let mut terminal = connect(&proxy.ws_url("terminal"), &auth).await.expect("upgraded");
    assert_eq!(next(&mut terminal).await, Message::text("coder shell\r\n$ "));
    terminal.send(Message::text("ls -la")).await.expect("send");
    assert_eq!(next(&mut terminal).await, Message::text("you said: ls -la"));

    // SSH: a raw TCP stream wrapped in binary messages; 512 KiB come back byte for byte.
    let mut ssh = connect(&proxy.ws_url("ssh"), &auth).await.expect("upgraded");
    let stream = random_bytes(512 * 1024, 3);
    for chunk in stream.chunks(10_000) {
        ssh.send(Message::binary(chunk.to_vec())).await.expect("send");
    }
    let mut received = Vec::new();
    while received.len() < stream.len() {
        match next(&mut ssh).await {
            Message::Binary(bytes) => received.extend_from_slice(&bytes),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(received == stream, "the TCP stream differs");
}

#[tokio::test]
async fn envproxy_authorises_owner_or_admin_on_http_and_upgrades() {
    let proxy = ProxyEnv::start(|_| {}).await;
    let env = &proxy.env;
    let (_, other) = env.create_member("other@example.com").await;
    let http = reqwest::Client::new();
    let get = |token: Option<&str>, route: &str| {
        let mut request = http.get(proxy.url(route));
        if let Some(token) = token {
            request = request.header("Session-Token", token);
        }
        request.send()
    };

    let no_token = get(None, "ide/").await.expect("request");
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    let body: Value = no_token.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let forged = "0123456789-0123456789abcdef0123456789abcdef";
    assert_eq!(
        get(Some(forged), "ide/").await.expect("r").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(Some(&other), "ide/").await.expect("r").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(Some(&proxy.member), "ide/").await.expect("r").status(),
        StatusCode::OK
    );
    assert_eq!(
        get(Some(&env.admin_token), "ide/").await.expect("r").status(),
        StatusCode::OK
    );
    let missing = http
        .get(format!(
            "{}/proxy/workspaces/ffffffffffffffffffffffff/ide/",
            proxy.proxy
        ))
        .header("Session-Token", &proxy.member)
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The same rules on WebSocket upgrades, before anything is upgraded.
    for route in ["ide/", "terminal", "ssh"] {
        let url = proxy.ws_url(route);
        assert_eq!(
            connect(&url, &[]).await.err(),
            Some(StatusCode::UNAUTHORIZED),
            "{route}"
        );
        assert_eq!(
            connect(&url, &[("Session-Token", &other)]).await.err(),
            Some(StatusCode::FORBIDDEN),
            "{route}"
        );
        assert!(
            connect(&url, &[("Authorization", &format!("Bearer {}", env.admin_token))])
                .await
                .is_ok()
        );
    }

    // The dashboard's cookie works, from the same origin only.
    let host = proxy.proxy.trim_start_matches("http://");
    let cookie = format!("coder_session={}", proxy.member);
    let same = [("Cookie", cookie.as_str()), ("Origin", &format!("http://{host}"))];
    assert!(connect(&proxy.ws_url("terminal"), &same).await.is_ok());
    let cross = [("Cookie", cookie.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(
        connect(&proxy.ws_url("terminal"), &cross).await.err(),
        Some(StatusCode::FORBIDDEN)
    );

    // A revoked token stops working within the cache lifetime, and its open sessions close (1008).
    let (_, temporary) = (
        0,
        env.login("dev@example.com", crate::harness::MEMBER_PASSWORD)
            .await,
    );
    let mut open = connect(&proxy.ws_url("terminal"), &[("Session-Token", &temporary)])
        .await
        .expect("upgraded");
    let (status, _) = env
        .call(reqwest::Method::POST, "/auth/logout", Some(&temporary), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (code, reason) = close_frame(&mut open).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("authentication"), "{reason}");
    assert_eq!(
        get(Some(&temporary), "ide/").await.expect("r").status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn envproxy_answers_503_for_a_stopped_workspace() {
    let proxy = ProxyEnv::start(|_| {}).await;
    let mut open = connect(&proxy.ws_url("terminal"), &[("Session-Token", &proxy.member)])
        .await
        .expect("upgraded");
    let (status, _) = proxy
        .env
        .post(
            &format!("/api/v0/workspaces/{}/stop", proxy.workspace),
            &proxy.member,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The open session is closed when the next check sees the workspace stopping.
    let (code, reason) = close_frame(&mut open).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("not running"), "{reason}");

    tokio::time::sleep(Duration::from_millis(600)).await;
    let http = reqwest::Client::new();
    let json = http
        .get(proxy.url("ide/"))
        .header("Session-Token", &proxy.member)
        .send()
        .await
        .expect("request");
    assert_eq!(json.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json.headers()["retry-after"], "10");
    let body: Value = json.json().await.expect("json");
    assert_eq!(body["error"]["code"], "workspace_not_running");
    let page = http
        .get(proxy.url("ide/"))
        .header("Session-Token", &proxy.member)
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = page.text().await.expect("text");
    assert!(text.contains("<h1>the workspace is not running"), "{text}");
    assert_eq!(
        connect(&proxy.ws_url("ssh"), &[("Session-Token", &proxy.member)])
            .await
            .err(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn envproxy_closes_with_a_reason_when_the_workspace_refuses_or_dies() {
    let refused_ide = standins::closed_port();
    let proxy = ProxyEnv::start(|args| {
        args.max_message_bytes = 64 * 1024;
        // The IDE port refuses connections.
        args.workspace_addresses
            .retain(|entry| !entry.contains(":13337="));
        args.workspace_addresses.push(format!("*:13337={refused_ide}"));
    })
    .await;
    let auth = [("Session-Token", proxy.member.as_str())];

    // Refusing: the client is upgraded, then told why (browsers cannot read a failed handshake).
    let mut ide = connect(&proxy.ws_url("ide/"), &auth).await.expect("upgraded");
    let (code, reason) = close_frame(&mut ide).await;
    assert_eq!(code, 1011);
    assert!(
        reason.contains("13337") && reason.contains("unreachable"),
        "{reason}"
    );
    let http = reqwest::Client::new();
    let plain = http
        .get(proxy.url("ide/"))
        .header(auth[0].0, auth[0].1)
        .send()
        .await
        .expect("r");
    assert_eq!(plain.status(), StatusCode::BAD_GATEWAY);

    // Dying mid-stream: the TCP echo resets, the shell drops its socket.
    let mut ssh = connect(&proxy.ws_url("ssh"), &auth).await.expect("upgraded");
    ssh.send(Message::binary(b"ping".to_vec())).await.expect("send");
    assert_eq!(next(&mut ssh).await, Message::binary(b"ping".to_vec()));
    ssh.send(Message::binary(DIE.as_bytes().to_vec()))
        .await
        .expect("send");
    let (code, reason) = close_frame(&mut ssh).await;
    assert_eq!(code, 1011, "{reason}");
    assert!(reason.starts_with("workspace connection lost"), "{reason}");

    let mut terminal = connect(&proxy.ws_url("terminal"), &auth).await.expect("upgraded");
    let _greeting = next(&mut terminal).await;
    terminal.send(Message::text(DIE)).await.expect("send");
    let (code, reason) = close_frame(&mut terminal).await;
    assert_eq!(code, 1011, "{reason}");

    // A message over --max-message-bytes: 1009 to the sender.
    let mut terminal = connect(&proxy.ws_url("terminal"), &auth).await.expect("upgraded");
    let _greeting = next(&mut terminal).await;
    terminal
        .send(Message::binary(vec![7u8; 100 * 1024]))
        .await
        .expect("send");
    let (code, reason) = close_frame(&mut terminal).await;
    assert_eq!(code, u16::from(CloseCode::Size), "{reason}");
}

#[tokio::test]
async fn envproxy_cuts_slow_headers() {
    let proxy = ProxyEnv::start(|args| args.header_timeout = Duration::from_secs(1)).await;
    let address: SocketAddr = proxy.proxy.trim_start_matches("http://").parse().expect("addr");
    let mut slow = TcpStream::connect(address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    // Trickle a header byte every 300 ms; the server must give up after about 1 s.
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                return;
            }
            tokio::select! {
                read = slow.read_buf(&mut buffer) => if matches!(read, Ok(0) | Err(_)) { return },
                () = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the slow client was not disconnected");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A normal client is unaffected.
    let ok = reqwest::get(format!("{}/healthz", proxy.proxy))
        .await
        .expect("healthz");
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn envproxy_limits_idles_out_and_drains() {
    let mut proxy = ProxyEnv::start(|args| {
        args.max_connections_per_user = 2;
        args.idle_timeout = Duration::from_secs(2);
        args.keepalive_interval = Duration::from_millis(300);
        args.drain_period = Duration::from_secs(2);
    })
    .await;
    let auth = [("Session-Token", proxy.member.as_str())];
    let mut first = connect(&proxy.ws_url("terminal"), &auth).await.expect("first");
    let mut second = connect(&proxy.ws_url("ssh"), &auth).await.expect("second");
    assert_eq!(
        connect(&proxy.ws_url("ssh"), &auth).await.err(),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    // Another user has their own allowance.
    assert!(
        connect(&proxy.ws_url("ssh"), &[("Session-Token", &proxy.env.admin_token)])
            .await
            .is_ok()
    );

    // Idle: no data for 2 s closes with 1001 (pings every 300 ms do not count as activity).
    let _greeting = next(&mut first).await;
    let (code, reason) = close_frame(&mut first).await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    drop(second.close(None).await);
    drop(second);

    let metrics = reqwest::get(format!("{}/metrics", proxy.proxy))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("coder_envproxy_websocket_sessions_ended_total{end=\"idle\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coder_envproxy_refused_total{code=\"too_many_connections\"} 1\n"),
        "{metrics}"
    );

    // Drain: readiness fails, new requests are refused, open sessions go on until the period ends.
    let ready = reqwest::get(format!("{}/readyz", proxy.proxy))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let mut open = eventually("a free slot", WAIT, || async {
        connect(&proxy.ws_url("ssh"), &auth).await.ok()
    })
    .await;
    proxy.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        reqwest::get(format!("{}/readyz", proxy.proxy)).await.is_err(),
        "the listener is closed"
    );
    open.send(Message::binary(b"still here".to_vec()))
        .await
        .expect("send");
    assert_eq!(next(&mut open).await, Message::binary(b"still here".to_vec()));
    let (code, reason) = close_frame(&mut open).await;
    assert_eq!(code, 1001);
    assert!(reason.contains("shutting down"), "{reason}");
    let stopped = proxy.stopped.take().expect("receiver");
    tokio::time::timeout(Duration::from_secs(15), stopped)
        .await
        .expect("the envproxy stops after the drain")
        .expect("stopped");
}

#[tokio::test]
async fn envproxy_token_guards_the_managers_private_routes() {
    let env = Env::start().await;
    let http = reqwest::Client::new();
    let ping = |token: Option<&str>| {
        let mut request = http.get(format!("{}/api/private/envproxy/ping", env.base));
        if let Some(token) = token {
            request = request.header("Coder-Envproxy-Token", token);
        }
        request.send()
    };
    assert_eq!(ping(None).await.expect("r").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        ping(Some("wrong")).await.expect("r").status(),
        StatusCode::UNAUTHORIZED
    );
    // A user's session token is not the envproxy's token.
    assert_eq!(
        ping(Some(&env.admin_token)).await.expect("r").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        ping(Some(&env.envproxy_token)).await.expect("r").status(),
        StatusCode::NO_CONTENT
    );
    let missing = http
        .get(format!(
            "{}/api/private/envproxy/workspaces/ffffffffffffffffffffffff",
            env.base
        ))
        .header("Coder-Envproxy-Token", &env.envproxy_token)
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The envproxy's readiness follows the manager's acceptance of its token.
    let mut args = EnvproxyArgs::for_manager(&env.base);
    args.envproxy_token_file = Some(env.envproxy_token_file.path().to_owned());
    let (proxy, _shutdown, _stopped) = start_proxy(args).await;
    let ready = reqwest::get(format!("{proxy}/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let (unconfigured, _shutdown2, _stopped2) = start_proxy(EnvproxyArgs::for_manager(&env.base)).await;
    let ready = reqwest::get(format!("{unconfigured}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn envproxy_applies_backpressure_to_a_client_that_does_not_read() {
    let proxy = ProxyEnv::start(|_| {}).await;
    let socket = connect(&proxy.ws_url("ssh"), &[("Session-Token", &proxy.member)])
        .await
        .expect("upgraded");
    let (mut tx, mut rx) = socket.split();
    // The client writes and never reads; the TCP echo writes everything back. Without
    // backpressure the proxy would keep reading the client and buffering the echo.
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let chunk = vec![0xa5u8; 64 * 1024];
        for _ in 0..4096 {
            if tx.send(Message::binary(chunk.clone())).await.is_err() {
                return tx;
            }
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
        }
        tx
    });
    let stalled_at = eventually("the writer to stall", WAIT, || {
        let sent = sent.clone();
        async move {
            let before = sent.load(std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let after = sent.load(std::sync::atomic::Ordering::Relaxed);
            (before > 0 && before == after).then_some(after)
        }
    })
    .await;
    println!(
        "backpressure: a client that does not read stalls after {:.1} MiB in flight (socket buffers of four hops)",
        stalled_at as f64 / (1024.0 * 1024.0)
    );
    assert!(
        stalled_at < 96 * 1024 * 1024,
        "{stalled_at} bytes accepted from a non-reading client"
    );
    assert!(
        !writer.is_finished(),
        "the whole 256 MiB went through without anyone reading"
    );

    // Reading again lets everything through, byte for byte in count.
    let mut received = 0usize;
    while received < stalled_at {
        match next_binary(&mut rx).await {
            Some(len) => received += len,
            None => panic!("the connection closed"),
        }
    }
    writer.abort();
}

async fn next_binary(rx: &mut futures::stream::SplitStream<Socket>) -> Option<usize> {
    loop {
        match tokio::time::timeout(WAIT, rx.next()).await.ok()?? {
            Ok(Message::Binary(bytes)) => return Some(bytes.len()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            _ => return None,
        }
    }
}
