//! The dashboard's routes. Each reads the session cookie ([`SignedIn`], [`SignedInAdmin`]),
//! calls the manager with the user's token (server-side), and renders a page; each form post
//! checks the CSRF token first ([`FormPost`]) and answers with a redirect (303) on success or the
//! page with the manager's message on failure.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::pages::{self, Frame};
use super::reply::{explain, message, page, see_other};
use super::session;
use super::signed_in::{CsrfField, FormPost, SignedIn, SignedInAdmin};
use super::state::DashState;
use super::wrong_address::{Arrival, WrongAddress};
use crate::api_types::{LicenseSummary, Workspace};
use crate::manager_client::{Caller, path_segment};
use crate::{forwarded, request_id};

/// A form carrying only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The forms' CSRF fields, for [`FormPost`].
macro_rules! csrf_field {
    ($($form:ty),*) => {
        $(impl CsrfField for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })*
    };
}

csrf_field!(
    CsrfForm,
    LoginForm,
    CreateWorkspaceForm,
    CreateUserForm,
    LicenseForm
);

/// `GET /healthz`.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /login`.
pub async fn login_page(State(state): State<DashState>, headers: HeaderMap) -> Response {
    let (csrf, cookie) = session::csrf_token(&state.config, &headers);
    let frame = Frame {
        title: "Log in",
        user: None,
        csrf: &csrf,
        error: None,
        read_only: None,
    };
    // Reached where the browser cannot keep the cookies (or not at the access URL): say so
    // before the user types a password.
    let access_url = state.config.access_url.clone();
    let notice = WrongAddress::diagnose(
        state.config.secure_cookies(),
        access_url.as_ref(),
        &Arrival::of(&headers),
    )
    .map(|wrong| pages::address_notice(&wrong.notice(access_url.as_ref())))
    .unwrap_or_default();
    page(
        StatusCode::OK,
        [cookie],
        pages::layout(&frame, &format!("{notice}{}", pages::login(&csrf, ""))),
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: the manager checks the password; its session token becomes the cookie.
pub async fn login(
    State(state): State<DashState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    FormPost { form, .. }: FormPost<LoginForm, ()>,
) -> Response {
    let body = json!({ "email": form.email, "password": form.password });
    // The manager limits logins per client address: tell it who the client is (the manager
    // believes it only from proxies it trusts).
    let chain = forwarded::chain(&headers, peer.map(|Extension(ConnectInfo(addr))| addr.ip()));
    let mut caller = Caller::anonymous(request_id::of(&headers));
    if let Some(chain) = &chain {
        caller = caller.forwarding(chain);
    }
    let answer: Result<Value, _> = state
        .client
        .call(Method::POST, "/auth/basic/login", caller, Some(&body))
        .await;
    let failure = match answer {
        Ok(value) => match value["session_token"].as_str() {
            Some(token) => return see_other("/", [session::session_cookie(&state.config, token)]),
            None => (
                StatusCode::BAD_GATEWAY,
                "The manager answered without a session.".to_owned(),
            ),
        },
        Err(error) if error.is_unauthenticated() => {
            (StatusCode::UNAUTHORIZED, "Wrong email or password.".to_owned())
        }
        Err(error) => explain(&error),
    };
    let (status, text) = failure;
    let frame = Frame {
        title: "Log in",
        user: None,
        csrf: &form.csrf,
        error: Some(&text),
        read_only: None,
    };
    page(
        status,
        [],
        pages::layout(&frame, &pages::login(&form.csrf, &form.email)),
    )
}

/// `POST /logout`: revokes the session at the manager and clears the cookie.
pub async fn logout(
    State(state): State<DashState>,
    headers: HeaderMap,
    _: FormPost<CsrfForm, ()>,
) -> Response {
    // Every session cookie sent is revoked: the user's, and any a page on another host planted.
    for token in session::session_tokens(&state.config, &headers) {
        let revoked: Result<Value, _> = state
            .client
            .call(
                Method::POST,
                "/auth/logout",
                Caller::user(token, request_id::of(&headers)),
                None,
            )
            .await;
        if let Err(error) = revoked
            && !error.is_unauthenticated()
        {
            tracing::warn!(%error, "logout: the manager did not revoke the session");
        }
    }
    see_other("/login", [session::clear_session_cookie(&state.config)])
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
    let fetched: Result<T, _> = state
        .client
        .call(
            Method::GET,
            path,
            Caller::user(token, request_id::of(headers)),
            None,
        )
        .await;
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

/// A signed-in page listing what the manager answers at `path`, rendered by `render` (given the
/// CSRF token and the items), with an error and status when a form failed.
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
    let (status, error, list): (_, _, Vec<T>) =
        fetch_for_page(state, headers, &who.token, path, failed).await;
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
pub async fn create_workspace(
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
pub async fn workspace_action(
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

/// Renders the user list (with an error and status when a form failed).
async fn users_page(
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
pub async fn users(
    State(state): State<DashState>,
    headers: HeaderMap,
    SignedInAdmin(who): SignedInAdmin,
) -> Response {
    users_page(&state, &headers, &who, None).await
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

/// `POST /admin/users`.
pub async fn create_user(
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
    post.send(&state, &headers, &who, users_page).await
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

async fn license_page(
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
pub async fn license(
    State(state): State<DashState>,
    headers: HeaderMap,
    SignedInAdmin(who): SignedInAdmin,
) -> Response {
    license_page(&state, &headers, &who, None).await
}

/// The "install a license" form.
#[derive(Debug, Deserialize)]
pub struct LicenseForm {
    #[serde(default)]
    license: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /admin/license`: installs the pasted license (the manager verifies it first).
pub async fn install_license(
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
    post.send(&state, &headers, &who, license_page).await
}
