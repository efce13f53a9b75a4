//! The envproxy's configuration, from flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `coder-service envproxy`'s flags; every flag can also be set through the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct EnvproxyArgs {
    /// The address the proxy listens on.
    #[arg(long, env = "CODER_LISTEN", default_value = "0.0.0.0:8080")]
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
    /// The largest WebSocket message (and frame) accepted from either side, in bytes; a larger
    /// one closes the connection with 1009 (message too big).
    #[arg(long, env = "CODER_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
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
            max_message_bytes: 16 * 1024 * 1024,
            cookie_name: "coder_session".to_owned(),
            workspace_base_url: String::new(),
        }
    }
}

/// Parses `500ms`, `30s`, `15m`, `2h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 15m, 2h)"))?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for bad in ["", "h", "1d", "-1s", "1.5h", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
