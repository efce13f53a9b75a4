//! The dashboard against a real manager: cookies and CSRF over HTTP, admin pages, and a real
//! headless Chromium logging in, creating a workspace, seeing it listed and opening its IDE
//! through a real envproxy with the dashboard's cookie (screenshot saved under target/).

use std::time::Duration;

use coder_service::cli::DashboardArgs;
use coder_service::cli::EnvproxyArgs;
use coder_service::dashboard;
use coder_testenv::browser::Browser;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};

use crate::envproxy::start_proxy_on;
use crate::harness::{Env, MEMBER_PASSWORD, eventually};
use crate::standins;

/// Serves a dashboard for `args` on a free loopback port; returns its port.
pub async fn start_dashboard(args: DashboardArgs) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = args.try_into().expect("a dashboard configuration");
    tokio::spawn(dashboard::serve(config, listener, std::future::pending()));
    port
}

/// `name=value` of each `Set-Cookie`, and the full header lines.
fn set_cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

fn cookie_value(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|line| {
        let pair = line.split(';').next()?;
        let (cookie, value) = pair.split_once('=')?;
        (cookie == name && !value.is_empty()).then(|| value.to_owned())
    })
}

fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    html[start..start + 32].to_owned()
}

#[tokio::test]
async fn dashboard_sets_secure_cookies_checks_csrf_and_guards_admin_pages() {
    let env = Env::start().await;
    env.create_member("dev@example.com").await;
    let port = start_dashboard(DashboardArgs::for_manager(&env.base)).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .expect("r")
            .status(),
        StatusCode::OK
    );
    // Not logged in: to the login page.
    let home = http.get(format!("{base}/")).send().await.expect("home");
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()["location"], "/login");

    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(login.status(), StatusCode::OK);
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    let lines = set_cookies(login.headers());
    let csrf_cookie = cookie_value(&lines, "__Host-coder_csrf").expect("csrf cookie");
    let html = login.text().await.expect("html");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    assert_eq!(csrf_in(&html), csrf_cookie);

    let post_login = |csrf: &str, cookie: &str, origin: Option<&str>, password: &str| {
        let mut request = http
            .post(format!("{base}/login"))
            .header("Cookie", format!("__Host-coder_csrf={cookie}"))
            .form(&[
                ("email", "dev@example.com"),
                ("password", password),
                ("csrf", csrf),
            ]);
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    // CSRF: a missing or wrong field, or another origin, is refused before the manager is asked.
    let refused = post_login("", &csrf_cookie, None, MEMBER_PASSWORD)
        .await
        .expect("r");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let forged = "0".repeat(32);
    let refused = post_login(&forged, &csrf_cookie, None, MEMBER_PASSWORD)
        .await
        .expect("r");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let cross = post_login(
        &csrf_cookie,
        &csrf_cookie,
        Some("http://evil.example"),
        MEMBER_PASSWORD,
    )
    .await
    .expect("r");
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let wrong = post_login(&csrf_cookie, &csrf_cookie, Some(&base), "wrong-password")
        .await
        .expect("r");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .expect("html")
            .contains("Wrong email or password")
    );

    let ok = post_login(&csrf_cookie, &csrf_cookie, Some(&base), MEMBER_PASSWORD)
        .await
        .expect("r");
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    let lines = set_cookies(ok.headers());
    let session_line = lines
        .iter()
        .find(|line| line.starts_with("__Host-coder_session="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(session_line.contains(attribute), "{session_line}");
    }
    let session = cookie_value(&lines, "__Host-coder_session").expect("session");
    let cookies = format!("__Host-coder_session={session}; __Host-coder_csrf={csrf_cookie}");

    // The session is a real manager token.
    let (status, me) = env.get("/api/v0/users/me", &session).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (StatusCode::OK, Some("dev@example.com"))
    );

    let home = http
        .get(format!("{base}/"))
        .header("Cookie", &cookies)
        .send()
        .await
        .expect("home");
    assert_eq!(home.status(), StatusCode::OK);
    let html = home.text().await.expect("html");
    assert!(html.contains("No workspaces yet") && html.contains("dev@example.com"));
    // Without Kubernetes the manager refuses to create: the page says so, escaped.
    let create = http
        .post(format!("{base}/workspaces"))
        .header("Cookie", &cookies)
        .form(&[("name", "dev"), ("image", "x<script>"), ("csrf", &csrf_cookie)])
        .send()
        .await
        .expect("create");
    assert!(create.status().is_client_error() || create.status().is_server_error());
    let html = create.text().await.expect("html");
    assert!(html.contains("class=\"error\"") && !html.contains("x<script>"));

    // Members do not get the admin pages; admins do.
    for page in ["/admin/users", "/admin/license"] {
        let denied = http
            .get(format!("{base}{page}"))
            .header("Cookie", &cookies)
            .send()
            .await
            .expect("r");
        assert_eq!(denied.status(), StatusCode::FORBIDDEN, "{page}");
    }
    let admin_cookie = format!("__Host-coder_session={}", env.admin_token);
    let users = http
        .get(format!("{base}/admin/users"))
        .header("Cookie", &admin_cookie)
        .send()
        .await
        .expect("r");
    assert_eq!(users.status(), StatusCode::OK);
    assert!(users.text().await.expect("html").contains("dev@example.com"));
    let license = http
        .get(format!("{base}/admin/license"))
        .header("Cookie", &admin_cookie)
        .send()
        .await
        .expect("r");
    assert_eq!(license.status(), StatusCode::OK);
    let html = license.text().await.expect("html");
    assert!(html.contains("id=\"license-tier\">free<"), "{html}");

    // Admins install a license from the page; a bad one is refused there, and members cannot.
    let install = |cookie: String, token: String| {
        let http = http.clone();
        let (base, csrf) = (base.clone(), csrf_cookie.clone());
        async move {
            http.post(format!("{base}/admin/license"))
                .header("Cookie", cookie)
                .form(&[("license", token.as_str()), ("csrf", csrf.as_str())])
                .send()
                .await
                .expect("install license")
        }
    };
    let admin_form_cookie = format!("{admin_cookie}; __Host-coder_csrf={csrf_cookie}");
    let denied = install(cookies.clone(), crate::license::license(50, 365)).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let refused = install(admin_form_cookie.clone(), "not-a-license".to_owned()).await;
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let html = refused.text().await.expect("html");
    assert!(
        html.contains("class=\"error\"") && html.contains("id=\"license-tier\">free<"),
        "{html}"
    );
    let installed = install(
        admin_form_cookie,
        format!("  {}\n", crate::license::license(50, 365)),
    )
    .await;
    assert_eq!(installed.status(), StatusCode::SEE_OTHER);
    let html = http
        .get(format!("{base}/admin/license"))
        .header("Cookie", &admin_cookie)
        .send()
        .await
        .expect("r")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains("id=\"license-tier\">enterprise<") && html.contains("id=\"license-seats_allowed\">50<"),
        "{html}"
    );

    // Logging out revokes the manager session and clears the cookie.
    let logout = http
        .post(format!("{base}/logout"))
        .header("Cookie", &cookies)
        .form(&[("csrf", &csrf_cookie)])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(logout.headers())
            .iter()
            .any(|l| l.starts_with("__Host-coder_session=;") && l.contains("Max-Age=0"))
    );
    let (status, _) = env.get("/api/v0/users/me", &session).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dashboard_in_headless_chromium_logs_in_creates_lists_and_opens_the_ide() {
    let env = Env::with_kubernetes().await;
    let (_, member) = env.create_member("dev@example.com").await;
    // The IDE stand-in answers for every workspace through the envproxy's `*` override.
    let ide = standins::code_server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_port = listener.local_addr().expect("addr").port();
    let mut proxy_args = EnvproxyArgs::for_manager(&env.base);
    proxy_args.envproxy_token_file = Some(env.envproxy_token_file.path().to_owned());
    proxy_args.workspace_addresses = vec![format!("*:13337={ide}")];
    // Workspaces on their own origins, `ws-<id>.localhost` (Chromium resolves it to loopback).
    proxy_args.workspace_base_url = format!("http://localhost:{proxy_port}");
    let (_proxy, _shutdown, _stopped) = start_proxy_on(listener, proxy_args).await;

    // `localhost` is a secure context for Chromium: Secure cookies work over plain HTTP there,
    // and cookies ignore ports, so the envproxy on another port gets the dashboard's cookie.
    let mut args = DashboardArgs::for_manager(&env.base);
    args.envproxy_url = format!("http://localhost:{proxy_port}");
    let port = start_dashboard(args).await;
    let base = format!("http://localhost:{port}");

    let browser = Browser::start().await.expect("headless Chromium");
    browser.goto(&format!("{base}/")).await;
    assert!(browser.url().await.ends_with("/login"));
    browser.type_into("#email", "dev@example.com").await;
    browser.type_into("#password", MEMBER_PASSWORD).await;
    browser.click("#login").await;
    browser.wait_for_url(&format!("localhost:{port}/")).await;
    assert_eq!(browser.text("h1").await, "Workspaces");
    let session = browser
        .cookies()
        .await
        .into_iter()
        .find(|cookie| cookie.name == "__Host-coder_session")
        .expect("session cookie");
    assert!(session.http_only);
    assert!(session.secure);
    assert_eq!(session.same_site.as_deref(), Some("Lax"));

    browser.type_into("#workspace-name", "browser-ws").await;
    browser.click("#create-workspace").await;
    let row = "tr[data-workspace=\"browser-ws\"]";
    assert_eq!(browser.text(&format!("{row} td.name")).await, "browser-ws");
    assert_eq!(browser.text(&format!("{row} .state")).await, "CREATING");

    // No kubelet: simulate readiness; the manager's watch records ON and the page offers the IDE.
    let (_, list) = env.get("/api/v0/workspaces", &member).await;
    let id = list[0]["id"].as_str().expect("id").to_owned();
    let client = env.kube_client().await;
    coder_testenv::mark_deployment_available(&client, "default", &format!("ws-{id}"))
        .await
        .expect("simulate readiness");
    eventually("the page to show ON", Duration::from_secs(20), || async {
        browser.goto(&format!("{base}/")).await;
        (browser.text(&format!("{row} .state")).await == "ON").then_some(())
    })
    .await;
    let link = browser.attribute(&format!("{row} a.button"), "href").await;
    assert_eq!(
        link,
        format!("http://localhost:{proxy_port}/proxy/workspaces/{id}/open")
    );

    let artifact = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts/dashboard-workspaces.png");
    browser.screenshot(&artifact).await;
    println!(
        "screenshot: {}",
        artifact.canonicalize().unwrap_or(artifact.clone()).display()
    );

    // Open the IDE: the browser's cookie authenticates it at the envproxy, which sends it on to
    // the workspace's own origin with a one-time ticket; there the stand-in code-server answers
    // (and gets no platform cookie).
    browser.goto(&link).await;
    browser
        .wait_for_url(&format!("ws-{id}.localhost:{proxy_port}/"))
        .await;
    let source = browser.source().await;
    assert!(source.contains("\"path\":\"/\""), "{source}");
    assert!(
        !source.contains("coder_session"),
        "the session cookie reached the workspace: {source}"
    );

    // Log out from the page.
    browser.goto(&format!("{base}/")).await;
    browser.click("#logout").await;
    browser.wait_for_url("/login").await;
    assert_eq!(browser.text("h1").await, "Log in");
    browser.quit().await;
}

