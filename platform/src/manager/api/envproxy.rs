//! `/api/private/envproxy/...`: what the envproxy asks the manager, authenticated by the
//! envproxy's own token (`Coder-Envproxy-Token`), compared in constant time.
//!
//! The envproxy authenticates users with their own token (`GET /api/v0/users/me`); these routes
//! only let it look a workspace up whoever owns it, so that it can answer 403 for someone
//! else's workspace and 404 for a missing one, and record a workspace ticket's use in the
//! database, so that a ticket is good once across every replica and restart.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::extract::{Body, Id};
use crate::api_types::{ENVPROXY_TOKEN_HEADER, TicketRedeemed, TicketRedemption, Workspace};
use crate::manager::error::{ApiError, ApiResult};

use crate::manager::service::{tickets, workspaces};
use crate::manager::state::AppState;

/// A request made by the envproxy.
#[derive(Debug)]
pub struct Envproxy;

impl FromRequestParts<AppState> for Envproxy {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(expected) = &state.envproxy_token else {
            return Err(ApiError::EnvproxyNotConfigured);
        };
        let presented = parts
            .headers
            .get(ENVPROXY_TOKEN_HEADER)
            .and_then(|value| value.to_str().ok())
            .ok_or(ApiError::Unauthenticated("envproxy token required"))?;
        // Hashing first makes the comparison constant-time regardless of the lengths.
        let matches: bool = Sha256::digest(presented.trim().as_bytes())
            .ct_eq(&Sha256::digest(expected.as_bytes()))
            .into();
        if matches {
            Ok(Self)
        } else {
            Err(ApiError::Unauthenticated("invalid envproxy token"))
        }
    }
}

/// `GET /api/private/envproxy/ping`: 204 when the envproxy's token is accepted.
pub async fn ping(_envproxy: Envproxy) -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `GET /api/private/envproxy/workspaces/{id}`: the workspace, whoever owns it.
pub async fn workspace(
    State(state): State<AppState>,
    _envproxy: Envproxy,
    Id(id): Id,
) -> ApiResult<Json<Workspace>> {
    Ok(Json(workspaces::get_any(&state, &id).await?))
}

/// `POST /api/private/envproxy/tickets/redeem` `{nonce, expires}`: `{"redeemed": true}` for the
/// first redemption of a ticket, `false` ever after; 503 when the database cannot record it.
pub async fn redeem_ticket(
    State(state): State<AppState>,
    _envproxy: Envproxy,
    Body(request): Body<TicketRedemption>,
) -> ApiResult<Json<TicketRedeemed>> {
    let redeemed = tickets::redeem(&state.pool, &request).await?;
    Ok(Json(TicketRedeemed { redeemed }))
}
