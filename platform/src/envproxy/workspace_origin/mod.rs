//! Each workspace on its own origin, `ws-<id>.<domain>` ([`origins`]: the domain and the
//! hosts), entered with a sealed one-time ticket ([`ticket`]).
//!
//! 1. The dashboard's "Open IDE" goes to `GET /proxy/workspaces/<id>/open` on the platform's
//!    origin, authenticated there by the dashboard's session cookie (or a token header). The
//!    envproxy admits the caller as usual (owner or admin, workspace running), seals a ticket
//!    ([`ticket`]: the caller's token, this workspace, one minute, single use) and
//!    redirects to `<workspace origin>/__coder/auth?ticket=...`.
//! 2. On the workspace host, the envproxy (not the workspace) opens the ticket, has the manager
//!    record its use in the database ([`redeem`]: the first redemption wins, at whichever
//!    replica, before or after any restart; no record, no entry), and answers with a host-only, `HttpOnly` cookie sealed for this workspace alone,
//!    then redirects to `/`.
//! 3. Every other request to the workspace host is proxied to code-server (port 13337, path as
//!    is) when it carries that cookie; the token inside is checked with the manager like any
//!    other (a logout or a revoked token ends it). The dashboard's cookie is never accepted
//!    there, and no platform cookie reaches the workspace or may be set by it.

pub mod origins;
pub mod ticket;

use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use self::ticket::{COOKIE_TTL, Claims, Kind, TICKET_TTL};
use super::error::ProxyError;
use super::proxy::{self, Via};
use super::state::ProxyState;
use crate::cookies::workspace_cookie_name;

/// The path on a workspace host where a ticket is exchanged for the cookie (the envproxy
/// answers it; it never reaches the workspace).
pub const EXCHANGE_PATH: &str = "/__coder/auth";

/// Sends requests for a workspace host to [`serve`]; everything else goes on to the platform's
/// routes.
pub async fn dispatch(State(state): State<ProxyState>, request: Request, next: Next) -> Response {
    let workspace = state.origins.as_ref().and_then(|origins| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .and_then(|host| origins.workspace_of(host))
    });
    match workspace {
        Some(id) => serve(state, id, request).await,
        None => next.run(request).await,
    }
}

/// A request on workspace `id`'s host.
async fn serve(state: ProxyState, id: String, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == EXCHANGE_PATH {
        return exchange(&state, &id, &parts).await.unwrap_or_else(|error| {
            state.metrics.refused(error.code());
            error.respond(&parts.headers)
        });
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    proxy::proxy_ide(state, parts, body, &id, path_and_query, Via::WorkspaceHost).await
}

/// `GET /proxy/workspaces/{id}/open` on the platform's origin: admits the caller, then
/// redirects to the workspace's origin with a one-time ticket.
pub async fn open(State(state): State<ProxyState>, Path(id): Path<String>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let opened = async {
        let origins = state.origins.clone().ok_or(ProxyError::NoWorkspaceOrigins)?;
        let (grant, credential) = proxy::admit(&state, &parts, &id, Via::Platform).await?;
        let claims = Claims::new(&grant.workspace.id, &credential.token, TICKET_TTL)
            .map_err(|error| ProxyError::Upstream(error.to_string()))?;
        let ticket = state
            .sealer
            .seal(Kind::Ticket, &claims)
            .map_err(|error| ProxyError::Upstream(error.to_string()))?;
        let location = format!(
            "{}{EXCHANGE_PATH}?ticket={ticket}",
            origins.origin(&grant.workspace.id)
        );
        Ok::<_, ProxyError>(redirect(&location))
    };
    opened.await.unwrap_or_else(|error| error.respond(&parts.headers))
}

/// `GET /__coder/auth?ticket=...` on workspace `id`'s host: the ticket for the host-only cookie.
async fn exchange(state: &ProxyState, id: &str, parts: &Parts) -> Result<Response, ProxyError> {
    let ticket = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("ticket="))
        .ok_or(ProxyError::BadTicket)?;
    let claims = state
        .sealer
        .open_for(Kind::Ticket, ticket, id)
        .ok_or(ProxyError::BadTicket)?;
    redeem(state, &claims, proxy::request_id(&parts.headers)).await?;
    // Still allowed now (the token may have been revoked since the ticket was made).
    state
        .authorizer
        .authorize(&claims.token, id, proxy::request_id(&parts.headers))
        .await?;
    let cookie_claims = Claims::new(id, &claims.token, COOKIE_TTL)
        .map_err(|error| ProxyError::Upstream(error.to_string()))?;
    let sealed = state
        .sealer
        .seal(Kind::Cookie, &cookie_claims)
        .map_err(|error| ProxyError::Upstream(error.to_string()))?;
    let secure = state.origins.as_ref().is_some_and(|origins| origins.is_https());
    // No Domain attribute: the cookie stays on this one host. Over HTTPS its name is
    // `__Host-` prefixed, which browsers keep only as Secure, Path=/ and host-only: no other
    // workspace's page can set one for this host.
    let cookie = format!(
        "{}={sealed}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        workspace_cookie_name(secure),
        COOKIE_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = redirect("/");
    let value = HeaderValue::from_str(&cookie).map_err(|error| ProxyError::Upstream(error.to_string()))?;
    response.headers_mut().append(header::SET_COOKIE, value);
    Ok(response)
}

/// Records the ticket's use with the manager (in PostgreSQL, shared by every replica): `Ok` only
/// for the first redemption of its nonce. When the use cannot be recorded the ticket is refused
/// (503 `ticket_check_unavailable`), never taken unrecorded.
async fn redeem(state: &ProxyState, claims: &Claims, request_id: Option<&str>) -> Result<(), ProxyError> {
    let expires = i64::try_from(claims.expires).map_err(|_| ProxyError::BadTicket)?;
    let redeemed = state
        .authorizer
        .client()
        .redeem_ticket(&claims.nonce, expires, request_id)
        .await
        .map_err(|error| match error.status() {
            Some(StatusCode::BAD_REQUEST) => ProxyError::BadTicket,
            _ => ProxyError::TicketCheckUnavailable(error),
        })?;
    if redeemed {
        Ok(())
    } else {
        Err(ProxyError::BadTicket)
    }
}

/// A 303 to `location` that leaves no referrer and is never cached (it may carry a ticket).
fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
