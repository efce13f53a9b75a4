//! `/api/v0/license`: the license in force and its seats; admins upload a new one. And the
//! air-gap license gate: an air-gapped manager without a license that allows it is read-only.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::Body;
use crate::api_types::LicenseSummary;
use crate::manager::actor::Actor;
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::service::license::{self, UploadLicense};
use crate::manager::state::AppState;

/// `GET /api/v0/license`: tier, seats used and allowed, expiry, mode and whether the platform is
/// read-only (any signed-in user).
pub async fn get(State(state): State<AppState>, _actor: Actor) -> ApiResult<Json<LicenseSummary>> {
    Ok(Json(license::summary(&state.pool, state.config.airgapped).await?))
}

/// `POST /api/v0/license` (admins): `{"license": "<token>"}`, verified before it is stored.
pub async fn upload(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<UploadLicense>,
) -> ApiResult<Json<LicenseSummary>> {
    Ok(Json(
        license::upload(&state.pool, state.config.airgapped, &actor, request).await?,
    ))
}

/// Changes that stay allowed while the platform is read-only: signing in and out, and installing
/// the license that lifts the restriction.
const ALLOWED_WHILE_READ_ONLY: [&str; 3] = ["/auth/basic/login", "/auth/logout", "/api/v0/license"];

/// The air-gap license gate. On an air-gapped manager (`--airgapped`), every request that
/// changes something (any method but GET, HEAD and OPTIONS), except those of
/// [`ALLOWED_WHILE_READ_ONLY`], needs a license in force that allows air-gapped use; otherwise
/// it answers 403 `airgap_license_required` naming the license problem. Checked per request, so
/// an uploaded license lifts the restriction at once and an expiring one sets it.
pub async fn airgap_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !state.config.airgapped || reads || ALLOWED_WHILE_READ_ONLY.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match license::airgap_restriction(&state.pool).await {
        Ok(None) => next.run(request).await,
        Ok(Some(restriction)) => {
            tracing::warn!(
                method = %request.method(),
                path = %request.uri().path(),
                kind = restriction.kind,
                "refused a change: {}",
                restriction.message()
            );
            ApiError::from(restriction).into_response()
        }
        Err(error) => error.into_response(),
    }
}
