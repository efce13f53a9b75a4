//! The HTTP API: routes and the layers every request goes through (request id, tracing span,
//! body limit, metrics); the extractors (JSON body, path id, the authenticated [`Actor`]) are in
//! [`extract`]. Handlers are thin: they extract and authenticate, then call [`super::service`].
//!
//! [`Actor`]: super::actor::Actor

mod auth;
mod envproxy;
pub mod extract;
mod keys;
mod license;
mod meta;
mod users;
mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::error::ApiError;
use super::state::AppState;

/// The request id header, set when the client sent none and echoed in the response.
pub const REQUEST_ID_HEADER: &str = crate::request_id::REQUEST_ID_HEADER;

/// Every route, with the state and layers.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/basic/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/api", get(meta::api_info))
        .route("/api/v0/users", get(users::list).post(users::create))
        .route(
            "/api/v0/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/api/v0/license", get(license::get).post(license::upload))
        .route("/api/v0/api-keys", get(keys::list).post(keys::create))
        .route("/api/v0/api-keys/{id}", axum::routing::delete(keys::delete))
        .route(
            "/api/v0/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route(
            "/api/v0/workspaces/{id}",
            get(workspaces::get).delete(workspaces::delete),
        )
        .route("/api/v0/workspaces/{id}/stop", post(workspaces::stop))
        .route("/api/v0/workspaces/{id}/start", post(workspaces::start))
        .route("/api/v0/workspaces/{id}/rebuild", post(workspaces::rebuild))
        .route("/api/private/envproxy/ping", get(envproxy::ping))
        .route("/api/private/envproxy/workspaces/{id}", get(envproxy::workspace))
        .route(
            "/api/private/envproxy/tickets/redeem",
            post(envproxy::redeem_ticket),
        )
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            license::airgap_gate,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            super::metrics::track,
        ))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });

    let limit = DefaultBodyLimit::max(state.config.body_limit);
    crate::request_id::layer(api.layer(limit).with_state(state))
}
