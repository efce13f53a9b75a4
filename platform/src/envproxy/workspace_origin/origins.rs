//! Workspaces on their own origins. A workspace's editor is served at `ws-<id>.<domain>`, under a
//! wildcard domain of its own (`--workspace-base-url`), never on the platform's origin: a page a
//! member serves from their workspace then runs on an origin that holds none of the dashboard's
//! cookies and that the dashboard's and envproxy's origin checks refuse.

/// A `--workspace-base-url` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "--workspace-base-url {url:?}: {reason} (expected e.g. https://ws.example.com, serving \
     https://ws-<id>.ws.example.com)"
)]
pub struct OriginError {
    /// The value given.
    pub url: String,
    /// What is wrong.
    pub reason: String,
}

/// The label every workspace host starts with.
pub const HOST_PREFIX: &str = "ws-";

/// Where workspaces are served: `<scheme>://ws-<id>.<domain>[:<port>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceOrigins {
    scheme: String,
    domain: String,
    port: Option<u16>,
}

impl WorkspaceOrigins {
    /// Parses `https://DOMAIN[:PORT]`; empty is `None` (no workspace origins: browsers cannot
    /// open workspaces).
    pub fn parse(base_url: &str) -> Result<Option<Self>, OriginError> {
        let text = base_url.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let error = |reason: &str| OriginError {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(text).map_err(|e| error(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(error("the scheme must be http or https"));
        }
        let domain = url.host_str().unwrap_or_default();
        if domain.is_empty() || domain.starts_with('[') || domain.parse::<std::net::IpAddr>().is_ok() {
            return Err(error(
                "the host must be a DNS name (the wildcard domain), not an address",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(error("it must not carry credentials"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(error("it must have no path, query or fragment"));
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        Ok(Some(Self {
            scheme: url.scheme().to_owned(),
            domain,
            port: url.port(),
        }))
    }

    /// The wildcard domain (`ws-<id>.` goes in front).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether workspaces are served over HTTPS (their cookie is then `Secure`).
    pub fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// The origin of a workspace: `https://ws-<id>.<domain>[:port]`.
    pub fn origin(&self, workspace_id: &str) -> String {
        let port = self.port.map(|port| format!(":{port}")).unwrap_or_default();
        format!(
            "{}://{HOST_PREFIX}{}.{}{port}",
            self.scheme,
            workspace_id.to_ascii_lowercase(),
            self.domain
        )
    }

    /// The workspace id a `Host` header names, if it is a workspace host (the port is ignored:
    /// an ingress may or may not keep it).
    pub fn workspace_of(&self, host: &str) -> Option<String> {
        let host = host.trim();
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let label = name.strip_suffix(&self.domain)?.strip_suffix('.')?;
        let id = label.strip_prefix(HOST_PREFIX)?;
        let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_and_hosts_map_to_workspaces() {
        assert_eq!(WorkspaceOrigins::parse(" ").expect("empty"), None);
        let origins = WorkspaceOrigins::parse("https://WS.Example.com/")
            .expect("valid")
            .expect("set");
        assert!(origins.is_https());
        assert_eq!(origins.origin("AB12"), "https://ws-ab12.ws.example.com");
        assert_eq!(
            origins.workspace_of("ws-ab12.ws.example.com"),
            Some("ab12".to_owned())
        );
        assert_eq!(
            origins.workspace_of("WS-AB12.ws.example.com.:443"),
            Some("ab12".to_owned())
        );
        for other in [
            "ws.example.com",
            "ws-.ws.example.com",
            "ws-zz.ws.example.com",
            "x.ws-ab.ws.example.com",
            "ws-ab.evilws.example.com",
            "ws-ab.ws.example.com.evil.test",
            "coder.example.com",
        ] {
            assert_eq!(origins.workspace_of(other), None, "{other}");
        }
        let local = WorkspaceOrigins::parse("http://coder.test:8443")
            .expect("valid")
            .expect("set");
        assert_eq!(local.origin("ab"), "http://ws-ab.coder.test:8443");
        assert!(!local.is_https());
        // Browsers resolve `*.localhost` to loopback themselves.
        let loopback = WorkspaceOrigins::parse("http://localhost:3000")
            .expect("valid")
            .expect("set");
        assert_eq!(
            loopback.workspace_of("ws-ab.localhost:3000"),
            Some("ab".to_owned())
        );
        for bad in [
            "ftp://ws.example.com",
            "https://10.0.0.1",
            "https://ws.example.com/path",
            "https://u:p@ws.example.com",
            "not a url",
        ] {
            assert!(WorkspaceOrigins::parse(bad).is_err(), "{bad}");
        }
    }
}
