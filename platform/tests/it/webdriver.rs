//! A minimal W3C WebDriver client over reqwest, driving Debian's headless Chromium through
//! `chromedriver`. (A client crate would bring a second TLS crypto provider into this test
//! binary, which makes kube's client panic; the protocol is a handful of JSON calls.)

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver and one browser session; both end on drop.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Browser::start`] with extra Chromium arguments (e.g. `--host-resolver-rules=...`).
    pub async fn start_with(extra_args: &[&str]) -> Self {
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver (Debian package chromium-driver)");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--no-first-run",
        ];
        args.extend_from_slice(extra_args);
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        Self {
            http,
            session: format!("{base}/session/{session}"),
            driver,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        if answer["value"].get("error").is_some() {
            panic!("webdriver {path}: {answer}");
        }
        answer["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.command(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The first element matching a CSS selector, waiting up to 20 s for it.
    pub async fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let answer: Value = self
                .http
                .post(format!("{}/element", self.session))
                .json(&json!({ "using": "css selector", "value": css }))
                .send()
                .await
                .expect("webdriver")
                .json()
                .await
                .expect("json");
            if let Some(id) = answer["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no element {css}: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Types into the element.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

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
            let answer: Value = self
                .http
                .get(format!("{}/element/{element}/text", self.session))
                .send()
                .await
                .expect("webdriver")
                .json()
                .await
                .expect("json");
            if let Some(text) = answer["value"].as_str() {
                return text.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "text of {css}: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the current URL ends with `suffix`.
    pub async fn wait_for_url(&self, suffix: &str) {
        let started = Instant::now();
        while !self.url().await.ends_with(suffix) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never reached {suffix}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An attribute of the element.
    pub async fn attribute(&self, css: &str, name: &str) -> String {
        let element = self.find(css).await;
        self.command(
            reqwest::Method::GET,
            &format!("/element/{element}/attribute/{name}"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The cookies the browser holds for the current page.
    pub async fn cookies(&self) -> Vec<Value> {
        match self.command(reqwest::Method::GET, "/cookie", None).await {
            Value::Array(cookies) => cookies,
            _ => Vec::new(),
        }
    }

    /// Saves a PNG screenshot to `path`.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let encoded = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("base64 PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("artifact directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Ends the session (the driver is killed on drop).
    pub async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.kill().await;
    }
}
