//! The dashboard's configuration, from flags and environment variables.

use std::net::SocketAddr;

use clap::ArgAction;

use super::access_url::{AccessUrl, AccessUrlError, CookieRule};

/// `--access-url`'s check: empty (unset) or an http(s) URL.
fn parse_access_url(text: &str) -> Result<String, AccessUrlError> {
    if !text.trim().is_empty() {
        text.parse::<AccessUrl>()?;
    }
    Ok(text.to_owned())
}

/// The `SameSite` attribute of the dashboard's cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SameSite {
    /// Sent on same-site requests and top-level navigations from other sites.
    Lax,
    /// Sent on same-site requests only.
    Strict,
}

impl SameSite {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
        }
    }
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

    /// The access URL, if one is set (the flag's value is checked when it is read).
    pub fn access(&self) -> Option<AccessUrl> {
        let text = self.access_url.trim();
        if text.is_empty() {
            return None;
        }
        text.parse().ok()
    }

    /// Whether cookies are `Secure`, and why ([`CookieRule`]).
    pub fn cookie_rule(&self) -> CookieRule {
        CookieRule::decide(self.cookie_secure, self.access().as_ref())
    }

    /// Whether cookies carry `Secure` (and the CSRF cookie the `__Host-` prefix).
    pub fn secure_cookies(&self) -> bool {
        self.cookie_rule().secure()
    }

    /// The dashboard's page for a workspace's terminal.
    pub fn terminal_link(workspace_id: &str) -> String {
        format!(
            "/workspaces/{}/terminal",
            crate::manager_client::path_segment(workspace_id)
        )
    }

    /// The link that opens a workspace's IDE (on the workspace's own origin, through the
    /// envproxy's one-time ticket).
    pub fn open_link(&self, workspace_id: &str) -> String {
        format!(
            "{}/proxy/workspaces/{}/open",
            self.envproxy_url.trim_end_matches('/'),
            crate::manager_client::path_segment(workspace_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_links_are_relative_unless_an_envproxy_url_is_set() {
        let mut args = DashboardArgs::for_manager("http://m");
        assert_eq!(args.open_link("ab12"), "/proxy/workspaces/ab12/open");
        args.envproxy_url = "https://proxy.example/".to_owned();
        assert_eq!(
            args.open_link("ab12"),
            "https://proxy.example/proxy/workspaces/ab12/open"
        );
    }
}
