//! Plain HTTP to code-server: method, path, query, headers and bodies passed through, streamed
//! both ways (a slow client slows the upstream read: nothing is buffered whole), hop-by-hop
//! headers dropped, `X-Forwarded-*` added, the caller's Coder credentials removed, and the
//! workspace's `Set-Cookie` for the platform's own cookies dropped.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;

use crate::envproxy::error::ProxyError;

/// The headers that describe one hop, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Adds `X-Forwarded-For`, `-Host` and `-Proto` (keeping what an ingress in front already set).
pub fn add_forwarded(headers: &mut HeaderMap, original: &HeaderMap, client_ip: Option<std::net::IpAddr>) {
    if client_ip.is_some()
        && let Some(chain) = crate::forwarded::chain(original, client_ip)
        && let Ok(value) = HeaderValue::from_str(&chain)
    {
        headers.insert("x-forwarded-for", value);
    }
    if !original.contains_key("x-forwarded-host")
        && let Some(host) = original.get(header::HOST)
    {
        headers.insert("x-forwarded-host", host.clone());
    }
    if !original.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
}

/// Removes every `Set-Cookie` that would set one of the platform's cookies
/// ([`is_platform_cookie`](crate::cookies::is_platform_cookie)): a workspace cannot plant or
/// overwrite the dashboard's session or CSRF cookie, or its own workspace cookie.
pub fn strip_platform_set_cookies(headers: &mut HeaderMap, session_cookie: &str) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|value| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let name = text.split(';').next().and_then(|pair| pair.split_once('='));
            // A line without `name=` is a nameless cookie to some browsers: drop it too.
            name.is_some_and(|(name, _)| !crate::cookies::is_platform_cookie(name, session_cookie))
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

/// Sends the request to `url` and streams the answer back (without the platform's cookies).
pub async fn forward(
    http: &reqwest::Client,
    url: String,
    parts: &Parts,
    headers: HeaderMap,
    body: Body,
    session_cookie: &str,
) -> Result<Response, ProxyError> {
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let mut request = http.request(parts.method.clone(), url).headers(headers);
    if has_body {
        request = request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let upstream = request
        .send()
        .await
        .map_err(|error| ProxyError::Upstream(error.to_string()))?;
    let mut response = Response::builder().status(upstream.status());
    if let Some(headers) = response.headers_mut() {
        *headers = upstream.headers().clone();
        strip_hop_by_hop(headers);
        strip_platform_set_cookies(headers, session_cookie);
    }
    response
        .body(Body::from_stream(upstream.bytes_stream()))
        .map_err(|error| ProxyError::Upstream(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert("x-end-to-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-end-to-end"], "kept");
    }

    #[test]
    fn the_platforms_cookies_cannot_be_set_by_a_workspace() {
        let mut headers = HeaderMap::new();
        for line in [
            "coder_session=evil; Domain=example.com; Path=/",
            "__Host-coder_csrf=evil; Path=/; Secure",
            "Coder_Workspace_Session=evil",
            " coder_session =evil",
            "nameless",
            "theme=dark; Path=/",
        ] {
            headers.append(header::SET_COOKIE, HeaderValue::from_static(line));
        }
        strip_platform_set_cookies(&mut headers, "coder_session");
        let left: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(left, ["theme=dark; Path=/"]);
    }
}
