//! The dashboard at its access URL, and elsewhere, in a real headless Chromium: the platform at
//! `http://coder.test:PORT` (Chromium maps the name to loopback; not `localhost`, so Chromium
//! treats it as any plain-HTTP site), one origin as the chart's Ingress makes it (a loopback
//! ingress stand-in: `/proxy/` to a real envproxy, the rest to the dashboard), a real manager
//! and PostgreSQL.
//!
//! - an `http://` access URL: logging in works and the cookies are not `Secure`;
//! - an `https://` access URL reached over plain HTTP: the login page warns before a password is
//!   typed, and the submit explains the refused cookie naming the access URL (not "Form
//!   expired");
//! - a workspace's terminal from the dashboard: typed commands run in a real shell and their
//!   output shows.
//!
//! Screenshots of each asserted page go to `target/test-artifacts/access-url-*.png`.

use std::path::PathBuf;
use std::time::Duration;

use coder_service::cli::DashboardArgs;
use coder_service::cli::EnvproxyArgs;
use coder_testenv::browser::{Browser, BrowserOptions, Cookie};

use crate::dashboard::start_dashboard;
use crate::envproxy::{running_workspace, start_proxy};
use crate::harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Env, eventually};
use crate::standins;

/// The platform's name in these tests (Chromium resolves it to loopback).
const DOMAIN: &str = "coder.test";

/// The platform behind one loopback port, as `http://coder.test:PORT`, and a browser for it.
struct Site {
    env: Env,
    /// `http://coder.test:PORT`.
    platform: String,
    browser: Browser,
    _proxy_shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Site {
    /// Starts a manager (with Kubernetes), an envproxy whose workspaces' shell is a real
    /// `/bin/sh`, a dashboard whose access URL `access_url` makes from the platform's address,
    /// the ingress stand-in, and Chromium.
    async fn start(access_url: impl FnOnce(&str) -> String) -> Self {
        let env = Env::with_kubernetes().await;
        let ingress = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = ingress.local_addr().expect("addr").port();
        let platform = format!("http://{DOMAIN}:{port}");

        let shell = standins::real_shell().await;
        let mut proxy_args = EnvproxyArgs::for_manager(&env.base);
        proxy_args.envproxy_token_file = Some(env.envproxy_token_file.path().to_owned());
        proxy_args.workspace_addresses = vec![format!("*:26337={shell}")];
        let (proxy, proxy_shutdown, _stopped) = start_proxy(proxy_args).await;
        let proxy_addr = proxy.trim_start_matches("http://").parse().expect("addr");

        let mut dashboard_args = DashboardArgs::for_manager(&env.base);
        dashboard_args.access_url = access_url(&platform);
        let dashboard_port = start_dashboard(dashboard_args).await;
        let dashboard_addr = std::net::SocketAddr::from(([127, 0, 0, 1], dashboard_port));
        standins::ingress(ingress, dashboard_addr, proxy_addr);

        // Plain HTTP at a name that is not localhost, and no automatic upgrade to HTTPS.
        let browser = Browser::start_with(
            BrowserOptions::new()
                .host_resolver_rules(&format!("MAP {DOMAIN} 127.0.0.1"))
                .arg("--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable"),
        )
        .await
        .expect("headless Chromium");
        Self {
            env,
            platform,
            browser,
            _proxy_shutdown: proxy_shutdown,
        }
    }

    /// Fills in and submits the login form as the admin.
    async fn submit_login(&self) {
        self.browser.type_into("#email", ADMIN_EMAIL).await;
        self.browser.type_into("#password", ADMIN_PASSWORD).await;
        self.browser.click("#login").await;
    }

    /// Logs in as the admin and waits for the workspace list.
    async fn log_in(&self) {
        self.browser.goto(&format!("{}/login", self.platform)).await;
        self.submit_login().await;
        self.browser
            .wait_for_url(&format!("{DOMAIN}:{}/", self.port()))
            .await;
        assert_eq!(self.browser.text("h1").await, "Workspaces");
    }

    fn port(&self) -> &str {
        self.platform.rsplit(':').next().unwrap_or_default()
    }

    /// Saves a screenshot as `target/test-artifacts/access-url-NAME.png` and prints its path.
    async fn screenshot(&self, name: &str) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../target/test-artifacts/access-url-{name}.png"));
        self.browser.screenshot(&path).await;
        println!("screenshot: {}", path.display());
    }
}

fn named<'a>(cookies: &'a [Cookie], name: &str) -> &'a Cookie {
    cookies
        .iter()
        .find(|cookie| cookie.name == name)
        .unwrap_or_else(|| panic!("no cookie {name} in {cookies:?}"))
}

