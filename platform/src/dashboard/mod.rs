//! `coder-service dashboard`: the web UI. Server-rendered HTML without scripts or external
//! assets (it works air-gapped); it calls the manager's API server-side with the user's session
//! token, which it keeps in an `HttpOnly`, `Secure`, `SameSite` cookie. The envproxy accepts that
//! cookie on the shared origin only to open a workspace: "Open IDE" leads to the workspace's own
//! origin with a one-time ticket, so workspace pages never run where this cookie lives. It never
//! reaches PostgreSQL.
//!
//! Layout: [`config`] (its configuration), [`access_url`] (the access URL and the `Secure` cookie rule),
//! [`wrong_address`] (telling users they are at the wrong address), [`terminal`] (a workspace's
//! terminal in the browser), [`state`] (what handlers share), [`handlers`] (routes, one module a resource),
//! [`signed_in`] (the extractors: who is signed in, CSRF-checked form posts), [`reply`] (pages,
//! redirects and messages as responses), [`pages`] (HTML), [`session`] (the session and CSRF
//! cookies), [`assets`] (the stylesheet and security headers).

pub mod access_url;
pub mod assets;
pub mod config;
pub mod handlers;
pub mod pages;
pub mod reply;
pub mod session;
pub mod signed_in;
pub mod state;
pub mod terminal;
pub mod wrong_address;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use config::DashboardConfig;
pub use state::DashState;

use crate::manager_client::{ClientError, ManagerClient};

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The manager client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `--access-url` is not an http(s) URL.
    #[error(transparent)]
    AccessUrl(#[from] access_url::AccessUrlError),
    /// The listener could not be bound or served.
    #[error("serving on {addr}: {source}")]
    Serve {
        /// The address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The routes.
pub fn router(state: DashState) -> Router {
    use handlers::{license, login, users, workspaces};
    let routes = Router::new()
        .route("/", get(workspaces::home))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/workspaces", post(workspaces::create))
        .route("/workspaces/{id}/{verb}", post(workspaces::action))
        .route("/workspaces/{id}/terminal", get(terminal::page_for))
        .route("/assets/terminal.js", get(terminal::script))
        .route("/admin/users", get(users::list).post(users::create))
        .route("/admin/license", get(license::show).post(license::install))
        .route("/assets/style.css", get(assets::style))
        .route("/healthz", get(handlers::healthz))
        .layer(axum::middleware::from_fn(assets::security_headers))
        .with_state(state);
    crate::request_id::layer(routes)
}

/// Serves the dashboard on `listener` until `shutdown` completes.
pub async fn serve(
    config: DashboardConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    config.cookie_rule().log(config.access_url.as_ref());
    let state = DashState {
        client: ManagerClient::new(&config.manager_url, None)?,
        config: Arc::new(config),
    };
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| StartError::Serve { addr, source })
}

/// Runs the dashboard until SIGINT or SIGTERM.
pub async fn run(config: DashboardConfig) -> Result<(), StartError> {
    let listen = config.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Serve { addr: listen, source })?;
    tracing::info!(%listen, "dashboard listening");
    serve(config, listener, crate::shutdown::signal()).await
}
