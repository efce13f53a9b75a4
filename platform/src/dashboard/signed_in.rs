//! Who is signed in to the dashboard, as extractors, instead of the same match in every handler:
//! [`SignedIn`] (any user: else the redirect to the login page, or the manager's failure),
//! [`SignedInAdmin`] (else a 403 page for members), and [`FormPost`] (a posted form whose CSRF
//! token is checked first, before the session is even looked at).

use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::reply::{csrf_refused, explain, message, see_other};
use super::session;
use super::state::DashState;
use crate::api_types::User;
use crate::manager_client::Caller;
use crate::request_id;

/// The signed-in user and the session token the dashboard calls the manager with.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The session token (from the session cookie).
    pub token: String,
    /// Who holds it, as the manager says.
    pub user: User,
}

impl SignedIn {
    /// The signed-in user, or the response to send instead: to the login page when the session
    /// is missing or expired (clearing the cookie), a message page when the manager fails. Each
    /// session cookie the request carries is tried in turn (a cookie another host planted under
    /// the same name may come first); the first the manager accepts is the session.
    async fn of(state: &DashState, headers: &HeaderMap) -> Result<Self, Response> {
        let tokens = session::session_tokens(&state.config, headers);
        if tokens.is_empty() {
            return Err(see_other("/login", []));
        }
        for token in tokens {
            match state
                .client
                .me(Caller::user(token, request_id::of(headers)))
                .await
            {
                Ok(user) => {
                    return Ok(Self {
                        token: token.to_owned(),
                        user,
                    });
                }
                Err(error) if error.is_unauthenticated() => {}
                Err(error) => {
                    let (status, text) = explain(&error);
                    return Err(message(state, headers, status, "Unavailable", &text));
                }
            }
        }
        Err(see_other(
            "/login",
            [session::clear_session_cookie(&state.config)],
        ))
    }
}

impl FromRequestParts<DashState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &DashState) -> Result<Self, Response> {
        Self::of(state, &parts.headers).await
    }
}

/// A signed-in admin; members get a 403 page.
#[derive(Debug, Clone)]
pub struct SignedInAdmin(pub SignedIn);

impl FromRequestParts<DashState> for SignedInAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &DashState) -> Result<Self, Response> {
        let signed_in = SignedIn::of(state, &parts.headers).await?;
        if signed_in.user.is_admin() {
            Ok(Self(signed_in))
        } else {
            Err(message(
                state,
                &parts.headers,
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This page is for admins.",
            ))
        }
    }
}

/// A form that carries the CSRF token in its `csrf` field.
pub trait CsrfField {
    /// The submitted CSRF token.
    fn csrf(&self) -> &str;
}

/// A posted form `F`, by `W` ([`SignedIn`], [`SignedInAdmin`], or `()` for anyone): the form is
/// read, its CSRF token checked (a 403 page saying why if it fails), and only then is `W`
/// extracted. The last argument of a handler, as it reads the body.
#[derive(Debug)]
pub struct FormPost<F, W = SignedIn> {
    /// Who posted it.
    pub who: W,
    /// The form.
    pub form: F,
}

impl<F, W> FromRequest<DashState> for FormPost<F, W>
where
    F: DeserializeOwned + CsrfField + Send,
    W: FromRequestParts<DashState> + Send,
    W::Rejection: IntoResponse,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &DashState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let Form(form) = Form::<F>::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let verdict = session::csrf_check(&state.config, &parts.headers, form.csrf());
        if verdict != session::CsrfVerdict::Valid {
            return Err(csrf_refused(state, &parts.headers, verdict));
        }
        let who = W::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self { who, form })
    }
}
