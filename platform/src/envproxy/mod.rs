//! `coder-service envproxy`: the reverse proxy from users to their workspaces' editor (code-server
//! on 13337), shell (envagent on 26337) and SSH (envagent on 12212).
//!
//! It never reaches PostgreSQL: users are authenticated by the manager with their own token and
//! workspaces looked up with the envproxy's token ([`auth`]).
//!
//! Layout, by idea:
//! - the service: [`config`] (its configuration), [`state`] (what handlers share), [`routes`]
//!   (the platform origin's routes), [`server`] (the HTTP/1 server: header timeout, graceful
//!   drain), [`error`] (refusals), [`metrics`];
//! - [`auth`]: who is calling and whether they may reach a workspace (the manager's answers,
//!   cached in [`auth::cache`]);
//! - [`proxy`]: admission and proxying for both origins, plain HTTP in [`proxy::forward`], where
//!   a workspace is in [`proxy::address`];
//! - [`relay`]: WebSocket and TCP sessions: the relay loop (keepalive, idle timeout,
//!   backpressure), the frames of either side ([`relay::side`]), connecting to the workspace
//!   ([`relay::upstream`]) and the limits sessions are admitted under ([`relay::limits`]: per
//!   user, in total, the memory budget);
//! - [`workspace_origin`]: each workspace on its own origin ([`workspace_origin::origins`]),
//!   entered with a one-time ticket exchanged for a host-only cookie
//!   ([`workspace_origin::ticket`]).

pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod relay;
pub mod routes;
pub mod server;
pub mod state;
pub mod workspace_origin;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::EnvproxyConfig;
pub use state::ProxyState;

use crate::manager_client::{ClientError, ManagerClient};
use proxy::address;
use relay::limits;
use workspace_origin::{origins, ticket};

/// Why the envproxy could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The envproxy token file is unreadable or empty.
    #[error("envproxy token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `--workspace-address` entry is malformed.
    #[error(transparent)]
    Address(#[from] address::AddressError),
    /// `--workspace-base-url` is malformed.
    #[error(transparent)]
    Origin(#[from] origins::OriginError),
    /// The workspace credentials' key could not be made.
    #[error("making the workspace ticket key: {0}")]
    Seal(#[from] ticket::SealError),
    /// No session fits in the memory budget.
    #[error(
        "--memory-budget {budget} bytes cannot hold one WebSocket session ({needed} bytes with \
         --max-message-bytes {message}): raise the budget or lower the message size"
    )]
    Budget {
        /// The budget.
        budget: usize,
        /// What one session reserves.
        needed: usize,
        /// The message size limit.
        message: usize,
    },
    /// The HTTP clients could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A configured envproxy.
pub struct Envproxy {
    state: ProxyState,
}

impl Envproxy {
    /// Reads the token file and builds the clients.
    pub fn new(config: EnvproxyConfig) -> Result<Self, StartError> {
        let token = match &config.envproxy_token_file {
            Some(path) => {
                let error = |reason: String| StartError::TokenFile {
                    path: path.clone(),
                    reason,
                };
                let token = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
                let token = token.trim().to_owned();
                if token.is_empty() {
                    return Err(error("the file is empty".to_owned()));
                }
                Some(token)
            }
            None => {
                tracing::warn!("no --envproxy-token-file: the manager will refuse workspace look-ups");
                None
            }
        };
        // Every replica reads the same token file, so each opens what another sealed.
        let sealer = match &token {
            Some(token) => ticket::Sealer::from_secret(token.as_bytes())?,
            None => ticket::Sealer::random()?,
        };
        let origins = origins::WorkspaceOrigins::parse(&config.workspace_base_url)?;
        let session_limits = limits::Limits {
            per_user: config.max_connections_per_user,
            total: config.max_connections,
            budget_bytes: config.memory_budget,
            session_bytes: limits::session_bytes(config.max_message_bytes),
        };
        if session_limits.session_bytes > session_limits.budget_bytes {
            return Err(StartError::Budget {
                budget: config.memory_budget,
                needed: session_limits.session_bytes,
                message: config.max_message_bytes,
            });
        }
        tracing::info!(
            memory_budget = config.memory_budget,
            session_bytes = session_limits.session_bytes,
            sessions_in_budget = config.memory_budget / session_limits.session_bytes,
            max_connections = config.max_connections,
            "WebSocket session limits"
        );
        match &origins {
            None => tracing::warn!("no --workspace-base-url: browsers cannot open workspaces"),
            Some(origins) => warn_of_shared_cookies(&config.access_url, origins),
        }
        let client = ManagerClient::new(&config.manager_url, token)?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(ClientError::Unreachable)?;
        let resolver = address::Resolver::new(
            &config.namespace,
            &config.service_domain,
            &config.workspace_addresses,
        )?;
        let state = ProxyState {
            authorizer: Arc::new(auth::Authorizer::new(client, config.auth_cache_ttl)),
            resolver: Arc::new(resolver),
            sessions: Arc::new(limits::Sessions::default()),
            limits: session_limits,
            metrics: Arc::new(metrics::Metrics::default()),
            http,
            draining: Arc::new(watch::channel(false).0),
            closing: Arc::new(watch::channel(false).0),
            origins: origins.map(Arc::new),
            sealer: Arc::new(sealer),
            config: Arc::new(config),
        };
        Ok(Self { state })
    }

    /// The shared state (open sessions, ...).
    pub fn state(&self) -> &ProxyState {
        &self.state
    }

    /// Serves on `listener` until `shutdown` completes, then drains (see [`server::serve`]).
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) {
        server::serve(self.state, listener, shutdown).await;
    }
}

/// Logs a warning when pages on the workspace hosts can set cookies that the platform's host
/// (`access_url`'s) receives: the workspace domain is the platform's host or under it, or both
/// share a parent domain. The dashboard's `__Host-` cookies (HTTPS) cannot be overwritten that
/// way, and every reader tries each cookie of a name, but plain-HTTP cookies can be, and the two
/// are then one site. Not a refusal: a lab may choose it knowingly.
fn warn_of_shared_cookies(access_url: &str, origins: &origins::WorkspaceOrigins) {
    if access_url.trim().is_empty() {
        return;
    }
    let Some(platform_host) = reqwest::Url::parse(access_url.trim())
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
    else {
        tracing::warn!(
            access_url,
            "--access-url is not a URL; the cookie scope is not checked"
        );
        return;
    };
    if let Some(shared) = crate::cookies::shared_cookie_scope(&platform_host, origins.domain()) {
        tracing::warn!(
            access_url,
            workspace_domain = origins.domain(),
            "{shared}; serve workspaces from a domain of their own, ideally another registrable \
             domain (e.g. coder.example.com with ws.example-apps.com)"
        );
    }
}

/// Runs the envproxy until SIGTERM (then drains) or SIGINT.
pub async fn run(config: EnvproxyConfig) -> Result<(), StartError> {
    let listen = config.listen;
    let proxy = Envproxy::new(config)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen { addr: listen, source })?;
    tracing::info!(%listen, "envproxy listening");
    proxy.serve(listener, crate::shutdown::signal()).await;
    Ok(())
}
