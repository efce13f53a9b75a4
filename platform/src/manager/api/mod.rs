//! The HTTP API: routes, the JSON body and path extractors, and the layers every request goes
//! through (request id, tracing span, body limit, metrics). Handlers are thin: they extract and
//! authenticate, then call [`super::service`].

mod auth;
mod envproxy;
mod keys;
mod license;
mod meta;
mod users;
mod workspaces;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// The request id header, set when the client sent none and echoed in the response.
pub const REQUEST_ID_HEADER: &str = crate::request_id::REQUEST_ID_HEADER;

/// A JSON body: like `axum::Json`, but its rejections are [`ApiError`]s (JSON bodies).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// The `{id}` path segment, with a JSON rejection.
#[derive(Debug)]
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::bad_request("invalid_path", "the path is not valid", rejection.body_text())
            })?;
        Ok(Self(id))
    }
}

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
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            license::airgap_gate,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::metrics::track,
        ))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });

    let limit = DefaultBodyLimit::max(state.config.body_limit);
    crate::request_id::layer(api.layer(limit).with_state(state))
}
