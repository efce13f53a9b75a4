//! One request of the pull API: authentication, the route, and the answer.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coder_bundle::bundle_file::BundleFile;
use http::header::{
    ACCEPT_RANGES, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    LINK, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::auth::{PasswordGate, REALM, Verdict};
use crate::body::Body;
use crate::content::Content;
use crate::error::ApiError;
use crate::range::{RangeAnswer, answer};
use crate::routes::{Reference, Route, route};

/// What every request shares.
pub(crate) struct State {
    pub(crate) content: Content,
    pub(crate) file: Arc<BundleFile>,
    pub(crate) auth: Option<PasswordGate>,
    pub(crate) stats: Stats,
}

/// What the registry has served, for the report at shutdown.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Requests answered.
    pub(crate) requests: AtomicU64,
    /// Blob bytes sent (or being sent).
    pub(crate) blob_bytes: AtomicU64,
    /// Requests refused for want of credentials.
    pub(crate) unauthorized: AtomicU64,
}

const API_VERSION: &str = "registry/2.0";

/// Answers one request from `client`.
pub(crate) async fn handle<B>(
    state: Arc<State>,
    request: Request<B>,
    client: IpAddr,
) -> Result<Response<Body>, Infallible> {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let head = request.method() == Method::HEAD;
    let path = request.uri().path();
    let route = route(path);
    if route == Route::NotFound {
        let mut response = plain(StatusCode::NOT_FOUND, Body::full("404 page not found\n"));
        set(&mut response, CONTENT_TYPE, "text/plain; charset=utf-8");
        return Ok(response);
    }
    if let Some(gate) = &state.auth {
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        if let Some(refusal) = refusal(gate.check(client, header).await, head) {
            state.stats.unauthorized.fetch_add(1, Ordering::Relaxed);
            return Ok(refusal);
        }
    }
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    let response = match route {
        Route::Upload => unsupported(path, head),
        _ if !read => unsupported(path, head),
        Route::Base => json(serde_json::json!({}).to_string(), head),
        Route::Catalog => {
            let names: Vec<&str> = state.content.repositories.keys().map(String::as_str).collect();
            paginated(
                &names,
                request.uri().query(),
                "/v2/_catalog",
                head,
                |page| serde_json::json!({ "repositories": page }),
            )
        }
        Route::Tags(name) => match state.content.repositories.get(name) {
            None => error(ApiError::NameUnknown, name, head),
            Some(repository) => {
                let tags: Vec<&str> = repository.tags.keys().map(String::as_str).collect();
                let base = format!("/v2/{name}/tags/list");
                paginated(
                    &tags,
                    request.uri().query(),
                    &base,
                    head,
                    |page| serde_json::json!({ "name": name, "tags": page }),
                )
            }
        },
        Route::Manifest(name, reference) => manifest(&state, name, &reference, head),
        Route::Blob(name, digest) => {
            let range = request.headers().get(RANGE).and_then(|value| value.to_str().ok());
            blob(&state, name, digest, range, head)
        }
        Route::InvalidName(name) => error(ApiError::NameInvalid, name, head),
        Route::InvalidDigest(digest) => error(ApiError::DigestInvalid, digest, head),
        Route::InvalidTag(tag) => error(ApiError::TagInvalid, tag, head),
        Route::NotFound => error(ApiError::NameUnknown, path, head),
    };
    Ok(response)
}

/// The answer to credentials that did not pass: 401 with the `Basic` challenge, or 429 with
/// `Retry-After` for a client that failed too often; `None` when they passed.
fn refusal(verdict: Verdict, head: bool) -> Option<Response<Body>> {
    match verdict {
        Verdict::Passed => None,
        Verdict::Refused => {
            let mut response = error(ApiError::Unauthorized, "", head);
            set(
                &mut response,
                WWW_AUTHENTICATE,
                &format!("Basic realm=\"{REALM}\""),
            );
            Some(response)
        }
        Verdict::TooManyFailures(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = error(
                ApiError::TooManyRequests,
                "too many failed logins from this address; wait and try again",
                head,
            );
            set(&mut response, RETRY_AFTER, &seconds.max(1).to_string());
            Some(response)
        }
    }
}

/// A manifest by tag or digest, with its media type and digest.
fn manifest(state: &State, name: &str, reference: &Reference<'_>, head: bool) -> Response<Body> {
    let Some(repository) = state.content.repositories.get(name) else {
        return error(ApiError::NameUnknown, name, head);
    };
    let digest = match reference {
        Reference::Tag(tag) => match repository.tags.get(*tag) {
            Some(digest) => digest.as_str(),
            None => return error(ApiError::ManifestUnknown, tag, head),
        },
        Reference::Digest(digest) => *digest,
    };
    let stored = repository
        .manifests
        .contains(digest)
        .then(|| state.content.manifests.get(digest))
        .flatten();
    let Some(stored) = stored else {
        return error(ApiError::ManifestUnknown, digest, head);
    };
    let length = stored.bytes.len();
    let body = if head {
        Body::Empty
    } else {
        Body::full(stored.bytes.clone())
    };
    let mut response = plain(StatusCode::OK, body);
    set(&mut response, CONTENT_TYPE, &stored.media_type);
    set(&mut response, CONTENT_LENGTH, &length.to_string());
    set(&mut response, "docker-content-digest", digest);
    set(&mut response, ETAG, &format!("\"{digest}\""));
    response
}

