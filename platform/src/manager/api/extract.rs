//! The API's extractors: the JSON body ([`Body`]), path id ([`Id`]) and a list's page
//! ([`Paging`]) with JSON rejections, and the authenticated caller ([`Actor`], from
//! `Session-Token` or `Authorization: Bearer`).

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::HeaderValue;
use axum::http::header::{AUTHORIZATION, LINK};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api_types::SESSION_TOKEN_HEADER;
use crate::api_types::paging::next_link;
use crate::manager::actor::Actor;
use crate::manager::credentials::parse_token;
use crate::manager::error::ApiError;
use crate::manager::pagination::{Page, PageRequest};
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

/// A list request's page (`?limit=N&after=CURSOR`) and its path, for the next page's link.
#[derive(Debug)]
pub struct Paging {
    /// The page asked for.
    pub page: PageRequest,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|rejection| {
            ApiError::bad_request(
                "invalid_query",
                "the query string is not valid",
                rejection.body_text(),
            )
        })?;
        Ok(Self {
            page: PageRequest::from_pairs(&pairs)?,
            path: parts.uri.path().to_owned(),
        })
    }
}

impl Paging {
    /// The answer: the page's rows as a JSON array, and `Link: <...>; rel="next"` when more follow.
    pub fn respond<T: Serialize>(&self, page: Page<T>) -> Response {
        let mut response = Json(page.items).into_response();
        if let Some(next) = &page.next {
            let link = next_link(&format!("{}?{}", self.path, self.page.next_query(next)));
            if let Ok(value) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(LINK, value);
            }
        }
        response
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
