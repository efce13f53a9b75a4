//! `/api/v0/api-keys`: the caller's API keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::extract::{Body, Id, Paging};
use crate::manager::actor::Actor;
use crate::manager::error::ApiResult;
use crate::manager::service::keys;
use crate::manager::state::AppState;

/// `POST /api/v0/api-keys`: the answer holds the key (`key`), shown this once.
pub async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<keys::CreateApiKey>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (key, token) = keys::create_api_key(&state.pool, &actor, request).await?;
    Ok((StatusCode::CREATED, Json(json!({ "key": token, "api_key": key }))))
}

/// `GET /api/v0/api-keys`, a page at a time.
pub async fn list(State(state): State<AppState>, actor: Actor, paging: Paging) -> ApiResult<Response> {
    Ok(paging.respond(keys::list(&state.pool, &actor, &paging.page).await?))
}

/// `DELETE /api/v0/api-keys/{id}`.
pub async fn delete(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<StatusCode> {
    keys::delete(&state.pool, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
