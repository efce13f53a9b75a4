//! Workspaces on their own origins (`ws-<id>.<domain>`): over HTTP, the ticket and cookie rules
//! of the envproxy's workspace hosts; in a real headless Chromium behind an ingress stand-in
//! (one origin for the dashboard and `/proxy/`, as the chart's Ingress serves them), a page a
//! member serves from their workspace, opened by an admin, cannot read or use the admin's
//! dashboard session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use coder_service::cli::DashboardArgs;
use coder_service::cli::EnvproxyArgs;
use coder_testenv::browser::{Browser, BrowserOptions, Cookie};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::dashboard::start_dashboard;
use crate::envproxy::{ProxyEnv, connect, running_workspace, start_proxy};
use crate::harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Env, MEMBER_PASSWORD, eventually};
use crate::standins;

/// The wildcard domain of these tests (mapped to loopback for Chromium).
const DOMAIN: &str = "coder.test";

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The `name=value` of the first `Set-Cookie` for `name`, and its whole line.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.starts_with(&format!("{name}=")))
        .map(|line| {
            let pair = line.split(';').next().unwrap_or_default().to_owned();
            (pair, line.to_owned())
        })
}

/// The status and the error body's `code` (empty when there is none).
pub async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn workspace_origin_hosts_take_only_their_own_one_time_ticket_and_cookie() {
    let base_url = format!("http://{DOMAIN}");
    let proxy = ProxyEnv::start(|args| args.workspace_base_url = base_url).await;
    let env = &proxy.env;
    let (_, other) = env.create_member("other@example.com").await;
    let admin_workspace = running_workspace(env, &env.admin_token, "admin-ws").await;
    let (ws, ws_host) = (&proxy.workspace, format!("ws-{}.{DOMAIN}", proxy.workspace));
    let http = no_redirects();
    // A fresh session of the member's, logged out at the end.
    let session = env.login("dev@example.com", MEMBER_PASSWORD).await;
    let dashboard_cookie = format!("coder_session={session}");
    let open = |cookie: String, id: String| {
        http.get(format!("{}/proxy/workspaces/{id}/open", proxy.proxy))
            .header("Cookie", cookie)
            .send()
    };
    let on_host = |host: &str, path: &str| {
        http.get(format!("{}{path}", proxy.proxy))
            .header("Host", host.to_owned())
    };

    // The platform origin hands the owner a one-time ticket for the workspace's own origin.
    let opened = open(dashboard_cookie.clone(), ws.clone()).await.expect("open");
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    assert_eq!(opened.headers()["referrer-policy"], "no-referrer");
    let target = location(opened.headers());
    let prefix = format!("http://{ws_host}/__coder/auth?ticket=");
    assert!(target.starts_with(&prefix), "{target}");
    let path = target.trim_start_matches(&format!("http://{ws_host}")).to_owned();
    assert!(!target.contains(&session), "the ticket is sealed");
    // Not to someone else's workspace.
    let (status, _) = error_code(
        open(format!("coder_session={other}"), ws.clone())
            .await
            .expect("r"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A ticket opens only its own workspace's host...
    let elsewhere = on_host(&format!("ws-{admin_workspace}.{DOMAIN}"), &path)
        .send()
        .await
        .expect("r");
    assert_eq!(
        error_code(elsewhere).await,
        (StatusCode::UNAUTHORIZED, "invalid_ticket".to_owned())
    );
    // ... where it becomes a host-only HttpOnly cookie, once.
    let exchanged = on_host(&ws_host, &path).send().await.expect("exchange");
    assert_eq!(exchanged.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(exchanged.headers()), "/");
    let (cookie, line) = set_cookie(exchanged.headers(), "coder_workspace_session").expect("cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(attribute), "{line}");
    }
    assert!(
        !line.to_ascii_lowercase().contains("domain="),
        "host-only: {line}"
    );
    let replayed = on_host(&ws_host, &path).send().await.expect("r");
    assert_eq!(
        error_code(replayed).await,
        (StatusCode::UNAUTHORIZED, "invalid_ticket".to_owned())
    );
    let forged = on_host(&ws_host, "/__coder/auth?ticket=00ff")
        .send()
        .await
        .expect("r");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // The cookie reaches the workspace's whole path space, and no platform cookie goes with it,
    // nor can the workspace set one.
    let page = on_host(&ws_host, "/set-cookies?x=1")
        .header("Cookie", format!("{cookie}; {dashboard_cookie}; theme=dark"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let set: Vec<&str> = page
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(set, ["theme=light; Path=/"]);
    let echoed: Value = page.json().await.expect("json");
    assert_eq!(echoed["path"], "/set-cookies");
    assert_eq!(echoed["headers"]["cookie"], "theme=dark");

    // Nothing else authenticates on a workspace host: not the dashboard's cookie, not a token
    // header, not the cookie of another workspace's host.
    for (host, headers) in [
        (&ws_host, vec![("Cookie", dashboard_cookie.clone())]),
        (&ws_host, vec![("Session-Token", session.clone())]),
        (
            &format!("ws-{admin_workspace}.{DOMAIN}"),
            vec![("Cookie", cookie.clone())],
        ),
    ] {
        let mut request = on_host(host, "/");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        assert_eq!(
            error_code(request.send().await.expect("r")).await,
            (StatusCode::UNAUTHORIZED, "workspace_session_required".to_owned()),
            "{host}"
        );
    }
    // Another origin may navigate to the workspace, not use its cookie from a script or frame.
    let fetched = on_host(&ws_host, "/")
        .header("Cookie", &cookie)
        .header("Sec-Fetch-Site", "same-site")
        .header("Sec-Fetch-Mode", "cors")
        .header("Sec-Fetch-Dest", "empty")
        .send()
        .await
        .expect("r");
    assert_eq!(
        error_code(fetched).await,
        (StatusCode::FORBIDDEN, "cross_origin".to_owned())
    );
    let post = |origin: String| {
        http.post(format!("{}/", proxy.proxy))
            .header("Host", ws_host.clone())
            .header("Cookie", cookie.clone())
            .header("Origin", origin)
            .body("x")
            .send()
    };
    let other_origin = format!("http://ws-{admin_workspace}.{DOMAIN}");
    assert_eq!(
        post(other_origin).await.expect("r").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(format!("http://{ws_host}")).await.expect("r").status(),
        StatusCode::OK
    );
    // WebSockets on the workspace host: same origin, with the cookie.
    let ws_url = format!("{}/echo", proxy.proxy.replacen("http://", "ws://", 1));
    let same = [
        ("Host", ws_host.as_str()),
        ("Cookie", cookie.as_str()),
        ("Origin", &format!("http://{ws_host}")),
    ];
    let mut socket = connect(&ws_url, &same).await.expect("upgraded");
    socket.send(Message::text("hello")).await.expect("send");
    let echoed = socket.next().await.expect("open").expect("message");
    assert_eq!(echoed, Message::text("hello"));
    let cross = [
        ("Host", ws_host.as_str()),
        ("Cookie", cookie.as_str()),
        ("Origin", &format!("http://coder.{DOMAIN}")),
    ];
    assert_eq!(connect(&ws_url, &cross).await.err(), Some(StatusCode::FORBIDDEN));

    // On the platform's origin, workspace content is never served to the dashboard's cookie:
    // a browser is sent to the workspace's origin; token clients get it sandboxed.
    let ide = http
        .get(proxy.url("ide/"))
        .header("Cookie", &dashboard_cookie)
        .send()
        .await
        .expect("r");
    assert_eq!(ide.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(ide.headers()), format!("/proxy/workspaces/{ws}/open"));
    let ide_ws = [("Cookie", dashboard_cookie.as_str())];
    assert_eq!(
        connect(&proxy.ws_url("ide/"), &ide_ws).await.err(),
        Some(StatusCode::FORBIDDEN)
    );
    let token_client = http
        .get(proxy.url("ide/set-cookies"))
        .header("Session-Token", &proxy.member)
        .send()
        .await
        .expect("r");
    assert_eq!(token_client.status(), StatusCode::OK);
    assert_eq!(token_client.headers()["content-security-policy"], "sandbox");
    assert!(set_cookie(token_client.headers(), "coder_session").is_none());

    // Logging out of the dashboard ends the workspace cookie too (within the cache lifetime).
    let (status, _) = env
        .call(reqwest::Method::POST, "/auth/logout", Some(&session), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    eventually(
        "the workspace cookie to stop working",
        Duration::from_secs(10),
        || async {
            let status = on_host(&ws_host, "/")
                .header("Cookie", &cookie)
                .send()
                .await
                .expect("r")
                .status();
            (status == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn workspace_origin_without_a_domain_refuses_to_open_workspaces_in_browsers() {
    let proxy = ProxyEnv::start(|_| {}).await;
    let http = no_redirects();
    let cookie = format!("coder_session={}", proxy.member);
    for (route, status, code) in [
        (
            "open",
            StatusCode::SERVICE_UNAVAILABLE,
            "workspace_domain_not_configured",
        ),
        ("ide/", StatusCode::FORBIDDEN, "workspace_origin_only"),
    ] {
        let response = http
            .get(proxy.url(route))
            .header("Cookie", &cookie)
            .send()
            .await
            .expect("r");
        assert_eq!(error_code(response).await, (status, code.to_owned()), "{route}");
    }
}

/// The member's malicious page: it tries, with the admin's browser, to read the dashboard (for
/// its CSRF token) and create an admin, to post the form blind, to open a terminal into the
/// admin's workspace through the platform's origin, and to read cookies; it writes what
/// happened into `#result`.
const EVIL_PAGE: &str = r#"<!doctype html><html><body><pre id="result">running</pre><script>
(async () => {
  const platform = "PLATFORM";
  const out = { origin: location.origin, cookie: document.cookie };
  try {
    const page = await (await fetch(platform + "/", { credentials: "include" })).text();
    const found = page.match(/name="csrf" value="([0-9a-f]+)"/);
    out.dashboard = found ? "read" : "no-csrf";
    if (found) {
      const body = new URLSearchParams({ email: "evil@example.com", name: "Evil",
        password: "evil-password-123", role: "admin", csrf: found[1] });
      out.create = (await fetch(platform + "/admin/users",
        { method: "POST", body, credentials: "include" })).status;
    }
  } catch (error) { out.dashboard = "blocked"; }
  try {
    const body = new URLSearchParams({ email: "blind@example.com", name: "Blind",
      password: "blind-password-123", role: "admin", csrf: "" });
    await fetch(platform + "/admin/users",
      { method: "POST", body, credentials: "include", mode: "no-cors" });
  } catch (error) {}
  out.terminal = await new Promise((resolve) => {
    const socket = new WebSocket(platform.replace("http", "ws") + "/proxy/workspaces/TARGET/terminal");
    socket.onopen = () => { resolve("open"); socket.close(); };
    socket.onerror = () => resolve("refused");
    setTimeout(() => resolve("timeout"), 5000);
  });
  document.getElementById("result").textContent = "done " + JSON.stringify(out);
})();
</script></body></html>"#;

/// Serves [`EVIL_PAGE`] for every path (as the member's code-server would), trying to plant a
/// dashboard session cookie too; records the `Cookie` headers it receives.
async fn evil_workspace(platform: String, target: String) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let page = EVIL_PAGE
        .replace("PLATFORM", &platform)
        .replace("TARGET", &target);
    let router = Router::new().fallback(move |request: Request| {
        let (record, page) = (Arc::clone(&record), page.clone());
        async move {
            if let Some(cookie) = request.headers().get("cookie").and_then(|v| v.to_str().ok()) {
                record.lock().expect("lock").push(cookie.to_owned());
            }
            let mut response = axum::response::Html(page).into_response();
            for line in [
                "coder_session=planted-by-workspace; Path=/",
                "coder_session=planted-for-domain; Domain=coder.test; Path=/",
            ] {
                response
                    .headers_mut()
                    .append("set-cookie", axum::http::HeaderValue::from_static(line));
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, seen)
}

#[tokio::test]
async fn workspace_origin_page_in_chromium_cannot_read_or_use_the_admins_dashboard_session() {
    let env = Env::with_kubernetes().await;
    let (_, member) = env.create_member("dev@example.com").await;
    let member_workspace = running_workspace(&env, &member, "dev").await;
    let admin_workspace = running_workspace(&env, &env.admin_token, "admin-ws").await;

    // One origin for the platform, as the chart's Ingress: http://coder.test:PORT.
    let ingress = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = ingress.local_addr().expect("addr").port();
    let platform = format!("http://{DOMAIN}:{port}");
    let (evil, seen) = evil_workspace(platform.clone(), admin_workspace.clone()).await;
    let shell = standins::shell().await;
    let mut proxy_args = EnvproxyArgs::for_manager(&env.base);
    proxy_args.envproxy_token_file = Some(env.envproxy_token_file.path().to_owned());
    proxy_args.workspace_addresses = vec![format!("*:13337={evil}"), format!("*:26337={shell}")];
    proxy_args.workspace_base_url = platform.clone();
    let (proxy, _shutdown, _stopped) = start_proxy(proxy_args).await;
    let proxy_addr = proxy.trim_start_matches("http://").parse().expect("addr");
    // Plain HTTP on a name that is not localhost: an http:// access URL, so cookies are not
    // Secure (browsers would drop them here).
    let mut dashboard_args = DashboardArgs::for_manager(&env.base);
    dashboard_args.access_url = platform.clone();
    let dashboard_port = start_dashboard(dashboard_args).await;
    let dashboard_addr = std::net::SocketAddr::from(([127, 0, 0, 1], dashboard_port));
    standins::ingress(ingress, dashboard_addr, proxy_addr);

    // Plain-HTTP names that are not localhost: no automatic upgrade to HTTPS.
    let browser = Browser::start_with(
        BrowserOptions::new()
            .host_resolver_rules(&format!("MAP {DOMAIN} 127.0.0.1, MAP *.{DOMAIN} 127.0.0.1"))
            .arg("--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"),
    )
    .await
    .expect("headless Chromium");
    browser.goto(&format!("{platform}/login")).await;
    browser.type_into("#email", ADMIN_EMAIL).await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#login").await;
    browser.wait_for_url(&format!("{DOMAIN}:{port}/")).await;
    assert_eq!(browser.text("h1").await, "Workspaces");
    let session_cookie = |cookies: Vec<Cookie>| {
        cookies
            .into_iter()
            .find(|cookie| cookie.name == "coder_session")
            .map(|cookie| cookie.value)
    };
    let session = session_cookie(browser.cookies().await).expect("the admin's session");

    // The admin opens the member's workspace from the dashboard.
    let row = "tr[data-workspace=\"dev\"]";
    let link = browser.attribute(&format!("{row} a.button"), "href").await;
    let link = if link.starts_with('/') {
        format!("{platform}{link}")
    } else {
        link
    };
    browser.goto(&link).await;
    let result = eventually("the member's page to finish", Duration::from_secs(30), || async {
        let text = browser.text("#result").await;
        text.strip_prefix("done ").map(str::to_owned)
    })
    .await;
    let result: Value = serde_json::from_str(&result).expect("the page's JSON");
    println!("the member's page reported: {result}");

    // It ran on the workspace's own origin, not the platform's ...
    assert_eq!(
        result["origin"],
        format!("http://ws-{member_workspace}.{DOMAIN}:{port}"),
        "{result}"
    );
    assert!(
        browser
            .url()
            .await
            .starts_with(&format!("http://ws-{member_workspace}.{DOMAIN}:{port}/"))
    );
    // ... where it could read no cookie, not read the dashboard, and not open a terminal into
    // the admin's workspace through the platform's origin.
    assert_eq!(result["cookie"], "", "{result}");
    assert_eq!(result["dashboard"], "blocked", "{result}");
    assert!(result.get("create").is_none(), "{result}");
    assert_eq!(result["terminal"], "refused", "{result}");
    // No admin was made, by the read token or blind.
    let (_, users) = env.get("/api/v0/users", &env.admin_token).await;
    let emails: Vec<&str> = users
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|user| user["email"].as_str())
        .collect();
    assert!(
        !emails.contains(&"evil@example.com") && !emails.contains(&"blind@example.com"),
        "{emails:?}"
    );
    // The workspace never saw a platform cookie.
    for cookie in seen.lock().expect("lock").iter() {
        assert!(
            !cookie.contains("coder_session") && !cookie.contains("coder_workspace_session"),
            "{cookie}"
        );
    }
    // The browser holds the workspace's own cookie there, HttpOnly.
    let here = browser.cookies().await;
    let workspace_cookie = here
        .iter()
        .find(|cookie| cookie.name == "coder_workspace_session")
        .expect("the workspace cookie");
    assert!(workspace_cookie.http_only);
    // The workspace could not plant a session: the dashboard still has the admin's.
    browser.goto(&format!("{platform}/")).await;
    assert_eq!(browser.text("h1").await, "Workspaces");
    assert_eq!(session_cookie(browser.cookies().await), Some(session));
    browser.quit().await;
}
