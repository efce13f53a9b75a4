//! The users page (admins): the user list and the "new user" form.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{AdminPost, list_page};
use crate::dashboard::pages;
use crate::dashboard::signed_in::{FormPost, SignedIn, SignedInAdmin};
use crate::dashboard::state::DashState;

/// Renders the user list (with an error and status when a form failed).
async fn page_of(
    state: &DashState,
    headers: &HeaderMap,
    who: &SignedIn,
    failed: Option<(StatusCode, String)>,
) -> Response {
    list_page(
        state,
        headers,
        who,
        failed,
        "Users",
        "/api/v0/users",
        pages::users,
    )
    .await
}

/// `GET /admin/users`.
pub async fn list(
    State(state): State<DashState>,
    headers: HeaderMap,
    SignedInAdmin(who): SignedInAdmin,
) -> Response {
    page_of(&state, &headers, &who, None).await
}

/// The "new user" form.
#[derive(Debug, Deserialize)]
pub struct CreateUserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    csrf: String,
}

csrf_field!(CreateUserForm);

/// `POST /admin/users`.
pub async fn create(
    State(state): State<DashState>,
    headers: HeaderMap,
    FormPost {
        who: SignedInAdmin(who),
        form,
    }: FormPost<CreateUserForm, SignedInAdmin>,
) -> Response {
    let body =
        json!({ "email": form.email, "name": form.name, "password": form.password, "role": form.role });
    let post = AdminPost {
        api_path: "/api/v0/users",
        body,
        back: "/admin/users",
    };
    post.send(&state, &headers, &who, page_of).await
}
