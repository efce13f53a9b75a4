//! `coder-service dashboard`'s flags and environment variables, and the [`DashboardConfig`]
//! they make.

use std::net::SocketAddr;

use clap::ArgAction;

use crate::dashboard::access_url::{AccessUrl, AccessUrlError};
use crate::dashboard::config::{DashboardConfig, SameSite};

/// `--access-url`'s check: empty (unset) or an http(s) URL.
fn parse_access_url(text: &str) -> Result<String, AccessUrlError> {
    if !text.trim().is_empty() {
        text.parse::<AccessUrl>()?;
    }
    Ok(text.to_owned())
}

/// `coder-service dashboard`'s flags; every flag can also be set through the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardArgs {
    /// The address the dashboard listens on.
    #[arg(long, env = "CODER_LISTEN", default_value_t = SocketAddr::from(([0, 0, 0, 0], coder_topology::DASHBOARD_PORT)))]
    pub listen: SocketAddr,
    /// The manager's base URL; the dashboard calls it server-side, never from the browser.
    #[arg(long, env = "CODER_MANAGER_URL", default_value = "http://coder-manager:8080")]
    pub manager_url: String,
    /// Where "Open IDE" links point: prefixed to `/proxy/workspaces/<id>/open`, which redirects to
    /// the workspace's own origin. Empty (the default) keeps the links relative, for an ingress
    /// serving the envproxy's `/proxy/` on the dashboard's origin (where the session cookie is).
    #[arg(long, env = "CODER_ENVPROXY_URL", default_value = "")]
    pub envproxy_url: String,
    /// The session cookie's name (the envproxy must be told the same name).
    #[arg(long, env = "CODER_COOKIE_NAME", default_value = "coder_session")]
    pub cookie_name: String,
    /// The address users reach the platform at (`https://coder.example.com`). Its scheme
    /// decides whether cookies are `Secure` (see --cookie-secure), and pages reached at another
    /// address name it. Empty: unset.
    #[arg(long, env = "CODER_ACCESS_URL", default_value = "", value_parser = parse_access_url)]
    pub access_url: String,
    /// Override whether cookies are `Secure` (HTTPS only; browsers also keep them from
    /// http://localhost). Without it: `Secure` unless the access URL is http:// (then cookies
    /// travel in clear, and the log warns); `Secure` when no access URL is set.
    #[arg(long, env = "CODER_COOKIE_SECURE", action = ArgAction::Set)]
    pub cookie_secure: Option<bool>,
    /// The cookies' `SameSite` attribute.
    #[arg(long, env = "CODER_COOKIE_SAMESITE", value_enum, default_value_t = SameSite::Lax)]
    pub cookie_same_site: SameSite,
    /// How long the session cookie lives, in hours (the manager's session TTL bounds it anyway).
    #[arg(long, env = "CODER_SESSION_TTL_HOURS", default_value_t = 24)]
    pub session_ttl_hours: u32,
    /// The image the "new workspace" form suggests.
    #[arg(
        long,
        env = "CODER_DEFAULT_IMAGE",
        default_value = "codercom/enterprise-base:ubuntu"
    )]
    pub default_image: String,
}

impl DashboardArgs {
    /// Settings with every default, for a manager URL (what tests start from).
    pub fn for_manager(manager_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            manager_url: manager_url.into(),
            envproxy_url: String::new(),
            cookie_name: "coder_session".to_owned(),
            access_url: String::new(),
            cookie_secure: None,
            cookie_same_site: SameSite::Lax,
            session_ttl_hours: 24,
            default_image: "codercom/enterprise-base:ubuntu".to_owned(),
        }
    }
}

impl TryFrom<DashboardArgs> for DashboardConfig {
    type Error = AccessUrlError;

    /// Reads `--access-url` (empty: unset); the flag's parser has checked it already.
    fn try_from(args: DashboardArgs) -> Result<Self, AccessUrlError> {
        let access_url = match args.access_url.trim() {
            "" => None,
            text => Some(text.parse::<AccessUrl>()?),
        };
        Ok(Self {
            listen: args.listen,
            manager_url: args.manager_url,
            envproxy_url: args.envproxy_url,
            cookie_name: args.cookie_name,
            access_url,
            cookie_secure: args.cookie_secure,
            cookie_same_site: args.cookie_same_site,
            session_ttl_hours: args.session_ttl_hours,
            default_image: args.default_image,
        })
    }
}
