//! The envproxy's routes on the platform's origin: `/proxy/workspaces/{id}/ide/...` (HTTP and
//! WebSocket to code-server, for clients sending a token header: the dashboard's cookie is not
//! accepted there), `/proxy/workspaces/{id}/open` (into the workspace's own origin, see
//! [`super::workspace_origin`]), `/proxy/workspaces/{id}/terminal` (WebSocket to the envagent
//! shell), `/proxy/workspaces/{id}/ssh` (WebSocket-wrapped TCP to the envagent SSH proxy),
//! `/healthz` and `/readyz`. Requests for a workspace host go to [`super::workspace_origin`].

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use serde_json::json;

use super::auth::{self, Source};
use super::error::ProxyError;
use super::metrics;
use super::proxy::{Target, Via, is_websocket, proxy_ide, websocket};
use super::state::ProxyState;
use super::workspace_origin;
use coder_topology::{ENVAGENT_SHELL_PORT, ENVAGENT_SSH_PORT};

/// Every route, with the state and layers.
pub fn router(state: ProxyState) -> Router {
    let routes = Router::new()
        .route("/proxy/workspaces/{id}/ide", any(ide_root))
        .route("/proxy/workspaces/{id}/ide/", any(ide))
        .route("/proxy/workspaces/{id}/ide/{*rest}", any(ide))
        .route("/proxy/workspaces/{id}/open", get(workspace_origin::open))
        .route("/proxy/workspaces/{id}/terminal", any(terminal))
        .route("/proxy/workspaces/{id}/ssh", any(ssh))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .fallback(|headers: HeaderMap| async move { ProxyError::NotFound("route").respond(&headers) });
    // Every request passes the workspace-host dispatch first, whatever its path and method.
    let routes = Router::new()
        .fallback_service(routes.with_state(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state,
            workspace_origin::dispatch,
        ));
    crate::request_id::layer(routes)
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready when not draining and the manager accepts the envproxy's token.
async fn readyz(State(state): State<ProxyState>) -> Response {
    if *state.draining.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "draining" })),
        )
            .into_response();
    }
    match state.authorizer.client().envproxy_ping().await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the manager refused or is unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "manager_unavailable" })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_page(State(state): State<ProxyState>) -> Response {
    let gauges = metrics::Gauges {
        open_sessions: state.sessions.total(),
        reserved_bytes: state.sessions.reserved_bytes(),
        budget_bytes: state.limits.budget_bytes,
    };
    let mut response = state.metrics.render(&gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `/ide` without the slash: code-server's pages use relative links, so redirect.
async fn ide_root(Path(id): Path<String>, request: Request) -> Response {
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::permanent(&format!(
        "/proxy/workspaces/{}/ide/{query}",
        crate::manager_client::path_segment(&id)
    ))
    .into_response()
}

async fn ide(State(state): State<ProxyState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (id, rest) = match ide_path(&parts) {
        Some(found) => found,
        None => return ProxyError::NotFound("route").respond(&parts.headers),
    };
    // Workspace content is never served to the dashboard's cookie on the platform's origin: a
    // page there would act with the dashboard's session. Browsers go to the workspace's origin.
    let cookie = auth::credentials(&parts.headers, &state.config.cookie_name)
        .first()
        .is_some_and(|credential| credential.source == Source::Cookie);
    if cookie {
        if state.origins.is_some() && parts.method == Method::GET && !is_websocket(&parts.headers) {
            return Redirect::to(&format!(
                "/proxy/workspaces/{}/open",
                crate::manager_client::path_segment(&id)
            ))
            .into_response();
        }
        let refusal = ProxyError::WorkspaceOriginOnly;
        state.metrics.refused(refusal.code());
        return refusal.respond(&parts.headers);
    }
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut response = proxy_ide(state, parts, body, &id, format!("/{rest}{query}"), Via::Platform).await;
    // Should a browser get here anyway, the page runs in an opaque origin of its own.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        axum::http::HeaderValue::from_static("sandbox"),
    );
    response
}

/// The workspace id and the path after `/ide/`, from the raw (still percent-encoded) path.
fn ide_path(parts: &Parts) -> Option<(String, String)> {
    let rest = parts.uri.path().strip_prefix("/proxy/workspaces/")?;
    let (id, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("ide/")?;
    Some((id.to_owned(), rest.to_owned()))
}

async fn terminal(State(state): State<ProxyState>, Path(id): Path<String>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let target = Target::WebSocket {
        port: ENVAGENT_SHELL_PORT,
        path_and_query: format!("/{query}"),
    };
    websocket(state, parts, &id, target, Via::Platform).await
}

async fn ssh(State(state): State<ProxyState>, Path(id): Path<String>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    websocket(
        state,
        parts,
        &id,
        Target::Tcp {
            port: ENVAGENT_SSH_PORT,
        },
        Via::Platform,
    )
    .await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    #[test]
    fn ide_paths_keep_their_encoding() {
        let request = axum::http::Request::builder()
            .uri("/proxy/workspaces/abc/ide/static/a%20b.js?x=1")
            .body(Body::empty())
            .expect("request");
        let (parts, _) = request.into_parts();
        assert_eq!(
            ide_path(&parts),
            Some(("abc".to_owned(), "static/a%20b.js".to_owned()))
        );
    }
}
