//! The dashboard's cookies: the session (the manager's session token, `HttpOnly`, `Secure`,
//! `SameSite`) and the CSRF token (double-submit: a random cookie every form repeats in a hidden
//! field, compared in constant time, plus an `Origin` check when the browser sends one). Reading
//! cookies and the origin check are shared with the envproxy ([`crate::cookies`]).
//!
//! When cookies are `Secure` both names carry the `__Host-` prefix, and every cookie of a name is
//! read ([`session_tokens`], [`csrf_check`]), so a cookie another host planted cannot shadow
//! the real one.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use super::config::DashboardConfig;
use crate::cookies::{CSRF_COOKIE, HOST_CSRF_COOKIE, cookie_values, host_only_name, same_origin};

/// The CSRF cookie's name: `__Host-` prefixed when cookies are `Secure` (so that no sibling
/// subdomain can plant one).
pub fn csrf_cookie_name(config: &DashboardConfig) -> &'static str {
    if config.secure_cookies() {
        HOST_CSRF_COOKIE
    } else {
        CSRF_COOKIE
    }
}

/// The session cookie's name: `__Host-<--cookie-name>` when cookies are `Secure`, else the
/// name as given.
pub fn session_cookie_name(config: &DashboardConfig) -> Cow<'_, str> {
    host_only_name(&config.cookie_name, config.secure_cookies())
}

/// Every session token the request's session cookies hold, in the order sent (the caller uses
/// the first the manager accepts).
pub fn session_tokens<'a>(config: &DashboardConfig, headers: &'a HeaderMap) -> Vec<&'a str> {
    let name = session_cookie_name(config);
    cookie_values(headers, &name).collect()
}

/// A `Set-Cookie` value; `None` max age clears the cookie.
fn set_cookie(
    config: &DashboardConfig,
    name: &str,
    value: &str,
    max_age_secs: Option<u64>,
) -> Option<HeaderValue> {
    let mut cookie = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite={}",
        config.cookie_same_site.as_str()
    );
    if config.secure_cookies() {
        cookie.push_str("; Secure");
    }
    cookie.push_str(&format!("; Max-Age={}", max_age_secs.unwrap_or(0)));
    HeaderValue::from_str(&cookie).ok()
}

/// Sets the session cookie.
pub fn session_cookie(config: &DashboardConfig, token: &str) -> Option<HeaderValue> {
    set_cookie(
        config,
        &session_cookie_name(config),
        token,
        Some(u64::from(config.session_ttl_hours) * 3600),
    )
}

/// Clears the session cookie.
pub fn clear_session_cookie(config: &DashboardConfig) -> Option<HeaderValue> {
    set_cookie(config, &session_cookie_name(config), "", None)
}

/// The request's CSRF token (its first CSRF cookie's: [`csrf_check`] takes any of them), or a
/// new one with the cookie to set.
pub fn csrf_token(config: &DashboardConfig, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(token) = cookie_values(headers, csrf_cookie_name(config)).next() {
        return (token.to_owned(), None);
    }
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: an empty token never validates, so forms fail closed.
        return (String::new(), None);
    }
    let token = hex::encode(bytes);
    let header = set_cookie(config, csrf_cookie_name(config), &token, Some(12 * 3600));
    (token, header)
}

/// What the CSRF check of a form post found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfVerdict {
    /// The field repeats the cookie and the post comes from the dashboard's own origin.
    Valid,
    /// The request has no CSRF cookie at all: the browser refused or never stored it.
    NoCookie,
    /// The cookie is there but the field does not repeat it (an old or forged form).
    Mismatch,
    /// The browser names another origin.
    CrossOrigin,
}

/// Whether a form post carries the value of one of its CSRF cookies (each is compared, so a
/// planted cookie sent first does not break the form) and, if the browser names one, comes from
/// the dashboard's own origin.
pub fn csrf_check(config: &DashboardConfig, headers: &HeaderMap, submitted: &str) -> CsrfVerdict {
    let expected: Vec<&str> = cookie_values(headers, csrf_cookie_name(config)).collect();
    if expected.is_empty() {
        return CsrfVerdict::NoCookie;
    }
    let matches = expected.iter().fold(false, |found, value| {
        found | bool::from(value.as_bytes().ct_eq(submitted.as_bytes()))
    });
    if !matches || submitted.is_empty() {
        CsrfVerdict::Mismatch
    } else if !same_origin(headers) {
        CsrfVerdict::CrossOrigin
    } else {
        CsrfVerdict::Valid
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;

    #[test]
    fn cookies_carry_the_security_attributes() {
        let config = DashboardConfig::try_from(crate::cli::DashboardArgs::for_manager("http://m"))
            .expect("the defaults");
        let cookie = session_cookie(&config, "id-secret").expect("header");
        assert_eq!(
            cookie,
            "__Host-coder_session=id-secret; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=86400"
        );
        let cleared = clear_session_cookie(&config).expect("header");
        assert!(cleared.to_str().expect("ascii").ends_with("Max-Age=0"));
    }

    #[test]
    fn the_access_urls_scheme_decides_secure_and_the_csrf_cookies_name() {
        let cookies_for = |access_url: &str, explicit: Option<bool>| {
            let mut args = crate::cli::DashboardArgs::for_manager("http://m");
            args.access_url = access_url.to_owned();
            args.cookie_secure = explicit;
            let config = DashboardConfig::try_from(args).expect("an access URL");
            let (_, csrf) = csrf_token(&config, &HeaderMap::new());
            format!(
                "{}\n{}",
                session_cookie(&config, "id-secret")
                    .expect("header")
                    .to_str()
                    .expect("ascii"),
                csrf.expect("csrf cookie")
                    .to_str()
                    .expect("ascii")
                    .split_once('=')
                    .map(|(name, _)| name)
                    .unwrap_or_default(),
            )
        };
        let secure = "__Host-coder_session=id-secret; Path=/; HttpOnly; SameSite=Lax; Secure; Max-Age=86400\n__Host-coder_csrf";
        let plain = "coder_session=id-secret; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400\ncoder_csrf";
        assert_eq!(cookies_for("https://coder.example.com", None), secure);
        assert_eq!(cookies_for("http://coder.test:3000", None), plain);
        assert_eq!(cookies_for("", None), secure);
        assert_eq!(cookies_for("http://coder.test:3000", Some(true)), secure);
        assert_eq!(cookies_for("https://coder.example.com", Some(false)), plain);
    }

    #[test]
    fn csrf_needs_the_cookie_the_field_and_the_origin() {
        let config = DashboardConfig::try_from(crate::cli::DashboardArgs::for_manager("http://m"))
            .expect("the defaults");
        let mut headers = HeaderMap::new();
        let (token, set) = csrf_token(&config, &headers);
        assert!(set.is_some() && token.len() == 32);
        assert_eq!(csrf_check(&config, &headers, &token), CsrfVerdict::NoCookie);
        // A planted cookie of the same name sent first does not break the form.
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("__Host-coder_csrf=planted; __Host-coder_csrf={token}"))
                .expect("value"),
        );
        headers.insert(header::HOST, HeaderValue::from_static("coder.example"));
        assert_eq!(csrf_check(&config, &headers, &token), CsrfVerdict::Valid);
        assert_eq!(
            csrf_check(&config, &headers, "0".repeat(32).as_str()),
            CsrfVerdict::Mismatch
        );
        assert_eq!(csrf_check(&config, &headers, ""), CsrfVerdict::Mismatch);
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert_eq!(csrf_check(&config, &headers, &token), CsrfVerdict::CrossOrigin);
    }
}
