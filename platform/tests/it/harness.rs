//! Starts PostgreSQL (and, when asked, a kube-apiserver) and a manager serving on a free
//! loopback port, with an admin account whose password the test knows.

use std::future::Future;
use std::time::{Duration, Instant};

use coder_service::cli::ManagerArgs;
use coder_service::manager::Manager;
use coder_testenv::{KubeApiServer, Postgres};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The first admin's credentials.
pub const ADMIN_EMAIL: &str = "admin@coder.local";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
/// The password every member made by [`Env::create_member`] gets.
pub const MEMBER_PASSWORD: &str = "member-password-for-tests";

/// A running manager and the servers behind it; everything stops on drop.
pub struct Env {
    pub base: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    pub postgres: Postgres,
    pub kube: Option<KubeApiServer>,
    pub database_url: String,
    /// The envproxy token the manager accepts, and the file holding it.
    pub envproxy_token: String,
    pub envproxy_token_file: tempfile::NamedTempFile,
    _shutdown: oneshot::Sender<()>,
    _admin_password_file: tempfile::NamedTempFile,
}

/// Which servers a test needs.
pub struct Options {
    pub kubernetes: bool,
    pub tweak: fn(&mut ManagerArgs),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            kubernetes: false,
            tweak: |_| {},
        }
    }
}

impl Env {
    /// PostgreSQL and a manager (no Kubernetes: workspace changes answer 503).
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// PostgreSQL, a kube-apiserver and a manager creating workspaces in `default`.
    pub async fn with_kubernetes() -> Self {
        Self::start_with(Options {
            kubernetes: true,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(options: Options) -> Self {
        let postgres = Postgres::start().await.expect("start PostgreSQL");
        let database_url = postgres.create_database("coder").await.expect("create database");
        let kube = if options.kubernetes {
            Some(KubeApiServer::start().await.expect("start kube-apiserver"))
        } else {
            None
        };
        let client = match &kube {
            Some(server) => Some(server.client().await.expect("kube client")),
            None => None,
        };
        let admin_password_file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(admin_password_file.path(), format!("{ADMIN_PASSWORD}\n")).expect("write password");

        let envproxy_token = "envproxy-token-for-tests-0123456789".to_owned();
        let envproxy_token_file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(envproxy_token_file.path(), format!("{envproxy_token}\n")).expect("write token");

        let mut args = ManagerArgs::for_database(&database_url);
        args.envproxy_token_file = Some(envproxy_token_file.path().to_owned());
        args.namespace = "default".to_owned();
        args.admin_password_file = Some(admin_password_file.path().to_owned());
        args.db.pg_acquire_timeout_secs = 1;
        (options.tweak)(&mut args);
        let manager = Manager::start(args.into(), client)
            .await
            .expect("start the manager");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(manager.serve(listener, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        let mut env = Self {
            base,
            http,
            admin_token: String::new(),
            postgres,
            kube,
            database_url,
            envproxy_token,
            envproxy_token_file,
            _shutdown: shutdown,
            _admin_password_file: admin_password_file,
        };
        env.admin_token = env.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        env
    }

    /// Sends a request; `token` goes in the `Session-Token` header.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Session-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Logs in and returns the session token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/auth/basic/login",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {body}");
        body["session_token"].as_str().expect("session_token").to_owned()
    }

    /// Creates a member and logs in as them: (user id, session token).
    pub async fn create_member(&self, email: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/v0/users",
                &self.admin_token,
                json!({ "email": email, "name": "A Member", "password": MEMBER_PASSWORD }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        (id, self.login(email, MEMBER_PASSWORD).await)
    }

    /// A kube client for the test's API server.
    pub async fn kube_client(&self) -> kube::Client {
        self.kube
            .as_ref()
            .expect("started with Kubernetes")
            .client()
            .await
            .expect("kube client")
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit i64")
}

/// Asserts the error body's shape and code.
pub fn assert_error(status: StatusCode, body: &Value, expected_status: StatusCode, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["detail"].is_string(), "{body}");
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
