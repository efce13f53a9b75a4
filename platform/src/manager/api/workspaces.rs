//! `/api/v0/workspaces`: create, list, get, delete, stop, start, rebuild.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{Body, Id, Paging};
use crate::api_types::Workspace;
use crate::manager::actor::Actor;
use crate::manager::error::ApiResult;
use crate::manager::service::workspaces;
use crate::manager::state::AppState;

/// `POST /api/v0/workspaces`.
pub async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<workspaces::CreateWorkspace>,
) -> ApiResult<(StatusCode, Json<Workspace>)> {
    Ok((
        StatusCode::CREATED,
        Json(workspaces::create(&state, &actor, request).await?),
    ))
}

/// `GET /api/v0/workspaces`, a page at a time.
pub async fn list(State(state): State<AppState>, actor: Actor, paging: Paging) -> ApiResult<Response> {
    Ok(paging.respond(workspaces::list(&state, &actor, &paging.page).await?))
}

/// `GET /api/v0/workspaces/{id}`.
pub async fn get(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<Json<Workspace>> {
    Ok(Json(workspaces::get(&state, &actor, &id).await?))
}

/// `DELETE /api/v0/workspaces/{id}`.
pub async fn delete(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<StatusCode> {
    workspaces::delete(&state, &actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v0/workspaces/{id}/stop`.
pub async fn stop(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<Json<Workspace>> {
    Ok(Json(workspaces::stop(&state, &actor, &id).await?))
}

/// `POST /api/v0/workspaces/{id}/start`.
pub async fn start(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<Json<Workspace>> {
    Ok(Json(workspaces::start(&state, &actor, &id).await?))
}

/// `POST /api/v0/workspaces/{id}/rebuild`.
pub async fn rebuild(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<Json<Workspace>> {
    Ok(Json(workspaces::rebuild(&state, &actor, &id).await?))
}
