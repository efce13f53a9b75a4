//! The dashboard's configuration (what [`crate::cli::dashboard`] makes of its flags).

use std::net::SocketAddr;

use super::access_url::{AccessUrl, CookieRule};

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

/// How the dashboard runs: its flags' values (see `coder-service dashboard --help` for each).
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// The address the dashboard listens on.
    pub listen: SocketAddr,
    /// The manager's base URL.
    pub manager_url: String,
    /// The prefix of "Open IDE" links (empty: relative links).
    pub envproxy_url: String,
    /// The session cookie's name.
    pub cookie_name: String,
    /// The address users reach the platform at; `None`: unset.
    pub access_url: Option<AccessUrl>,
    /// Whether cookies are `Secure`, when the flag overrides the access URL's rule.
    pub cookie_secure: Option<bool>,
    /// The cookies' `SameSite` attribute.
    pub cookie_same_site: SameSite,
    /// How long the session cookie lives, in hours.
    pub session_ttl_hours: u32,
    /// The image the "new workspace" form suggests.
    pub default_image: String,
}

impl DashboardConfig {
    /// Whether cookies are `Secure`, and why ([`CookieRule`]).
    pub fn cookie_rule(&self) -> CookieRule {
        CookieRule::decide(self.cookie_secure, self.access_url.as_ref())
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
        let mut config = DashboardConfig::try_from(crate::cli::DashboardArgs::for_manager("http://m"))
            .expect("the defaults");
        assert_eq!(config.open_link("ab12"), "/proxy/workspaces/ab12/open");
        config.envproxy_url = "https://proxy.example/".to_owned();
        assert_eq!(
            config.open_link("ab12"),
            "https://proxy.example/proxy/workspaces/ab12/open"
        );
    }
}
