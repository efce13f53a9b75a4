//! The platform's cookies as the dashboard and the envproxy both handle them: their names,
//! reading them from a request, the browser-origin checks that guard ambient credentials, and
//! whether the workspace domain shares cookies with the platform's host ([`shared_cookie_scope`]).
//! (Setting them is each component's own: `dashboard::session`, `envproxy::workspace_origin`.)
//!
//! Where cookies are `Secure` their names carry the `__Host-` prefix ([`host_only_name`]): a
//! browser stores such a cookie only when it is `Secure`, `Path=/` and has no `Domain`, so no
//! page on another host (a workspace's, a sibling subdomain's) can set or overwrite it. A page
//! can still add a cookie of the plain name, or for a parent domain, and browsers send every
//! cookie of a name: readers therefore consider each value ([`cookie_values`]), never only the
//! first.

use std::borrow::Cow;

use axum::http::{HeaderMap, header};

/// The dashboard's CSRF cookie (`__Host-` prefixed when `Secure`, see [`HOST_CSRF_COOKIE`]).
pub const CSRF_COOKIE: &str = "coder_csrf";
/// The CSRF cookie's name when cookies are `Secure`: no sibling subdomain can plant it.
pub const HOST_CSRF_COOKIE: &str = "__Host-coder_csrf";
/// The cookie a workspace host sets for its own workspace (host-only, `HttpOnly`), over plain
/// HTTP.
pub const WORKSPACE_COOKIE: &str = "coder_workspace_session";
/// The workspace cookie's name over HTTPS.
pub const HOST_WORKSPACE_COOKIE: &str = "__Host-coder_workspace_session";
/// The prefix browsers reserve for `Secure`, `Path=/`, host-only cookies.
pub const HOST_PREFIX: &str = "__Host-";
/// The most cookies of one name a reader considers (bounds the work a request can cause).
pub const MAX_COOKIES_PER_NAME: usize = 8;

/// The name of cookie `name` when cookies are `secure`: `__Host-<name>` (unless it has a
/// `__Host-`/`__Secure-` prefix already); the plain name otherwise (browsers refuse a
/// `__Host-` cookie that is not `Secure`).
pub fn host_only_name(name: &str, secure: bool) -> Cow<'_, str> {
    let lower = name.to_ascii_lowercase();
    if !secure || lower.starts_with("__host-") || lower.starts_with("__secure-") {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("{HOST_PREFIX}{name}"))
    }
}

/// The workspace cookie's name: [`HOST_WORKSPACE_COOKIE`] over HTTPS, else [`WORKSPACE_COOKIE`].
pub fn workspace_cookie_name(secure: bool) -> &'static str {
    if secure {
        HOST_WORKSPACE_COOKIE
    } else {
        WORKSPACE_COOKIE
    }
}

/// Whether a cookie name is one of the platform's: the dashboard's session (`session_cookie`)
/// and CSRF cookies or the workspace cookie, with or without a `__Host-`/`__Secure-` prefix, in
/// any case. Such cookies never reach a workspace, and a workspace can never set them.
pub fn is_platform_cookie(name: &str, session_cookie: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    let base = name
        .strip_prefix("__host-")
        .or_else(|| name.strip_prefix("__secure-"))
        .unwrap_or(&name);
    base == session_cookie.to_ascii_lowercase() || base == CSRF_COOKIE || base == WORKSPACE_COOKIE
}

/// Every `name=value` pair of the request's `Cookie` headers.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
}

/// The non-empty values of every cookie `name` the request carries, in the order sent, at most
/// [`MAX_COOKIES_PER_NAME`]. Browsers send a planted cookie of the same name (a parent domain's,
/// another path's) along with the real one, in an order the page cannot be trusted not to pick:
/// a reader tries each until one is valid.
pub fn cookie_values<'h, 'n>(
    headers: &'h HeaderMap,
    name: &'n str,
) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
    cookies(headers)
        .filter(move |(cookie, value)| *cookie == name && !value.is_empty())
        .map(|(_, value)| value)
        .take(MAX_COOKIES_PER_NAME)
}

