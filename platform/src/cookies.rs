//! The platform's cookies as the dashboard and the envproxy both handle them: their names,
//! reading them from a request, and the browser-origin checks that guard ambient credentials.
//! (Setting them is each component's own: `dashboard::session`, `envproxy::workspace_host`.)

use axum::http::{HeaderMap, header};

/// The dashboard's CSRF cookie (`__Host-` prefixed when `Secure`, see [`HOST_CSRF_COOKIE`]).
pub const CSRF_COOKIE: &str = "coder_csrf";
/// The CSRF cookie's name when cookies are `Secure`: no sibling subdomain can plant it.
pub const HOST_CSRF_COOKIE: &str = "__Host-coder_csrf";
/// The cookie a workspace host sets for its own workspace (host-only, `HttpOnly`).
pub const WORKSPACE_COOKIE: &str = "coder_workspace_session";

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

/// The value of the cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookies(headers)
        .find(|(cookie, value)| *cookie == name && !value.is_empty())
        .map(|(_, value)| value)
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
    fn the_first_non_empty_cookie_of_a_name_is_found_across_headers() {
        let h = headers(&[("cookie", "a=; b=1"), ("cookie", "a=2; a=3")]);
        assert_eq!(cookie(&h, "a"), Some("2"));
        assert_eq!(cookies(&h).count(), 4);
        assert_eq!(cookie(&h, "c"), None);
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
