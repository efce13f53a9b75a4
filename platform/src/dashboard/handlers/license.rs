//! The license page (admins): the license in force, seats, and the form to install one.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{AdminPost, fetch_for_page};
use crate::api_types::LicenseSummary;
use crate::dashboard::pages::{self, Frame};
use crate::dashboard::reply::page;
use crate::dashboard::session;
use crate::dashboard::signed_in::{FormPost, SignedIn, SignedInAdmin};
use crate::dashboard::state::DashState;

/// Renders the license page (with an error and status when a form failed).
async fn page_of(
    state: &DashState,
    headers: &HeaderMap,
    SignedIn { token, user }: &SignedIn,
    failed: Option<(StatusCode, String)>,
) -> Response {
    let (csrf, cookie) = session::csrf_token(&state.config, headers);
    let (code, error, status): (_, _, Option<LicenseSummary>) =
        fetch_for_page(state, headers, token, "/api/v0/license", failed).await;
    let read_only = status.as_ref().and_then(|status| status.read_only.clone());
    let content = status.map_or_else(String::new, |status| pages::license(&csrf, &status));
    let frame = Frame {
        title: "License",
        user: Some(user),
        csrf: &csrf,
        error: error.as_deref(),
        read_only: read_only.as_deref(),
    };
    page(code, [cookie], pages::layout(&frame, &content))
}

/// `GET /admin/license`.
pub async fn show(
    State(state): State<DashState>,
    headers: HeaderMap,
    SignedInAdmin(who): SignedInAdmin,
) -> Response {
    page_of(&state, &headers, &who, None).await
}

/// The "install a license" form.
#[derive(Debug, Deserialize)]
pub struct LicenseForm {
    #[serde(default)]
    license: String,
    #[serde(default)]
    csrf: String,
}

csrf_field!(LicenseForm);

/// `POST /admin/license`: installs the pasted license (the manager verifies it first).
pub async fn install(
    State(state): State<DashState>,
    headers: HeaderMap,
    FormPost {
        who: SignedInAdmin(who),
        form,
    }: FormPost<LicenseForm, SignedInAdmin>,
) -> Response {
    let post = AdminPost {
        api_path: "/api/v0/license",
        body: json!({ "license": form.license.trim() }),
        back: "/admin/license",
    };
    post.send(&state, &headers, &who, page_of).await
}
