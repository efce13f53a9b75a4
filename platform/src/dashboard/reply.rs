//! The dashboard's responses: a page with its cookies, a redirect, a message page, and what the
//! user is told about a failed manager call.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::pages::{self, Frame};
use super::session::{self, CsrfVerdict};
use super::state::DashState;
use super::wrong_address::{Arrival, WrongAddress, csrf_refusal};
use crate::manager_client::ClientError;

/// A page with its status and the cookies to set.
pub fn page(
    status: StatusCode,
    cookies: impl IntoIterator<Item = Option<HeaderValue>>,
    html: String,
) -> Response {
    let mut response = (status, Html(html)).into_response();
    for cookie in cookies.into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// A 303 to `location`, setting `cookies`.
pub fn see_other(location: &'static str, cookies: impl IntoIterator<Item = Option<HeaderValue>>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    for cookie in cookies.into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// A message page (errors outside a form's page).
pub fn message(
    state: &DashState,
    headers: &HeaderMap,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    let (csrf, cookie) = session::csrf_token(&state.config, headers);
    let frame = Frame {
        title,
        user: None,
        csrf: &csrf,
        error: Some(text),
        read_only: None,
    };
    page(
        status,
        [cookie],
        pages::layout(&frame, "<p><a href=\"/\">Back to the dashboard</a></p>"),
    )
}

/// What the user is told about a failed manager call.
pub fn explain(error: &ClientError) -> (StatusCode, String) {
    match error {
        ClientError::Api {
            status,
            message,
            detail,
            ..
        } => {
            let text = if detail.is_empty() {
                message.clone()
            } else {
                format!("{message} ({detail})")
            };
            (*status, text)
        }
        other => {
            tracing::warn!(error = %other, "manager call failed");
            (
                StatusCode::BAD_GATEWAY,
                "The manager is unavailable; try again shortly.".to_owned(),
            )
        }
    }
}

/// The answer to a form post whose CSRF check failed: why, in plain words, naming the
/// platform's address when the browser could not keep the cookie where it is.
pub fn csrf_refused(state: &DashState, headers: &HeaderMap, verdict: CsrfVerdict) -> Response {
    let access_url = state.config.access_url.as_ref();
    let wrong = WrongAddress::diagnose(state.config.secure_cookies(), access_url, &Arrival::of(headers));
    let (title, text) = csrf_refusal(verdict, wrong.as_ref(), access_url);
    message(state, headers, StatusCode::FORBIDDEN, title, &text)
}
