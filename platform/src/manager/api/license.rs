//! `/api/v0/license`: the license in force and its seats; admins upload a new one.

use axum::Json;
use axum::extract::State;

use super::Body;
use crate::manager::AppState;
use crate::manager::auth::Actor;
use crate::manager::error::ApiResult;
use crate::manager::service::license::{self, LicenseSummary, UploadLicense};

/// `GET /api/v0/license`: tier, seats used and allowed, expiry (any signed-in user).
pub async fn get(State(state): State<AppState>, _actor: Actor) -> ApiResult<Json<LicenseSummary>> {
    Ok(Json(license::summary(&state.pool).await?))
}

/// `POST /api/v0/license` (admins): `{"license": "<token>"}`, verified before it is stored.
pub async fn upload(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<UploadLicense>,
) -> ApiResult<Json<LicenseSummary>> {
    Ok(Json(license::upload(&state.pool, &actor, request).await?))
}
