//! Headless Chromium driven through `chromedriver` (Debian's `chromium` and `chromium-driver`),
//! for tests that must see what a person's browser does: which cookies it keeps, what a page
//! shows, what its scripts can reach.
//!
//! The client speaks the W3C WebDriver protocol itself over reqwest (a client crate would bring
//! a second TLS crypto provider into the test binaries, which makes kube's client panic; the
//! protocol is a handful of JSON calls).
//!
//! [`Browser::start_with`] returns an [`Error`](crate::Error) when chromedriver or Chromium cannot
//! be found or started, like the other servers of this crate. Once a session runs, a step that
//! fails (no such element within 20 s, a WebDriver error) is a failed test: those methods panic
//! with the command, the CSS selector and the driver's answer.
//!
//! ```no_run
//! # async fn example() -> coder_testenv::Result<()> {
//! use coder_testenv::browser::{Browser, BrowserOptions};
//! let browser = Browser::start_with(
//!     BrowserOptions::new().host_resolver_rules("MAP coder.test 127.0.0.1"),
//! )
//! .await?;
//! browser.goto("http://coder.test:3000/login").await;
//! browser.type_into("#email", "admin@coder.local").await;
//! browser.screenshot("target/test-artifacts/login.png").await;
//! browser.quit().await;
//! # Ok(())
//! # }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::binaries::first_executable;
use crate::process::{ServerProcess, start_on_free_port};
use crate::{Result, io_context};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a step waits for an element, a text or a URL.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// How to install the browser and its driver.
const CHROMIUM_HINT: &str =
    "install Debian's chromium and chromium-driver packages (scripts/install-system-deps.sh does)";
/// The arguments every session gets: headless, no sandbox (tests may run as root), a fixed
/// window so that screenshots compare.
const BASE_ARGS: [&str; 6] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--no-first-run",
];

/// How a browser session starts: Chromium's extra command-line arguments.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    args: Vec<String>,
    user_data_dir: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl BrowserOptions {
    /// Chromium's defaults for tests (headless, 1280x900, a fresh profile).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a Chromium command-line argument, e.g. `--disable-features=HttpsUpgrades`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Resolves names as `rules` say (`--host-resolver-rules`), e.g.
    /// `"MAP coder.test 127.0.0.1, MAP *.coder.test 127.0.0.1"`: a test reaches a server on
    /// loopback under a name that is not `localhost`, as a person reaches a real host.
    pub fn host_resolver_rules(self, rules: &str) -> Self {
        self.arg(format!("--host-resolver-rules={rules}"))
    }

    /// Keeps the browser's profile (cookies, storage) in `dir` (`--user-data-dir`), so that a
    /// test can inspect it or a second session can reuse it. Without it chromedriver makes a
    /// fresh temporary profile per session.
    pub fn user_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.user_data_dir = Some(dir.into());
        self
    }

    /// Runs chromedriver and Chromium with `HOME` set to `dir`: Chromium on Linux trusts the
    /// certificate authorities of `$HOME/.pki/nssdb` (see [`SiteTls::chromium_home`](crate::SiteTls::chromium_home)).
    pub fn home(mut self, dir: impl Into<PathBuf>) -> Self {
        self.home = Some(dir.into());
        self
    }

    /// Every argument Chromium is started with.
    fn chromium_args(&self) -> Vec<String> {
        let mut args: Vec<String> = BASE_ARGS.iter().map(|arg| (*arg).to_owned()).collect();
        if let Some(dir) = &self.user_data_dir {
            args.push(format!("--user-data-dir={}", dir.display()));
        }
        args.extend(self.args.iter().cloned());
        args
    }
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    /// The cookie's name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// The domain it is sent to.
    #[serde(default)]
    pub domain: String,
    /// The path it is sent under.
    #[serde(default)]
    pub path: String,
    /// Whether it is sent over HTTPS only.
    #[serde(default)]
    pub secure: bool,
    /// Whether scripts cannot read it.
    #[serde(default)]
    pub http_only: bool,
    /// `Strict`, `Lax` or `None`, as the browser reports it.
    #[serde(default)]
    pub same_site: Option<String>,
}

