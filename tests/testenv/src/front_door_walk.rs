//! A person's walk through the platform's front door in headless Chromium: the dashboard at
//! its access URL (through the load balancer, the ingress controller and TLS from the site's
//! CA), from the login to a workspace's editor and terminal. The end-to-end test and the quick
//! start take the same steps.
//!
//! Each step waits for what a person would see, takes a screenshot into the walk's folder
//! (`NN-step.png`), and panics naming the step and the page when it does not come (these are
//! test steps, as [`Browser`]'s are).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::browser::Browser;

/// How long a workspace may take to start (image pull, scheduling, readiness).
const WORKSPACE_START_TIMEOUT: Duration = Duration::from_secs(240);

/// The walk: a browser at the platform's access URL, screenshots into a folder.
pub struct FrontDoorWalk<'a> {
    browser: &'a Browser,
    access_url: String,
    screenshots: PathBuf,
    step: AtomicUsize,
}

impl<'a> FrontDoorWalk<'a> {
    /// A walk of `browser` at `access_url` (`https://HOST[:PORT]`), its screenshots in
    /// `screenshots` (created if needed).
    pub fn new(browser: &'a Browser, access_url: &str, screenshots: &Path) -> Self {
        let _ = std::fs::create_dir_all(screenshots);
        Self {
            browser,
            access_url: access_url.trim_end_matches('/').to_owned(),
            screenshots: screenshots.to_owned(),
            step: AtomicUsize::new(0),
        }
    }

    /// The browser.
    pub fn browser(&self) -> &Browser {
        self.browser
    }

    /// Takes a screenshot named `NN-name.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let step = self.step.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.screenshots.join(format!("{step:02}-{name}.png"));
        self.browser.screenshot(&path).await;
        path
    }

    /// Signs in at `/login` and waits for the workspace list.
    pub async fn login(&self, email: &str, password: &str) {
        self.browser.goto(&format!("{}/login", self.access_url)).await;
        self.browser.type_into("#email", email).await;
        self.browser.type_into("#password", password).await;
        self.screenshot("login").await;
        self.browser.click("#login").await;
        self.wait_for("the workspace list after signing in", "#logout")
            .await;
        self.screenshot("signed-in").await;
    }

    /// As an admin: creates a member on the users page.
    pub async fn create_member(&self, email: &str, name: &str, password: &str) {
        self.browser
            .goto(&format!("{}/admin/users", self.access_url))
            .await;
        let form = "form[action='/admin/users']";
        self.browser
            .type_into(&format!("{form} input[name=email]"), email)
            .await;
        self.browser
            .type_into(&format!("{form} input[name=name]"), name)
            .await;
        self.browser
            .type_into(&format!("{form} input[name=password]"), password)
            .await;
        self.browser.click(&format!("{form} button[type=submit]")).await;
        self.browser.wait_for_text("#users", email).await;
        self.screenshot("member-created").await;
    }

    /// Signs out and waits for the login page.
    pub async fn logout(&self) {
        self.browser.click("#logout").await;
        self.wait_for("the login page after signing out", "#login").await;
        self.screenshot("signed-out").await;
    }

    /// Creates workspace `name` from `image` (0.5 CPU, 0.5 GB, 1 GB disk) and waits until it
    /// runs; its id.
    pub async fn create_workspace(&self, name: &str, image: &str) -> String {
        self.browser.goto(&format!("{}/", self.access_url)).await;
        self.browser.type_into("#workspace-name", name).await;
        self.browser.type_into("#workspace-image", image).await;
        let form = "form[action='/workspaces']";
        self.browser
            .type_into(&format!("{form} input[name=cpu_cores]"), "0.5")
            .await;
        self.browser
            .type_into(&format!("{form} input[name=memory_gb]"), "0.5")
            .await;
        self.browser
            .type_into(&format!("{form} input[name=disk_gb]"), "1")
            .await;
        self.browser.click("#create-workspace").await;
        let row = format!("tr[data-workspace='{name}']");
        self.wait_for("the new workspace in the list", &row).await;
        // The list shows a workspace's state when the page loads: reload until it runs.
        let started = Instant::now();
        while !self.browser.exists(&format!("{row} a.terminal")).await {
            assert!(
                started.elapsed() < WORKSPACE_START_TIMEOUT,
                "walk: workspace {name} did not start within {WORKSPACE_START_TIMEOUT:?}; the list: {}",
                self.browser.text("body").await
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.browser.goto(&format!("{}/", self.access_url)).await;
        }
        self.screenshot("workspace-running").await;
        let terminal = self.browser.attribute(&format!("{row} a.terminal"), "href").await;
        terminal
            .trim_end_matches("/terminal")
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// Opens workspace `name`'s editor as "Open IDE" does (the link's URL, in this tab): through
    /// the envproxy's one-time ticket on the workspace's own origin. Returns that origin's URL
    /// and the page's text.
    pub async fn open_editor(&self, name: &str) -> (String, String) {
        self.browser.goto(&format!("{}/", self.access_url)).await;
        let link = self
            .browser
            .attribute(&format!("tr[data-workspace='{name}'] a[target=_blank]"), "href")
            .await;
        // The attribute as written: a path on the platform's origin unless an envproxy URL is set.
        let link = if link.starts_with('/') {
            format!("{}{link}", self.access_url)
        } else {
            link
        };
        self.browser.goto(&link).await;
        let text = self.browser.wait_for_text("body", "workspace stand-in").await;
        self.screenshot("editor").await;
        let url = self.browser.url().await;
        (url, text)
    }

    /// Opens workspace `id`'s terminal page, runs `command` and waits until the output shows
    /// `expected`; returns the output.
    pub async fn terminal(&self, id: &str, command: &str, expected: &str) -> String {
        self.browser
            .goto(&format!("{}/workspaces/{id}/terminal", self.access_url))
            .await;
        self.wait_for("the terminal to connect", "#terminal[data-state=open]")
            .await;
        self.browser.type_into("#terminal-input", command).await;
        self.browser.send_keys("#terminal-input", Browser::ENTER).await;
        let output = self.browser.wait_for_text("#terminal-output", expected).await;
        self.screenshot("terminal").await;
        output
    }

    /// Stops workspace `name` from the list and waits until the list shows it off.
    pub async fn stop_workspace(&self, name: &str) {
        self.browser.goto(&format!("{}/", self.access_url)).await;
        let row = format!("tr[data-workspace='{name}']");
        self.browser.click(&format!("{row} button.stop")).await;
        let started = Instant::now();
        while !self.browser.exists(&format!("{row} button.start")).await {
            assert!(
                started.elapsed() < WORKSPACE_START_TIMEOUT,
                "walk: workspace {name} did not stop; the list: {}",
                self.browser.text("body").await
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            self.browser.goto(&format!("{}/", self.access_url)).await;
        }
        self.screenshot("workspace-stopped").await;
    }

    /// Waits up to 20 s for an element matching `css`, naming `what` if it never comes.
    async fn wait_for(&self, what: &str, css: &str) {
        let started = Instant::now();
        while !self.browser.exists(css).await {
            if started.elapsed() > Duration::from_secs(20) {
                let shot = self.screenshot("failed").await;
                panic!(
                    "walk: {what}: no {css} at {} (screenshot {}); the page says: {}",
                    self.browser.url().await,
                    shot.display(),
                    self.browser.text("body").await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
