//! `/api/v0/license`: the license in force and its seats; admins upload a new one. And the
//! air-gap license gate: an air-gapped manager without a license that allows it is read-only.

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::Body;
use crate::api_types::LicenseSummary;
use crate::manager::actor::Actor;
use crate::manager::error::{ApiError, ApiResult};
use crate::manager::service::license::{self, UploadLicense};
use crate::manager::state::AppState;

/// `GET /api/v0/license`: tier, seats used and allowed, expiry, mode and whether the platform is
/// read-only (any signed-in user).
pub async fn get(State(state): State<AppState>, _actor: Actor) -> ApiResult<Json<LicenseSummary>> {
    Ok(Json(license::summary(&state.pool, state.config.airgapped).await?))
}

/// `POST /api/v0/license` (admins): `{"license": "<token>"}`, verified before it is stored.
pub async fn upload(
    State(state): State<AppState>,
    actor: Actor,
    Body(request): Body<UploadLicense>,
) -> ApiResult<Json<LicenseSummary>> {
    Ok(Json(
        license::upload(&state.pool, state.config.airgapped, &actor, request).await?,
    ))
}

/// What the read-only gate makes of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadOnlyRule {
    /// Allowed while read-only.
    Allowed,
    /// Allowed while read-only if it only changes a password (checked on the body).
    PasswordOnly,
    /// Refused while read-only.
    Refused,
}

/// Changes (method, route) that stay allowed while the platform is read-only: signing in and
/// out, installing the license that lifts the restriction, the security writes that take
/// access away: revoking an API key, deleting an account, stopping a workspace, and the
/// envproxy's record of a used workspace ticket (opening a workspace reads; the record is what
/// makes its ticket single-use). A password change (own or an admin's reset) is
/// [`ReadOnlyRule::PasswordOnly`].
const ALLOWED_WHILE_READ_ONLY: [(&str, &str); 7] = [
    ("POST", "/auth/basic/login"),
    ("POST", "/auth/logout"),
    ("POST", "/api/v0/license"),
    ("DELETE", "/api/v0/api-keys/{id}"),
    ("DELETE", "/api/v0/users/{id}"),
    ("POST", "/api/v0/workspaces/{id}/stop"),
    ("POST", "/api/private/envproxy/tickets/redeem"),
];

/// The rule for a request of `method` to `route` (the matched route, `{id}` and all).
fn read_only_rule(method: &Method, route: &str) -> ReadOnlyRule {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || ALLOWED_WHILE_READ_ONLY.contains(&(method.as_str(), route))
    {
        ReadOnlyRule::Allowed
    } else if *method == Method::PATCH && route == "/api/v0/users/{id}" {
        ReadOnlyRule::PasswordOnly
    } else {
        ReadOnlyRule::Refused
    }
}

/// Whether an account update's body sets a password and nothing else (`current_password` aside).
fn password_change_only(body: &[u8]) -> bool {
    let Ok(fields) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) else {
        return false;
    };
    fields.contains_key("password")
        && fields
            .keys()
            .all(|field| field == "password" || field == "current_password")
}

/// The air-gap license gate. On an air-gapped manager (`--airgapped`), every request that
/// changes something (any method but GET, HEAD and OPTIONS), except those of
/// [`ALLOWED_WHILE_READ_ONLY`] and password changes, needs a license in force that allows
/// air-gapped use; otherwise it answers 403 `airgap_license_required` naming the license
/// problem. Checked per request, so an uploaded license lifts the restriction at once and an
/// expiring one sets it.
pub async fn airgap_gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |route| route.as_str().to_owned(),
    );
    let rule = read_only_rule(request.method(), &route);
    if !state.config.airgapped || rule == ReadOnlyRule::Allowed {
        return next.run(request).await;
    }
    let restriction = match license::airgap_restriction(&state.pool).await {
        Ok(None) => return next.run(request).await,
        Ok(Some(restriction)) => restriction,
        Err(error) => return error.into_response(),
    };
    let request = if rule == ReadOnlyRule::PasswordOnly {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, state.config.body_limit).await else {
            return ApiError::PayloadTooLarge.into_response();
        };
        let allowed = password_change_only(&bytes);
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        if allowed {
            return next.run(request).await;
        }
        request
    } else {
        request
    };
    tracing::warn!(
        method = %request.method(),
        path = %request.uri().path(),
        kind = restriction.kind,
        "refused a change: {}",
        restriction.message()
    );
    ApiError::from(restriction).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_security_writes_pass_the_read_only_gate() {
        use ReadOnlyRule::{Allowed, PasswordOnly, Refused};
        let cases = [
            (Method::GET, "/api/v0/users", Allowed),
            (Method::POST, "/auth/logout", Allowed),
            (Method::DELETE, "/api/v0/api-keys/{id}", Allowed),
            (Method::DELETE, "/api/v0/users/{id}", Allowed),
            (Method::POST, "/api/v0/workspaces/{id}/stop", Allowed),
            (Method::POST, "/api/private/envproxy/tickets/redeem", Allowed),
            (Method::PATCH, "/api/v0/users/{id}", PasswordOnly),
            (Method::POST, "/api/v0/api-keys", Refused),
            (Method::POST, "/api/v0/users", Refused),
            (Method::DELETE, "/api/v0/workspaces/{id}", Refused),
            (Method::POST, "/api/v0/workspaces/{id}/start", Refused),
            (Method::POST, "/api/v0/workspaces/{id}/rebuild", Refused),
            (Method::POST, "/api/v0/users/{id}", Refused),
        ];
        for (method, route, rule) in cases {
            assert_eq!(read_only_rule(&method, route), rule, "{method} {route}");
        }
        assert!(password_change_only(br#"{"password": "p"}"#));
        assert!(password_change_only(
            br#"{"password": "p", "current_password": "c"}"#
        ));
        for body in [
            &br#"{"password": "p", "name": "n"}"#[..],
            br#"{"password": "p", "role": "admin"}"#,
            br#"{"current_password": "c"}"#,
            br#"{}"#,
            br#"not json"#,
            br#"["password"]"#,
        ] {
            assert!(!password_change_only(body), "{}", String::from_utf8_lossy(body));
        }
    }
}