#[tokio::test]
async fn an_air_gapped_install_without_its_license_shows_a_read_only_banner_until_one_is_installed() {
    let env = Env::start_with(crate::harness::Options {
        tweak: |args| args.airgapped = true,
        ..Default::default()
    })
    .await;
    let port = start_dashboard(DashboardArgs::for_manager(&env.base)).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    let csrf = cookie_value(&set_cookies(login.headers()), "__Host-coder_csrf").expect("csrf cookie");
    let cookie = format!(
        "__Host-coder_session={}; __Host-coder_csrf={csrf}",
        env.admin_token
    );
    let get = |page: &'static str| {
        let (http, base, cookie) = (http.clone(), base.clone(), cookie.clone());
        async move {
            let response = http
                .get(format!("{base}{page}"))
                .header("Cookie", cookie)
                .send()
                .await
                .expect("page");
            assert_eq!(response.status(), StatusCode::OK, "{page}");
            response.text().await.expect("html")
        }
    };

    for page in ["/", "/admin/users", "/admin/license"] {
        let html = get(page).await;
        assert!(
            html.contains("id=\"read-only\"") && html.contains("no license is installed"),
            "{page}: {html}"
        );
    }
    // A change made from the dashboard is refused, and the page says why.
    let create = http
        .post(format!("{base}/workspaces"))
        .header("Cookie", &cookie)
        .form(&[
            ("name", "dev"),
            ("image", "codercom/enterprise-base:ubuntu"),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .expect("create");
    assert_eq!(create.status(), StatusCode::FORBIDDEN);
    let html = create.text().await.expect("html");
    assert!(
        html.contains("class=\"error\"") && html.contains("read-only") && html.contains("air-gapped"),
        "{html}"
    );

    // The admin installs an enterprise license with the air-gap feature: the banner goes.
    let installed = http
        .post(format!("{base}/admin/license"))
        .header("Cookie", &cookie)
        .form(&[
            ("license", crate::license::license(50, 365).as_str()),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .expect("install license");
    assert_eq!(installed.status(), StatusCode::SEE_OTHER);
    for page in ["/", "/admin/license"] {
        let html = get(page).await;
        assert!(!html.contains("id=\"read-only\""), "{page}: {html}");
    }
}
