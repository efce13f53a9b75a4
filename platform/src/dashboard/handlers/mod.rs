//! The dashboard's routes, one module a resource as the manager's API has them: [`login`] (the
//! login page, signing in and out), [`workspaces`] (the home page: the workspace list and its
//! forms), [`users`] and [`license`] (the admin pages); the terminal page is
//! [`super::terminal`]'s. Each reads the session cookie ([`SignedIn`], [`SignedInAdmin`]), calls
//! the manager with the user's token (server-side), and renders a page; each form post checks
//! the CSRF token first ([`FormPost`]) and answers with a redirect (303) on success or the page
//! with the manager's message on failure. What several pages share is here: fetching for a page,
//! the read-only banner, list pages, admin form posts.
//!
//! [`FormPost`]: super::signed_in::FormPost
//! [`SignedInAdmin`]: super::signed_in::SignedInAdmin

/// The forms' CSRF fields, for [`FormPost`].
macro_rules! csrf_field {
    ($($form:ty),*) => {
        $(impl crate::dashboard::signed_in::CsrfField for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}

pub mod license;
pub mod login;
pub mod users;
pub mod workspaces;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::pages::{self, Frame};
use super::reply::{explain, page, see_other};
use super::session;
use super::signed_in::SignedIn;
use super::state::DashState;
use crate::api_types::LicenseSummary;
use crate::manager_client::{Caller, ClientError};
use crate::request_id;

/// A form carrying only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

csrf_field!(CsrfForm);

/// `GET /healthz`.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Fetches `path` for a page: the page's status and error (a failed form's, else the fetch's
/// own failure) and what was fetched (`T::default()`, e.g. no items, when the fetch failed).
async fn fetch_for_page<T: serde::de::DeserializeOwned + Default>(
    state: &DashState,
    headers: &HeaderMap,
    token: &str,
    path: &str,
    failed: Option<(StatusCode, String)>,
) -> (StatusCode, Option<String>, T) {
    let fetched = state
        .client
        .call(
            Method::GET,
            path,
            Caller::user(token, request_id::of(headers)),
            None,
        )
        .await;
    for_page(failed, fetched)
}

/// What a page shows of a fetch: its status and error (a failed form's, else the fetch's own
/// failure) and what was fetched (`T::default()` when the fetch failed).
fn for_page<T: Default>(
    failed: Option<(StatusCode, String)>,
    fetched: Result<T, ClientError>,
) -> (StatusCode, Option<String>, T) {
    match (failed, fetched) {
        (Some((status, text)), Ok(value)) => (status, Some(text), value),
        (None, Ok(value)) => (StatusCode::OK, None, value),
        (_, Err(error)) => {
            let (status, text) = explain(&error);
            (status, Some(text), T::default())
        }
    }
}

/// Why the platform is read-only (an air-gapped install without a license that allows it), for
/// the banner of signed-in pages; `None` when it is not, or when the manager cannot say.
async fn read_only_notice(state: &DashState, headers: &HeaderMap, token: &str) -> Option<String> {
    let status: LicenseSummary = state
        .client
        .call(
            Method::GET,
            "/api/v0/license",
            Caller::user(token, request_id::of(headers)),
            None,
        )
        .await
        .ok()?;
    status.read_only
}

/// A signed-in page listing every row the manager's paginated list at `path` holds (following
/// its pages), rendered by `render` (given the CSRF token and the items), with an error and
/// status when a form failed.
async fn list_page<T: serde::de::DeserializeOwned>(
    state: &DashState,
    headers: &HeaderMap,
    who: &SignedIn,
    failed: Option<(StatusCode, String)>,
    title: &str,
    path: &str,
    render: impl FnOnce(&str, &[T]) -> String,
) -> Response {
    let (csrf, cookie) = session::csrf_token(&state.config, headers);
    let fetched = state
        .client
        .list_all(path, Caller::user(&who.token, request_id::of(headers)))
        .await;
    let (status, error, list): (_, _, Vec<T>) = for_page(failed, fetched);
    let read_only = read_only_notice(state, headers, &who.token).await;
    let frame = Frame {
        title,
        user: Some(&who.user),
        csrf: &csrf,
        error: error.as_deref(),
        read_only: read_only.as_deref(),
    };
    page(status, [cookie], pages::layout(&frame, &render(&csrf, &list)))
}

/// What an admin page's form (already checked by [`FormPost`]: CSRF, admin) sends to the
/// manager; answered with a redirect back to the page, or the page again with the manager's
/// explanation.
struct AdminPost {
    api_path: &'static str,
    body: Value,
    back: &'static str,
}

impl AdminPost {
    async fn send(
        self,
        state: &DashState,
        headers: &HeaderMap,
        who: &SignedIn,
        page: impl AsyncFn(&DashState, &HeaderMap, &SignedIn, Option<(StatusCode, String)>) -> Response,
    ) -> Response {
        let done: Result<Value, _> = state
            .client
            .call(
                Method::POST,
                self.api_path,
                Caller::user(&who.token, request_id::of(headers)),
                Some(&self.body),
            )
            .await;
        match done {
            Ok(_) => see_other(self.back, []),
            Err(error) => page(state, headers, who, Some(explain(&error))).await,
        }
    }
}