/// A blob, whole or a range of it, streamed from the bundle file.
fn blob(state: &State, name: &str, digest: &str, range: Option<&str>, head: bool) -> Response<Body> {
    let Some(repository) = state.content.repositories.get(name) else {
        return error(ApiError::NameUnknown, name, head);
    };
    let location = repository
        .blobs
        .contains(digest)
        .then(|| state.content.blobs.get(digest))
        .flatten();
    let Some(location) = location.copied() else {
        return error(ApiError::BlobUnknown, digest, head);
    };
    let size = location.size;
    let (status, start, length) = match answer(range, size) {
        RangeAnswer::Whole => (StatusCode::OK, 0, size),
        RangeAnswer::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        RangeAnswer::Unsatisfiable => {
            let mut response = plain(StatusCode::RANGE_NOT_SATISFIABLE, Body::Empty);
            set(&mut response, CONTENT_RANGE, &format!("bytes */{size}"));
            set(&mut response, CONTENT_LENGTH, "0");
            return response;
        }
    };
    let body = if head || length == 0 {
        Body::Empty
    } else {
        state.stats.blob_bytes.fetch_add(length, Ordering::Relaxed);
        Body::file_range(Arc::clone(&state.file), location.offset + start, length)
    };
    let mut response = plain(status, body);
    set(&mut response, CONTENT_TYPE, "application/octet-stream");
    set(&mut response, CONTENT_LENGTH, &length.to_string());
    set(&mut response, "docker-content-digest", digest);
    set(&mut response, ETAG, &format!("\"{digest}\""));
    set(&mut response, ACCEPT_RANGES, "bytes");
    set(&mut response, CACHE_CONTROL, "max-age=31536000");
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + length - 1;
        set(
            &mut response,
            CONTENT_RANGE,
            &format!("bytes {start}-{end}/{size}"),
        );
    }
    response
}

/// A sorted list, paginated with `n` and `last` as the distribution API does: at most `n`
/// entries after `last`, and a `Link` to the next page when there is more.
fn paginated(
    all: &[&str],
    query: Option<&str>,
    base: &str,
    head: bool,
    document: impl Fn(&[&str]) -> serde_json::Value,
) -> Response<Body> {
    let mut limit: Option<usize> = None;
    let mut last: Option<&str> = None;
    for pair in query.unwrap_or_default().split('&') {
        match pair.split_once('=') {
            Some(("n", value)) => match value.parse() {
                Ok(value) => limit = Some(value),
                Err(_) => return error(ApiError::PaginationNumberInvalid, value, head),
            },
            Some(("last", value)) => last = Some(value),
            _ => {}
        }
    }
    let after: Vec<&str> = all
        .iter()
        .copied()
        .filter(|entry| last.is_none_or(|last| *entry > last))
        .collect();
    let page = &after[..limit.map_or(after.len(), |limit| limit.min(after.len()))];
    let mut response = json(document(page).to_string(), head);
    if let (Some(limit), Some(last_of_page)) = (limit, page.last())
        && page.len() < after.len()
    {
        set(
            &mut response,
            LINK,
            &format!("<{base}?n={limit}&last={last_of_page}>; rel=\"next\""),
        );
    }
    response
}

/// 405 `UNSUPPORTED`: the registry is read-only.
fn unsupported(path: &str, head: bool) -> Response<Body> {
    let mut response = error(ApiError::Unsupported, path, head);
    set(&mut response, ALLOW, "GET, HEAD");
    response
}

/// An error answer with the registry's JSON body.
fn error(kind: ApiError, detail: &str, head: bool) -> Response<Body> {
    let (_, status, _) = kind.parts();
    let mut response = json(kind.body(detail), head);
    *response.status_mut() = status;
    response
}

/// A JSON document.
fn json(document: String, head: bool) -> Response<Body> {
    let length = document.len();
    let mut response = plain(
        StatusCode::OK,
        if head { Body::Empty } else { Body::full(document) },
    );
    set(&mut response, CONTENT_TYPE, "application/json; charset=utf-8");
    set(&mut response, CONTENT_LENGTH, &length.to_string());
    response
}

/// A response with the API version header.
fn plain(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    set(&mut response, "docker-distribution-api-version", API_VERSION);
    response
}

/// Sets a header; values that are not valid header text (never the case for what is set here)
/// are left out rather than failing the answer.
fn set<K: http::header::IntoHeaderName>(response: &mut Response<Body>, key: K, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(key, value);
    }
}
