//! Request ids and request spans for the envproxy's and the dashboard's routers, as the manager
//! has them: the client's `x-request-id` or a generated UUID, on every log line of the request
//! and echoed in the response (and forwarded to the manager).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The request id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id (set by [`layer`] before any handler runs).
pub fn of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
}

/// Wraps `router` with the request id and tracing layers.
pub fn layer(router: Router) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let layers = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = of(request.headers()).unwrap_or_default();
                    tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(request_id));
    router.layer(layers)
}
