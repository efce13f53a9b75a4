//! Plain HTTP to code-server: method, path, query, headers and bodies passed through, streamed
//! both ways (a slow client slows the upstream read: nothing is buffered whole), hop-by-hop
//! headers dropped, `X-Forwarded-*` added, the caller's Coder credentials removed.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;

use super::error::ProxyError;

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

/// Sends the request to `url` and streams the answer back.
pub async fn forward(
    http: &reqwest::Client,
    url: String,
    parts: &Parts,
    headers: HeaderMap,
    body: Body,
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
}
