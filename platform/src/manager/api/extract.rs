//! The API's extractors: the JSON body ([`Body`]) and path id ([`Id`]) with JSON rejections, and
//! the authenticated caller ([`Actor`], from `Session-Token` or `Authorization: Bearer`).

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::api_types::SESSION_TOKEN_HEADER;
use crate::manager::actor::Actor;
use crate::manager::credentials::parse_token;
use crate::manager::error::ApiError;
use crate::manager::service::sessions;
use crate::manager::state::AppState;

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

/// The token a request presents: `Session-Token: T` or `Authorization: Bearer T`.
fn presented_token(parts: &Parts) -> Option<&str> {
    if let Some(value) = parts.headers.get(SESSION_TOKEN_HEADER) {
        return value.to_str().ok().map(str::trim);
    }
    let authorization = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticates every API call that takes an [`Actor`]: unknown, wrong, revoked and expired
/// tokens are all the same 401.
impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = presented_token(parts).ok_or(ApiError::Unauthenticated("authentication required"))?;
        let (id, secret) = parse_token(token).ok_or(ApiError::Unauthenticated("invalid token"))?;
        sessions::authenticate(&state.pool, id, secret).await
    }
}