/// Whether a browser request comes from the page's own origin: `Origin`'s host and port equal
/// `Host` (or `X-Forwarded-Host`). Requests without `Origin` (non-browser clients) pass.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let authority = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .unwrap_or_default();
    let strip_default_port = |value: &str, scheme_port: &str| {
        value
            .strip_suffix(scheme_port)
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_owned())
    };
    let default_port = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    !authority.is_empty()
        && strip_default_port(&authority.to_ascii_lowercase(), default_port)
            == strip_default_port(&host.to_ascii_lowercase(), default_port)
}

/// Whether a browser request comes from another origin other than as a top-level navigation
/// (`Sec-Fetch-Site` other than `same-origin`/`none`, unless `Sec-Fetch-Mode: navigate` to a
/// `document`): a page on one workspace's origin cannot use another workspace's cookie in a
/// fetch, a frame or an image. Clients that send no `Sec-Fetch-*` headers pass.
pub fn cross_origin_subresource(headers: &HeaderMap) -> bool {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let site = value("sec-fetch-site");
    if site.is_empty() || site == "same-origin" || site == "none" {
        return false;
    }
    !(value("sec-fetch-mode") == "navigate" && value("sec-fetch-dest") == "document")
}

/// How workspace hosts share cookies with the platform's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedCookieScope {
    /// Workspace hosts are subdomains of the platform's host (`coder.example.com` and
    /// `*.coder.example.com`): a workspace's page can set cookies with `Domain=` the platform's
    /// host, which the dashboard then receives.
    WorkspacesUnderPlatform {
        /// The platform's host.
        platform: String,
    },
    /// Both are under one parent domain of two labels or more (`coder.example.com` and
    /// `*.ws.example.com`): most likely the same registrable domain (unless the parent is a
    /// public suffix such as `co.uk`), so a workspace's page can set cookies for the parent,
    /// which the dashboard receives too, and the two are the same site.
    SameParentDomain {
        /// The shared parent domain.
        parent: String,
    },
}

impl std::fmt::Display for SharedCookieScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WorkspacesUnderPlatform { platform } => write!(
                f,
                "workspace hosts are subdomains of the platform's host {platform}: a page a workspace \
                 serves can set cookies for {platform} that the dashboard receives"
            ),
            Self::SameParentDomain { parent } => write!(
                f,
                "workspace hosts and the platform's host share the parent domain {parent} (likely one \
                 registrable domain, one site): a page a workspace serves can set cookies for {parent} \
                 that the dashboard receives"
            ),
        }
    }
}

/// Whether pages on the workspace hosts (`ws-<id>.<workspace_domain>`) can set cookies that the
/// platform's host receives; `None` when they cannot, or when either is an IP address. Hosts are
/// compared without port, case or trailing dot. Without the public suffix list, a shared parent
/// of two labels or more counts as one registrable domain, and a single label (`localhost`,
/// `test`) does not.
pub fn shared_cookie_scope(platform_host: &str, workspace_domain: &str) -> Option<SharedCookieScope> {
    let normalize = |host: &str| host.trim().trim_end_matches('.').to_ascii_lowercase();
    let (platform, workspaces) = (normalize(platform_host), normalize(workspace_domain));
    let is_address = |host: &str| host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok();
    if platform.is_empty() || workspaces.is_empty() || is_address(&platform) || is_address(&workspaces) {
        return None;
    }
    if workspaces == platform || workspaces.ends_with(&format!(".{platform}")) {
        return Some(SharedCookieScope::WorkspacesUnderPlatform { platform });
    }
    let shared: Vec<&str> = platform
        .rsplit('.')
        .zip(workspaces.rsplit('.'))
        .take_while(|(a, b)| a == b)
        .map(|(label, _)| label)
        .collect();
    (shared.len() >= 2).then(|| SharedCookieScope::SameParentDomain {
        parent: shared.into_iter().rev().collect::<Vec<_>>().join("."),
    })
}

