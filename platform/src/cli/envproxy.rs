//! `coder-service envproxy`'s flags and environment variables, and the [`EnvproxyConfig`] they
//! make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use coder_units::{parse_duration, parse_memory_size};

use crate::envproxy::EnvproxyConfig;

/// `coder-service envproxy`'s flags; every flag can also be set through the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvproxyArgs {
    /// The address the proxy listens on.
    #[arg(long, env = "CODER_LISTEN", default_value_t = SocketAddr::from(([0, 0, 0, 0], coder_topology::ENVPROXY_PORT)))]
    pub listen: SocketAddr,
    /// The manager's base URL: users and workspaces are looked up there (never in PostgreSQL).
    #[arg(long, env = "CODER_MANAGER_URL", default_value = "http://coder-manager:8080")]
    pub manager_url: String,
    /// A file holding the envproxy's token (the Secret `coder-install apply` generates); the
    /// manager must be started with the same file.
    #[arg(long, env = "CODER_ENVPROXY_TOKEN_FILE")]
    pub envproxy_token_file: Option<PathBuf>,
    /// The Kubernetes namespace the workspaces' Services live in.
    #[arg(long, env = "CODER_NAMESPACE", default_value = "coder")]
    pub namespace: String,
    /// The DNS suffix after `<service>.<namespace>.` (`svc`, or `svc.cluster.local`, ...).
    #[arg(long, env = "CODER_SERVICE_DOMAIN", default_value = "svc")]
    pub service_domain: String,
    /// Workspace address overrides, comma separated: `ID=HOST` (every port on HOST) or
    /// `ID:PORT=HOST:PORT` (one port), where ID is a workspace id or `*` (every workspace).
    #[arg(
        long = "workspace-address",
        env = "CODER_WORKSPACE_ADDRESSES",
        value_delimiter = ','
    )]
    pub workspace_addresses: Vec<String>,
    /// After SIGTERM: how long open connections may continue before they are closed
    /// (`30s`, `15m`, `2h`). New connections are refused at once and `/readyz` fails.
    #[arg(long, env = "CODER_DRAIN_PERIOD", default_value = "1h", value_parser = parse_duration)]
    pub drain_period: Duration,
    /// A WebSocket with no data in either direction for this long is closed.
    #[arg(long, env = "CODER_IDLE_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How often the proxy pings both ends of a WebSocket; a client silent for three intervals
    /// is disconnected.
    #[arg(long, env = "CODER_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,
    /// How long a client may take to send a request's headers (slow-header clients are cut).
    #[arg(long, env = "CODER_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// How long a user's token and a workspace's owner and state are cached; revoking a token
    /// or stopping a workspace takes effect within this time, also on open WebSockets.
    #[arg(long, env = "CODER_AUTH_CACHE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub auth_cache_ttl: Duration,
    /// WebSocket connections one user may have open at once (429 beyond).
    #[arg(long, env = "CODER_MAX_CONNECTIONS_PER_USER", default_value_t = 64)]
    pub max_connections_per_user: usize,
    /// WebSocket connections open at once, all users together (503 `proxy_at_capacity` beyond).
    #[arg(long, env = "CODER_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// The largest WebSocket message (and frame) accepted from either side (`1Mi`, `256Ki`, or
    /// bytes); a larger one closes the connection with 1009 (message too big).
    #[arg(long, env = "CODER_MAX_MESSAGE_BYTES", default_value = "1Mi", value_parser = parse_memory_size)]
    pub max_message_bytes: usize,
    /// The memory WebSocket sessions may hold in all (`384Mi`, `1Gi`, or bytes). Each session
    /// reserves its worst case when it opens (a whole message each way, read and copied into the
    /// other side's write buffer, plus its buffers: about 4 x `--max-message-bytes`), and one that
    /// does not fit is refused with 503 `proxy_at_capacity`. Keep it below the container's
    /// memory limit, with room for the process itself (the chart's limit is 512Mi).
    #[arg(long, env = "CODER_MEMORY_BUDGET", default_value = "384Mi", value_parser = parse_memory_size)]
    pub memory_budget: usize,
    /// The session cookie the dashboard sets: accepted on the platform's origin for
    /// `/proxy/workspaces/<id>/open`, the terminal and SSH (never for workspace content), and
    /// stripped from what workspaces send and receive.
    #[arg(long, env = "CODER_COOKIE_NAME", default_value = "coder_session")]
    pub cookie_name: String,
    /// Where browsers reach workspaces, each on its own origin: `https://ws.example.com` serves
    /// workspace `<id>` at `https://ws-<id>.ws.example.com` (a wildcard DNS name and certificate).
    /// Empty: browsers cannot open workspaces (tokens in headers still reach
    /// `/proxy/workspaces/<id>/ide/`).
    #[arg(long, env = "CODER_WORKSPACE_BASE_URL", default_value = "")]
    pub workspace_base_url: String,
    /// The platform's address (the dashboard's access URL, e.g. `https://coder.example.com`), only
    /// to warn at start when pages on the workspace hosts could set cookies the dashboard
    /// receives (the workspace domain under the platform's host, or both under one parent).
    #[arg(long, env = "CODER_ACCESS_URL", default_value = "")]
    pub access_url: String,
}

impl EnvproxyArgs {
    /// Settings with every default, for a manager URL (what tests start from).
    pub fn for_manager(manager_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            manager_url: manager_url.into(),
            envproxy_token_file: None,
            namespace: "coder".to_owned(),
            service_domain: "svc".to_owned(),
            workspace_addresses: Vec::new(),
            drain_period: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            keepalive_interval: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            auth_cache_ttl: Duration::from_secs(10),
            max_connections_per_user: 64,
            max_connections: 1024,
            max_message_bytes: 1024 * 1024,
            memory_budget: 384 * 1024 * 1024,
            cookie_name: "coder_session".to_owned(),
            workspace_base_url: String::new(),
            access_url: String::new(),
        }
    }
}

impl From<EnvproxyArgs> for EnvproxyConfig {
    fn from(args: EnvproxyArgs) -> Self {
        Self {
            listen: args.listen,
            manager_url: args.manager_url,
            envproxy_token_file: args.envproxy_token_file,
            namespace: args.namespace,
            service_domain: args.service_domain,
            workspace_addresses: args.workspace_addresses,
            drain_period: args.drain_period,
            idle_timeout: args.idle_timeout,
            keepalive_interval: args.keepalive_interval,
            header_timeout: args.header_timeout,
            auth_cache_ttl: args.auth_cache_ttl,
            max_connections_per_user: args.max_connections_per_user,
            max_connections: args.max_connections,
            max_message_bytes: args.max_message_bytes,
            memory_budget: args.memory_budget,
            cookie_name: args.cookie_name,
            workspace_base_url: args.workspace_base_url,
            access_url: args.access_url,
        }
    }
}
