//! [`AppState`]: what every handler, the service layer and the middleware share.

use std::sync::Arc;

use sqlx::PgPool;

use super::config::ManagerConfig;
use super::k8s::WorkspaceCluster;
use super::metrics::Metrics;
use super::proxy_pods::ProxyPods;
use super::ratelimit::RateLimiter;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The database pool.
    pub pool: PgPool,
    /// The configuration.
    pub config: Arc<ManagerConfig>,
    /// Where workspaces run; `None` makes workspace changes answer 503.
    pub cluster: Option<WorkspaceCluster>,
    /// The login rate limiter.
    pub limiter: Arc<RateLimiter>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// An argon2id hash of a random password, verified against when a login names an unknown
    /// email, so that it costs the same time as a wrong password.
    pub dummy_hash: Arc<str>,
    /// The envproxy's token (`--envproxy-token-file`); `None` disables the envproxy routes.
    pub envproxy_token: Option<Arc<str>>,
    /// The pods trusted as proxies besides `--trusted-proxies` (`--trusted-proxy-pods`).
    pub proxy_pods: ProxyPods,
}

impl AppState {
    /// The client a request from `peer` stands for: `peer`, or whom it forwards when it is a
    /// trusted proxy (one of `--trusted-proxies` or of the followed proxy pods).
    pub fn client_address(
        &self,
        peer: std::net::IpAddr,
        headers: &axum::http::HeaderMap,
    ) -> std::net::IpAddr {
        crate::forwarded::client_address(peer, headers, |address| {
            self.config.trusted_proxies.contains(address) || self.proxy_pods.contains(address)
        })
    }
}
