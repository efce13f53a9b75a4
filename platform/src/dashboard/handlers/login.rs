//! Signing in and out: the login page (which says so when the browser cannot keep the cookies
//! at this address), the login form and the logout.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::CsrfForm;
use crate::dashboard::pages::{self, Frame};
use crate::dashboard::reply::{explain, page, see_other};
use crate::dashboard::session;
use crate::dashboard::signed_in::FormPost;
use crate::dashboard::state::DashState;
use crate::dashboard::wrong_address::{Arrival, WrongAddress};
use crate::manager_client::Caller;
use crate::{forwarded, request_id};

/// `GET /login`.
pub async fn show(State(state): State<DashState>, headers: HeaderMap) -> Response {
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
    let access_url = state.config.access_url.as_ref();
    let notice = WrongAddress::diagnose(state.config.secure_cookies(), access_url, &Arrival::of(&headers))
        .map(|wrong| pages::address_notice(&wrong.notice(access_url)))
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

csrf_field!(LoginForm);

/// `POST /login`: the manager checks the password; its session token becomes the cookie.
pub async fn submit(
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
