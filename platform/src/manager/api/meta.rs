//! `GET /api` (version), `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::db;
use crate::manager::error::ApiError;
use crate::manager::state::AppState;

/// The header carrying the manager's version.
pub const VERSION_HEADER: &str = "Coder-Version";

/// `GET /api`: the version, as a header and in the body.
pub async fn api_info(State(state): State<AppState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let mut response =
        Json(json!({ "version": version, "access_url": state.config.access_url })).into_response();
    response
        .headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from_static(version));
    response
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers and every migration is applied; else 503.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match db::migrations_current(&state.pool).await {
        Ok(true) => Json(json!({ "status": "ready" })).into_response(),
        Ok(false) => ApiError::MigrationsPending.into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
