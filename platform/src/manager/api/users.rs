//! `/api/v0/users`: list, create, get, update, delete (`me` names the caller).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::extract::{Body, Id, Paging};
use crate::api_types::User;
use crate::manager::actor::Actor;
use crate::manager::error::ApiResult;
use crate::manager::service::{users, workspaces};
use crate::manager::state::AppState;

/// `GET /api/v0/users` (admins), a page at a time.
pub async fn list(State(state): State<AppState>, actor: Actor, paging: Paging) -> ApiResult<Response> {
    Ok(paging.respond(users::list(&state.pool, &actor, &paging.page).await?))
}

/// `POST /api/v0/users` (admins).
pub async fn create(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<users::CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    Ok((
        StatusCode::CREATED,
        Json(users::create(&state.pool, &actor, request).await?),
    ))
}

/// `GET /api/v0/users/{id|me}`.
pub async fn get(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<Json<User>> {
    Ok(Json(users::get(&state.pool, &actor, &id).await?))
}

/// `PATCH /api/v0/users/{id|me}`.
pub async fn update(
    State(state): State<AppState>,
    actor: Actor,
    Id(id): Id,
    Body(request): Body<users::UpdateUser>,
) -> ApiResult<Json<User>> {
    Ok(Json(users::update(&state.pool, &actor, &id, request).await?))
}

/// `DELETE /api/v0/users/{id}` (admins): removes the user's workspaces from the cluster, then
/// the account.
pub async fn delete(State(state): State<AppState>, actor: Actor, Id(id): Id) -> ApiResult<StatusCode> {
    actor.require_admin()?;
    let user = users::get(&state.pool, &actor, &id).await?;
    if user.id != actor.user.id {
        workspaces::delete_all_of(&state, &user.id).await?;
    }
    users::delete(&state.pool, &actor, &user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
