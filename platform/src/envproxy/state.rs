//! [`ProxyState`]: what every handler of the envproxy shares.

use std::sync::Arc;

use tokio::sync::watch;

use super::config::EnvproxyConfig;
use super::proxy::address;
use super::relay::limits;
use super::workspace_origin::{origins, ticket};
use super::{auth, metrics};

/// What every handler shares.
#[derive(Clone)]
pub struct ProxyState {
    /// The configuration.
    pub config: Arc<EnvproxyConfig>,
    /// Asks the manager who may reach which workspace.
    pub authorizer: Arc<auth::Authorizer>,
    /// Where workspaces are.
    pub resolver: Arc<address::Resolver>,
    /// Open WebSocket sessions.
    pub sessions: Arc<limits::Sessions>,
    /// What sessions are admitted under (per user, in total, the memory budget).
    pub limits: limits::Limits,
    /// The HTTP client to code-server.
    pub http: reqwest::Client,
    /// The counters behind `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// True from SIGTERM on: new requests are refused, `/readyz` fails.
    pub draining: Arc<watch::Sender<bool>>,
    /// True when the drain period is over: open sessions are closed.
    pub closing: Arc<watch::Sender<bool>>,
    /// Where workspaces are served to browsers; `None`: nowhere.
    pub origins: Option<Arc<origins::WorkspaceOrigins>>,
    /// Seals workspace tickets and cookies (a ticket's use is recorded by the manager, in the
    /// database: see [`super::workspace_origin`]).
    pub sealer: Arc<ticket::Sealer>,
}
