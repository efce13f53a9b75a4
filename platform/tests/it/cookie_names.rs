//! The platform's cookies under HTTPS take the `__Host-` prefix (no page on another host, a
//! workspace's included, can set one), and every cookie of a name is considered: a bogus or
//! planted cookie of the same name sent first does not shadow the real one.

use coder_service::cli::DashboardArgs;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::dashboard::start_dashboard;
use crate::envproxy::{ProxyEnv, start_proxy};
use crate::harness::{Env, MEMBER_PASSWORD};
use crate::workspace_origin::{error_code, no_redirects};
use crate::workspace_tickets::mint_ticket;

/// The wildcard domain of these tests (never resolved: requests name it in `Host`).
const DOMAIN: &str = "cookies.test";

/// The whole `Set-Cookie` line for `name`, if the answer sets it.
fn set_cookie_line(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|line| line.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value in a `Set-Cookie` line.
fn value_of(line: &str) -> String {
    let pair = line.split(';').next().unwrap_or_default();
    pair.split_once('=')
        .map(|(_, value)| value.to_owned())
        .unwrap_or_default()
}

/// Opens the member's workspace at the envproxy at `proxy_url` (base URL `scheme://DOMAIN`) and
/// exchanges the ticket: the workspace's host and the `Set-Cookie` line of `cookie_name`.
async fn workspace_cookie(proxy: &ProxyEnv, proxy_url: &str, cookie_name: &str) -> (String, String) {
    let http = no_redirects();
    let (host, path) = mint_ticket(&http, proxy_url, proxy).await;
    let exchanged = http
        .get(format!("{proxy_url}{path}"))
        .header("Host", &host)
        .send()
        .await
        .expect("exchange");
    assert_eq!(exchanged.status(), StatusCode::SEE_OTHER);
    let line = set_cookie_line(exchanged.headers(), cookie_name)
        .unwrap_or_else(|| panic!("{cookie_name} set: {:?}", exchanged.headers()));
    (host, line)
}

#[tokio::test]
async fn cookies_workspace_cookie_is_host_prefixed_over_https_and_planted_ones_do_not_shadow_it() {
    let proxy = ProxyEnv::start(|args| args.workspace_base_url = format!("https://{DOMAIN}")).await;
    let http = no_redirects();
    let (host, line) = workspace_cookie(&proxy, &proxy.proxy, "__Host-coder_workspace_session").await;
    for attribute in ["Secure", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(line.contains(attribute), "{line}");
    }
    assert!(!line.to_ascii_lowercase().contains("domain="), "{line}");
    let real = value_of(&line);
    let on_host = |cookie: String| {
        http.get(format!("{}/", proxy.proxy))
            .header("Host", &host)
            .header("Cookie", cookie)
            .send()
    };
    // Bogus cookies of the same name before the real one (a browser sends them all).
    let planted = format!(
        "__Host-coder_workspace_session=planted; __Host-coder_workspace_session={}; \
         __Host-coder_workspace_session={real}",
        "00".repeat(40)
    );
    assert_eq!(on_host(planted).await.expect("r").status(), StatusCode::OK);
    // Over HTTPS only the prefixed name counts (any page of the site can set the plain one).
    assert_eq!(
        error_code(
            on_host(format!("coder_workspace_session={real}"))
                .await
                .expect("r")
        )
        .await,
        (StatusCode::UNAUTHORIZED, "workspace_session_required".to_owned())
    );

    // Over plain HTTP (no prefix there): the plain name, and a cookie planted for the parent
    // domain first does not shadow the real one.
    let mut args = coder_service::cli::EnvproxyArgs::for_manager(&proxy.env.base);
    args.envproxy_token_file = Some(proxy.env.envproxy_token_file.path().to_owned());
    args.workspace_base_url = format!("http://{DOMAIN}");
    let (plain_proxy, _stop, _stopped) = start_proxy(args).await;
    let (host, line) = workspace_cookie(&proxy, &plain_proxy, "coder_workspace_session").await;
    assert!(!line.contains("Secure"), "{line}");
    let planted = format!(
        "coder_workspace_session=planted-for-{DOMAIN}; coder_workspace_session={}",
        value_of(&line)
    );
    // No code-server behind this replica: a 502 is past the cookie check, a 401 is not.
    let response = http
        .get(format!("{plain_proxy}/"))
        .header("Host", &host)
        .header("Cookie", planted)
        .send()
        .await
        .expect("r");
    assert_ne!(response.status(), StatusCode::UNAUTHORIZED);

    // The dashboard's session cookie on the platform's origin: the `__Host-` name, a bogus one
    // and another user's (who may not open this workspace) first.
    let (_, other) = proxy.env.create_member("other@example.com").await;
    let cookie = format!(
        "__Host-coder_session=bogus; __Host-coder_session={other}; __Host-coder_session={}",
        proxy.member
    );
    let opened = http
        .get(proxy.url("open"))
        .header("Cookie", cookie)
        .send()
        .await
        .expect("open");
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn cookies_dashboard_session_is_host_prefixed_when_secure_and_planted_ones_do_not_shadow_it() {
    let env = Env::start().await;
    let (_, member) = env.create_member("dev@example.com").await;
    let (_, other) = env.create_member("other@example.com").await;
    let port = start_dashboard(DashboardArgs::for_manager(&env.base)).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = no_redirects();

    let login = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("login page");
    let csrf = value_of(&set_cookie_line(login.headers(), "__Host-coder_csrf").expect("csrf cookie"));
    let signed_in = http
        .post(format!("{base}/login"))
        .header("Cookie", format!("__Host-coder_csrf={csrf}"))
        .form(&[
            ("email", "dev@example.com"),
            ("password", MEMBER_PASSWORD),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .expect("login");
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let line = set_cookie_line(signed_in.headers(), "__Host-coder_session").expect("session cookie");
    for attribute in ["Secure", "Path=/", "HttpOnly"] {
        assert!(line.contains(attribute), "{line}");
    }
    assert!(!line.to_ascii_lowercase().contains("domain="), "{line}");
    let session = value_of(&line);

    let home = |cookie: String| http.get(format!("{base}/")).header("Cookie", cookie).send();
    // A bogus prefixed cookie first, and another user's token under the plain name (what a page
    // on a sibling host could plant): the page is the signed-in member's.
    let planted =
        format!("__Host-coder_session=bogus; coder_session={other}; __Host-coder_session={session}");
    let page = home(planted).await.expect("home");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("dev@example.com") && !html.contains("other@example.com"),
        "{html}"
    );
    // The plain name alone does not sign anyone in when cookies are Secure.
    let plain = home(format!("coder_session={member}")).await.expect("home");
    assert_eq!(plain.status(), StatusCode::SEE_OTHER);
    // A bogus CSRF cookie sent before the real one does not break forms.
    let logout = http
        .post(format!("{base}/logout"))
        .header(
            "Cookie",
            format!("__Host-coder_csrf=ffff; __Host-coder_csrf={csrf}; __Host-coder_session={session}"),
        )
        .header("Origin", &base)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert_eq!(logout.headers()[LOCATION], "/login");
    let (status, _) = env.get("/api/v0/users/me", &session).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "logged out");
}

/// The log lines the envproxy binary writes until it listens (then it is stopped).
async fn envproxy_start_logs(workspace_base_url: &str, access_url: &str) -> Vec<serde_json::Value> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_coder-service"))
        .args(["envproxy", "--listen", "127.0.0.1:0"])
        .args(["--workspace-base-url", workspace_base_url])
        .env("CODER_ACCESS_URL", access_url)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the envproxy");
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut logs = Vec::new();
    let read = async {
        while let Ok(Some(line)) = stdout.next_line().await {
            let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
            let listening = log["fields"]["message"] == "envproxy listening";
            logs.push(log);
            if listening {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("the envproxy to listen");
    child.start_kill().expect("stop the envproxy");
    let _ = child.wait().await;
    logs
}

#[tokio::test]
async fn cookies_envproxy_warns_at_start_when_workspace_hosts_can_set_the_dashboards_cookies() {
    let warning = |logs: &[serde_json::Value]| {
        logs.iter()
            .filter(|log| log["level"] == "WARN")
            .filter_map(|log| log["fields"]["message"].as_str())
            .find(|message| message.contains("can set cookies"))
            .map(str::to_owned)
    };
    let under = envproxy_start_logs("https://coder.example.test", "https://coder.example.test").await;
    let text = warning(&under).expect("a warning for workspaces under the platform's host");
    assert!(
        text.contains("subdomains of the platform's host coder.example.test"),
        "{text}"
    );
    let siblings = envproxy_start_logs("https://ws.example.com", "https://coder.example.com").await;
    let text = warning(&siblings).expect("a warning for one parent domain");
    assert!(text.contains("example.com"), "{text}");
    let apart = envproxy_start_logs("https://ws.example-apps.com", "https://coder.example.com").await;
    assert_eq!(warning(&apart), None, "{apart:#?}");
}
