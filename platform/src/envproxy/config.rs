//! The envproxy's configuration (what [`crate::cli::envproxy`] makes of its flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the envproxy runs: its flags' values (see `coder-service envproxy --help` for each).
#[derive(Debug, Clone)]
pub struct EnvproxyConfig {
    /// The address the proxy listens on.
    pub listen: SocketAddr,
    /// The manager's base URL.
    pub manager_url: String,
    /// The file holding the envproxy's token.
    pub envproxy_token_file: Option<PathBuf>,
    /// The namespace the workspaces' Services live in.
    pub namespace: String,
    /// The DNS suffix after `<service>.<namespace>.`.
    pub service_domain: String,
    /// Workspace address overrides (`ID=HOST`, `ID:PORT=HOST:PORT`).
    pub workspace_addresses: Vec<String>,
    /// After SIGTERM: how long open connections may continue.
    pub drain_period: Duration,
    /// A WebSocket idle this long is closed.
    pub idle_timeout: Duration,
    /// How often both ends of a WebSocket are pinged.
    pub keepalive_interval: Duration,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long the manager's answers are cached.
    pub auth_cache_ttl: Duration,
    /// WebSocket connections one user may have open at once.
    pub max_connections_per_user: usize,
    /// WebSocket connections open at once, all users together.
    pub max_connections: usize,
    /// The largest WebSocket message (and frame) accepted from either side.
    pub max_message_bytes: usize,
    /// The memory WebSocket sessions may hold in all.
    pub memory_budget: usize,
    /// The dashboard's session cookie name.
    pub cookie_name: String,
    /// Where browsers reach workspaces, each on its own origin (empty: nowhere).
    pub workspace_base_url: String,
    /// The platform's address, to warn of cookies shared with the workspace hosts (empty: unset).
    pub access_url: String,
}