#[tokio::test]
async fn access_url_http_lab_logs_in_in_chromium_with_cookies_that_are_not_secure() {
    let site = Site::start(|platform| platform.to_owned()).await;
    site.browser.goto(&format!("{}/login", site.platform)).await;
    assert_eq!(site.browser.text("h1").await, "Log in");
    assert!(
        !site.browser.exists("#address-notice").await,
        "no notice at the access URL"
    );
    site.screenshot("http-login").await;

    site.submit_login().await;
    site.browser
        .wait_for_url(&format!("{DOMAIN}:{}/", site.port()))
        .await;
    assert_eq!(site.browser.text("h1").await, "Workspaces");
    let cookies = site.browser.cookies().await;
    let session = named(&cookies, "coder_session");
    assert!(!session.secure && session.http_only, "{session:?}");
    let csrf = named(&cookies, "coder_csrf");
    assert!(!csrf.secure, "{csrf:?}");
    assert!(!cookies.iter().any(|cookie| cookie.name.starts_with("__Host-")));
    site.screenshot("http-workspaces").await;
    site.browser.quit().await;
}

#[tokio::test]
async fn access_url_https_reached_over_plain_http_says_why_and_names_the_access_url() {
    let access_url = "https://coder.example.com/";
    let site = Site::start(|_| access_url.to_owned()).await;
    site.browser.goto(&format!("{}/login", site.platform)).await;
    // Before a password is typed: the notice names the platform's address.
    let notice = site.browser.text("#address-notice").await;
    assert!(notice.contains("plain HTTP"), "{notice}");
    assert!(notice.contains(access_url), "{notice}");
    // The browser refused the Secure cookies set over plain HTTP.
    assert!(site.browser.cookies().await.is_empty());
    site.screenshot("https-login-notice").await;

    site.submit_login().await;
    let title = site.browser.text("h1").await;
    assert_eq!(title, "Sign-in cookie missing");
    let explanation = site.browser.text(".error").await;
    assert!(
        explanation.starts_with("Your browser did not keep this site's sign-in cookie"),
        "{explanation}"
    );
    assert!(
        explanation.contains(&format!("The platform's address is {access_url}")),
        "{explanation}"
    );
    assert!(!site.browser.source().await.contains("Form expired"));
    site.screenshot("https-login-refused").await;
    site.browser.quit().await;
}

#[tokio::test]
async fn access_url_terminal_page_runs_typed_commands_in_the_workspace_shell() {
    let site = Site::start(|platform| platform.to_owned()).await;
    let id = running_workspace(&site.env, &site.env.admin_token, "term").await;
    site.log_in().await;
    let row = "tr[data-workspace=\"term\"]";
    eventually("the page to show ON", Duration::from_secs(20), || async {
        site.browser.goto(&format!("{}/", site.platform)).await;
        (site.browser.text(&format!("{row} .state")).await == "ON").then_some(())
    })
    .await;
    assert_eq!(
        site.browser.attribute(&format!("{row} a.terminal"), "href").await,
        format!("/workspaces/{id}/terminal")
    );
    site.screenshot("terminal-link").await;
    site.browser.click(&format!("{row} a.terminal")).await;
    site.browser
        .wait_for_url(&format!("/workspaces/{id}/terminal"))
        .await;
    assert_eq!(site.browser.text("#terminal-workspace").await, "term");
    site.browser.wait_for_text("#terminal-status", "Connected").await;

    site.browser
        .send_keys(
            "#terminal-input",
            &format!("echo hello-terminal{}", Browser::ENTER),
        )
        .await;
    // The shell's own output: a line that is exactly `hello-terminal` (the typed command shows
    // as `$ echo hello-terminal`).
    let output = eventually("the shell's output", Duration::from_secs(20), || async {
        let text = site.browser.text("#terminal-output").await;
        text.lines().any(|line| line == "hello-terminal").then_some(text)
    })
    .await;
    assert!(output.contains("$ echo hello-terminal"), "{output}");
    site.screenshot("terminal-echo").await;

    // A second command in the same shell session.
    site.browser
        .send_keys(
            "#terminal-input",
            &format!("pwd >/dev/null; echo $((6*7)){}", Browser::ENTER),
        )
        .await;
    eventually("the second output", Duration::from_secs(20), || async {
        let text = site.browser.text("#terminal-output").await;
        text.lines().any(|line| line == "42").then_some(())
    })
    .await;
    site.browser.quit().await;
}
