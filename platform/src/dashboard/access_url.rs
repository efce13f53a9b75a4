//! The platform's access URL (`--access-url`, the chart's `accessURL`) as the dashboard uses
//! it: the one rule for whether its cookies are `Secure` ([`CookieRule`]), and where users are
//! told to go when they reached the dashboard somewhere else.

use std::fmt;
use std::str::FromStr;

use reqwest::Url;

/// Why an access URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessUrlError {
    /// Not a URL at all.
    #[error("access URL {url:?} is not a URL: {reason}")]
    NotAUrl {
        /// What was given.
        url: String,
        /// The parser's reason.
        reason: String,
    },
    /// A scheme other than `http` or `https`, or no host.
    #[error("access URL {url:?} must be http:// or https:// with a host name")]
    NotWeb {
        /// What was given.
        url: String,
    },
}

/// The address users reach the platform at, `http(s)://host[:port]/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUrl {
    url: Url,
}

impl FromStr for AccessUrl {
    type Err = AccessUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = Url::parse(text.trim()).map_err(|error| AccessUrlError::NotAUrl {
            url: text.to_owned(),
            reason: error.to_string(),
        })?;
        let web = matches!(url.scheme(), "http" | "https");
        if !web || url.host_str().is_none_or(str::is_empty) {
            return Err(AccessUrlError::NotWeb { url: text.to_owned() });
        }
        Ok(Self { url })
    }
}

impl AccessUrl {
    /// Whether it is `https://`.
    pub fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// `host` or `host:port` (the port only when it is not the scheme's default), lower case:
    /// what a browser sends as `Host` when it is there.
    pub fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default().to_ascii_lowercase();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// The address to show users: scheme, authority and `/`.
    pub fn origin_url(&self) -> String {
        format!("{}://{}/", self.url.scheme(), self.authority())
    }
}

impl fmt::Display for AccessUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin_url())
    }
}

/// Whether the dashboard's cookies are `Secure`, and why. The rule, in order:
///
/// 1. `--cookie-secure true|false` when given (an explicit override);
/// 2. else the access URL's scheme: `https://` → `Secure`, `http://` → not `Secure` (a lab
///    without TLS: browsers drop `Secure` cookies set over plain HTTP, except on `localhost`);
/// 3. else (no access URL) `Secure`.
///
/// `Secure` cookies also take the `__Host-` prefix for the CSRF cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieRule {
    /// `--cookie-secure` was given.
    Explicit(bool),
    /// The access URL is `https://`.
    HttpsAccessUrl,
    /// The access URL is `http://`: cookies travel in clear.
    HttpAccessUrl,
    /// No access URL: `Secure`, the safe default.
    NoAccessUrl,
}

impl CookieRule {
    /// The rule for an explicit `--cookie-secure` (if any) and the access URL (if any).
    pub fn decide(explicit: Option<bool>, access_url: Option<&AccessUrl>) -> Self {
        match (explicit, access_url) {
            (Some(secure), _) => Self::Explicit(secure),
            (None, Some(url)) if url.is_https() => Self::HttpsAccessUrl,
            (None, Some(_)) => Self::HttpAccessUrl,
            (None, None) => Self::NoAccessUrl,
        }
    }

    /// Whether cookies carry `Secure`.
    pub fn secure(self) -> bool {
        match self {
            Self::Explicit(secure) => secure,
            Self::HttpsAccessUrl | Self::NoAccessUrl => true,
            Self::HttpAccessUrl => false,
        }
    }

    /// Logs what was decided at start: a WARN when cookies travel in clear or no access URL
    /// is set, INFO otherwise.
    pub fn log(self, access_url: Option<&AccessUrl>) {
        let shown = access_url.map(AccessUrl::origin_url).unwrap_or_default();
        match self {
            Self::HttpAccessUrl => tracing::warn!(
                access_url = %shown,
                "cookies are sent in clear (not Secure): the access URL is plain http://, and \
                 browsers drop Secure cookies set over plain HTTP (localhost excepted); anyone \
                 on the network path can read sessions. Use an https:// access URL outside a lab"
            ),
            Self::NoAccessUrl => tracing::warn!(
                "the access URL is unset (--access-url, CODER_ACCESS_URL): cookies are Secure, \
                 so browsers keep them only over HTTPS or on localhost, and pages cannot tell \
                 users the platform's address"
            ),
            Self::Explicit(false) => tracing::warn!(
                access_url = %shown,
                "cookies are sent in clear (not Secure): --cookie-secure=false"
            ),
            Self::Explicit(true) | Self::HttpsAccessUrl => {
                tracing::info!(access_url = %shown, "cookies are Secure")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> AccessUrl {
        text.parse().expect("access URL")
    }

    #[test]
    fn access_urls_are_web_urls_shown_as_their_origin() {
        assert_eq!(
            url("https://Coder.Example.com").origin_url(),
            "https://coder.example.com/"
        );
        assert_eq!(url("http://coder.test:8080/x").authority(), "coder.test:8080");
        assert_eq!(
            url("https://coder.example.com:443/").authority(),
            "coder.example.com"
        );
        assert!(matches!(
            "coder.example.com".parse::<AccessUrl>(),
            Err(AccessUrlError::NotAUrl { .. })
        ));
        assert!(matches!(
            "ftp://coder.example.com".parse::<AccessUrl>(),
            Err(AccessUrlError::NotWeb { .. })
        ));
    }

    #[test]
    fn the_cookie_rule_follows_the_override_then_the_scheme_then_secure() {
        let https = url("https://coder.example.com");
        let http = url("http://coder.test:3000");
        let table = [
            (None, None, CookieRule::NoAccessUrl, true),
            (None, Some(&https), CookieRule::HttpsAccessUrl, true),
            (None, Some(&http), CookieRule::HttpAccessUrl, false),
            (Some(true), Some(&http), CookieRule::Explicit(true), true),
            (Some(false), Some(&https), CookieRule::Explicit(false), false),
            (Some(false), None, CookieRule::Explicit(false), false),
        ];
        for (explicit, access, rule, secure) in table {
            let decided = CookieRule::decide(explicit, access);
            assert_eq!(
                (decided, decided.secure()),
                (rule, secure),
                "{explicit:?} {access:?}"
            );
        }
    }
}
