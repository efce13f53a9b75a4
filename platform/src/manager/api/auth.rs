//! `POST /auth/basic/login` and `POST /auth/logout`.

use std::net::SocketAddr;

use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::extract::Body;
use crate::manager::actor::Actor;
use crate::manager::error::ApiResult;
use crate::manager::service::sessions;
use crate::manager::state::AppState;

/// Email and password in, `{"session_token": "<id>-<secret>"}` out.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Body(request): Body<sessions::Login>,
) -> ApiResult<Json<Value>> {
    let client = peer.map_or_else(
        || "unknown".to_owned(),
        |Extension(ConnectInfo(addr))| state.client_address(addr.ip(), &headers).to_string(),
    );
    let token = sessions::login(&state, request, &client).await?;
    Ok(Json(json!({ "session_token": token })))
}

/// Revokes the token the request authenticated with.
pub async fn logout(State(state): State<AppState>, actor: Actor) -> ApiResult<StatusCode> {
    sessions::revoke(&state.pool, &actor.key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