/// A header map of `pairs` (repeated names append), for tests of header handling.
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    use axum::http::{HeaderName, HeaderValue};
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        test_headers(pairs)
    }

    #[test]
    fn every_non_empty_cookie_of_a_name_is_found_across_headers() {
        let h = headers(&[("cookie", "a=; b=1"), ("cookie", "a=2; a=3")]);
        assert_eq!(cookie_values(&h, "a").collect::<Vec<_>>(), ["2", "3"]);
        assert_eq!(cookies(&h).count(), 4);
        assert_eq!(cookie_values(&h, "c").count(), 0);
        let many = headers(&[("cookie", &"x=1; ".repeat(100))]);
        assert_eq!(cookie_values(&many, "x").count(), MAX_COOKIES_PER_NAME);
    }

    #[test]
    fn secure_cookies_take_the_host_prefix() {
        assert_eq!(host_only_name("coder_session", true), "__Host-coder_session");
        assert_eq!(host_only_name("coder_session", false), "coder_session");
        assert_eq!(host_only_name("__Host-x", true), "__Host-x");
        assert_eq!(host_only_name("__Secure-x", true), "__Secure-x");
        assert_eq!(workspace_cookie_name(true), HOST_WORKSPACE_COOKIE);
        assert_eq!(workspace_cookie_name(false), WORKSPACE_COOKIE);
        assert_eq!(HOST_WORKSPACE_COOKIE, format!("{HOST_PREFIX}{WORKSPACE_COOKIE}"));
    }

    #[test]
    fn workspace_domains_under_the_platforms_domain_are_found() {
        let under = |platform: &str| SharedCookieScope::WorkspacesUnderPlatform {
            platform: platform.to_owned(),
        };
        let parent = |parent: &str| SharedCookieScope::SameParentDomain {
            parent: parent.to_owned(),
        };
        let cases = [
            (
                "coder.example.test",
                "coder.example.test",
                Some(under("coder.example.test")),
            ),
            (
                "Coder.Example.test.",
                "ws.coder.example.test",
                Some(under("coder.example.test")),
            ),
            ("coder.example.com", "ws.example.com", Some(parent("example.com"))),
            (
                "coder.example.com",
                "apps.ws.example.com",
                Some(parent("example.com")),
            ),
            ("coder.example.com", "ws.example-apps.com", None),
            ("coder.localhost", "workspaces.localhost", None),
            ("coder.test", "ws.other.test", None),
            ("10.0.0.1", "ws.example.com", None),
            ("", "ws.example.com", None),
        ];
        for (platform, workspaces, expected) in cases {
            assert_eq!(
                shared_cookie_scope(platform, workspaces),
                expected,
                "{platform} {workspaces}"
            );
        }
        let text = under("coder.example.test").to_string();
        assert!(text.contains("coder.example.test"), "{text}");
    }

    #[test]
    fn platform_cookies_are_known_by_name_in_any_case_and_prefix() {
        for name in [
            "coder_session",
            "__Host-coder_csrf",
            "CODER_WORKSPACE_SESSION",
            "__Secure-coder_csrf",
        ] {
            assert!(is_platform_cookie(name, "coder_session"), "{name}");
        }
        assert!(!is_platform_cookie("coder_sessions", "coder_session"));
        assert_eq!(HOST_CSRF_COOKIE, format!("__Host-{CSRF_COOKIE}"));
    }

    #[test]
    fn cross_origin_cookies_work_only_for_top_level_navigations() {
        assert!(!cross_origin_subresource(&headers(&[])));
        assert!(!cross_origin_subresource(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(!cross_origin_subresource(&headers(&[
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ])));
        for (mode, dest) in [("cors", "empty"), ("navigate", "iframe"), ("no-cors", "image")] {
            assert!(cross_origin_subresource(&headers(&[
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", mode),
                ("sec-fetch-dest", dest),
            ])));
        }
    }

    #[test]
    fn origins_must_match_the_host() {
        assert!(same_origin(&headers(&[("host", "coder.example")])));
        assert!(same_origin(&headers(&[
            ("host", "coder.example"),
            ("origin", "https://coder.example")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "coder.example:443"),
            ("origin", "https://Coder.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "coder.example"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "coder.example"),
            ("origin", "null")
        ])));
    }
}