/// A running chromedriver with one Chromium session; both end when it is dropped (also when a
/// test panics) or by [`Browser::quit`].
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    /// Whether the session still has to be deleted on drop.
    session_open: bool,
    /// The chromedriver process (stopped on drop, after the session).
    _driver: ServerProcess,
    /// Holds chromedriver's log.
    _scratch: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with the default options.
    pub async fn start() -> Result<Self> {
        Self::start_with(BrowserOptions::new()).await
    }

    /// Starts chromedriver and a headless Chromium session with `options`.
    pub async fn start_with(options: BrowserOptions) -> Result<Self> {
        let chromedriver =
            first_executable("chromedriver", chromium_candidates("chromedriver"), CHROMIUM_HINT)?;
        let chromium = first_executable("chromium", chromium_candidates("chromium"), CHROMIUM_HINT)?;
        let scratch = tempfile::Builder::new()
            .prefix("coder-browser-")
            .tempdir()
            .map_err(io_context("creating the browser's scratch directory"))?;
        let log_path = scratch.path().join("chromedriver.log");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let (driver, base) = start_on_free_port(|port| {
            let mut command = Command::new(&chromedriver);
            command.arg(format!("--port={port}"));
            if let Some(home) = &options.home {
                command.env("HOME", home);
            }
            let log_path = log_path.clone();
            let http = http.clone();
            async move {
                let mut driver = ServerProcess::spawn("chromedriver", command, &log_path, Signal::SIGTERM)?;
                let base = format!("http://127.0.0.1:{port}");
                let status = format!("{base}/status");
                driver
                    .wait_ready(STEP_TIMEOUT, || {
                        let probe = http.get(&status).send();
                        async move {
                            probe
                                .await
                                .map(|answer| answer.status().is_success())
                                .map_err(|error| error.to_string())
                        }
                    })
                    .await?;
                Ok((driver, base))
            }
        })
        .await?;

        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": options.chromium_args() },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let Some(session) = created["value"]["sessionId"].as_str() else {
            return Err(driver.not_ready(
                Duration::ZERO,
                format!(
                    "chromedriver could not start Chromium ({}): {created}",
                    chromium.display()
                ),
            ));
        };
        Ok(Self {
            session: format!("{base}/session/{session}"),
            http,
            session_open: true,
            _driver: driver,
            _scratch: scratch,
        })
    }

    /// Sends one WebDriver command and returns its `value`; panics on a transport or WebDriver
    /// error, naming the command.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.try_command(method.clone(), path, body).await;
        if answer.get("error").is_some() {
            panic!("browser: WebDriver {method} {path} failed: {answer}");
        }
        answer
    }

    /// Sends one WebDriver command and returns its `value`, a WebDriver error included (as
    /// `{"error": ..., "message": ...}`); panics only when chromedriver cannot be reached.
    async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let sent = async { request.send().await?.json::<Value>().await }.await;
        match sent {
            Ok(mut answer) => answer["value"].take(),
            Err(error) => panic!("browser: WebDriver {method} {path}: chromedriver unreachable: {error}"),
        }
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        string_of(self.command(reqwest::Method::GET, "/url", None).await)
    }

    /// The page's HTML as the browser holds it now.
    pub async fn source(&self) -> String {
        string_of(self.command(reqwest::Method::GET, "/source", None).await)
    }

    /// The first element matching a CSS selector, waiting up to 20 s for it to appear.
    async fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let answer = self
                .try_command(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({ "using": "css selector", "value": css })),
                )
                .await;
            if let Some(id) = answer[ELEMENT].as_str() {
                return id.to_owned();
            }
            if started.elapsed() > STEP_TIMEOUT {
                panic!(
                    "browser: no element {css} on {} within {STEP_TIMEOUT:?}: {answer}",
                    self.url().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        let answer = self
            .try_command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        answer.as_array().is_some_and(|found| !found.is_empty())
    }

    /// Clears the element (an input) and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.send_keys(css, text).await;
    }

    /// Types `text` into the element as it is, without clearing it. WebDriver's key codes work
    /// in `text`: [`Browser::ENTER`] presses Enter.
    pub async fn send_keys(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The WebDriver key code of Enter, for [`Browser::send_keys`].
    pub const ENTER: &str = "\u{E007}";

    /// Clicks the element.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The visible text of the first element matching `css`, retried while the page changes
    /// (an element found just before a navigation goes stale).
    pub async fn text(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let element = self.find(css).await;
            let answer = self
                .try_command(reqwest::Method::GET, &format!("/element/{element}/text"), None)
                .await;
            if let Some(text) = answer.as_str() {
                return text.to_owned();
            }
            if started.elapsed() > STEP_TIMEOUT {
                panic!("browser: the text of {css}: {answer}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits up to 20 s until the visible text of `css` contains `needle`, and returns that text.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            if started.elapsed() > STEP_TIMEOUT {
                panic!("browser: {css} never showed {needle:?} within {STEP_TIMEOUT:?}; it shows: {text:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits up to 20 s until the current URL ends with `suffix`.
    pub async fn wait_for_url(&self, suffix: &str) {
        let started = Instant::now();
        loop {
            let url = self.url().await;
            if url.ends_with(suffix) {
                return;
            }
            if started.elapsed() > STEP_TIMEOUT {
                panic!("browser: never reached a URL ending with {suffix:?}; the page is at {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An attribute of the element (empty when it has none).
    pub async fn attribute(&self, css: &str, name: &str) -> String {
        let element = self.find(css).await;
        string_of(
            self.command(
                reqwest::Method::GET,
                &format!("/element/{element}/attribute/{name}"),
                None,
            )
            .await,
        )
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns what
    /// it returns; a script that returns a promise is awaited.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({
                "script": format!(
                    "const done = arguments[arguments.length - 1];\
                     Promise.resolve((async function() {{ {script} }}).apply(null, Array.from(arguments).slice(0, -1)))\
                       .then(done, (error) => done({{ scriptError: String(error) }}));"
                ),
                "args": args,
            })),
        )
        .await
    }

    /// The cookies the browser holds for the current page.
    pub async fn cookies(&self) -> Vec<Cookie> {
        let answer = self.command(reqwest::Method::GET, "/cookie", None).await;
        serde_json::from_value(answer.clone())
            .unwrap_or_else(|error| panic!("browser: cookies not understood ({error}): {answer}"))
    }

    /// Saves a PNG screenshot of the window to `path` (its directory is created).
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let encoded = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .unwrap_or_else(|error| panic!("browser: the screenshot is not base64: {error}"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|error| panic!("browser: creating {}: {error}", parent.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|error| panic!("browser: writing {}: {error}", path.display()));
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        self.session_open = false;
    }
}

impl Drop for Browser {
    /// Deletes a session that is still open (a test that panicked), so that Chromium exits with
    /// chromedriver. Blocking, on loopback, bounded by short timeouts.
    fn drop(&mut self) {
        if self.session_open {
            delete_session_blocking(&self.session);
        }
    }
}

/// `DELETE` on a session URL (`http://127.0.0.1:PORT/session/ID`) with a plain blocking socket:
/// no runtime is needed in `drop`.
fn delete_session_blocking(session_url: &str) {
    let Some(rest) = session_url.strip_prefix("http://") else {
        return;
    };
    let Some((host, path)) = rest.split_once('/') else {
        return;
    };
    let Ok(addr) = host.parse::<std::net::SocketAddr>() else {
        return;
    };
    let timeout = Duration::from_secs(5);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let request =
        format!("DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    }
}

/// Where Debian installs `name` (`/usr/bin`), then `PATH`.
fn chromium_candidates(name: &str) -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::from("/usr/bin").join(name)];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
    }
    candidates
}

fn string_of(value: Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_put_the_profile_and_extra_arguments_after_the_defaults() {
        let args = BrowserOptions::new()
            .host_resolver_rules("MAP coder.test 127.0.0.1")
            .user_data_dir("/tmp/profile")
            .arg("--disable-features=HttpsUpgrades")
            .chromium_args();
        assert_eq!(&args[..BASE_ARGS.len()], BASE_ARGS);
        assert_eq!(
            &args[BASE_ARGS.len()..],
            [
                "--user-data-dir=/tmp/profile",
                "--host-resolver-rules=MAP coder.test 127.0.0.1",
                "--disable-features=HttpsUpgrades",
            ]
        );
    }

    #[test]
    fn a_webdriver_cookie_reads_with_its_flags() {
        let cookie: Cookie = serde_json::from_value(json!({
            "name": "coder_session", "value": "v", "domain": "coder.test", "path": "/",
            "secure": false, "httpOnly": true, "sameSite": "Lax",
        }))
        .expect("cookie");
        assert!(cookie.http_only && !cookie.secure);
        assert_eq!(cookie.same_site.as_deref(), Some("Lax"));
    }
}
