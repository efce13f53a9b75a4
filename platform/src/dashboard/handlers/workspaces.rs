//! The home page: the workspace list (all of them for admins), the "new workspace" form and
//! each workspace's stop, start and delete.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{CsrfForm, list_page};
use crate::api_types::Workspace;
use crate::dashboard::pages;
use crate::dashboard::reply::{explain, message, see_other};
use crate::dashboard::signed_in::{FormPost, SignedIn};
use crate::dashboard::state::DashState;
use crate::manager_client::{Caller, path_segment};
use crate::request_id;

/// Renders the workspace list (with an error and status when a form failed).
async fn home_page(
    state: &DashState,
    headers: &HeaderMap,
    who: &SignedIn,
    failed: Option<(StatusCode, String)>,
) -> Response {
    let render =
        |csrf: &str, list: &[Workspace]| pages::workspaces(&state.config, csrf, list, who.user.is_admin());
    list_page(
        state,
        headers,
        who,
        failed,
        "Workspaces",
        "/api/v0/workspaces",
        render,
    )
    .await
}

/// `GET /`: my workspaces (all of them for admins).
pub async fn home(State(state): State<DashState>, headers: HeaderMap, who: SignedIn) -> Response {
    home_page(&state, &headers, &who, None).await
}

/// The "new workspace" form.
#[derive(Debug, Deserialize)]
pub struct CreateWorkspaceForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    cpu_cores: String,
    #[serde(default)]
    memory_gb: String,
    #[serde(default)]
    disk_gb: String,
    #[serde(default)]
    csrf: String,
}

csrf_field!(CreateWorkspaceForm);

/// An optional number field: empty is absent, anything else must parse.
fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{field} must be a number"))
}

/// `POST /workspaces`.
pub async fn create(
    State(state): State<DashState>,
    headers: HeaderMap,
    FormPost { who, form }: FormPost<CreateWorkspaceForm>,
) -> Response {
    let numbers = (|| {
        Ok::<_, String>((
            number::<f32>("CPU cores", &form.cpu_cores)?,
            number::<f32>("Memory", &form.memory_gb)?,
            number::<i32>("Disk", &form.disk_gb)?,
        ))
    })();
    let (cpu_cores, memory_gb, disk_gb) = match numbers {
        Ok(numbers) => numbers,
        Err(text) => {
            return home_page(&state, &headers, &who, Some((StatusCode::BAD_REQUEST, text))).await;
        }
    };
    let mut body = json!({ "name": form.name.trim(), "image": form.image.trim() });
    for (key, value) in [
        ("cpu_cores", cpu_cores.map(Value::from)),
        ("memory_gb", memory_gb.map(Value::from)),
        ("disk_gb", disk_gb.map(Value::from)),
    ] {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    let created: Result<Value, _> = state
        .client
        .call(
            Method::POST,
            "/api/v0/workspaces",
            Caller::user(&who.token, request_id::of(&headers)),
            Some(&body),
        )
        .await;
    match created {
        Ok(_) => see_other("/", []),
        Err(error) => home_page(&state, &headers, &who, Some(explain(&error))).await,
    }
}

/// `POST /workspaces/{id}/{stop|start|delete}`.
pub async fn action(
    State(state): State<DashState>,
    headers: HeaderMap,
    Path((id, verb)): Path<(String, String)>,
    FormPost { who, .. }: FormPost<CsrfForm>,
) -> Response {
    let path = format!("/api/v0/workspaces/{}", path_segment(&id));
    let (method, path) = match verb.as_str() {
        "stop" | "start" => (Method::POST, format!("{path}/{verb}")),
        "delete" => (Method::DELETE, path),
        _ => {
            return message(
                &state,
                &headers,
                StatusCode::NOT_FOUND,
                "Not found",
                "No such action.",
            );
        }
    };
    let body = json!({});
    let body = (method == Method::POST).then_some(&body);
    let done: Result<Value, _> = state
        .client
        .call(
            method,
            &path,
            Caller::user(&who.token, request_id::of(&headers)),
            body,
        )
        .await;
    match done {
        Ok(_) => see_other("/", []),
        Err(error) => home_page(&state, &headers, &who, Some(explain(&error))).await,
    }
}
